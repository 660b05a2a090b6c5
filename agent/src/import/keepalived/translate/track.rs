//! The `track_interface`, `track_script`, `track_file` and `track_process` blocks
//! of instances and sync groups, with keepalived's rules on the weights of sync
//! group members and of the address owner.

use vrrp::settings::{TrackFile, TrackInterface, TrackProcess, TrackScript};

use super::super::parser::Node;
use super::tracked::Definitions;
use super::{value, Ctx};

/// Why weights are dropped from an instance's own tracking, if they are: keepalived
/// ignores them on sync group members without `sync_group_tracking_weight` and on
/// the address owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightRule {
    /// Weights count.
    Kept,
    /// A sync group member: interfaces and default-weight files become
    /// unweighted, weighted scripts, processes and files are dropped.
    SyncMember,
    /// The address owner: weighted interfaces, scripts and files are dropped.
    Owner,
}

impl WeightRule {
    fn why(self) -> &'static str {
        match self {
            WeightRule::Kept => "",
            WeightRule::SyncMember => {
                "the instance is in a sync group without sync_group_tracking_weight"
            }
            WeightRule::Owner => "the instance is the address owner (priority 255)",
        }
    }
}

/// `track_interface { IF [weight W [reverse]] }`.
pub(super) fn interfaces(ctx: &mut Ctx<'_>, block: &Node, rule: WeightRule) -> Vec<TrackInterface> {
    let mut out: Vec<TrackInterface> = Vec::new();
    for line in block.children() {
        let name = line.keyword().to_string();
        if out.iter().any(|t| t.interface == name) {
            ctx.no_effect(
                line,
                format!("{name} is tracked twice (keepalived keeps the first)"),
            );
            continue;
        }
        let Some((weight, reverse)) = weight_option(ctx, line, 0) else {
            continue;
        };
        let mut t = TrackInterface {
            interface: name,
            weight,
            reverse,
        };
        if t.weight != 0 {
            match rule {
                WeightRule::Kept => {}
                WeightRule::SyncMember => {
                    ctx.no_effect(
                        line,
                        format!(
                            "weight {}: keepalived ignores it because {} (tracked without weight)",
                            t.weight,
                            rule.why()
                        ),
                    );
                    t.weight = 0;
                }
                WeightRule::Owner => {
                    ctx.no_effect(
                        line,
                        format!("keepalived does not track it because {}", rule.why()),
                    );
                    continue;
                }
            }
        }
        out.push(t);
    }
    out
}

/// `weight W [reverse]` after a tracked name (`line.words[1..]`): `None` when
/// keepalived ignores the line.
fn weight_option(ctx: &mut Ctx<'_>, line: &Node, default: i32) -> Option<(i32, bool)> {
    match line.arg(1) {
        None => Some((default, false)),
        Some("weight") => {
            let w = line.arg(2).and_then(|v| value::int(v, -254, 254));
            let Some(w) = w else {
                ctx.no_effect(
                    line,
                    "the weight is missing or out of -253..253 (keepalived ignores it: weight 0)",
                );
                return Some((0, false));
            };
            // keepalived turns +-254 into +-253.
            let w = w.clamp(-253, 253);
            let reverse = match line.arg(3) {
                Some("reverse") => true,
                Some("noreverse") | None => false,
                Some(other) => {
                    ctx.no_effect(
                        line,
                        format!("unknown weight option {other:?} (keepalived ignores it too)"),
                    );
                    false
                }
            };
            Some((i32::try_from(w).unwrap_or(0), reverse))
        }
        Some(other) => {
            ctx.no_effect(
                line,
                format!("unknown option {other:?} (keepalived ignores the line)"),
            );
            None
        }
    }
}

/// One line of a track block that names a definition.
struct Reference<'n, T> {
    line: &'n Node,
    name: String,
    def: T,
    /// The weight in effect: the line's, else the definition's.
    weight: i32,
    /// `reverse` in effect: the line's (with a weight), else the definition's.
    reverse: bool,
    /// Whether the line gives a weight.
    explicit: bool,
}

/// The lines of a track block whose names are defined, each name once (keepalived
/// ignores unknown names and repeats); `find` gives a definition and its default
/// weight and reverse.
fn references<'n, T>(
    ctx: &mut Ctx<'_>,
    block: &'n Node,
    what: &str,
    find: impl Fn(&Definitions, &str) -> Option<(T, i32, bool)>,
) -> Vec<Reference<'n, T>> {
    let mut out: Vec<Reference<'n, T>> = Vec::new();
    for line in block.children() {
        let name = line.keyword().to_string();
        let Some((def, default_weight, default_reverse)) = find(&ctx.defs, &name) else {
            ctx.no_effect(
                line,
                format!("no {what} {name} (keepalived ignores the reference too)"),
            );
            continue;
        };
        if out.iter().any(|r| r.name == name) {
            ctx.no_effect(
                line,
                format!("{name} is tracked twice (keepalived keeps the first)"),
            );
            continue;
        }
        let Some((weight, reverse)) = weight_option(ctx, line, default_weight) else {
            continue;
        };
        out.push(Reference {
            line,
            name,
            def,
            weight,
            reverse: if line.arg(3).is_some() {
                reverse
            } else {
                default_reverse
            },
            explicit: line.arg(1).is_some(),
        });
    }
    out
}

/// `track_script { NAME [weight W [reverse|noreverse]] }`.
pub(super) fn scripts(ctx: &mut Ctx<'_>, block: &Node, rule: WeightRule) -> Vec<TrackScript> {
    let refs = references(ctx, block, "vrrp_script", |d, n| {
        d.scripts.get(n).map(|&(w, r)| ((), w, r))
    });
    let mut out = Vec::new();
    for r in refs {
        if r.weight != 0 && rule != WeightRule::Kept {
            ctx.no_effect(
                r.line,
                format!(
                    "keepalived does not track a weighted script because {}",
                    rule.why()
                ),
            );
            continue;
        }
        out.push(TrackScript {
            script: r.name,
            weight: r.explicit.then_some(r.weight),
            reverse: (r.explicit && r.line.arg(3).is_some()).then_some(r.reverse),
        });
    }
    out
}

/// `track_file { NAME [weight W [reverse]] }`.
pub(super) fn files(ctx: &mut Ctx<'_>, block: &Node, rule: WeightRule) -> Vec<TrackFile> {
    let refs = references(ctx, block, "track_file", |d, n| {
        d.files.get(n).map(|f| (f.clone(), f.weight, f.reverse))
    });
    let mut out = Vec::new();
    for r in refs {
        let mut t = TrackFile {
            weight: r.weight,
            reverse: r.reverse,
            ..r.def
        };
        if rule != WeightRule::Kept && t.weight == 1 {
            let why = format!(
                "keepalived tracks it without its default weight 1 because {}",
                rule.why()
            );
            ctx.no_effect(r.line, why);
            t.weight = 0;
        } else if rule != WeightRule::Kept && t.weight != 0 {
            let why = format!(
                "keepalived does not track it with weight {} because {}",
                t.weight,
                rule.why()
            );
            ctx.no_effect(r.line, why);
            continue;
        }
        out.push(t);
    }
    out
}

/// `track_process { NAME [weight W [reverse|noreverse]] }`.
pub(super) fn processes(ctx: &mut Ctx<'_>, block: &Node, rule: WeightRule) -> Vec<TrackProcess> {
    let refs = references(ctx, block, "vrrp_track_process", |d, n| {
        d.processes.get(n).map(|p| (p.clone(), p.weight, p.reverse))
    });
    let mut out = Vec::new();
    for r in refs {
        if r.weight != 0 && rule != WeightRule::Kept {
            // keepalived 2.2.7 keeps weighted processes on sync group members and on
            // the owner; vznet refuses them (the priorities would drift apart, or the
            // owner's never moves).
            let hint = if rule == WeightRule::SyncMember {
                " (set sync_group_tracking_weight, or track it on the group)"
            } else {
                ""
            };
            ctx.lost(
                r.line,
                format!(
                    "weight {}: vznet refuses weighted tracking because {}{hint}",
                    r.weight,
                    rule.why()
                ),
            );
            continue;
        }
        out.push(TrackProcess {
            weight: r.weight,
            reverse: r.reverse,
            ..r.def
        });
    }
    out
}
