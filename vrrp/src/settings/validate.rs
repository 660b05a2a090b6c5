//! Every check of VRRP settings, each naming its field.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::instance::{Instance, RouteKind, VirtualIp, VirtualRoute, VirtualRule};
use super::track::{ScriptCommand, TrackFile, TrackInterface, TrackProcess, TrackScript};
use super::{FieldPath, Settings, SettingsError, SyncGroup};
use crate::wire::{AddressFamily, Version, MAX_ADVER_INT_V3};

/// The kernel's TASK_COMM_LEN - 1: longer process names never match.
const COMM_MAX: usize = 15;
/// IFNAMSIZ - 1, for address labels.
const LABEL_MAX: usize = 15;

struct Checker {
    errors: Vec<SettingsError>,
}

impl Checker {
    fn error(&mut self, path: FieldPath, message: impl Into<String>) {
        self.errors.push(SettingsError {
            path,
            message: message.into(),
        });
    }

    fn range(&mut self, path: FieldPath, what: &str, value: i64, min: i64, max: i64) {
        if !(min..=max).contains(&value) {
            self.error(
                path,
                format!("{what} {value} is out of range: use {min}..{max}"),
            );
        }
    }
}

pub(super) fn validate(s: &Settings) -> Vec<SettingsError> {
    let mut c = Checker { errors: Vec::new() };
    let mut names: BTreeMap<&str, FieldPath> = BTreeMap::new();
    let mut vrids: BTreeMap<(&str, u8, bool), FieldPath> = BTreeMap::new();
    for (i, v) in s.vrrp.iter().enumerate() {
        let p = FieldPath::key("vrrp").i(i);
        let group = s.sync_group_of(&v.name);
        check_instance(&mut c, s, &p, v, group);
        if let Some(first) = names.insert(&v.name, p.k("name")) {
            c.error(
                p.k("name"),
                format!(
                    "duplicate VRRP instance name {:?} (also at {first})",
                    v.name
                ),
            );
        }
        if let Some(first) = vrids.insert(
            (&v.interface, v.vrid, v.family() == AddressFamily::Ipv4),
            p.k("vrid"),
        ) {
            c.error(
                p.k("vrid"),
                format!(
                    "VRID {} is already used on {} for this address family (at {first})",
                    v.vrid, v.interface
                ),
            );
        }
    }
    let mut script_names: BTreeMap<&str, FieldPath> = BTreeMap::new();
    for (i, script) in s.vrrp_script.iter().enumerate() {
        let p = FieldPath::key("vrrp_script").i(i);
        check_script(&mut c, &p, script);
        if let Some(first) = script_names.insert(&script.name, p.k("name")) {
            c.error(
                p.k("name"),
                format!(
                    "duplicate vrrp_script name {:?} (also at {first})",
                    script.name
                ),
            );
        }
    }
    let mut group_names: BTreeMap<&str, FieldPath> = BTreeMap::new();
    let mut membership: BTreeMap<&str, FieldPath> = BTreeMap::new();
    for (i, g) in s.vrrp_sync_group.iter().enumerate() {
        let p = FieldPath::key("vrrp_sync_group").i(i);
        check_sync_group(&mut c, s, &p, g, &mut membership);
        if let Some(first) = group_names.insert(&g.name, p.k("name")) {
            c.error(
                p.k("name"),
                format!("duplicate sync group name {:?} (also at {first})", g.name),
            );
        }
    }
    c.errors
}

/// The fields that hold interface names.
pub(super) fn interface_names(s: &Settings) -> Vec<(FieldPath, &str)> {
    fn tracked<'a>(
        out: &mut Vec<(FieldPath, &'a str)>,
        p: &FieldPath,
        track: &'a [TrackInterface],
    ) {
        for (j, t) in track.iter().enumerate() {
            out.push((p.k("track").i(j), t.interface.as_str()));
        }
    }
    let mut out = Vec::new();
    for (i, v) in s.vrrp.iter().enumerate() {
        let p = FieldPath::key("vrrp").i(i);
        out.push((p.k("interface"), v.interface.as_str()));
        for (key, vips) in [
            ("virtual_ips", &v.virtual_ips),
            ("virtual_ips_excluded", &v.virtual_ips_excluded),
        ] {
            for (j, vip) in vips.iter().enumerate() {
                if let Some(dev) = &vip.dev {
                    out.push((p.k(key).i(j).k("dev"), dev.as_str()));
                }
            }
        }
        for (j, r) in v.virtual_routes.iter().enumerate() {
            if let Some(dev) = &r.dev {
                out.push((p.k("virtual_routes").i(j).k("dev"), dev.as_str()));
            }
        }
        for (j, r) in v.virtual_rules.iter().enumerate() {
            for (key, name) in [("iif", &r.iif), ("oif", &r.oif)] {
                if let Some(name) = name {
                    out.push((p.k("virtual_rules").i(j).k(key), name.as_str()));
                }
            }
        }
        tracked(&mut out, &p, &v.track);
    }
    for (i, g) in s.vrrp_sync_group.iter().enumerate() {
        tracked(&mut out, &FieldPath::key("vrrp_sync_group").i(i), &g.track);
    }
    out
}

fn check_instance(
    c: &mut Checker,
    s: &Settings,
    p: &FieldPath,
    v: &Instance,
    group: Option<&SyncGroup>,
) {
    if v.name.is_empty() {
        c.error(p.k("name"), "instance name is empty");
    }
    if v.vrid == 0 {
        c.error(p.k("vrid"), "VRID 0 is reserved: use 1..255");
    }
    if v.priority == 0 {
        c.error(
            p.k("priority"),
            "priority 0 is reserved for a master that stops: use 1..255",
        );
    }
    check_interval(c, p, v);
    check_virtual_ips(c, p, v);
    if v.password.as_ref().is_some_and(|pw| pw.len() > 8) {
        c.error(p.k("password"), "a VRRPv2 password is at most 8 bytes");
    }
    if v.version == Version::V3 && v.password.is_some() {
        c.error(
            p.k("password"),
            "VRRPv3 has no authentication (RFC 5798 9): remove password",
        );
    }
    if v.preempt_delay_ms > 1_000_000 {
        c.error(
            p.k("preempt_delay_ms"),
            format!("preempt delay {} ms is over 1000 s", v.preempt_delay_ms),
        );
    }
    let family = v.family();
    for (j, peer) in v.unicast_peers.iter().enumerate() {
        if AddressFamily::of(*peer) != family {
            c.error(
                p.k("unicast_peers").i(j),
                format!("unicast peer {peer} is not of the virtual IPs' family"),
            );
        }
    }
    if let Some(src) = v.unicast_src_ip {
        if AddressFamily::of(src) != family {
            c.error(
                p.k("unicast_src_ip"),
                format!("{src} is not of the virtual IPs' family"),
            );
        } else if let IpAddr::V6(a) = src {
            if v.unicast_peers.is_empty() && !a.is_unicast_link_local() {
                c.error(
                    p.k("unicast_src_ip"),
                    format!("{src}: multicast IPv6 adverts come from a link-local address (RFC 5798 5.1.2.1)"),
                );
            }
        }
    }
    check_strict(c, p, v);
    check_tracking(c, s, p, v, group);
    check_hooks(c, p, v);
    check_garp(c, p, v);
    for (j, r) in v.virtual_routes.iter().enumerate() {
        check_route(c, &p.k("virtual_routes").i(j), r);
    }
    for (j, r) in v.virtual_rules.iter().enumerate() {
        check_rule(c, &p.k("virtual_rules").i(j), r);
    }
}

fn check_interval(c: &mut Checker, p: &FieldPath, v: &Instance) {
    let ms = v.advert_interval_ms;
    match v.version {
        Version::V2 => {
            if ms % 1000 != 0 || !(1000..=255_000).contains(&ms) {
                c.error(
                    p.k("advert_interval_ms"),
                    format!("VRRPv2 intervals are whole seconds, 1..255 s; {ms} ms is not"),
                );
            }
        }
        Version::V3 => {
            let max = u32::from(MAX_ADVER_INT_V3) * 10;
            if ms % 10 != 0 || !(10..=max).contains(&ms) {
                c.error(
                    p.k("advert_interval_ms"),
                    format!("VRRPv3 intervals are centiseconds, 10..{max} ms; {ms} ms is not"),
                );
            }
        }
    }
}

fn check_virtual_ips(c: &mut Checker, p: &FieldPath, v: &Instance) {
    let vp = p.k("virtual_ips");
    match v.virtual_ips.first() {
        None => c.error(vp.clone(), "at least one virtual IP is needed"),
        Some(first) => {
            let v4 = first.address.addr().is_ipv4();
            if v.virtual_ips
                .iter()
                .any(|a| a.address.addr().is_ipv4() != v4)
            {
                c.error(
                    vp.clone(),
                    "one instance's virtual IPs must be all IPv4 or all IPv6 (others go in virtual_ips_excluded)",
                );
            }
            if v.version == Version::V2 && !v4 {
                c.error(vp.clone(), "VRRPv2 is IPv4 only: use version = 3 for IPv6");
            }
        }
    }
    if v.virtual_ips.len() > 255 {
        c.error(vp.clone(), "at most 255 virtual IPs fit in an advert");
    }
    for (key, list) in [
        ("virtual_ips", &v.virtual_ips),
        ("virtual_ips_excluded", &v.virtual_ips_excluded),
    ] {
        for (j, vip) in list.iter().enumerate() {
            check_vip(c, &p.k(key).i(j), v, vip);
        }
    }
}

fn check_vip(c: &mut Checker, p: &FieldPath, v: &Instance, vip: &VirtualIp) {
    let dev = v.dev_of(vip);
    if let Some(label) = &vip.label {
        if vip.address.addr().is_ipv6() {
            c.error(p.k("label"), "address labels are IPv4 only");
        } else if !label.starts_with(dev) || label.len() > LABEL_MAX {
            c.error(
                p.k("label"),
                format!("label {label:?} must start with the interface name {dev:?} and be at most {LABEL_MAX} bytes (\"{dev}:1\")"),
            );
        }
    }
    if vip.brd.is_some() && vip.address.addr().is_ipv6() {
        c.error(p.k("brd"), "a broadcast address is for IPv4 addresses only");
    }
}

fn check_strict(c: &mut Checker, p: &FieldPath, v: &Instance) {
    if !v.strict {
        return;
    }
    let why = "is not allowed with strict = true (RFC 3768/5798)";
    if !v.unicast_peers.is_empty() {
        c.error(p.k("unicast_peers"), format!("unicast {why}"));
    }
    if v.password.is_some() {
        c.error(p.k("password"), format!("authentication {why}"));
    }
    if v.preempt_delay_ms != 0 {
        c.error(p.k("preempt_delay_ms"), format!("a preempt delay {why}"));
    }
    if v.version == Version::V2 && v.accept == Some(true) && !v.is_owner() {
        c.error(
            p.k("accept"),
            "RFC 3768 has no Accept_Mode: a strict VRRPv2 non-owner cannot accept",
        );
    }
    if let Some(first) = v.virtual_ips.first() {
        if let IpAddr::V6(a) = first.address.addr() {
            if !a.is_unicast_link_local() {
                c.error(
                    p.k("virtual_ips").i(0),
                    "with strict = true the first IPv6 virtual IP must be link-local (RFC 5798 5.2.9)",
                );
            }
        }
    }
}

/// Why weighted tracking is refused on this instance, if it is.
fn weights_refused(v: &Instance, group: Option<&SyncGroup>) -> Option<String> {
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

fn check_tracking(
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

fn check_track_interface(c: &mut Checker, p: &FieldPath, t: &TrackInterface) {
    c.range(p.clone(), "track weight", t.weight.into(), -254, 254);
}

/// Checks a script reference; returns the weight in effect when the script exists.
fn check_track_script(
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

fn check_track_file(c: &mut Checker, p: &FieldPath, t: &TrackFile) {
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

fn check_track_process(c: &mut Checker, p: &FieldPath, t: &TrackProcess) {
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

fn check_argv(c: &mut Checker, p: FieldPath, argv: &[String]) {
    if let Some(program) = argv.first() {
        if !program.starts_with('/') {
            c.error(
                p.clone(),
                format!("{program:?}: the program must be an absolute path (hooks run as argv, without a shell or PATH)"),
            );
        }
    }
    if argv.iter().any(|a| a.contains('\0')) {
        c.error(p, "an argument contains a NUL byte");
    }
}

fn check_notify_timeout(c: &mut Checker, p: FieldPath, ms: u64) {
    if !(1..=3_600_000).contains(&ms) {
        c.error(
            p,
            format!("notify timeout {ms} ms is out of range: use 1..3600000"),
        );
    }
}

fn check_hooks(c: &mut Checker, p: &FieldPath, v: &Instance) {
    for (key, argv) in [
        ("notify_master", &v.notify_master),
        ("notify_backup", &v.notify_backup),
        ("notify_fault", &v.notify_fault),
        ("notify_stop", &v.notify_stop),
        ("notify", &v.notify),
    ] {
        check_argv(c, p.k(key), argv);
    }
    check_notify_timeout(c, p.k("notify_timeout_ms"), v.notify_timeout_ms);
}

fn check_garp(c: &mut Checker, p: &FieldPath, v: &Instance) {
    c.range(
        p.k("garp_master_repeat"),
        "garp_master_repeat",
        v.garp_master_repeat.into(),
        1,
        255,
    );
    c.range(
        p.k("garp_master_refresh_repeat"),
        "garp_master_refresh_repeat",
        v.garp_master_refresh_repeat.into(),
        1,
        255,
    );
    for (key, ms) in [
        ("garp_master_delay_ms", v.garp_master_delay_ms),
        ("garp_master_refresh_ms", v.garp_master_refresh_ms),
    ] {
        if ms > 86_400_000 {
            c.error(p.k(key), format!("{ms} ms is over a day"));
        }
    }
}

fn check_route(c: &mut Checker, p: &FieldPath, r: &VirtualRoute) {
    let family = AddressFamily::of(r.to.addr());
    if r.to.trunc() != r.to {
        c.error(
            p.k("to"),
            format!("{} has host bits set: use {}", r.to, r.to.trunc()),
        );
    }
    for (key, addr) in [("via", r.via), ("src", r.src)] {
        if let Some(a) = addr {
            if AddressFamily::of(a) != family {
                c.error(p.k(key), format!("{a} is not of {}'s family", r.to));
            }
        }
    }
    if r.kind != RouteKind::Unicast && (r.via.is_some() || r.dev.is_some()) {
        c.error(
            p.k("type"),
            "blackhole, unreachable and prohibit routes have no via nor dev",
        );
    }
    if r.kind == RouteKind::Unicast && r.via.is_none() && r.dev.is_none() {
        c.error(p.clone(), "a unicast route needs via or dev");
    }
    if r.table == Some(0) {
        c.error(p.k("table"), "table 0 is not a routing table");
    }
}

fn check_rule(c: &mut Checker, p: &FieldPath, r: &VirtualRule) {
    if let (Some(from), Some(to)) = (r.from, r.to) {
        if from.addr().is_ipv4() != to.addr().is_ipv4() {
            c.error(p.k("to"), "from and to must be of one family");
        }
    }
    if let Some(f) = r.family {
        if f != 4 && f != 6 {
            c.error(p.k("family"), format!("family {f}: use 4 or 6"));
        }
    }
    if r.table == 0 {
        c.error(p.k("table"), "table 0 is not a routing table");
    }
}

fn check_script(c: &mut Checker, p: &FieldPath, s: &super::Script) {
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

fn check_sync_group<'a>(
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

#[cfg(test)]
mod tests {
    use super::super::{Script, ScriptCommand, Settings, SyncGroup, TrackScript, VirtualIp};
    use super::*;

    fn vip(s: &str) -> VirtualIp {
        VirtualIp::new(s.parse().expect("literal"))
    }

    fn settings() -> Settings {
        Settings {
            vrrp: vec![Instance::new(
                "VI_1",
                "eth0",
                51,
                vec![vip("192.0.2.100/24")],
            )],
            ..Settings::default()
        }
    }

    fn paths(s: &Settings) -> Vec<String> {
        s.validate().iter().map(|e| e.path.to_string()).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(settings().validate(), vec![]);
    }

    #[test]
    fn every_error_names_its_field() {
        let mut s = settings();
        s.vrrp[0].vrid = 0;
        s.vrrp[0].advert_interval_ms = 105;
        s.vrrp[0].virtual_ips.push(vip("fd00::1/128"));
        s.vrrp[0].virtual_ips_excluded.push(VirtualIp {
            label: Some("eth1:x".into()),
            ..vip("192.0.2.7/32")
        });
        s.vrrp[0].track_script.push(TrackScript::new("missing"));
        s.vrrp[0].notify_stop = vec!["stop.sh".into()];
        assert_eq!(
            paths(&s),
            [
                "vrrp[0].vrid",
                "vrrp[0].advert_interval_ms",
                "vrrp[0].virtual_ips",
                "vrrp[0].virtual_ips_excluded[0].label",
                "vrrp[0].track_script[0]",
                "vrrp[0].notify_stop",
            ]
        );
    }

    #[test]
    fn strict_mode_refuses_what_the_rfcs_do_not_have() {
        let mut s = settings();
        s.vrrp[0].strict = true;
        s.vrrp[0].unicast_peers = vec!["192.0.2.2".parse().expect("literal")];
        s.vrrp[0].preempt_delay_ms = 100;
        s.vrrp[0].version = Version::V2;
        s.vrrp[0].password = Some("pw".into());
        s.vrrp[0].accept = Some(true);
        assert_eq!(
            paths(&s),
            [
                "vrrp[0].unicast_peers",
                "vrrp[0].password",
                "vrrp[0].preempt_delay_ms",
                "vrrp[0].accept",
            ]
        );
        let mut s = settings();
        s.vrrp[0].strict = true;
        s.vrrp[0].virtual_ips = vec![vip("fd00::100/64"), vip("fe80::100/64")];
        assert_eq!(paths(&s), ["vrrp[0].virtual_ips[0]"]);
        s.vrrp[0].virtual_ips.reverse();
        assert_eq!(paths(&s), Vec::<String>::new());
    }

    #[test]
    fn scripts_and_groups_are_cross_checked() {
        let mut s = settings();
        let mut second = s.vrrp[0].clone();
        second.name = "VI_2".into();
        second.vrid = 52;
        second.track_script = vec![TrackScript {
            weight: Some(-20),
            ..TrackScript::new("chk")
        }];
        s.vrrp.push(second);
        s.vrrp_script
            .push(Script::new("chk", ScriptCommand::Shell("true".into())));
        s.vrrp_script.push(Script {
            rise: 0,
            ..Script::new("chk", ScriptCommand::Argv(vec!["true".into()]))
        });
        s.vrrp_sync_group.push(SyncGroup::new(
            "G",
            vec!["VI_1".into(), "VI_2".into(), "VI_9".into()],
        ));
        s.vrrp_sync_group
            .push(SyncGroup::new("H", vec!["VI_1".into()]));
        assert_eq!(
            paths(&s),
            [
                // A weighted script on a group member.
                "vrrp[1].track_script[0]",
                "vrrp_script[1].script",
                "vrrp_script[1].rise",
                "vrrp_script[1].name",
                "vrrp_sync_group[0].group[2]",
                "vrrp_sync_group[1].group[0]",
            ]
        );
        s.vrrp_sync_group[0].tracking_weight = true;
        assert_eq!(paths(&s).len(), 5);
    }

    #[test]
    fn owner_refuses_weights_and_routes_are_checked() {
        let mut s = settings();
        s.vrrp[0].priority = 255;
        s.vrrp[0].track = vec![TrackInterface {
            weight: -50,
            ..TrackInterface::new("eth1")
        }];
        s.vrrp[0].virtual_routes = vec![
            VirtualRoute {
                to: "10.1.0.1/16".parse().expect("literal"),
                via: Some("fd00::1".parse().expect("literal")),
                dev: None,
                src: None,
                metric: None,
                table: None,
                scope: None,
                kind: RouteKind::Unicast,
            },
            VirtualRoute {
                to: "10.2.0.0/16".parse().expect("literal"),
                via: None,
                dev: Some("eth0".into()),
                src: None,
                metric: None,
                table: Some(100),
                scope: None,
                kind: RouteKind::Blackhole,
            },
        ];
        assert_eq!(
            paths(&s),
            [
                "vrrp[0].track[0]",
                "vrrp[0].virtual_routes[0].to",
                "vrrp[0].virtual_routes[0].via",
                "vrrp[0].virtual_routes[1].type",
            ]
        );
        let names: Vec<String> = s
            .interface_names()
            .iter()
            .map(|(p, n)| format!("{p}={n}"))
            .collect();
        assert_eq!(
            names,
            [
                "vrrp[0].interface=eth0",
                "vrrp[0].virtual_routes[1].dev=eth0",
                "vrrp[0].track[0]=eth1",
            ]
        );
    }
}
