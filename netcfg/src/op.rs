//! Operations: one kernel change each, with its inverse, in a phase that orders
//! it against the others.

use std::cmp::Reverse;
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

/// A route as vznet installs it (protocol vznet, main table).
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
    },
    /// Remove an address.
    AddrDel {
        /// Netns.
        ns: NsName,
        /// Link.
        dev: String,
        /// Address.
        addr: IpNet,
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
}

/// Apply order. Ops of one phase are independent and may run concurrently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Phase {
    /// Routes and addresses that go.
    Unroute,
    /// Ports that leave a master.
    Detach,
    /// MTUs that shrink, the links stacked highest first.
    MtuShrink(Reverse<u8>),
    /// Links that go, the links stacked highest first (deleting a lower link
    /// deletes what is stacked on it).
    Delete(Reverse<u8>),
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
    /// Veths whose peer is in a netns vznet cannot see (a VE dropped from the
    /// config whose netns lives on): they cannot be made again, so they go
    /// last, when nothing after them can fail but the verification.
    DeleteLast,
}

impl Op {
    /// The netns the op works in.
    pub fn ns(&self) -> Option<&str> {
        match self {
            Op::Sysctl { .. } => None,
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

    /// When it runs.
    pub fn phase(&self) -> Phase {
        match self {
            Op::RouteDel { .. } | Op::AddrDel { .. } => Phase::Unroute,
            Op::SetMaster { master: None, .. } => Phase::Detach,
            Op::LinkDel { link, .. } => match &link.kind {
                Kind::Veth(v) if v.peer.is_none() => Phase::DeleteLast,
                _ => Phase::Delete(Reverse(link.depth)),
            },
            Op::Sysctl { path, .. } => {
                if path.starts_with("/proc/sys/net/ipv4/conf")
                    || path.starts_with("/proc/sys/net/ipv6/conf")
                {
                    let iface = path.iter().nth(6).and_then(|s| s.to_str()).unwrap_or("");
                    if ["all", "default"].contains(&iface) {
                        Phase::GlobalSysctl
                    } else {
                        Phase::LinkSysctl
                    }
                } else {
                    Phase::GlobalSysctl
                }
            }
            Op::LinkAdd { link, .. } => match link.kind.tier() {
                Some(Tier::Veth) => Phase::CreateVeth,
                _ => Phase::Create(link.depth),
            },
            Op::SetMtu {
                mtu, old, depth, ..
            } => {
                if old.is_some_and(|o| *mtu < o) {
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
        }
    }

    /// The op that undoes this one (after it succeeded).
    pub fn inverse(&self) -> Op {
        match self.clone() {
            Op::Sysctl { path, value, old } => Op::Sysctl {
                path,
                value: old.clone().unwrap_or_default(),
                old: Some(value),
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
                ..
            } => Op::SetMaster {
                ns,
                name,
                master: old,
                old: master,
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
            Op::AddrAdd { ns, dev, addr } => Op::AddrDel { ns, dev, addr },
            Op::AddrDel { ns, dev, addr } => Op::AddrAdd { ns, dev, addr },
            Op::RouteAdd { ns, route } => Op::RouteDel { ns, route },
            Op::RouteDel { ns, route } => Op::RouteAdd { ns, route },
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
            Op::Sysctl { path, value, old } => {
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
            Op::AddrAdd { dev, addr, .. } => write!(f, "+ address {addr} dev {dev}{ns}"),
            Op::AddrDel { dev, addr, .. } => write!(f, "- address {addr} dev {dev}{ns}"),
            Op::RouteAdd { route, .. } => write!(f, "+ route {route}{ns}"),
            Op::RouteDel { route, .. } => write!(f, "- route {route}{ns}"),
        }
    }
}
