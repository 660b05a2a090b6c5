//! What instances and sync groups can track, as keepalived defines it:
//! `vrrp_script` (each becomes a `[[vrrp_script]]`), `track_file` /
//! `vrrp_track_file` and `vrrp_track_process` (their settings go into each
//! reference: vznet has no named definitions for them).

use std::collections::BTreeMap;

use vrrp::settings::{ParamMatch, Script, TrackFile, TrackProcess};

use super::super::parser::Node;
use super::command;
use super::keywords::Scope;
use super::{value, Ctx, Imported, Sourced};

/// The named definitions instances refer to.
#[derive(Debug, Default)]
pub struct Definitions {
    /// `vrrp_script` name -> its weight and reverse (a reference's defaults).
    pub(super) scripts: BTreeMap<String, (i32, bool)>,
    /// `track_file` name -> the file with its defaults.
    pub(super) files: BTreeMap<String, TrackFile>,
    /// `vrrp_track_process` name -> the process with its defaults.
    pub(super) processes: BTreeMap<String, TrackProcess>,
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
