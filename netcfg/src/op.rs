//! Operations: one kernel change each, with its inverse, in a phase that orders
//! it against the others.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::link::{describe_change, Kind, LinkDef, Port, Tier};
use crate::model::MacAddr;

/// A netns: `None` is the one vznet runs in (the host's); `Some` a VE's, as the
/// config names it (a name under /run/netns or a path).
pub type NsName = Option<String>;

/// A route as vznet installs it (protocol vznet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Destination.
    pub dst: IpNet,
    /// Gateway.
    pub via: Option<IpAddr>,
    /// Output device.
    pub dev: Option<String>,
    /// Metric.
    pub metric: Option<u32>,
    /// Routing table (254: main).
    #[serde(default = "main_table", skip_serializing_if = "is_main_table")]
    pub table: u32,
}

/// The kernel's main routing table.
pub const MAIN_TABLE: u32 = 254;

fn main_table() -> u32 {
    MAIN_TABLE
}

fn is_main_table(t: &u32) -> bool {
    *t == MAIN_TABLE
}

fn is_false(b: &bool) -> bool {
    !b
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dst.prefix_len() == 0 {
            f.write_str("default")?;
        } else {
            write!(f, "{}", self.dst)?;
        }
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        if self.table != MAIN_TABLE {
            write!(f, " table {}", crate::model::RouteTable(self.table))?;
        }
        Ok(())
    }
}

/// One kernel change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Write a sysctl (host netns).
    Sysctl {
        /// The /proc/sys file.
        path: PathBuf,
        /// New value.
        value: String,
        /// Value before, if the file existed.
        old: Option<String>,
        /// For a global forwarding switch, which the kernel copies to every
        /// interface of its family: each interface's value before the write
        /// (recorded when the apply starts), which undoing it puts back.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        propagated: BTreeMap<PathBuf, String>,
    },
    /// Create a link, up, with its MAC, MTU, master, port attributes and
    /// ownership alias.
    LinkAdd {
        /// Netns.
        ns: NsName,
        /// The link.
        link: LinkDef,
    },
    /// Delete a link vznet created.
    LinkDel {
        /// Netns.
        ns: NsName,
        /// Everything needed to make it again (rollback).
        link: LinkDef,
    },
    /// Change attributes of a link's kind (a bond's miimon, a bridge's STP).
    LinkSet {
        /// Netns.
        ns: NsName,
        /// Link.
        name: String,
        /// The attributes that change, with their new values.
        change: Kind,
        /// The same attributes' values before.
        old: Kind,
    },
    /// Change a link's attributes as a bridge port (isolated, VLANs...).
    PortSet {
        /// Netns.
        ns: NsName,
        /// The port.
        name: String,
        /// The attributes that change, with their new values.
        change: Port,
        /// Their values before.
        old: Port,
    },
    /// Change a link's MTU.
    SetMtu {
        /// Netns.
        ns: NsName,
        /// Link.
        name: String,
        /// New MTU.
        mtu: u32,
        /// MTU before.
        old: Option<u32>,
        /// Links it is stacked on: a lower link's MTU grows first and shrinks
        /// last (a VLAN's MTU cannot exceed its lower link's).
        depth: u8,
    },
    /// Join (or leave, with `None`) a bridge or bond.
    SetMaster {
        /// Netns.
        ns: NsName,
        /// Link.
        name: String,
        /// New master.
        master: Option<String>,
        /// Old master.
        old: Option<String>,
        /// Bridge-port attributes set once it joins `master` (a plan sets them
        /// with a `PortSet` of their own; an inverse puts recorded ones back).
        #[serde(default, skip_serializing_if = "Port::is_empty")]
        port: Port,
        /// Its attributes as a port of `old`: what the inverse puts back.
        #[serde(default, skip_serializing_if = "Port::is_empty")]
        old_port: Port,
    },
    /// Set a link up or down.
    SetUp {
        /// Netns.
        ns: NsName,
        /// Link.
        name: String,
        /// Up.
        up: bool,
        /// A VLAN or macvlan rides on it: up before they are made (the kernel
        /// refuses to bring them up on a link that is down).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        lower: bool,
    },
    /// Change a link's MAC.
    SetMac {
        /// Netns.
        ns: NsName,
        /// Link.
        name: String,
        /// New MAC.
        mac: MacAddr,
        /// Old MAC.
        old: Option<MacAddr>,
    },
    /// Add an address.
    AddrAdd {
        /// Netns.
        ns: NsName,
        /// Link.
        dev: String,
        /// Address.
        addr: IpNet,
        /// IPv6: usable at once, without duplicate address detection (links
        /// where nobody else can hold it).
        #[serde(default, skip_serializing_if = "is_false")]
        nodad: bool,
    },
    /// Remove an address.
    AddrDel {
        /// Netns.
        ns: NsName,
        /// Link.
        dev: String,
        /// Address.
        addr: IpNet,
        /// How the inverse adds it back.
        #[serde(default, skip_serializing_if = "is_false")]
        nodad: bool,
    },
    /// Add a route.
    RouteAdd {
        /// Netns.
        ns: NsName,
        /// Route.
        route: RouteSpec,
    },
    /// Remove a route.
    RouteDel {
        /// Netns.
        ns: NsName,
        /// Route.
        route: RouteSpec,
    },
    /// Add a policy routing rule (host netns).
    RuleAdd {
        /// The rule.
        rule: crate::rule::RuleSpec,
    },
    /// Remove a rule vznet made.
    RuleDel {
        /// The rule.
        rule: crate::rule::RuleSpec,
    },
    /// Answer ARP/neighbour solicitations for an address on a host interface.
    ProxyAdd {
        /// The proxy entry.
        proxy: crate::neighbour::ProxySpec,
    },
    /// Remove a proxy entry vznet made.
    ProxyDel {
        /// The proxy entry.
        proxy: crate::neighbour::ProxySpec,
    },
}

/// Apply order. Ops of one phase are independent and may run concurrently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Phase {
    /// Routes that go.
    Unroute,
    /// Addresses that go (after the routes that may use them).
    Unaddress,
    /// Ports that leave a master.
    Detach,
    /// MTUs that shrink, the links stacked highest first.
    MtuShrink(Reverse<u8>),
    /// Links that go, the links stacked highest first (deleting a lower link
    /// deletes what is stacked on it), and at each height a master's ports
    /// before it (0: has a master): so an undo, which runs backwards, makes
    /// the master before the ports that join it.
    Delete(Reverse<u8>, u8),
    /// Global sysctls (forwarding before links appear).
    GlobalSysctl,
    /// MTUs that grow, lower links first.
    MtuGrow(u8),
    /// Links that VLANs and macvlans ride on, up.
    LowerUp,
    /// Links other than veths, lower links first (bonds, bridges, dummies,
    /// then VLANs, macvlans, VXLANs on them).
    Create(u8),
    /// Slaves down (a slave must be down to be enslaved).
    SlaveDown,
    /// Attribute changes.
    Modify,
    /// Veth pairs (joining their bridge as they are made).
    CreateVeth,
    /// Ports into bridges, slaves into bonds.
    Attach,
    /// Bridge-port attributes and VLANs.
    Port,
    /// Links up.
    Up,
    /// Per-interface sysctls.
    LinkSysctl,
    /// Addresses.
    Address,
    /// Routes (after addresses make gateways reachable).
    Route,
    /// Policy rules (after the routes of the tables they send packets to).
    Rule,
    /// Proxy neighbour entries (the LAN learns of routed VEs once they are reachable).
    Proxy,
    /// Veths whose peer is in a netns vznet cannot see (a VE dropped from the
    /// config whose netns lives on): they cannot be made again, so they go
    /// last, when nothing after them can fail but the verification.
    DeleteLast,
}

impl Op {
    /// The netns the op works in.
    pub fn ns(&self) -> Option<&str> {
        match self {
            Op::Sysctl { .. }
            | Op::RuleAdd { .. }
            | Op::RuleDel { .. }
            | Op::ProxyAdd { .. }
            | Op::ProxyDel { .. } => None,
            Op::LinkAdd { ns, .. }
            | Op::LinkDel { ns, .. }
            | Op::LinkSet { ns, .. }
            | Op::PortSet { ns, .. }
            | Op::SetMtu { ns, .. }
            | Op::SetMaster { ns, .. }
            | Op::SetUp { ns, .. }
            | Op::SetMac { ns, .. }
            | Op::AddrAdd { ns, .. }
            | Op::AddrDel { ns, .. }
            | Op::RouteAdd { ns, .. }
            | Op::RouteDel { ns, .. } => ns.as_deref(),
        }
    }

    /// Whether it takes something away (a link, address, route, rule, proxy
    /// entry or a port from its master).
    pub fn removes(&self) -> bool {
        matches!(
            self,
            Op::LinkDel { .. }
                | Op::AddrDel { .. }
                | Op::RouteDel { .. }
                | Op::RuleDel { .. }
                | Op::ProxyDel { .. }
                | Op::SetMaster { master: None, .. }
        )
    }

    /// When it runs.
    pub fn phase(&self) -> Phase {
        match self {
            Op::RouteDel { .. } | Op::RuleDel { .. } | Op::ProxyDel { .. } => Phase::Unroute,
            Op::AddrDel { .. } => Phase::Unaddress,
            Op::SetMaster { master: None, .. } => Phase::Detach,
            Op::LinkDel { ns, link } => match &link.kind {
                // A stale VE end (its host end moved away) must go before its
                // pair is made again.
                Kind::Veth(v) if v.peer.is_none() && ns.is_none() => Phase::DeleteLast,
                _ => Phase::Delete(Reverse(link.depth), u8::from(link.master.is_none())),
            },
            Op::Sysctl { path, .. } => {
                // net/{ipv4,ipv6}/{conf,neigh}/IF/KEY is a link's, but for
                // the all and default folders (the link may not exist before).
                let mut parts = path
                    .strip_prefix("/proc/sys/net")
                    .into_iter()
                    .flat_map(|p| p.iter())
                    .map(|s| s.to_str().unwrap_or(""));
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("ipv4" | "ipv6"), Some("conf" | "neigh"), Some(iface))
                        if iface != "all" && iface != "default" =>
                    {
                        Phase::LinkSysctl
                    }
                    _ => Phase::GlobalSysctl,
                }
            }
            Op::LinkAdd { link, .. } => match link.kind.tier() {
                Some(Tier::Veth) => Phase::CreateVeth,
                _ => Phase::Create(link.depth),
            },
            Op::SetMtu {
                mtu, old, depth, ..
            } => {
                if *old == Some(*mtu) {
                    // A bridge's MTU held while its ports change: after them.
                    Phase::Up
                } else if old.is_some_and(|o| *mtu < o) {
                    Phase::MtuShrink(Reverse(*depth))
                } else {
                    Phase::MtuGrow(*depth)
                }
            }
            Op::SetUp { up: false, .. } => Phase::SlaveDown,
            Op::SetMaster { .. } => Phase::Attach,
            Op::PortSet { .. } => Phase::Port,
            Op::SetMac { .. } | Op::LinkSet { .. } => Phase::Modify,
            Op::SetUp {
                up: true,
                lower: true,
                ..
            } => Phase::LowerUp,
            Op::SetUp { up: true, .. } => Phase::Up,
            Op::AddrAdd { .. } => Phase::Address,
            Op::RouteAdd { .. } => Phase::Route,
            Op::RuleAdd { .. } => Phase::Rule,
            Op::ProxyAdd { .. } => Phase::Proxy,
        }
    }

    /// The op that undoes this one (after it succeeded).
    pub fn inverse(&self) -> Op {
        match self.clone() {
            // Undoing puts the interfaces' own values back too (the engine's
            // rollback, from `propagated`).
            Op::Sysctl {
                path, value, old, ..
            } => Op::Sysctl {
                path,
                value: old.clone().unwrap_or_default(),
                old: Some(value),
                propagated: BTreeMap::new(),
            },
            Op::LinkAdd { ns, link } => Op::LinkDel { ns, link },
            Op::LinkDel { ns, link } => Op::LinkAdd { ns, link },
            Op::LinkSet {
                ns,
                name,
                change,
                old,
            } => Op::LinkSet {
                ns,
                name,
                change: old,
                old: change,
            },
            Op::PortSet {
                ns,
                name,
                change,
                old,
            } => Op::PortSet {
                ns,
                name,
                change: old,
                old: change,
            },
            Op::SetMtu {
                ns,
                name,
                mtu,
                old,
                depth,
            } => Op::SetMtu {
                ns,
                name,
                mtu: old.unwrap_or(mtu),
                old: Some(mtu),
                depth,
            },
            Op::SetMaster {
                ns,
                name,
                master,
                old,
                port,
                old_port,
            } => Op::SetMaster {
                ns,
                name,
                master: old,
                old: master,
                port: old_port,
                old_port: port,
            },
            Op::SetUp {
                ns,
                name,
                up,
                lower,
            } => Op::SetUp {
                ns,
                name,
                up: !up,
                lower,
            },
            Op::SetMac {
                ns, name, mac, old, ..
            } => match old {
                Some(o) => Op::SetMac {
                    ns,
                    name,
                    mac: o,
                    old: Some(mac),
                },
                None => Op::SetMac {
                    ns,
                    name,
                    mac,
                    old: Some(mac),
                },
            },
            Op::AddrAdd {
                ns,
                dev,
                addr,
                nodad,
            } => Op::AddrDel {
                ns,
                dev,
                addr,
                nodad,
            },
            Op::AddrDel {
                ns,
                dev,
                addr,
                nodad,
            } => Op::AddrAdd {
                ns,
                dev,
                addr,
                nodad,
            },
            Op::RouteAdd { ns, route } => Op::RouteDel { ns, route },
            Op::RouteDel { ns, route } => Op::RouteAdd { ns, route },
            Op::RuleAdd { rule } => Op::RuleDel { rule },
            Op::RuleDel { rule } => Op::RuleAdd { rule },
            Op::ProxyAdd { proxy } => Op::ProxyDel { proxy },
            Op::ProxyDel { proxy } => Op::ProxyAdd { proxy },
        }
    }
}

struct InNs<'a>(Option<&'a str>);

impl fmt::Display for InNs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ns) => write!(f, " (netns {ns})"),
            None => Ok(()),
        }
    }
}

fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |v| v.to_string())
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = InNs(self.ns());
        match self {
            Op::Sysctl {
                path, value, old, ..
            } => {
                let key = path
                    .strip_prefix("/proc/sys")
                    .unwrap_or(path)
                    .display()
                    .to_string();
                write!(
                    f,
                    "~ sysctl {} {} -> {value}",
                    key.trim_start_matches('/'),
                    opt(old)
                )
            }
            Op::LinkAdd { link, .. } => write!(f, "+ {}{ns}", link.summary()),
            Op::LinkDel { link, .. } => write!(f, "- link {}{ns}", link.name),
            Op::LinkSet {
                name, change, old, ..
            } => write!(
                f,
                "~ {} {name} {}{ns}",
                change.name(),
                describe_change(&change.describe(), &old.describe())
            ),
            Op::PortSet {
                name, change, old, ..
            } => write!(
                f,
                "~ port {name} {}{ns}",
                describe_change(&change.describe(), &old.describe())
            ),
            Op::SetMtu { name, mtu, old, .. } if *old == Some(*mtu) => {
                write!(f, "~ link {name} mtu {mtu} held as its ports change{ns}")
            }
            Op::SetMtu { name, mtu, old, .. } => {
                write!(f, "~ link {name} mtu {} -> {mtu}{ns}", opt(old))
            }
            Op::SetMaster {
                name,
                master: Some(m),
                ..
            } => write!(f, "~ link {name} master {m}{ns}"),
            Op::SetMaster {
                name,
                master: None,
                old,
                ..
            } => write!(f, "~ link {name} nomaster (was {}){ns}", opt(old)),
            Op::SetUp { name, up, .. } => {
                write!(f, "~ link {name} {}{ns}", if *up { "up" } else { "down" })
            }
            Op::SetMac { name, mac, old, .. } => {
                write!(f, "~ link {name} mac {} -> {mac}{ns}", opt(old))
            }
            Op::AddrAdd {
                dev, addr, nodad, ..
            } => write!(
                f,
                "+ address {addr} dev {dev}{}{ns}",
                if *nodad { " nodad" } else { "" }
            ),
            Op::AddrDel { dev, addr, .. } => write!(f, "- address {addr} dev {dev}{ns}"),
            Op::RouteAdd { route, .. } => write!(f, "+ route {route}{ns}"),
            Op::RouteDel { route, .. } => write!(f, "- route {route}{ns}"),
            Op::RuleAdd { rule } => write!(f, "+ rule {rule}"),
            Op::RuleDel { rule } => write!(f, "- rule {rule}"),
            Op::ProxyAdd { proxy } => write!(f, "+ neighbour proxy {proxy}"),
            Op::ProxyDel { proxy } => write!(f, "- neighbour proxy {proxy}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_of_links_wait_for_their_links() {
        let phase = |p: &str| {
            Op::Sysctl {
                path: p.into(),
                value: "1".into(),
                old: None,
                propagated: BTreeMap::new(),
            }
            .phase()
        };
        assert_eq!(phase("/proc/sys/net/ipv4/ip_forward"), Phase::GlobalSysctl);
        assert_eq!(
            phase("/proc/sys/net/ipv4/conf/all/forwarding"),
            Phase::GlobalSysctl
        );
        assert_eq!(
            phase("/proc/sys/net/ipv6/neigh/default/proxy_delay"),
            Phase::GlobalSysctl
        );
        assert_eq!(
            phase("/proc/sys/net/ipv4/conf/veth1.0/proxy_arp"),
            Phase::LinkSysctl
        );
        assert_eq!(
            phase("/proc/sys/net/ipv6/conf/br0/proxy_ndp"),
            Phase::LinkSysctl
        );
        assert_eq!(
            phase("/proc/sys/net/ipv4/neigh/venet5/proxy_delay"),
            Phase::LinkSysctl
        );
        assert_eq!(phase("/proc/sys/net/core/somaxconn"), Phase::GlobalSysctl);
    }
}
