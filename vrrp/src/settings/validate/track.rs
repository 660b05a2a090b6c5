//! Tracking (with keepalived's limits on weights), scripts and sync groups.

use std::collections::BTreeMap;

use super::instance::{check_argv, check_notify_timeout};
use super::Checker;
use crate::settings::instance::Instance;
use crate::settings::track::{ScriptCommand, TrackFile, TrackInterface, TrackProcess, TrackScript};
use crate::settings::{FieldPath, Script, Settings, SyncGroup};

/// The kernel's TASK_COMM_LEN - 1: longer process names never match.
const COMM_MAX: usize = 15;

/// Why weighted tracking is refused on this instance, if it is.
pub(super) fn weights_refused(v: &Instance, group: Option<&SyncGroup>) -> Option<String> {
    if v.is_owner() {
        return Some("the address owner's priority never moves (255): use weight 0".into());
    }
    match group {
        Some(g) if !g.tracking_weight => Some(format!(
            "members of sync group {:?} track without weights (else their priorities drift apart): use weight 0, track on the group, or set tracking_weight = true on it",
            g.name
        )),
        _ => None,
    }
}

pub(super) fn check_tracking(
    c: &mut Checker,
    s: &Settings,
    p: &FieldPath,
    v: &Instance,
    group: Option<&SyncGroup>,
) {
    let refused = weights_refused(v, group);
    let weighted = |c: &mut Checker, path: FieldPath, weight: i32| {
        if weight != 0 {
            if let Some(why) = &refused {
                c.error(path, why.clone());
            }
        }
    };
    for (j, t) in v.track.iter().enumerate() {
        let tp = p.k("track").i(j);
        check_track_interface(c, &tp, t);
        weighted(c, tp, t.weight);
    }
    for (j, t) in v.track_script.iter().enumerate() {
        let tp = p.k("track_script").i(j);
        if let Some(w) = check_track_script(c, s, &tp, t) {
            weighted(c, tp, w);
        }
    }
    for (j, t) in v.track_file.iter().enumerate() {
        let tp = p.k("track_file").i(j);
        check_track_file(c, &tp, t);
        weighted(c, tp.k("weight"), t.weight);
    }
    for (j, t) in v.track_process.iter().enumerate() {
        let tp = p.k("track_process").i(j);
        check_track_process(c, &tp, t);
        weighted(c, tp.k("weight"), t.weight);
    }
}

pub(super) fn check_track_interface(c: &mut Checker, p: &FieldPath, t: &TrackInterface) {
    c.range(p.clone(), "track weight", t.weight.into(), -254, 254);
}

/// Checks a script reference; returns the weight in effect when the script exists.
pub(super) fn check_track_script(
    c: &mut Checker,
    s: &Settings,
    p: &FieldPath,
    t: &TrackScript,
) -> Option<i32> {
    if let Some(w) = t.weight {
        c.range(p.clone(), "track_script weight", w.into(), -253, 253);
    }
    match s.script(&t.script) {
        Some(script) => Some(t.weight.unwrap_or(script.weight)),
        None => {
            c.error(
                p.clone(),
                format!("no [[vrrp_script]] is called {:?}", t.script),
            );
            None
        }
    }
}

pub(super) fn check_track_file(c: &mut Checker, p: &FieldPath, t: &TrackFile) {
    if !t.file.is_absolute() {
        c.error(p.k("file"), "the tracked file must be an absolute path");
    }
    c.range(
        p.k("weight"),
        "track_file weight",
        t.weight.into(),
        -254,
        254,
    );
}

pub(super) fn check_track_process(c: &mut Checker, p: &FieldPath, t: &TrackProcess) {
    if t.process.is_empty() || t.process.contains('\0') {
        c.error(
            p.k("process"),
            "the process name is empty or holds a NUL byte",
        );
    } else if !t.uses_command_line() && t.process.len() > COMM_MAX {
        c.error(
            p.k("process"),
            format!("process names are at most {COMM_MAX} bytes (/proc/PID/comm): use full_command = true to match the command line"),
        );
    }
    c.range(
        p.k("weight"),
        "track_process weight",
        t.weight.into(),
        -254,
        254,
    );
    c.range(p.k("quorum"), "quorum", t.quorum.into(), 1, 65_535);
    if let Some(max) = t.quorum_max {
        if max < t.quorum {
            c.error(
                p.k("quorum_max"),
                format!("quorum_max {max} is below quorum {}", t.quorum),
            );
        }
    }
    for (key, ms) in [
        ("fork_delay_ms", t.fork_delay_ms),
        ("terminate_delay_ms", t.terminate_delay_ms),
    ] {
        if ms > 3_600_000 {
            c.error(p.k(key), format!("{ms} ms is over an hour"));
        }
    }
}

pub(super) fn check_script(c: &mut Checker, p: &FieldPath, s: &Script) {
    if s.name.is_empty() {
        c.error(p.k("name"), "script name is empty");
    }
    match &s.script {
        ScriptCommand::Argv(argv) if argv.is_empty() => {
            c.error(p.k("script"), "the argv is empty");
        }
        ScriptCommand::Argv(argv) => check_argv(c, p.k("script"), argv),
        ScriptCommand::Shell(line) if line.trim().is_empty() => {
            c.error(p.k("script"), "the shell line is empty");
        }
        ScriptCommand::Shell(line) if line.contains('\0') => {
            c.error(p.k("script"), "the shell line contains a NUL byte");
        }
        ScriptCommand::Shell(_) => {}
    }
    let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    c.range(
        p.k("interval_ms"),
        "interval_ms",
        ms(s.interval_ms),
        10,
        86_400_000,
    );
    if let Some(t) = s.timeout_ms {
        c.range(p.k("timeout_ms"), "timeout_ms", ms(t), 10, 86_400_000);
    }
    c.range(p.k("weight"), "script weight", s.weight.into(), -253, 253);
    c.range(p.k("rise"), "rise", s.rise.into(), 1, 1_000_000);
    c.range(p.k("fall"), "fall", s.fall.into(), 1, 1_000_000);
    for (key, name) in [("user", &s.user), ("group", &s.group)] {
        if name
            .as_ref()
            .is_some_and(|n| n.is_empty() || n.contains('\0'))
        {
            c.error(p.k(key), "the name is empty or holds a NUL byte");
        }
    }
    if s.group.is_some() && s.user.is_none() {
        c.error(p.k("group"), "a group needs a user");
    }
}

pub(super) fn check_sync_group<'a>(
    c: &mut Checker,
    s: &Settings,
    p: &FieldPath,
    g: &'a SyncGroup,
    membership: &mut BTreeMap<&'a str, FieldPath>,
) {
    if g.name.is_empty() {
        c.error(p.k("name"), "sync group name is empty");
    }
    if g.group.is_empty() {
        c.error(p.k("group"), "a sync group needs members");
    }
    for (j, member) in g.group.iter().enumerate() {
        let mp = p.k("group").i(j);
        if s.instance(member).is_none() {
            c.error(
                mp.clone(),
                format!("no [[vrrp]] instance is called {member:?}"),
            );
        }
        if let Some(first) = membership.insert(member, mp.clone()) {
            c.error(
                mp,
                format!("instance {member:?} is already in a sync group (at {first})"),
            );
        }
    }
    for (j, t) in g.track.iter().enumerate() {
        check_track_interface(c, &p.k("track").i(j), t);
    }
    for (j, t) in g.track_script.iter().enumerate() {
        check_track_script(c, s, &p.k("track_script").i(j), t);
    }
    for (j, t) in g.track_file.iter().enumerate() {
        check_track_file(c, &p.k("track_file").i(j), t);
    }
    for (j, t) in g.track_process.iter().enumerate() {
        check_track_process(c, &p.k("track_process").i(j), t);
    }
    if g.group
        .iter()
        .filter_map(|m| s.instance(m))
        .any(Instance::is_owner)
        && [
            g.track.iter().any(|t| t.weight != 0),
            g.track_file.iter().any(|t| t.weight != 0),
            g.track_process.iter().any(|t| t.weight != 0),
        ]
        .contains(&true)
    {
        c.error(
            p.k("track"),
            "a member is the address owner (priority 255), whose priority never moves: track with weight 0",
        );
    }
    for (key, argv) in [
        ("notify_master", &g.notify_master),
        ("notify_backup", &g.notify_backup),
        ("notify_fault", &g.notify_fault),
        ("notify_stop", &g.notify_stop),
        ("notify", &g.notify),
    ] {
        check_argv(c, p.k(key), argv);
    }
    check_notify_timeout(c, p.k("notify_timeout_ms"), g.notify_timeout_ms);
}
