//! `vrrp_instance` into `[[vrrp]]`, with keepalived 2.2.7's defaults and the
//! corrections it makes itself (`vrrp_complete_instance`): priority from `state`,
//! version 2 for IPv4 unless `vrrp_version` says otherwise, intervals rounded,
//! what strict mode or `state MASTER` cancels, weights it ignores.

use std::net::IpAddr;

use vrrp::settings::{Instance, VirtualIp};
use vrrp::Version;

use super::super::parser::Node;
use super::keywords::Scope;
use super::track::{self, WeightRule};
use super::{address, command, global, route, rule, value, Ctx, Sourced};

/// The instance's lines read so far, before defaults and keepalived's corrections.
#[derive(Default)]
struct Draft<'n> {
    interface: Option<String>,
    vrid: Option<u8>,
    priority: Option<u8>,
    master: Option<&'n Node>,
    version: Option<Version>,
    advert_us: Option<(u64, &'n Node)>,
    nopreempt: Option<&'n Node>,
    preempt_delay: Option<(u64, &'n Node)>,
    accept: Option<(bool, &'n Node)>,
    strict: Option<bool>,
    /// The family: of the first source address or virtual IP.
    family_v4: Option<bool>,
    vips: Vec<(VirtualIp, &'n Node)>,
    excluded: Vec<(VirtualIp, &'n Node)>,
    peers: Vec<(IpAddr, &'n Node)>,
    src: Option<(IpAddr, &'n Node)>,
    auth: Option<&'n Node>,
    tracks: Vec<&'n Node>,
    routes: Vec<&'n Node>,
    rules: Vec<&'n Node>,
    /// The `garp_master_*` keys the instance sets (the others come from globals).
    garp_own: Vec<String>,
}

/// A `vrrp_instance`, or `None` when keepalived would not run it or vznet cannot.
pub(super) fn instance(ctx: &mut Ctx<'_>, node: &Node) -> Option<Sourced<Instance>> {
    let name = match (node.arg(1), node.words.len()) {
        (Some(n), 2) => n.to_string(),
        _ => {
            ctx.invalid(node, "vrrp_instance name");
            return None;
        }
    };
    let mut d = Draft::default();
    let mut i = Instance::new(name.clone(), "", 0, Vec::new());
    for c in node.children() {
        read_line(ctx, c, &mut d, &mut i);
    }
    let Some(interface) = d.interface.clone() else {
        if d.src.is_some() {
            ctx.lost(node, format!("{name} has no interface: keepalived runs unicast without one, vznet's instances need one"));
        } else {
            ctx.no_effect(node, format!("{name} has neither an interface nor a unicast_src_ip (keepalived does not run it either)"));
        }
        return None;
    };
    let Some(vrid) = d.vrid else {
        ctx.no_effect(
            node,
            format!("{name} has no virtual_router_id (keepalived does not run it either)"),
        );
        return None;
    };
    i.interface = interface;
    i.vrid = vrid;
    i.priority = d
        .priority
        .unwrap_or(if d.master.is_some() { 255 } else { 100 });
    let v4 = d.family_v4.unwrap_or(true);
    i.strict = d.strict.unwrap_or(ctx.globals.vrrp_strict);
    i.version = version(ctx, node, &d, v4, i.strict);
    if d.vips.is_empty() {
        let why = if i.version == Version::V3 || i.strict {
            "has no virtual_ipaddress (keepalived does not run it either)"
        } else {
            "has no virtual_ipaddress: keepalived runs VRRPv2 without one, vznet needs at least one"
        };
        let kind = if i.version == Version::V3 || i.strict {
            super::Kind::NoEffect
        } else {
            super::Kind::NotCarried
        };
        ctx.add(node, "vrrp_instance", kind, format!("{name} {why}"));
        return None;
    }
    if i.strict && !d.peers.is_empty() {
        ctx.no_effect(
            node,
            format!(
                "{name}: keepalived refuses unicast peers with strict mode and does not run it"
            ),
        );
        return None;
    }
    vips(ctx, &mut d, &mut i);
    for (vip, line) in std::mem::take(&mut d.excluded) {
        let vip = label(ctx, line, vip, &i.interface);
        i.virtual_ips_excluded.push(vip);
    }
    i.advert_interval_ms = interval(ctx, &d, i.version);
    timing(ctx, &d, &mut i);
    i.unicast_peers = d.peers.iter().map(|(p, _)| *p).collect();
    i.unicast_src_ip = d.src.map(|(a, _)| a);
    authentication(ctx, &d, &mut i);
    if let Some((accept, n)) = d.accept {
        if accept && i.strict && i.version == Version::V2 && !i.is_owner() {
            ctx.no_effect(n, "accept with strict mode and VRRPv2 (keepalived turns it off, as RFC 3768 has no Accept_Mode)");
        } else {
            i.accept = Some(accept);
        }
    }
    strict_ipv6(ctx, node, &mut i);
    state(ctx, &d, &i);
    let rule = if i.is_owner() {
        WeightRule::Owner
    } else {
        match ctx.membership.get(&name) {
            Some(m) if !m.tracking_weight => WeightRule::SyncMember,
            _ => WeightRule::Kept,
        }
    };
    for t in d.tracks.clone() {
        match t.keyword() {
            "track_interface" => i.track.extend(track::interfaces(ctx, t, rule)),
            "track_script" => i.track_script.extend(track::scripts(ctx, t, rule)),
            "track_file" => i.track_file.extend(track::files(ctx, t, rule)),
            _ => i.track_process.extend(track::processes(ctx, t, rule)),
        }
    }
    for block in d.routes.clone() {
        i.virtual_routes.extend(
            block
                .children()
                .iter()
                .filter_map(|l| route::virtual_route(ctx, l)),
        );
    }
    for block in d.rules.clone() {
        i.virtual_rules.extend(
            block
                .children()
                .iter()
                .filter_map(|l| rule::virtual_rule(ctx, l)),
        );
    }
    apply_garp_defaults(ctx, &d.garp_own, &mut i);
    Some(Sourced {
        at: node.at.clone(),
        origin: format!("vrrp_instance {name}"),
        value: i,
    })
}

fn read_line<'n>(ctx: &mut Ctx<'_>, c: &'n Node, d: &mut Draft<'n>, i: &mut Instance) {
    match c.keyword() {
        "interface" => match c.arg(1) {
            Some(n) if n.len() < 16 => d.interface = Some(n.to_string()),
            _ => ctx.invalid(c, "interface"),
        },
        "virtual_router_id" => match c.arg(1).and_then(|v| value::unsigned(v, 1, 255)) {
            Some(v) => d.vrid = u8::try_from(v).ok(),
            None => ctx.invalid(c, "virtual_router_id"),
        },
        "priority" => match c.arg(1).and_then(|v| value::unsigned(v, 1, 255)) {
            Some(v) => d.priority = u8::try_from(v).ok(),
            None => {
                ctx.no_effect(c, "not a priority of 1..255: keepalived uses 100");
                d.priority = Some(100);
            }
        },
        "state" => match c.arg(1) {
            Some("MASTER") => d.master = Some(c),
            Some("BACKUP") if d.master.is_some() => {
                ctx.no_effect(c, "state was MASTER already (keepalived ignores BACKUP)")
            }
            Some("BACKUP") => {}
            _ => ctx.no_effect(c, "unknown state: keepalived takes BACKUP"),
        },
        "version" => match c.arg(1).and_then(|v| value::int(v, 2, 3)) {
            Some(2) => d.version = Some(Version::V2),
            Some(_) => d.version = Some(Version::V3),
            None => ctx.invalid(c, "version"),
        },
        "advert_int" => match c
            .arg(1)
            .and_then(value::seconds_us)
            .filter(|us| (10_000..=255_000_000).contains(us))
        {
            Some(us) => d.advert_us = Some((us, c)),
            None => ctx.invalid(c, "advert_int"),
        },
        "nopreempt" => d.nopreempt = Some(c),
        "preempt" => d.nopreempt = None,
        "preempt_delay" => match c
            .arg(1)
            .and_then(value::seconds_us)
            .filter(|us| *us <= 1_000_000_000)
        {
            Some(us) => d.preempt_delay = Some((us, c)),
            None => ctx.invalid(c, "preempt_delay"),
        },
        "accept" => d.accept = Some((true, c)),
        "no_accept" => d.accept = Some((false, c)),
        "strict_mode" => match c.arg(1).map(value::switch) {
            None => d.strict = Some(true),
            Some(Some(v)) => d.strict = Some(v),
            Some(None) => ctx.invalid(c, "strict_mode"),
        },
        "unicast_peer" => peers(ctx, c, d),
        "unicast_src_ip" | "mcast_src_ip" => {
            match c.arg(1).and_then(|a| a.parse::<IpAddr>().ok()) {
                Some(a) if d.family_v4.is_none_or(|v4| v4 == a.is_ipv4()) => {
                    d.family_v4 = Some(a.is_ipv4());
                    d.src = Some((a, c));
                }
                Some(_) => ctx.no_effect(
                    c,
                    "not of the instance's address family (keepalived ignores it too)",
                ),
                None => ctx.invalid(c, "address"),
            }
        }
        "authentication" => d.auth = Some(c),
        "virtual_ipaddress" => {
            for line in c.children() {
                let Some(vip) = address::virtual_ip(ctx, line) else {
                    continue;
                };
                let v4 = vip.address.addr().is_ipv4();
                if d.family_v4.is_some_and(|f| f != v4) {
                    ctx.no_effect(
                        line,
                        "not of the instance's address family (keepalived ignores it too)",
                    );
                    continue;
                }
                d.family_v4 = Some(v4);
                d.vips.push((vip, line));
            }
        }
        "virtual_ipaddress_excluded" => {
            for line in c.children() {
                if let Some(vip) = address::virtual_ip(ctx, line) {
                    d.excluded.push((vip, line));
                }
            }
        }
        "virtual_routes" => d.routes.push(c),
        "virtual_rules" => d.rules.push(c),
        "track_interface" | "track_script" | "track_file" | "track_process" => d.tracks.push(c),
        "notify_master" => notify(ctx, c, &mut i.notify_master),
        "notify_backup" => notify(ctx, c, &mut i.notify_backup),
        "notify_fault" => notify(ctx, c, &mut i.notify_fault),
        "notify_stop" => notify(ctx, c, &mut i.notify_stop),
        "notify" => notify(ctx, c, &mut i.notify),
        "use_vmac" => {
            i.use_vmac = true;
            if c.words.len() > 1 {
                ctx.attr_lost(
                    c,
                    "use_vmac",
                    format!(
                        "{:?}: vznet names the interface vrVRID.IFINDEX and gives it the VRRP MAC",
                        c.words[1..].join(" ")
                    ),
                );
            }
        }
        "garp_master_delay" => match global::seconds(c) {
            Some(ms) => i.garp_master_delay_ms = ms,
            None => ctx.invalid(c, "delay"),
        },
        "garp_master_refresh" => match global::seconds(c) {
            Some(ms) => i.garp_master_refresh_ms = ms,
            None => ctx.invalid(c, "refresh"),
        },
        "garp_master_repeat" => match global::repeat(c) {
            Some(n) => i.garp_master_repeat = n,
            None => ctx.invalid(c, "repeat"),
        },
        "garp_master_refresh_repeat" => match global::repeat(c) {
            Some(n) => i.garp_master_refresh_repeat = n,
            None => ctx.invalid(c, "repeat"),
        },
        // vznet always hears only its unicast peers.
        "check_unicast_src" => {}
        _ => ctx.unsupported(c, Scope::Instance),
    }
    // The instance's garp keys override the globals; remember which were given.
    if c.keyword().starts_with("garp_master_") {
        d.garp_own.push(c.keyword().to_string());
    }
}

/// The global `vrrp_garp_*` values for keys the instance does not set, then vznet's
/// limits.
fn apply_garp_defaults(ctx: &Ctx<'_>, own: &[String], i: &mut Instance) {
    let g = &ctx.globals;
    let has = |k: &str| own.iter().any(|o| o == k);
    if !has("garp_master_delay") {
        if let Some(v) = g.garp_master_delay_ms {
            i.garp_master_delay_ms = v
        }
    }
    if !has("garp_master_refresh") {
        if let Some(v) = g.garp_master_refresh_ms {
            i.garp_master_refresh_ms = v
        }
    }
    if !has("garp_master_repeat") {
        if let Some(v) = g.garp_master_repeat {
            i.garp_master_repeat = v
        }
    }
    if !has("garp_master_refresh_repeat") {
        if let Some(v) = g.garp_master_refresh_repeat {
            i.garp_master_refresh_repeat = v
        }
    }
    i.garp_master_repeat = i.garp_master_repeat.min(255);
    i.garp_master_refresh_repeat = i.garp_master_refresh_repeat.min(255);
    i.garp_master_delay_ms = i.garp_master_delay_ms.min(86_400_000);
    i.garp_master_refresh_ms = i.garp_master_refresh_ms.min(86_400_000);
}

fn peers<'n>(ctx: &mut Ctx<'_>, block: &'n Node, d: &mut Draft<'n>) {
    for line in block.children() {
        let Ok(a) = line.keyword().parse::<IpAddr>() else {
            ctx.invalid_address(line);
            continue;
        };
        if d.family_v4.is_some_and(|v4| v4 != a.is_ipv4()) {
            ctx.no_effect(
                line,
                "not of the instance's address family (keepalived ignores it too)",
            );
            continue;
        }
        for k in line.words.iter().skip(1).step_by(2) {
            ctx.attr_lost(
                line,
                k,
                "vznet does not check the TTL of unicast adverts against a range",
            );
        }
        d.family_v4 = Some(a.is_ipv4());
        d.peers.push((a, line));
    }
}

/// keepalived's version: the instance's, else 3 for IPv6, else `vrrp_version`, else 2.
fn version(ctx: &mut Ctx<'_>, node: &Node, d: &Draft<'_>, v4: bool, strict: bool) -> Version {
    match (d.version, v4) {
        (Some(Version::V2), false) => {
            if !strict {
                ctx.changed(node, "version 2 over IPv6 is no standard (RFC 3768 is IPv4 only): carried as version 3, which the peers must speak too");
            }
            Version::V3
        }
        (Some(v), _) => v,
        (None, false) => Version::V3,
        (None, true) => ctx.globals.vrrp_version.unwrap_or(Version::V2),
    }
}

/// keepalived rounds to whole seconds (v2) or centiseconds (v3), half up.
fn interval(ctx: &mut Ctx<'_>, d: &Draft<'_>, version: Version) -> u32 {
    let us = d.advert_us.map_or(1_000_000, |(us, _)| us);
    let ms = match version {
        Version::V2 => ((us + 500_000) / 1_000_000).clamp(1, 255) * 1000,
        Version::V3 => ((us + 5_000) / 10_000).clamp(1, 4095) * 10,
    };
    if let Some((us, node)) = d.advert_us {
        if ms * 1000 != us {
            ctx.no_effect(
                node,
                format!(
                    "keepalived rounds it to {ms} ms for VRRPv{}, and so does the import",
                    version.number()
                ),
            );
        }
    }
    u32::try_from(ms).unwrap_or(1000)
}

/// vznet wants an address label to start with its interface's name (as `ip
/// address` does); keepalived hands any label to the kernel.
fn label(ctx: &mut Ctx<'_>, line: &Node, mut vip: VirtualIp, interface: &str) -> VirtualIp {
    let dev = vip.dev.clone().unwrap_or_else(|| interface.to_string());
    if let Some(l) = &vip.label {
        if !l.starts_with(&dev) {
            ctx.attr_lost(line, "label", format!("{l:?}: vznet's labels start with the interface name ({dev:?}, as ip address requires): carried without it"));
            vip.label = None;
        }
    }
    vip
}

/// `nopreempt` and `preempt_delay`, with what keepalived cancels.
fn timing(ctx: &mut Ctx<'_>, d: &Draft<'_>, i: &mut Instance) {
    if let Some(n) = d.nopreempt {
        if i.is_owner() {
            ctx.no_effect(
                n,
                "the address owner always preempts (keepalived resets nopreempt)",
            );
        } else if d.master.is_some() {
            ctx.no_effect(
                n,
                "keepalived clears nopreempt on an instance with state MASTER",
            );
        } else {
            i.preempt = false;
        }
    }
    if let Some((us, n)) = d.preempt_delay {
        if d.master.is_some() {
            ctx.no_effect(
                n,
                "keepalived clears preempt_delay on an instance with state MASTER",
            );
        } else if i.strict {
            ctx.no_effect(n, "keepalived resets preempt_delay in strict mode");
        } else if !i.preempt {
            ctx.no_effect(n, "keepalived resets preempt_delay with nopreempt");
        } else {
            let ms = us.div_ceil(1000);
            if !us.is_multiple_of(1000) {
                ctx.changed(n, format!("{us} µs rounded up to {ms} ms"));
            }
            i.preempt_delay_ms = ms;
        }
    }
}

/// `authentication { auth_type PASS; auth_pass X }`.
fn authentication(ctx: &mut Ctx<'_>, d: &Draft<'_>, i: &mut Instance) {
    let Some(block) = d.auth else { return };
    let mut kind: Option<&Node> = None;
    let mut pass: Option<String> = None;
    for c in block.children() {
        match (c.keyword(), c.arg(1)) {
            ("auth_type", Some("PASS" | "AH")) => kind = Some(c),
            ("auth_type", _) => ctx.invalid(c, "auth_type"),
            ("auth_pass", Some(p)) => pass = Some(p.chars().take(8).collect()),
            ("auth_pass", None) => ctx.invalid(c, "auth_pass"),
            _ => ctx.unknown(c, Scope::Block("authentication")),
        }
    }
    let Some(kind) = kind else {
        ctx.no_effect(block, "no auth_type (keepalived authenticates nothing)");
        return;
    };
    let why = if i.strict {
        Some("keepalived ignores authentication in strict mode")
    } else if i.version == Version::V3 {
        Some("VRRPv3 has no authentication (keepalived ignores it too)")
    } else if pass.is_none() {
        Some("no auth_pass (keepalived ignores the authentication)")
    } else {
        None
    };
    if let Some(why) = why {
        ctx.no_effect(kind, why);
        return;
    }
    if kind.arg(1) == Some("AH") {
        ctx.lost(kind, "vznet has no IPsec AH authentication (RFC 3768 removed it): the adverts carry none, and a keepalived peer with AH drops them");
        return;
    }
    i.password = pass;
}

/// Duplicates go (keepalived adds an address once), and past 255 the rest become
/// excluded addresses, as keepalived moves them.
fn vips(ctx: &mut Ctx<'_>, d: &mut Draft<'_>, i: &mut Instance) {
    for (vip, line) in std::mem::take(&mut d.vips) {
        let same = |v: &VirtualIp| v.address.addr() == vip.address.addr() && v.dev == vip.dev;
        if i.virtual_ips.iter().any(same) {
            ctx.no_effect(line, "the address is listed twice: keepalived puts it on once (the second add fails) and repeats it in its adverts");
            continue;
        }
        if i.virtual_ips.len() == 255 {
            ctx.no_effect(line, "past 255 addresses: keepalived moves it to the excluded addresses, and so does the import");
            i.virtual_ips_excluded.push(vip);
            continue;
        }
        let vip = label(ctx, line, vip, &i.interface);
        i.virtual_ips.push(vip);
    }
}

/// vznet's strict mode wants an IPv6 instance's first address link-local (RFC 5798
/// 5.2.9); keepalived complains and runs anyway.
fn strict_ipv6(ctx: &mut Ctx<'_>, node: &Node, i: &mut Instance) {
    let first_global = i
        .virtual_ips
        .first()
        .is_some_and(|v| match v.address.addr() {
            IpAddr::V6(a) => !a.is_unicast_link_local(),
            IpAddr::V4(_) => false,
        });
    if i.strict && first_global {
        ctx.add(node, "strict_mode", super::Kind::NotCarried, "vznet's strict mode needs a link-local first IPv6 virtual IP (RFC 5798 5.2.9): carried without strict (accept off, as strict had it)");
        i.strict = false;
        i.accept.get_or_insert(false);
    }
}

/// `state MASTER` on an instance that is not the address owner.
fn state(ctx: &mut Ctx<'_>, d: &Draft<'_>, i: &Instance) {
    let Some(n) = d.master else { return };
    if i.is_owner() {
        return;
    }
    if ctx.membership.contains_key(&i.name) {
        ctx.no_effect(
            n,
            "keepalived starts every non-owner member of a sync group as BACKUP",
        );
    } else {
        ctx.changed(n, "vznet starts it as Backup and takes over after Master_Down_Interval (3 adverts and skew) without a Master; keepalived's MASTER waits one advert interval");
    }
}

/// A notify hook: the first one counts (keepalived ignores a second).
pub(super) fn notify(ctx: &mut Ctx<'_>, node: &Node, slot: &mut Vec<String>) {
    if !slot.is_empty() {
        ctx.no_effect(node, "given twice (keepalived keeps the first)");
        return;
    }
    let Some((argv, extra)) = command::command_words(node) else {
        ctx.invalid(node, "script");
        return;
    };
    let hook = command::hook(argv);
    if let Some(why) = hook.changed {
        ctx.changed(node, why);
    }
    if !extra.is_empty() {
        ctx.lost(
            node,
            format!(
                "user {:?}: vznet runs hooks as vznetd's user",
                extra.join(" ")
            ),
        );
    }
    *slot = hook.argv;
}
