//! The lines of `virtual_routes` and `static_routes`, read as keepalived's
//! `alloc_route` reads them.

use std::net::IpAddr;

use ipnet::IpNet;
use netcfg::model::{Route, RouteDest, RouteTable};
use vrrp::settings::{AddressScope, RouteKind, VirtualRoute};

use super::super::parser::Node;
use super::address::{address, scope, table};
use super::{value, Ctx, Sourced};

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
/// netcfg's `[[route]]` (via, dev, metric, table).
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
        if r.kind
            .as_ref()
            .is_some_and(|(k, _)| *k != RouteKind::Unicast)
        {
            ctx.lost(line, "vznet's [[route]] is a unicast route; this one has another type: route not carried");
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
                table: r.table.filter(|t| *t != 254).map(RouteTable),
            },
        });
        carried = true;
    }
    if carried {
        ctx.changed(block, "carried as [[route]] tables, which netcfg keeps in place also while vznetd is stopped (keepalived removes its static routes when it stops)");
    }
}
