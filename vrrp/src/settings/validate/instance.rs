//! One instance's own fields: interval, addresses, strict mode, hooks, gratuitous
//! rounds, routes and rules.

use std::net::IpAddr;

use super::track::check_tracking;
use super::Checker;
use crate::settings::instance::{Instance, RouteKind, VirtualIp, VirtualRoute, VirtualRule};
use crate::settings::{FieldPath, Settings, SyncGroup};
use crate::wire::{AddressFamily, Version, MAX_ADVER_INT_V3};

/// IFNAMSIZ - 1, for address labels.
const LABEL_MAX: usize = 15;

pub(super) fn check_instance(
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

pub(super) fn check_interval(c: &mut Checker, p: &FieldPath, v: &Instance) {
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

pub(super) fn check_virtual_ips(c: &mut Checker, p: &FieldPath, v: &Instance) {
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

pub(super) fn check_vip(c: &mut Checker, p: &FieldPath, v: &Instance, vip: &VirtualIp) {
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

pub(super) fn check_strict(c: &mut Checker, p: &FieldPath, v: &Instance) {
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

pub(super) fn check_argv(c: &mut Checker, p: FieldPath, argv: &[String]) {
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

pub(super) fn check_notify_timeout(c: &mut Checker, p: FieldPath, ms: u64) {
    if !(1..=3_600_000).contains(&ms) {
        c.error(
            p,
            format!("notify timeout {ms} ms is out of range: use 1..3600000"),
        );
    }
}

pub(super) fn check_hooks(c: &mut Checker, p: &FieldPath, v: &Instance) {
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

pub(super) fn check_garp(c: &mut Checker, p: &FieldPath, v: &Instance) {
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

pub(super) fn check_route(c: &mut Checker, p: &FieldPath, r: &VirtualRoute) {
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

pub(super) fn check_rule(c: &mut Checker, p: &FieldPath, r: &VirtualRule) {
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
