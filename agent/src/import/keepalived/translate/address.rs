//! The lines of `virtual_ipaddress`, `virtual_routes`, `virtual_rules` and
//! `static_routes`, read as keepalived's `alloc_ipaddress`, `alloc_route` and
//! `alloc_rule` read them.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use netcfg::model::{Route, RouteDest};
use vrrp::settings::{AddressScope, RouteKind, VirtualIp, VirtualRoute, VirtualRule};

use super::super::parser::Node;
use super::{value, Ctx, Sourced};

/// keepalived's `parse_ipaddress`: `ADDR[/LEN]`, the family from a `:`.
fn address(text: &str) -> Option<IpNet> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = if text.contains(':') {
        IpAddr::V6(addr.parse().ok()?)
    } else {
        IpAddr::V4(addr.parse().ok()?)
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => u8::try_from(value::unsigned(l, 0, max)?).ok()?,
        None => u8::try_from(max).ok()?,
    };
    IpNet::new(addr, len).ok()
}

/// `scope` names and numbers (iproute2's rt_scopes).
fn scope(text: &str) -> Option<AddressScope> {
    Some(match text {
        "global" | "universe" | "0" => AddressScope::Global,
        "site" | "200" => AddressScope::Site,
        "link" | "253" => AddressScope::Link,
        "host" | "254" => AddressScope::Host,
        "nowhere" | "255" => AddressScope::Nowhere,
        _ => return None,
    })
}

/// Routing table numbers and iproute2's standard names.
fn table(text: &str) -> Option<u32> {
    match text {
        "main" => Some(254),
        "local" => Some(255),
        "default" => Some(253),
        t => value::unsigned(t, 1, u64::from(u32::MAX)).and_then(|v| u32::try_from(v).ok()),
    }
}

/// One `virtual_ipaddress` (or `_excluded`) line.
pub(super) fn virtual_ip(ctx: &mut Ctx<'_>, line: &Node) -> Option<VirtualIp> {
    let Some(net) = address(line.keyword()) else {
        ctx.invalid_address(line);
        return None;
    };
    let mut vip = VirtualIp::new(net);
    let mut brd: Option<&str> = None;
    let mut i = 1;
    while i < line.words.len() {
        let key = line.words[i].as_str();
        let arg = line.words.get(i + 1).map(String::as_str);
        let takes_value = matches!(
            key,
            "dev" | "scope" | "broadcast" | "brd" | "label" | "peer" | "preferred_lft"
        );
        if takes_value && arg.is_none() {
            ctx.no_effect(
                line,
                format!("{key} without a value (keepalived skips the address)"),
            );
            return None;
        }
        let arg = arg.unwrap_or_default();
        match key {
            "dev" => vip.dev = Some(arg.to_string()),
            "scope" => match scope(arg) {
                Some(s) if net.addr().is_ipv4() => vip.scope = Some(s),
                Some(_) => ctx.attr(line, key, "keepalived ignores the scope of IPv6 addresses"),
                None => ctx.attr(line, key, format!("unknown scope {arg:?} (keepalived ignores it too)")),
            },
            "broadcast" | "brd" if net.addr().is_ipv6() => {
                ctx.no_effect(line, "a broadcast address on an IPv6 address (keepalived skips the address)");
                return None;
            }
            "broadcast" | "brd" => brd = Some(arg),
            "label" if net.addr().is_ipv6() => {
                ctx.attr(line, key, "keepalived ignores labels of IPv6 addresses")
            }
            "label" => vip.label = Some(arg.to_string()),
            // vznet never leaves Master when an address is deleted behind its back.
            "no_track" => {}
            "peer" | "preferred_lft" => ctx.attr_lost(line, key, "vznet's virtual IPs have no peer address or preferred lifetime"),
            "home" | "-nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin" => {
                ctx.attr_lost(line, key, "vznet sets no address flags")
            }
            "use_vmac" => ctx.attr_lost(line, key, "vznet puts an instance's addresses on its virtual MAC interface, or all on their dev"),
            other => ctx.attr(line, other, "unknown address option (keepalived ignores it too)"),
        }
        i += if takes_value { 2 } else { 1 };
    }
    if let Some(b) = brd {
        vip.brd = broadcast(net, b);
        if vip.brd.is_none() {
            ctx.no_effect(
                line,
                format!("broadcast {b:?} is not valid (keepalived skips the address)"),
            );
            return None;
        }
    }
    Some(vip)
}

/// `brd ADDR`, or `+` / `-` (all host bits set / clear) as `ip address` reads them.
fn broadcast(net: IpNet, text: &str) -> Option<Ipv4Addr> {
    let IpNet::V4(n) = net else { return None };
    match text {
        "+" if n.prefix_len() <= 30 => Some(n.broadcast()),
        "-" if n.prefix_len() <= 30 => Some(n.network()),
        t => t.parse().ok(),
    }
}

/// A route line's parts, before it becomes a virtual or a static route.
#[derive(Debug, Default)]
struct ParsedRoute {
    to: Option<IpNet>,
    via: Option<IpAddr>,
    dev: Option<String>,
    src: Option<IpAddr>,
    metric: Option<u32>,
    table: Option<u32>,
    scope: Option<AddressScope>,
    kind: Option<(RouteKind, String)>,
    /// Attributes vznet has no key for: (keyword, whether the route means something
    /// else without it).
    extra: Vec<(String, bool)>,
}

/// Attributes that take one value and only refine a route.
const ROUTE_REFINEMENTS: &[&str] = &[
    "protocol",
    "onlink",
    "expires",
    "mtu",
    "hoplimit",
    "advmss",
    "rtt",
    "rttvar",
    "reordering",
    "window",
    "cwnd",
    "ssthresh",
    "realms",
    "rto_min",
    "initcwnd",
    "initrwnd",
    "features",
    "quickack",
    "congctl",
    "pref",
    "ttl-propagate",
    "fastopen_no_cookie",
    "encap",
];

fn parse_route(line: &Node) -> Result<ParsedRoute, String> {
    let mut r = ParsedRoute::default();
    let w = &line.words;
    let mut i = 0;
    while i < w.len() {
        let key = w[i].as_str();
        let arg = w.get(i + 1).map(String::as_str);
        let need = |what: &str| arg.ok_or_else(|| format!("{key} without {what}"));
        match key {
            "inet" | "inet6" | "no_track" => {}
            "src" => {
                r.src = Some(
                    need("an address")?
                        .parse()
                        .map_err(|_| format!("src {:?} is not an address", arg))?,
                );
                i += 1;
            }
            "via" | "gw" => {
                let mut a = need("an address")?;
                if matches!(a, "inet" | "inet6") {
                    i += 1;
                    a = w
                        .get(i + 1)
                        .map(String::as_str)
                        .ok_or("via without an address")?;
                }
                r.via = Some(
                    a.parse()
                        .map_err(|_| format!("via {a:?} is not an address"))?,
                );
                i += 1;
            }
            "dev" | "oif" => {
                r.dev = Some(need("an interface")?.to_string());
                i += 1;
            }
            "metric" | "priority" | "preference" => {
                let m = need("a number")?;
                r.metric = Some(
                    value::unsigned(m, 0, u64::from(u32::MAX))
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or(format!("metric {m:?} is not a number"))?,
                );
                i += 1;
            }
            "table" => {
                let t = need("a table")?;
                r.table = Some(table(t).ok_or(format!("table {t:?}: give the table's number"))?);
                i += 1;
            }
            "scope" => {
                let s = need("a scope")?;
                r.scope = Some(scope(s).ok_or(format!("unknown scope {s:?}"))?);
                i += 1;
            }
            "or" | "nexthop" => {
                // Multipath: everything after is next hops.
                r.extra.push((key.to_string(), true));
                break;
            }
            "from" | "tos" | "dsfield" | "vrf" | "as" | "track_group" => {
                r.extra.push((key.to_string(), true));
                i += 1;
            }
            k if ROUTE_REFINEMENTS.contains(&k) => {
                r.extra.push((k.to_string(), false));
                // `mtu lock 1400` and the like.
                if arg == Some("lock") {
                    i += 1;
                }
                if !matches!(k, "onlink" | "fastopen_no_cookie") {
                    i += 1;
                }
            }
            _ => {
                let mut k = key;
                if k == "to" {
                    i += 1;
                    k = w
                        .get(i)
                        .map(String::as_str)
                        .ok_or("to without a destination")?;
                }
                let kind = match k {
                    "unicast" => Some(RouteKind::Unicast),
                    "blackhole" => Some(RouteKind::Blackhole),
                    "unreachable" => Some(RouteKind::Unreachable),
                    "prohibit" => Some(RouteKind::Prohibit),
                    "local" | "broadcast" | "anycast" | "multicast" | "throw" | "nat"
                    | "xresolve" => {
                        r.extra.push((format!("type {k}"), true));
                        Some(RouteKind::Unicast)
                    }
                    _ => None,
                };
                if let Some(kind) = kind {
                    r.kind = Some((kind, k.to_string()));
                    i += 1;
                    k = w
                        .get(i)
                        .map(String::as_str)
                        .ok_or("a route type without a destination")?;
                }
                r.to = Some(match k {
                    "default" | "any" | "all" => default_route(w),
                    d => address(d).ok_or(format!("unknown route keyword or address {d:?}"))?,
                });
            }
        }
        i += 1;
    }
    if r.to.is_none() {
        return Err("a route needs a destination".into());
    }
    Ok(r)
}

/// `default`: 0.0.0.0/0, or ::/0 when the line is IPv6.
fn default_route(words: &[String]) -> IpNet {
    let v6 = words
        .iter()
        .any(|w| w == "inet6" || (w.contains(':') && w.parse::<IpAddr>().is_ok()));
    if v6 {
        IpNet::V6(ipnet::Ipv6Net::default())
    } else {
        IpNet::V4(ipnet::Ipv4Net::default())
    }
}

/// Reports a parsed route's attributes vznet cannot carry; `false` when the route
/// itself is not carried.
fn report_extras(ctx: &mut Ctx<'_>, line: &Node, r: &ParsedRoute) -> bool {
    let essential: Vec<&str> = r
        .extra
        .iter()
        .filter(|(_, e)| *e)
        .map(|(k, _)| k.as_str())
        .collect();
    if let Some(first) = essential.first() {
        let to = r.to.map(|t| t.to_string()).unwrap_or_default();
        ctx.attr_lost(line, first, format!("the route to {to} uses {}, which vznet's routes do not have (multipath, source routing, ToS, VRF, other types): route not carried", essential.join(", ")));
        return false;
    }
    for (k, _) in &r.extra {
        ctx.attr_lost(
            line,
            k,
            "vznet's routes have no such attribute: the route is carried without it",
        );
    }
    true
}

/// One `virtual_routes` line.
pub(super) fn virtual_route(ctx: &mut Ctx<'_>, line: &Node) -> Option<VirtualRoute> {
    let r = match parse_route(line) {
        Ok(r) => r,
        Err(why) => {
            ctx.no_effect(line, format!("{why} (keepalived skips the route too)"));
            return None;
        }
    };
    if !report_extras(ctx, line, &r) {
        return None;
    }
    let to = r.to?;
    if to.trunc() != to {
        ctx.no_effect(
            line,
            format!(
                "{to} has host bits set: the kernel refuses the route (keepalived fails to add it)"
            ),
        );
        return None;
    }
    Some(VirtualRoute {
        to,
        via: r.via,
        dev: r.dev,
        src: r.src,
        metric: r.metric,
        table: r.table.filter(|t| *t != 254),
        scope: r.scope,
        kind: r.kind.map_or(RouteKind::Unicast, |(k, _)| k),
    })
}

/// `static_routes { ... }`: routes that stay while keepalived runs, carried as
/// netcfg's `[[route]]` (main table, via/dev/metric).
pub(super) fn static_routes(ctx: &mut Ctx<'_>, block: &super::Node, out: &mut Vec<Sourced<Route>>) {
    let mut carried = false;
    for line in block.children() {
        let r = match parse_route(line) {
            Ok(r) => r,
            Err(why) => {
                ctx.no_effect(line, format!("{why} (keepalived skips the route too)"));
                continue;
            }
        };
        if !report_extras(ctx, line, &r) {
            continue;
        }
        let mut unsupported = Vec::new();
        if r.table.is_some_and(|t| t != 254) {
            unsupported.push("table");
        }
        if r.kind
            .as_ref()
            .is_some_and(|(k, _)| *k != RouteKind::Unicast)
        {
            unsupported.push("type");
        }
        if !unsupported.is_empty() {
            ctx.lost(line, format!("vznet's [[route]] is a unicast route in the main table; this one has {}: route not carried", unsupported.join(" and ")));
            continue;
        }
        if r.src.is_some() {
            ctx.attr_lost(
                line,
                "src",
                "vznet's [[route]] has no preferred source: the route is carried without it",
            );
        }
        if r.scope.is_some() {
            ctx.attr_lost(line, "scope", "vznet's [[route]] has no scope (the kernel picks link or global): the route is carried without it");
        }
        let Some(to) = r.to else { continue };
        let to = if to.prefix_len() == 0 {
            RouteDest::Default
        } else {
            RouteDest::Prefix(to)
        };
        out.push(Sourced {
            at: line.at.clone(),
            origin: "static_routes".into(),
            value: Route {
                to,
                via: r.via,
                dev: r.dev,
                metric: r.metric,
            },
        });
        carried = true;
    }
    if carried {
        ctx.changed(block, "carried as [[route]] tables, which netcfg keeps in place also while vznetd is stopped (keepalived removes its static routes when it stops)");
    }
}

/// One `virtual_rules` line.
pub(super) fn virtual_rule(ctx: &mut Ctx<'_>, line: &Node) -> Option<VirtualRule> {
    let mut rule = VirtualRule {
        from: None,
        to: None,
        table: 0,
        priority: None,
        iif: None,
        oif: None,
        fwmark: None,
        family: None,
    };
    let w = &line.words;
    let mut i = 0;
    let mut lost: Vec<String> = Vec::new();
    while i < w.len() {
        let key = w[i].as_str();
        let arg = w.get(i + 1).map(String::as_str);
        let Some(arg) = arg.or(
            if matches!(key, "inet" | "inet6" | "no_track" | "not" | "l3mdev") {
                Some("")
            } else {
                None
            },
        ) else {
            ctx.no_effect(
                line,
                format!("{key} without a value (keepalived skips the rule too)"),
            );
            return None;
        };
        let mut step = 2;
        match key {
            "inet" => {
                rule.family = Some(4);
                step = 1;
            }
            "inet6" => {
                rule.family = Some(6);
                step = 1;
            }
            "no_track" => step = 1,
            "from" | "to" => {
                let net = match arg {
                    "all" | "any" | "default" => None,
                    a => {
                        match address(a) {
                            Some(n) => Some(n),
                            None => {
                                ctx.no_effect(line, format!("{key} {a:?} is not an address (keepalived skips the rule too)"));
                                return None;
                            }
                        }
                    }
                };
                if key == "from" {
                    rule.from = net
                } else {
                    rule.to = net
                }
            }
            "table" | "lookup" => match table(arg) {
                Some(t) => rule.table = t,
                None => {
                    ctx.lost(
                        line,
                        format!("table {arg:?}: give the table's number: rule not carried"),
                    );
                    return None;
                }
            },
            "preference" | "order" | "priority" => {
                rule.priority = value::unsigned(arg, 0, u64::from(u32::MAX))
                    .and_then(|v| u32::try_from(v).ok());
            }
            "iif" | "dev" => rule.iif = Some(arg.to_string()),
            "oif" => rule.oif = Some(arg.to_string()),
            "fwmark" => match arg.split_once('/') {
                None => {
                    rule.fwmark = value::unsigned(arg, 0, u64::from(u32::MAX))
                        .and_then(|v| u32::try_from(v).ok())
                }
                Some(_) => lost.push("fwmark with a mask".into()),
            },
            "not" | "l3mdev" => {
                lost.push(key.into());
                step = 1;
            }
            other => lost.push(other.into()),
        }
        i += step;
    }
    if !lost.is_empty() {
        ctx.lost(
            line,
            format!(
                "the rule uses {}, which vznet's virtual_rules do not have: rule not carried",
                lost.join(", ")
            ),
        );
        return None;
    }
    if rule.table == 0 {
        ctx.lost(line, "vznet's virtual_rules look up a table; this rule has none (goto, nop or a type): rule not carried");
        return None;
    }
    Some(rule)
}
