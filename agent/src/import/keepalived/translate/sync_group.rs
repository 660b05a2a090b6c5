//! `vrrp_sync_group`: which instances are members (for keepalived's rules on their
//! weights), the groups themselves, and the members keepalived leaves out.

use std::collections::BTreeMap;

use vrrp::settings::SyncGroup;

use super::super::parser::Node;
use super::keywords::Scope;
use super::track::{self, WeightRule};
use super::{Ctx, Imported, Sourced};

/// An instance's sync group, for keepalived's rules on weights.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The group's name.
    pub group: String,
    /// `sync_group_tracking_weight`.
    pub tracking_weight: bool,
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
            "track_interface" => g.track.extend(track::interfaces(ctx, c, WeightRule::Kept)),
            "track_script" => g
                .track_script
                .extend(track::scripts(ctx, c, WeightRule::Kept)),
            "track_file" => g.track_file.extend(track::files(ctx, c, WeightRule::Kept)),
            "track_process" => g
                .track_process
                .extend(track::processes(ctx, c, WeightRule::Kept)),
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
