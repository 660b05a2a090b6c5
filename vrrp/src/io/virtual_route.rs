//! `virtual_routes` and `virtual_rules`: routes and policy rules a Master installs and
//! a Backup removes, over rtnetlink.
//!
//! VRRP owns them: they carry route protocol [`ROUTE_PROTOCOL`] (248; `ip route show
//! proto 248`), rules the same `FRA_PROTOCOL`. netcfg manages only routes of its own
//! protocol (249), so neither removes the other's.

use netlink_packet_route::route::{RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::RouteMessageBuilder;

use super::virtual_address::errno;
use super::Error;
use crate::settings::{RouteKind, VirtualRoute, VirtualRule, ROUTE_PROTOCOL};

/// The routes and rules of one instance, ready to install.
#[derive(Debug, Clone)]
pub struct VirtualRouteSet {
    handle: rtnetlink::Handle,
    routes: Vec<(String, RouteMessage)>,
    rules: Vec<(String, RuleMessage)>,
}

impl VirtualRouteSet {
    /// `routes` come with the index of their `dev`, when they name one.
    pub fn new(
        handle: rtnetlink::Handle,
        routes: &[(VirtualRoute, Option<u32>)],
        rules: &[VirtualRule],
    ) -> Result<VirtualRouteSet, Error> {
        let routes = routes
            .iter()
            .map(|(r, index)| Ok((describe_route(r), route_message(r, *index)?)))
            .collect::<Result<_, Error>>()?;
        let rules = rules
            .iter()
            .map(|r| (describe_rule(r), rule_message(&handle, r)))
            .collect();
        Ok(VirtualRouteSet {
            handle,
            routes,
            rules,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.rules.is_empty()
    }

    /// Installs the rules, then the routes (keepalived's order); one already there is
    /// fine. Returns the failures.
    pub async fn add_all(&self) -> Vec<Error> {
        let mut errors = Vec::new();
        for (what, rule) in &self.rules {
            let mut req = self.handle.rule().add();
            *req.message_mut() = rule.clone();
            if let Err(e) = req.execute().await {
                if errno(&e) != Some(libc::EEXIST) {
                    errors.push(Error::Netlink {
                        op: format!("add rule {what}"),
                        source: e,
                    });
                }
            }
        }
        for (what, route) in &self.routes {
            if let Err(e) = self.handle.route().add(route.clone()).execute().await {
                if errno(&e) != Some(libc::EEXIST) {
                    errors.push(Error::Netlink {
                        op: format!("add route {what}"),
                        source: e,
                    });
                }
            }
        }
        errors
    }

    /// Removes the routes, then the rules; one already gone is fine.
    pub async fn remove_all(&self) -> Vec<Error> {
        let mut errors = Vec::new();
        for (what, route) in &self.routes {
            if let Err(e) = self.handle.route().del(route.clone()).execute().await {
                if !matches!(errno(&e), Some(libc::ESRCH | libc::ENOENT | libc::ENODEV)) {
                    errors.push(Error::Netlink {
                        op: format!("remove route {what}"),
                        source: e,
                    });
                }
            }
        }
        for (what, rule) in &self.rules {
            if let Err(e) = self.handle.rule().del(rule.clone()).execute().await {
                if !matches!(errno(&e), Some(libc::ENOENT | libc::ESRCH)) {
                    errors.push(Error::Netlink {
                        op: format!("remove rule {what}"),
                        source: e,
                    });
                }
            }
        }
        errors
    }
}

fn describe_route(r: &VirtualRoute) -> String {
    let mut s = r.to.to_string();
    if let Some(via) = r.via {
        s.push_str(&format!(" via {via}"));
    }
    if let Some(dev) = &r.dev {
        s.push_str(&format!(" dev {dev}"));
    }
    if let Some(t) = r.table {
        s.push_str(&format!(" table {t}"));
    }
    s
}

fn describe_rule(r: &VirtualRule) -> String {
    let mut s = String::new();
    if let Some(from) = r.from {
        s.push_str(&format!("from {from} "));
    }
    if let Some(to) = r.to {
        s.push_str(&format!("to {to} "));
    }
    s.push_str(&format!("table {}", r.table));
    s
}

fn route_message(r: &VirtualRoute, index: Option<u32>) -> Result<RouteMessage, Error> {
    let mut b = RouteMessageBuilder::<std::net::IpAddr>::new()
        .destination_prefix(r.to.addr(), r.to.prefix_len())
        .map_err(invalid)?
        .protocol(RouteProtocol::from(ROUTE_PROTOCOL));
    if let Some(via) = r.via {
        b = b.gateway(via).map_err(invalid)?;
    }
    if let Some(src) = r.src {
        b = b.pref_source(src).map_err(invalid)?;
    }
    if let Some(index) = index {
        b = b.output_interface(index);
    }
    if let Some(metric) = r.metric {
        b = b.priority(metric);
    }
    if let Some(table) = r.table {
        b = b.table_id(table);
    }
    // `ip route`'s default: link scope for a directly connected route, universe
    // through a gateway or for a route that goes nowhere.
    let scope = match (r.scope, r.kind, r.via) {
        (Some(s), _, _) => RouteScope::from(s.number()),
        (None, RouteKind::Unicast, None) => RouteScope::Link,
        _ => RouteScope::Universe,
    };
    b = b.scope(scope).kind(match r.kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Prohibit => RouteType::Prohibit,
    });
    Ok(b.build())
}

/// A route the builder refused.
fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Route(e.to_string())
}

fn rule_message(handle: &rtnetlink::Handle, r: &VirtualRule) -> RuleMessage {
    use std::net::IpAddr;
    let base = handle
        .rule()
        .add()
        .action(RuleAction::ToTable)
        .table_id(r.table);
    let prefix = |n: Option<ipnet::IpNet>| n.map(|n| (n.addr(), n.prefix_len()));
    let mut m = match r.family() {
        crate::wire::AddressFamily::Ipv4 => {
            let mut req = base.v4();
            if let Some((IpAddr::V4(a), len)) = prefix(r.from) {
                req = req.source_prefix(a, len);
            }
            if let Some((IpAddr::V4(a), len)) = prefix(r.to) {
                req = req.destination_prefix(a, len);
            }
            req.message_mut().clone()
        }
        crate::wire::AddressFamily::Ipv6 => {
            let mut req = base.v6();
            if let Some((IpAddr::V6(a), len)) = prefix(r.from) {
                req = req.source_prefix(a, len);
            }
            if let Some((IpAddr::V6(a), len)) = prefix(r.to) {
                req = req.destination_prefix(a, len);
            }
            req.message_mut().clone()
        }
    };
    apply_common(&mut m, r);
    m
}

/// The attributes any family's rule may have.
fn apply_common(m: &mut RuleMessage, r: &VirtualRule) {
    let a = &mut m.attributes;
    a.push(RuleAttribute::Protocol(RouteProtocol::from(ROUTE_PROTOCOL)));
    if let Some(p) = r.priority {
        a.push(RuleAttribute::Priority(p));
    }
    if let Some(i) = &r.iif {
        a.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(o) = &r.oif {
        a.push(RuleAttribute::Oifname(o.clone()));
    }
    if let Some(mark) = r.fwmark {
        a.push(RuleAttribute::FwMark(mark));
    }
}
