//! `virtual_server` (and `virtual_server_group`) into `[[virtual_server]]`:
//! addresses, scheduler, forwarding, persistence, quorum, sorry server, real
//! servers and their checks ([`super::lb_check`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netcfg::model::lb::Member;
use netcfg::model::{HealthCheck, LbBackend, LbProtocol, Scheduler, SorryServer, VirtualServer};

use super::super::parser::Node;
use super::keywords::Scope;
use super::lb_check::{self, Inherited};
use super::{value, Ctx, Sourced};

/// Expanded `virtual_server_group`s by name.
pub type Groups = BTreeMap<String, Vec<Member>>;

/// The most members one group may expand to (a range covers at most 65536).
const MAX_MEMBERS: usize = 65_536;

/// Reads every `virtual_server_group`, expanding address ranges.
pub(super) fn groups(ctx: &mut Ctx<'_>, tree: &[Node]) -> Groups {
    let mut out = Groups::new();
    for g in tree
        .iter()
        .filter(|n| n.keyword() == "virtual_server_group")
    {
        let Some(name) = g.arg(1) else {
            ctx.invalid(g, "group name");
            continue;
        };
        let mut members = Vec::new();
        for line in g.children() {
            match group_entry(line) {
                Some(m) if members.len() + m.len() <= MAX_MEMBERS => members.extend(m),
                Some(_) => ctx.lost(
                    line,
                    format!("more than {MAX_MEMBERS} addresses in one group"),
                ),
                None => ctx.invalid(line, "group entry"),
            }
        }
        out.insert(name.to_string(), members);
    }
    out
}

/// `IP PORT`, `IP-LAST PORT` (the last byte of IPv4, the last group of IPv6, as a
/// range), `IP` (port 0), or `fwmark N`.
fn group_entry(line: &Node) -> Option<Vec<Member>> {
    if line.keyword() == "fwmark" {
        let m = u32::try_from(value::unsigned(line.arg(1)?, 1, u64::from(u32::MAX))?).ok()?;
        return Some(vec![Member {
            vip: None,
            port: None,
            fwmark: Some(m),
        }]);
    }
    let port = match line.arg(1) {
        Some(p) => u16::try_from(value::unsigned(p, 0, 65_535)?).ok()?,
        None => 0,
    };
    let (first, last) = match line.keyword().rsplit_once('-') {
        Some((a, end)) => (a, Some(end)),
        None => (line.keyword(), None),
    };
    let first: IpAddr = first.parse().ok()?;
    let addrs: Vec<IpAddr> = match (first, last) {
        (a, None) => vec![a],
        (IpAddr::V4(a), Some(end)) => {
            let o = a.octets();
            let end: u8 = end.parse().ok()?;
            (o[3]..=end)
                .map(|b| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], b)))
                .collect()
        }
        (IpAddr::V6(a), Some(end)) => {
            let s = a.segments();
            let end = u16::from_str_radix(end, 16).ok()?;
            (s[7]..=end)
                .map(|g| IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], g)))
                .collect()
        }
    };
    if addrs.is_empty() {
        return None;
    }
    Some(
        addrs
            .into_iter()
            .map(|a| Member {
                vip: Some(a),
                port: Some(port),
                fwmark: None,
            })
            .collect(),
    )
}

/// A `virtual_server`, or `None` when vznet cannot serve it (reported).
pub(super) fn virtual_server(
    ctx: &mut Ctx<'_>,
    node: &Node,
    groups: &Groups,
) -> Option<Sourced<VirtualServer>> {
    let mut vs: VirtualServer = toml::from_str("backends = []").expect("a valid virtual server");
    let origin = node.words.join(" ");
    match (node.arg(1), node.arg(2)) {
        (Some("fwmark"), Some(m)) => match value::unsigned(m, 1, u64::from(u32::MAX)) {
            Some(m) => vs.fwmark = u32::try_from(m).ok(),
            None => {
                ctx.invalid(node, "fwmark");
                return None;
            }
        },
        (Some("group"), Some(g)) => match groups.get(g) {
            Some(members) if !members.is_empty() => vs.members = members.clone(),
            _ => {
                ctx.no_effect(node, format!("no virtual_server_group {g} with members (keepalived ignores the virtual server too)"));
                return None;
            }
        },
        (Some(a), port) => {
            let Ok(vip) = a.parse::<IpAddr>() else {
                ctx.invalid(node, "address");
                return None;
            };
            vs.vip = Some(vip);
            vs.port = port
                .and_then(|p| value::unsigned(p, 0, 65_535))
                .and_then(|p| u16::try_from(p).ok());
        }
        (None, _) => {
            ctx.invalid(node, "address");
            return None;
        }
    }
    if vs.port == Some(0)
        || (vs.vip.is_some() && vs.port.is_none())
        || vs.members.iter().any(|m| m.port == Some(0))
    {
        ctx.lost(node, "port 0 (every port of the address) has no vznet counterpart: give each port its own virtual server, or mark the traffic (fwmark)");
        return None;
    }
    let mut inherited = Inherited::default();
    let mut default_weight: u32 = 1;
    let mut reals: Vec<&Node> = Vec::new();
    let mut scheduler_set = false;
    let mut protocol_set = false;
    let mut rr_unweighted = false;
    for c in node.children() {
        if inherited.read(ctx, c) {
            continue;
        }
        match c.keyword() {
            "lb_algo" | "lvs_sched" => {
                scheduler_set |= scheduler(ctx, c, &mut vs);
                rr_unweighted = c.arg(1) == Some("rr");
            }
            "lb_kind" | "lvs_method" => {
                if !forwarding(ctx, c, &mut vs) {
                    return None;
                }
            }
            "protocol" => match c.arg(1).map(str::to_ascii_uppercase).as_deref() {
                Some("TCP") => {
                    vs.protocol = LbProtocol::Tcp;
                    protocol_set = true;
                }
                Some("UDP") => {
                    vs.protocol = LbProtocol::Udp;
                    protocol_set = true;
                }
                Some("SCTP") => {
                    ctx.lost(c, "vznet balances TCP and UDP only: virtual server not carried");
                    return None;
                }
                _ => ctx.invalid(c, "protocol"),
            },
            "persistence_timeout" => match c.arg(1) {
                None => vs.persistence_timeout_ms = 360_000,
                Some(t) => match value::unsigned(t, 1, 2_678_400) {
                    Some(s) => vs.persistence_timeout_ms = s * 1000,
                    None => ctx.invalid(c, "persistence_timeout"),
                },
            },
            "persistence_granularity" => match c.arg(1).and_then(prefix_len) {
                Some(bits) => vs.persistence_granularity = Some(bits),
                None => ctx.invalid(c, "persistence_granularity"),
            },
            "alpha" => vs.alpha = true,
            "omega" => vs.omega = true,
            "quorum" => match c.arg(1).and_then(|v| value::unsigned(v, 1, u64::from(u32::MAX))) {
                Some(q) => vs.quorum = u32::try_from(q).unwrap_or(u32::MAX),
                None => ctx.invalid(c, "quorum"),
            },
            "hysteresis" => match c.arg(1).and_then(|v| value::unsigned(v, 0, u64::from(u32::MAX))) {
                Some(h) => vs.hysteresis = u32::try_from(h).unwrap_or(u32::MAX),
                None => ctx.invalid(c, "hysteresis"),
            },
            "quorum_up" => vs.quorum_up = hook(ctx, c),
            "quorum_down" => vs.quorum_down = hook(ctx, c),
            "weight" => match c.arg(1).and_then(|v| value::unsigned(v, 0, u64::from(u32::MAX))) {
                Some(w) => default_weight = u32::try_from(w).unwrap_or(u32::MAX),
                None => ctx.invalid(c, "weight"),
            },
            "sorry_server" => sorry(ctx, c, &mut vs),
            "sorry_server_inhibit" => ctx.changed(c, "vznet sends new connections to the sorry server only while quorum is lost, and lets its open connections drain either way"),
            "inhibit_on_failure" => {}
            "ha_suspend" => ctx.changed(c, "vznet checks backends also while this host does not hold the VIP (its rules only see traffic that reaches the host)"),
            "real_server" => reals.push(c),
            _ => ctx.unsupported(c, Scope::VirtualServer),
        }
    }
    if vs.fwmark.is_some() || vs.members.iter().any(|m| m.fwmark.is_some()) {
        ctx.changed(node, format!("vznet's firewall-mark service takes only {} packets that carry the mark; IPVS takes every protocol (a second virtual server can take the other)", vs.protocol.as_str().to_uppercase()));
    } else if !protocol_set {
        // keepalived defaults an address service to UDP (with a complaint).
        vs.protocol = LbProtocol::Udp;
    }
    if !scheduler_set {
        vs.scheduler = Scheduler::WeightedLeastConnection;
    }
    if vs.scheduler == Scheduler::SourceHash {
        vs.hash_seed = Some(seed(&origin));
    }
    if vs.lb_kind == netcfg::model::lb::LbKind::Dr && vs.scheduler.least_connection() {
        ctx.changed(node, "vznet's lc and wlc need NAT (they count connections in conntrack): direct routing carried with weighted-random");
        vs.scheduler = Scheduler::WeightedRandom;
    }
    let vs_delay = inherited.delay_loop_us;
    let mut checks: Vec<Vec<HealthCheck>> = Vec::new();
    for r in reals {
        if let Some((b, c)) = real_server(ctx, r, &inherited, vs_delay, default_weight) {
            vs.backends.push(b);
            checks.push(c);
        }
    }
    if vs.backends.is_empty() {
        ctx.no_effect(
            node,
            "no real server (keepalived has nothing to balance either)",
        );
        return None;
    }
    if rr_unweighted
        && vs
            .backends
            .iter()
            .any(|b| b.weight != vs.backends[0].weight)
    {
        ctx.changed(node, "lb_algo rr ignores the real servers' weights; vznet's round-robin follows them (give them equal weights for rr's behaviour)");
    }
    place_checks(&mut vs, checks);
    quorum(ctx, node, &mut vs);
    Some(Sourced {
        at: node.at.clone(),
        origin,
        value: vs,
    })
}

/// The global `SSL` block of `SSL_GET` checks.
pub(super) fn ssl(ctx: &mut Ctx<'_>, node: &Node) {
    for c in node.children() {
        match c.keyword() {
            // keepalived loads the CAs but never asks OpenSSL to verify the peer.
            "ca" => ctx.no_effect(c, "keepalived loads these CAs but never verifies the backends' certificates; vznet's https checks do not verify either unless tls_verify = true (with tls_ca)"),
            "certificate" | "key" | "password" => {
                ctx.lost(c, "vznet's https checks present no client certificate")
            }
            _ => ctx.unknown(c, Scope::Block("SSL")),
        }
    }
}

/// Every backend's checks: one check shared by all goes to the virtual server.
fn place_checks(vs: &mut VirtualServer, checks: Vec<Vec<HealthCheck>>) {
    let first = checks.first().cloned().unwrap_or_default();
    if first.len() == 1 && checks.iter().all(|c| *c == first) {
        vs.check = first.into_iter().next();
        return;
    }
    for (b, c) in vs.backends.iter_mut().zip(checks) {
        b.checks = c;
    }
}

/// keepalived lowers a quorum above the total weight, and a hysteresis not below it.
fn quorum(ctx: &mut Ctx<'_>, node: &Node, vs: &mut VirtualServer) {
    let total: u32 = vs.backends.iter().map(|b| b.weight).sum();
    if vs.quorum > total {
        ctx.add(node, "quorum", super::Kind::NoEffect, format!("quorum {} is above the total weight {total}: keepalived lowers it to {total}, and so does the import", vs.quorum));
        vs.quorum = total.max(1);
    }
    if vs.hysteresis >= vs.quorum {
        let h = vs.quorum - 1;
        ctx.add(node, "hysteresis", super::Kind::NoEffect, format!("hysteresis {} is not below quorum {}: keepalived lowers it to {h}, and so does the import", vs.hysteresis, vs.quorum));
        vs.hysteresis = h;
    }
}

/// `lb_algo`; `true` when the scheduler is set.
fn scheduler(ctx: &mut Ctx<'_>, c: &Node, vs: &mut VirtualServer) -> bool {
    let algo = c.arg(1).unwrap_or_default();
    vs.scheduler = match algo {
        "rr" | "wrr" => Scheduler::RoundRobin,
        "lc" => Scheduler::LeastConnection,
        "wlc" => Scheduler::WeightedLeastConnection,
        "sh" | "mh" => Scheduler::SourceHash,
        "sed" | "nq" => {
            ctx.changed(c, format!("{algo} (shortest expected delay, never queue) has no vznet counterpart: carried as wlc"));
            Scheduler::WeightedLeastConnection
        }
        "dh" | "lblc" | "lblcr" | "fo" | "ovf" => {
            ctx.changed(c, format!("{algo} has no vznet counterpart: carried as source-hash (a client sticks to one backend)"));
            Scheduler::SourceHash
        }
        _ => {
            ctx.invalid(c, "scheduler");
            return false;
        }
    };
    true
}

/// `lb_kind`; `false` when the virtual server cannot be carried.
fn forwarding(ctx: &mut Ctx<'_>, c: &Node, vs: &mut VirtualServer) -> bool {
    match c.arg(1) {
        Some("NAT") => vs.lb_kind = netcfg::model::lb::LbKind::Nat,
        Some("DR") => vs.lb_kind = netcfg::model::lb::LbKind::Dr,
        Some("TUN") => {
            ctx.lost(
                c,
                "vznet has no IP-in-IP tunnelling to backends: virtual server not carried",
            );
            return false;
        }
        _ => ctx.invalid(c, "lb_kind"),
    }
    true
}

/// An IPv4 netmask (`255.255.255.0`) or a prefix length, as a prefix length.
fn prefix_len(text: &str) -> Option<u8> {
    if let Ok(mask) = text.parse::<Ipv4Addr>() {
        let bits = u32::from(mask);
        let len = bits.leading_ones();
        return (bits.checked_shl(len).unwrap_or(0) == 0)
            .then(|| u8::try_from(len).ok())
            .flatten();
    }
    u8::try_from(value::unsigned(text, 1, 128)?).ok()
}

/// A deterministic source-hash seed: the same on every host importing this file.
fn seed(origin: &str) -> u32 {
    // FNV-1a.
    origin.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn hook(ctx: &mut Ctx<'_>, c: &Node) -> Option<Vec<String>> {
    let mut slot = Vec::new();
    super::instance::notify(ctx, c, &mut slot);
    (!slot.is_empty()).then_some(slot)
}

fn sorry(ctx: &mut Ctx<'_>, c: &Node, vs: &mut VirtualServer) {
    let Some(address) = c.arg(1).and_then(|a| a.parse::<IpAddr>().ok()) else {
        ctx.invalid(c, "sorry_server");
        return;
    };
    let port = c
        .arg(2)
        .and_then(|p| value::unsigned(p, 1, 65_535))
        .and_then(|p| u16::try_from(p).ok());
    vs.sorry_server = Some(SorryServer { address, port });
}

/// A `real_server` and its checks; `None` when it is not carried.
fn real_server(
    ctx: &mut Ctx<'_>,
    node: &Node,
    vs_inherited: &Inherited,
    vs_delay: Option<u64>,
    default_weight: u32,
) -> Option<(LbBackend, Vec<HealthCheck>)> {
    let Some(address) = node.arg(1).and_then(|a| a.parse::<IpAddr>().ok()) else {
        ctx.invalid(node, "real_server address");
        return None;
    };
    let mut b: LbBackend = toml::from_str("").expect("a valid backend");
    b.address = Some(address);
    b.port = node
        .arg(2)
        .and_then(|p| value::unsigned(p, 1, 65_535))
        .and_then(|p| u16::try_from(p).ok());
    let mut weight = default_weight;
    let mut own = Inherited::default();
    let mut checkers: Vec<&Node> = Vec::new();
    for c in node.children() {
        if own.read(ctx, c) {
            continue;
        }
        match c.keyword() {
            "weight" => match c
                .arg(1)
                .and_then(|v| value::unsigned(v, 0, u64::from(u32::MAX)))
            {
                Some(w) => weight = u32::try_from(w).unwrap_or(u32::MAX),
                None => ctx.invalid(c, "weight"),
            },
            "notify_up" => b.notify_up = hook(ctx, c),
            "notify_down" => b.notify_down = hook(ctx, c),
            "alpha" => own.alpha = Some(c.arg(1).and_then(value::switch).unwrap_or(true)),
            "inhibit_on_failure" => {}
            k if lb_check::is_checker(k) => checkers.push(c),
            _ => ctx.unsupported(c, Scope::RealServer),
        }
    }
    if weight == 0 {
        ctx.lost(node, "weight 0 (takes no new connections) has no vznet counterpart (weights are 1..1000): backend not carried");
        return None;
    }
    if weight > netcfg::model::lb::MAX_WEIGHT {
        ctx.changed(
            node,
            format!("weight {weight} is above vznet's 1000: carried as 1000"),
        );
        weight = netcfg::model::lb::MAX_WEIGHT;
    }
    b.weight = weight;
    let eff = own.over(vs_inherited);
    let checks = checkers
        .into_iter()
        .filter_map(|c| lb_check::checker(ctx, c, &eff, vs_delay))
        .collect();
    Some((b, checks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_ranges() {
        assert_eq!(prefix_len("255.255.255.0"), Some(24));
        assert_eq!(prefix_len("255.0.255.0"), None);
        assert_eq!(prefix_len("64"), Some(64));
        assert_eq!(
            seed("virtual_server fwmark 1"),
            seed("virtual_server fwmark 1")
        );
    }
}
