//! Units of reconciliation: the parts of a plan that succeed or fail on their own.
//!
//! A VE's unit is everything that exists for that VE (its veth and venet host ends,
//! their addresses and sysctls, the VE ends inside its netns, its routes there and its
//! host routes). A host object's unit is the bond, VLAN or bridge with its addresses,
//! sysctls and the ports the config attaches to it. Global sysctls form one unit, and
//! host routes hang on the unit of their device.
//!
//! The agent applies a plan unit by unit ([`crate::apply::Engine::apply_units`]): a
//! unit that cannot be repaired is rolled back alone and retried later, while every
//! other unit is repaired. Units still depend on each other through the kernel (a VE's
//! port needs its bridge), so a failed bridge makes its VEs' ports fail too; what never
//! happens is a rollback that undoes a repair of an unrelated unit.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::desired::Desired;
use crate::kernel::state::ALIAS_PREFIX;
use crate::op::Op;

/// One independently applied part of a plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A host object by name (`br104`, `bond0`), `sysctl` for the global sysctls,
    /// `routes` for host routes without a device.
    Host(String),
    /// Everything of one VE.
    Ve(u32),
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Host(name) => write!(f, "host {name}"),
            Unit::Ve(id) => write!(f, "VE {id}"),
        }
    }
}

/// The VE id in an ownership alias (`vznet:ve112:eth0`).
pub fn ve_of_alias(alias: &str) -> Option<u32> {
    alias
        .strip_prefix(ALIAS_PREFIX)?
        .strip_prefix("ve")?
        .split(':')
        .next()?
        .parse()
        .ok()
}

/// Which unit each op of a plan for `desired` belongs to.
#[derive(Debug, Default)]
pub struct Units {
    /// Host-side link name -> VE.
    ve_links: HashMap<String, u32>,
    /// VE netns (as the config names it) -> VE.
    ve_namespaces: HashMap<String, u32>,
    /// Existing link attached by the config (port or slave) -> its master.
    attached: HashMap<String, String>,
}

impl Units {
    /// Indexes `desired`.
    pub fn new(desired: &Desired) -> Units {
        let mut u = Units::default();
        for l in &desired.links {
            if let Some(id) = ve_of_alias(&l.link.alias) {
                u.ve_links.insert(l.link.name.clone(), id);
            }
        }
        for e in &desired.ve_ends {
            if let Some(id) = ve_of_alias(&e.alias) {
                u.ve_namespaces.insert(e.ns.clone(), id);
            }
        }
        for a in &desired.attachments {
            u.attached.insert(a.name.clone(), a.master.clone());
        }
        u
    }

    /// The unit of a host-side link name.
    fn of_host_link(&self, name: &str) -> Unit {
        if let Some(id) = self.ve_links.get(name) {
            return Unit::Ve(*id);
        }
        if let Some(master) = self.attached.get(name) {
            return Unit::Host(master.clone());
        }
        Unit::Host(name.to_string())
    }

    /// The unit a planning error blocks.
    pub fn of_error(&self, e: &crate::plan::PlanError) -> Unit {
        use crate::plan::PlanError;
        match e {
            PlanError::NotOwned { ns: Some(ns), .. } => self
                .ve_namespaces
                .get(ns)
                .map_or_else(|| Unit::Host(format!("netns {ns}")), |id| Unit::Ve(*id)),
            PlanError::NotOwned { ns: None, name } => self.of_host_link(name),
            PlanError::Missing { name, .. }
            | PlanError::CannotRecreate { name, .. }
            | PlanError::MtuTooLarge { name, .. } => self.of_host_link(name),
            PlanError::NoKernelSupport { what, .. } => Unit::Host(format!("kernel {what}")),
        }
    }

    /// The unit `op` belongs to.
    pub fn of(&self, op: &Op) -> Unit {
        if let Some(ns) = op.ns() {
            return self
                .ve_namespaces
                .get(ns)
                .map_or_else(|| Unit::Host(format!("netns {ns}")), |id| Unit::Ve(*id));
        }
        match op {
            Op::LinkDel { link, .. } | Op::LinkAdd { link, .. } => match ve_of_alias(&link.alias) {
                Some(id) => Unit::Ve(id),
                None => self.of_host_link(&link.name),
            },
            Op::SetMaster { name, .. }
            | Op::SetUp { name, .. }
            | Op::SetMac { name, .. }
            | Op::SetMtu { name, .. }
            | Op::LinkSet { name, .. }
            | Op::PortSet { name, .. } => self.of_host_link(name),
            Op::AddrAdd { dev, .. } | Op::AddrDel { dev, .. } => self.of_host_link(dev),
            Op::RouteAdd { route, .. } | Op::RouteDel { route, .. } => match &route.dev {
                Some(dev) => self.of_host_link(dev),
                None => Unit::Host("routes".into()),
            },
            Op::RuleAdd { .. } | Op::RuleDel { .. } => Unit::Host("rules".into()),
            Op::ProxyAdd { proxy } | Op::ProxyDel { proxy } => {
                Unit::Host(format!("proxies {}", proxy.dev))
            }
            Op::Sysctl { path, .. } => match interface_of_sysctl(path) {
                Some(ifname) => self.of_host_link(ifname),
                None => Unit::Host("sysctl".into()),
            },
        }
    }
}

/// The interface a per-interface sysctl file belongs to
/// (`/proc/sys/net/ipv4/conf/IF/KEY`, `/proc/sys/net/ipv4/neigh/IF/KEY`); `None` for
/// global ones, `all` and `default` included.
pub fn interface_of_sysctl(path: &Path) -> Option<&str> {
    let rel = path.strip_prefix("/proc/sys/net").ok()?;
    let mut parts = rel.iter().map(|p| p.to_str());
    let _family = parts.next()??;
    let table = parts.next()??;
    if table != "conf" && table != "neigh" {
        return None;
    }
    let ifname = parts.next()??;
    (!matches!(ifname, "all" | "default")).then_some(ifname)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Attachment, VeEnd};
    use crate::op::RouteSpec;

    fn desired() -> Desired {
        let mut d = Desired::default();
        d.links.push(crate::link::fixture::bridge("br0", &[]));
        d.links.push(crate::link::fixture::veth(
            "veth7.0",
            "ve7",
            "eth0",
            Some("br0"),
            "vznet:ve7:eth0",
        ));
        d.ve_ends.push(VeEnd {
            ns: "ve7".into(),
            name: "eth0".into(),
            mac: None,
            mtu: None,
            host_name: "veth7.0".into(),
            alias: "vznet:ve7:eth0".into(),
            addrs: vec![],
        });
        d.attachments.push(Attachment {
            name: "eth1".into(),
            master: "br0".into(),
            bond_slave: false,
            port: crate::link::Port::default(),
        });
        d
    }

    #[test]
    fn ops_fall_into_the_unit_of_what_they_touch() {
        let u = Units::new(&desired());
        let route = |dev: Option<&str>| RouteSpec {
            dst: "10.0.0.7/32".parse().expect("cidr"),
            via: None,
            dev: dev.map(Into::into),
            metric: None,
            table: 254,
        };
        let cases = [
            (
                Op::SetUp {
                    ns: Some("ve7".into()),
                    name: "eth0".into(),
                    up: true,
                    lower: false,
                },
                Unit::Ve(7),
            ),
            (
                Op::SetMaster {
                    ns: None,
                    name: "veth7.0".into(),
                    master: Some("br0".into()),
                    old: None,
                    port: Default::default(),
                    old_port: Default::default(),
                },
                Unit::Ve(7),
            ),
            (
                Op::SetMaster {
                    ns: None,
                    name: "eth1".into(),
                    master: Some("br0".into()),
                    old: None,
                    port: Default::default(),
                    old_port: Default::default(),
                },
                Unit::Host("br0".into()),
            ),
            (
                Op::RouteAdd {
                    ns: None,
                    route: route(Some("veth7.0")),
                },
                Unit::Ve(7),
            ),
            (
                Op::RouteAdd {
                    ns: None,
                    route: route(None),
                },
                Unit::Host("routes".into()),
            ),
            (
                Op::Sysctl {
                    path: "/proc/sys/net/ipv4/conf/veth7.0/proxy_arp".into(),
                    value: "1".into(),
                    old: None,
                    propagated: Default::default(),
                },
                Unit::Ve(7),
            ),
            (
                Op::Sysctl {
                    path: "/proc/sys/net/ipv4/conf/all/forwarding".into(),
                    value: "1".into(),
                    old: None,
                    propagated: Default::default(),
                },
                Unit::Host("sysctl".into()),
            ),
            (
                Op::Sysctl {
                    path: "/proc/sys/net/ipv4/ip_forward".into(),
                    value: "1".into(),
                    old: None,
                    propagated: Default::default(),
                },
                Unit::Host("sysctl".into()),
            ),
            // A stray VE link that is no longer in the config: its alias says whose.
            (
                Op::LinkDel {
                    ns: None,
                    link: crate::link::fixture::veth(
                        "veth9.0",
                        "ve9",
                        "eth0",
                        None,
                        "vznet:ve9:eth0",
                    )
                    .link,
                },
                Unit::Ve(9),
            ),
        ];
        for (op, unit) in cases {
            assert_eq!(u.of(&op), unit, "{op}");
        }
    }

    #[test]
    fn aliases_name_their_ve() {
        assert_eq!(ve_of_alias("vznet:ve112:eth0"), Some(112));
        assert_eq!(ve_of_alias("vznet:ve112:venet0"), Some(112));
        assert_eq!(ve_of_alias("vznet:bridge"), None);
        assert_eq!(ve_of_alias("vznet:vex:eth0"), None);
        assert_eq!(ve_of_alias("other:ve1:eth0"), None);
    }
}
