//! What VRRP instances and sync groups track: `vrrp_script` (each becomes a
//! `[[vrrp_script]]`), `track_file` / `vrrp_track_file` and `vrrp_track_process`
//! definitions (their settings go into each reference, as vznet has no named
//! definitions for them), the `track_*` blocks that refer to them, and
//! `vrrp_sync_group`.

use std::collections::BTreeMap;

use vrrp::settings::{
    ParamMatch, Script, SyncGroup, TrackFile, TrackInterface, TrackProcess, TrackScript,
};

use super::super::parser::Node;
use super::command;
use super::keywords::Scope;
use super::{value, Ctx, Imported, Sourced};

/// The named definitions instances refer to.
#[derive(Debug, Default)]
pub struct Definitions {
    /// `vrrp_script` name -> its weight and reverse (a reference's defaults).
    scripts: BTreeMap<String, (i32, bool)>,
    /// `track_file` name -> the file with its defaults.
    files: BTreeMap<String, TrackFile>,
    /// `vrrp_track_process` name -> the process with its defaults.
    processes: BTreeMap<String, TrackProcess>,
}

/// An instance's sync group, for keepalived's rules on weights.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The group's name.
    pub group: String,
    /// `sync_group_tracking_weight`.
    pub tracking_weight: bool,
}

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

/// Reads `vrrp_script`, `track_file` and `vrrp_track_process` definitions.
pub(super) fn definitions(ctx: &mut Ctx<'_>, tree: &[Node], out: &mut Imported) {
    for node in tree {
        match node.keyword() {
            "vrrp_script" => {
                if let Some(s) = script(ctx, node) {
                    ctx.defs
                        .scripts
                        .insert(s.value.name.clone(), (s.value.weight, s.value.reverse));
                    out.vrrp_script.push(s);
                }
            }
            "track_file" | "vrrp_track_file" => {
                if let Some((name, f)) = file_definition(ctx, node) {
                    ctx.defs.files.insert(name, f);
                }
            }
            "vrrp_track_process" => {
                if let Some((name, p)) = process_definition(ctx, node) {
                    ctx.defs.processes.insert(name, p);
                }
            }
            _ => {}
        }
    }
}

fn script(ctx: &mut Ctx<'_>, node: &Node) -> Option<Sourced<Script>> {
    let name = match (node.arg(1), node.words.len()) {
        (Some(n), 2) => n.to_string(),
        _ => {
            ctx.invalid(node, "vrrp_script name");
            return None;
        }
    };
    if ctx.defs.scripts.contains_key(&name) {
        ctx.no_effect(
            node,
            format!("vrrp_script {name} is defined twice (keepalived keeps the first)"),
        );
        return None;
    }
    let mut s = Script::new(name.clone(), vrrp::settings::ScriptCommand::Argv(vec![]));
    let mut has_script = false;
    let mut user_set = false;
    for c in node.children() {
        match c.keyword() {
            "script" => match command::command_words(c) {
                Some((argv, extra)) => {
                    s.script = command::check(argv);
                    has_script = true;
                    if !extra.is_empty() {
                        ctx.no_effect(c, format!("{:?} after the script: keepalived ignores them (use the user keyword)", extra.join(" ")));
                    }
                }
                None => ctx.invalid(c, "script"),
            },
            "interval" => match c.arg(1).and_then(|v| value::unsigned(v, 0, 4294)) {
                Some(n) => s.interval_ms = n.max(1) * 1000,
                None => ctx.invalid(c, "interval"),
            },
            "timeout" => match c.arg(1).and_then(|v| value::unsigned(v, 0, 4294)) {
                Some(n) => s.timeout_ms = Some(n.max(1) * 1000),
                None => ctx.invalid(c, "timeout"),
            },
            "weight" => match c.arg(1).and_then(|v| value::int(v, -253, 253)) {
                Some(w) => {
                    s.weight = i32::try_from(w).unwrap_or(0);
                    match c.arg(2) {
                        Some("reverse") => s.reverse = true,
                        Some(other) => ctx.no_effect(
                            c,
                            format!("unknown weight option {other:?} (keepalived ignores it too)"),
                        ),
                        None => {}
                    }
                }
                None => ctx.invalid(c, "weight"),
            },
            "rise" | "fall" => {
                let n = c
                    .arg(1)
                    .and_then(|v| value::unsigned(v, 1, i32::MAX as u64));
                if n.is_none() {
                    ctx.no_effect(c, "not a number of 1 or more: keepalived uses 1");
                }
                let n = u32::try_from(n.unwrap_or(1)).unwrap_or(1);
                if c.keyword() == "rise" {
                    s.rise = n;
                } else {
                    s.fall = n;
                }
            }
            "user" => match c.arg(1) {
                Some(u) => {
                    s.user = Some(u.to_string());
                    s.group = c.arg(2).map(str::to_string);
                    user_set = true;
                }
                None => ctx.invalid(c, "user"),
            },
            "init_fail" => s.init_fail = true,
            _ => ctx.unknown(c, Scope::Block("vrrp_script")),
        }
    }
    if !has_script {
        ctx.no_effect(
            node,
            format!("vrrp_script {name} has no script (keepalived removes it too)"),
        );
        return None;
    }
    if !user_set {
        if let Some((user, group)) = ctx.globals.script_user.clone() {
            s.user = Some(user);
            s.group = group;
        }
    }
    Some(Sourced {
        at: node.at.clone(),
        origin: format!("vrrp_script {name}"),
        value: s,
    })
}

fn file_definition(ctx: &mut Ctx<'_>, node: &Node) -> Option<(String, TrackFile)> {
    let Some(name) = node.arg(1).map(str::to_string) else {
        ctx.invalid(node, "track_file name");
        return None;
    };
    let mut file: Option<String> = None;
    let mut t = TrackFile::new("");
    for c in node.children() {
        match c.keyword() {
            "file" => match c.arg(1) {
                Some(p) if file.is_none() => file = Some(p.to_string()),
                Some(_) => ctx.no_effect(c, "a second file (keepalived keeps the first)"),
                None => ctx.invalid(c, "file"),
            },
            "weight" => match c.arg(1).and_then(|v| value::int(v, -254, 254)) {
                Some(w) => {
                    t.weight = i32::try_from(w).unwrap_or(1);
                    t.reverse = c.arg(2) == Some("reverse");
                }
                None => ctx.invalid(c, "weight"),
            },
            "init_file" => {
                t.init_value = Some(0);
                for w in c.words.iter().skip(1) {
                    if w == "overwrite" {
                        t.init_overwrite = true;
                    } else if let Some(v) = value::int(w, i64::from(i32::MIN), i64::from(i32::MAX))
                    {
                        t.init_value = Some(v);
                    } else {
                        ctx.no_effect(
                            c,
                            format!("unknown init_file option {w:?} (keepalived ignores it too)"),
                        );
                    }
                }
            }
            _ => ctx.unknown(c, Scope::Block("track_file")),
        }
    }
    match file {
        Some(f) => {
            t.file = f.into();
            Some((name, t))
        }
        None => {
            ctx.no_effect(
                node,
                format!("track_file {name} names no file (keepalived ignores it too)"),
            );
            None
        }
    }
}

fn process_definition(ctx: &mut Ctx<'_>, node: &Node) -> Option<(String, TrackProcess)> {
    let Some(name) = node.arg(1).map(str::to_string) else {
        ctx.invalid(node, "vrrp_track_process name");
        return None;
    };
    let mut p = TrackProcess::new("");
    let mut process: Option<String> = None;
    let delay = |ctx: &mut Ctx<'_>, c: &Node| -> Option<u64> {
        let us = c
            .arg(1)
            .and_then(value::seconds_us)
            .filter(|us| (1..=3_600_000_000).contains(us));
        if us.is_none() {
            ctx.invalid(c, "delay");
        }
        us.map(|us| {
            let ms = us.div_ceil(1000);
            if !us.is_multiple_of(1000) {
                ctx.changed(c, format!("{us} µs rounded up to {ms} ms"));
            }
            ms
        })
    };
    for c in node.children() {
        match c.keyword() {
            "process" => match c.arg(1) {
                Some(path) if process.is_none() => {
                    process = Some(path.to_string());
                    if c.words.len() > 2 {
                        p.args = c.words[2..].to_vec();
                        p.full_command = true;
                    }
                }
                Some(_) => ctx.no_effect(c, "a second process (keepalived keeps the first)"),
                None => ctx.invalid(c, "process"),
            },
            "param_match" => match c.arg(1) {
                None => p.param_match = Some(ParamMatch::Exact),
                Some("initial") => p.param_match = Some(ParamMatch::Initial),
                Some("partial") => p.param_match = Some(ParamMatch::Partial),
                Some(_) => ctx.invalid(c, "param_match"),
            },
            "weight" => match c.arg(1).and_then(|v| value::int(v, -254, 254)) {
                Some(w) => {
                    p.weight = i32::try_from(w).unwrap_or(0);
                    p.reverse = c.arg(2) == Some("reverse");
                }
                None => ctx.invalid(c, "weight"),
            },
            "quorum" => match c.arg(1).and_then(|v| value::unsigned(v, 1, 65_535)) {
                Some(q) => p.quorum = u32::try_from(q).unwrap_or(1),
                None => ctx.invalid(c, "quorum"),
            },
            "quorum_max" => match c.arg(1).and_then(|v| value::unsigned(v, 0, 65_535)) {
                Some(0) => ctx.lost(c, "quorum_max 0 (the process must not run) has no vznet counterpart: use weight 0 with reverse"),
                Some(q) => p.quorum_max = Some(u32::try_from(q).unwrap_or(u32::MAX)),
                None => ctx.invalid(c, "quorum_max"),
            },
            "delay" => {
                if let Some(ms) = delay(ctx, c) {
                    p.fork_delay_ms = ms;
                    p.terminate_delay_ms = ms;
                }
            }
            "fork_delay" => {
                if let Some(ms) = delay(ctx, c) {
                    p.fork_delay_ms = ms;
                }
            }
            "terminate_delay" => {
                if let Some(ms) = delay(ctx, c) {
                    p.terminate_delay_ms = ms;
                }
            }
            "full_command" => p.full_command = true,
            _ => ctx.unknown(c, Scope::Block("vrrp_track_process")),
        }
    }
    if p.param_match.is_some() {
        p.full_command = true;
    }
    match process {
        Some(proc_name) => {
            p.process = proc_name;
            Some((name, p))
        }
        None => {
            ctx.no_effect(
                node,
                format!("vrrp_track_process {name} names no process (keepalived ignores it too)"),
            );
            None
        }
    }
}

/// Each instance's sync group, from the `group` blocks of `vrrp_sync_group`s.
pub(super) fn membership(ctx: &mut Ctx<'_>, tree: &[Node]) -> BTreeMap<String, Membership> {
    let mut out = BTreeMap::new();
    for g in tree.iter().filter(|n| n.keyword() == "vrrp_sync_group") {
        let Some(name) = g.arg(1) else { continue };
        let tracking_weight = g.children().iter().any(|c| {
            matches!(
                c.keyword(),
                "sync_group_tracking_weight" | "global_tracking"
            )
        });
        for list in g.children().iter().filter(|c| c.keyword() == "group") {
            for m in list.children() {
                for member in &m.words {
                    if let Some(first) = out.get(member) {
                        let first: &Membership = first;
                        let why = format!(
                            "{member} is already in sync group {} (keepalived keeps it there)",
                            first.group
                        );
                        ctx.no_effect(m, why);
                        continue;
                    }
                    out.insert(
                        member.clone(),
                        Membership {
                            group: name.to_string(),
                            tracking_weight,
                        },
                    );
                }
            }
        }
    }
    out
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

/// A `vrrp_sync_group`; members that are no instance are dropped in [`finish`].
pub(super) fn sync_group(ctx: &mut Ctx<'_>, node: &Node) -> Option<Sourced<SyncGroup>> {
    let name = match (node.arg(1), node.words.len()) {
        (Some(n), 2) => n.to_string(),
        _ => {
            ctx.invalid(node, "vrrp_sync_group name");
            return None;
        }
    };
    let mut g = SyncGroup::new(name.clone(), Vec::new());
    let mut had_group = false;
    for c in node.children() {
        match c.keyword() {
            "group" if !had_group => {
                had_group = true;
                for line in c.children() {
                    g.group.extend(line.words.iter().cloned());
                }
            }
            "group" => ctx.no_effect(c, "a second group list (keepalived keeps the first)"),
            "track_interface" => g.track.extend(interfaces(ctx, c, WeightRule::Kept)),
            "track_script" => g.track_script.extend(scripts(ctx, c, WeightRule::Kept)),
            "track_file" => g.track_file.extend(files(ctx, c, WeightRule::Kept)),
            "track_process" => g.track_process.extend(processes(ctx, c, WeightRule::Kept)),
            "notify_master" => super::instance::notify(ctx, c, &mut g.notify_master),
            "notify_backup" => super::instance::notify(ctx, c, &mut g.notify_backup),
            "notify_fault" => super::instance::notify(ctx, c, &mut g.notify_fault),
            "notify_stop" => super::instance::notify(ctx, c, &mut g.notify_stop),
            "notify" => super::instance::notify(ctx, c, &mut g.notify),
            "sync_group_tracking_weight" => g.tracking_weight = true,
            "global_tracking" => {
                g.tracking_weight = true;
                ctx.changed(c, "keepalived's old name for sync_group_tracking_weight: carried as tracking_weight = true");
            }
            _ => ctx.unsupported(c, Scope::SyncGroup),
        }
    }
    // Only the members the group claimed first (an instance is in one group).
    g.group
        .retain(|m| ctx.membership.get(m).is_some_and(|ms| ms.group == name));
    Some(Sourced {
        at: node.at.clone(),
        origin: format!("vrrp_sync_group {name}"),
        value: g,
    })
}

/// Drops sync group members that are not imported instances, and groups left
/// without members (keepalived removes both).
pub(super) fn finish(ctx: &mut Ctx<'_>, out: &mut Imported) {
    let names: Vec<String> = out.vrrp.iter().map(|i| i.value.name.clone()).collect();
    let mut keep = Vec::new();
    for mut g in std::mem::take(&mut out.vrrp_sync_group) {
        let (present, missing): (Vec<String>, Vec<String>) = g
            .value
            .group
            .iter()
            .cloned()
            .partition(|m| names.contains(m));
        let at = g.at.clone();
        for m in missing {
            ctx.report.add(
                &at.file,
                at.line,
                "group",
                crate::import::report::Kind::NoEffect,
                format!(
                    "no vrrp_instance {m} (keepalived leaves it out of {} too)",
                    g.value.name
                ),
            );
        }
        g.value.group = present;
        if g.value.group.is_empty() {
            ctx.report.add(
                &at.file,
                at.line,
                "vrrp_sync_group",
                crate::import::report::Kind::NoEffect,
                format!(
                    "{} has no member instances (keepalived removes it too)",
                    g.value.name
                ),
            );
        } else {
            keep.push(g);
        }
    }
    out.vrrp_sync_group = keep;
}
