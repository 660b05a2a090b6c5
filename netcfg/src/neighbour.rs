//! Proxy neighbour entries (`ip neigh add proxy ADDR dev IF`): the host answers
//! ARP (IPv4) and neighbour solicitations (IPv6) for a routed VE's address on
//! the interfaces `[venet] neighbour_devs` names, and for no other address —
//! unlike `proxy_arp`, which answers for everything routed elsewhere.
//!
//! The kernel answers from a proxy entry only where forwarding is on (IPv4:
//! `conf.IF.forwarding`; IPv6: `conf.IF.forwarding` and `proxy_ndp`), and holds
//! replies to broadcast/multicast requests back by up to `neigh.IF.proxy_delay`;
//! vznet sets those on each neighbour device along with the entries.
//!
//! Ownership: the entry's protocol (NDA_PROTOCOL, kept on proxy entries since
//! Linux 5.2) is 249; entries without it are the admin's and are never changed.

use std::fmt;
use std::net::IpAddr;

use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::AddressFamily;
use serde::{Deserialize, Serialize};

use crate::kernel::state::RTPROT_VZNET;
use crate::model::validate::interface_sysctl_path;
use crate::model::Config;
use crate::op::Op;
use crate::plan::PlanError;

/// One proxy entry vznet keeps: answer for `addr` on `dev` (host netns).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProxySpec {
    /// The interface the requests arrive on.
    pub dev: String,
    /// The address answered for.
    pub addr: IpAddr,
}

impl fmt::Display for ProxySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dev {}", self.addr, self.dev)
    }
}

/// A proxy entry as the kernel reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyState {
    /// ifindex of its interface.
    pub index: u32,
    /// The address.
    pub addr: IpAddr,
    /// NDA_PROTOCOL: who made it (0: unknown).
    pub protocol: u8,
}

impl ProxyState {
    pub(crate) fn from_message(msg: &NeighbourMessage) -> Option<ProxyState> {
        if !msg.header.flags.contains(NeighbourFlags::Proxy) {
            return None;
        }
        let mut addr = None;
        let mut protocol = 0;
        for attr in &msg.attributes {
            match attr {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    addr = Some(IpAddr::V4(*a))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    addr = Some(IpAddr::V6(*a))
                }
                NeighbourAttribute::Protocol(p) => protocol = u8::from(*p),
                _ => {}
            }
        }
        Some(ProxyState {
            index: msg.header.ifindex,
            addr: addr?,
            protocol,
        })
    }

    /// True when vznet made this entry.
    pub fn is_managed(&self) -> bool {
        self.protocol == RTPROT_VZNET
    }
}

/// The RTM_NEWNEIGH/RTM_DELNEIGH message for a proxy entry on ifindex `index`.
pub fn message(index: u32, addr: IpAddr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.ifindex = index;
    m.header.flags = NeighbourFlags::Proxy;
    let (family, dst) = match addr {
        IpAddr::V4(a) => (AddressFamily::Inet, NeighbourAddress::Inet(a)),
        IpAddr::V6(a) => (AddressFamily::Inet6, NeighbourAddress::Inet6(a)),
    };
    m.header.family = family;
    m.attributes.push(NeighbourAttribute::Destination(dst));
    m.attributes
        .push(NeighbourAttribute::Protocol(RouteProtocol::from(
            RTPROT_VZNET,
        )));
    m
}

/// The entries the config asks for: every venet address of every wired VE on
/// every neighbour device.
pub fn desired(config: &Config) -> Vec<ProxySpec> {
    let devs = &config.host.venet.neighbour_devs;
    let mut out: Vec<ProxySpec> = config
        .ves
        .iter()
        .map(|f| &f.ve)
        .filter(|ve| ve.netns.is_some())
        .filter_map(|ve| ve.venet.as_ref())
        .flat_map(|v| v.addresses.iter())
        .flat_map(|addr| {
            devs.iter().map(|dev| ProxySpec {
                dev: dev.clone(),
                addr: *addr,
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The sysctls a neighbour device needs for the families its entries use
/// (file, value); a value the config sets itself wins.
pub fn sysctls(config: &Config, proxies: &[ProxySpec]) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    for dev in &config.host.venet.neighbour_devs {
        let mine = proxies.iter().filter(|p| &p.dev == dev);
        let (v4, v6) = mine.fold((false, false), |(a, b), p| {
            (a || p.addr.is_ipv4(), b || p.addr.is_ipv6())
        });
        let mut keys = Vec::new();
        if v4 {
            keys.extend(["forwarding", "neigh.proxy_delay"]);
        }
        if v6 {
            keys.extend([
                "ipv6.forwarding",
                "ipv6.proxy_ndp",
                "ipv6.neigh.proxy_delay",
            ]);
        }
        for key in keys {
            let value = if key.ends_with("proxy_delay") {
                "0"
            } else {
                "1"
            };
            if let Ok(path) = interface_sysctl_path(key, dev) {
                out.push((path, value.to_string()));
            }
        }
    }
    out
}

/// Where the kernel's proxy entries live: the host's links by index and name.
pub trait Links {
    /// The name of ifindex `index`.
    fn name_of(&self, index: u32) -> Option<&str>;
    /// Whether a link named `name` exists now or is made by this plan.
    fn exists(&self, name: &str) -> bool;
}

/// Ops that make vznet's proxy entries in the host netns exactly `want`.
/// `ops` holds the link ops planned so far: entries go with a link that is
/// deleted or recreated.
pub fn plan(
    ops: &mut Vec<Op>,
    want: &[ProxySpec],
    have: &[ProxyState],
    links: &dyn Links,
) -> Result<(), PlanError> {
    let deleted: Vec<String> = ops
        .iter()
        .filter_map(|op| match op {
            Op::LinkDel { ns: None, name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let mut new = Vec::new();
    for p in have.iter().filter(|p| p.is_managed()) {
        let Some(dev) = links.name_of(p.index) else {
            continue;
        };
        let spec = ProxySpec {
            dev: dev.to_string(),
            addr: p.addr,
        };
        if !deleted.contains(&spec.dev) && !want.contains(&spec) {
            new.push(Op::ProxyDel { proxy: spec });
        }
    }
    for w in want {
        let present = !deleted.contains(&w.dev)
            && have
                .iter()
                .any(|p| p.addr == w.addr && links.name_of(p.index) == Some(w.dev.as_str()));
        if present {
            continue;
        }
        if !links.exists(&w.dev) {
            return Err(PlanError::Missing {
                role: "neighbour device",
                name: w.dev.clone(),
            });
        }
        new.push(Op::ProxyAdd { proxy: w.clone() });
    }
    ops.extend(new);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// br0 is ifindex 4; `made` links come with the plan.
    struct Host(&'static [&'static str]);

    impl Links for Host {
        fn name_of(&self, index: u32) -> Option<&str> {
            (index == 4).then_some("br0")
        }
        fn exists(&self, name: &str) -> bool {
            name == "br0" || self.0.contains(&name)
        }
    }

    fn proxy(addr: &str) -> ProxySpec {
        ProxySpec {
            dev: "br0".into(),
            addr: addr.parse().expect("ip"),
        }
    }

    #[test]
    fn adds_what_is_missing_removes_only_its_own_extras() {
        let have: Vec<ProxyState> = [
            ("10.0.0.5", RTPROT_VZNET),
            ("10.0.0.9", RTPROT_VZNET),
            ("10.0.0.7", 0),
        ]
        .into_iter()
        .map(|(a, protocol)| ProxyState {
            index: 4,
            addr: a.parse().expect("ip"),
            protocol,
        })
        .collect();
        let want = [proxy("10.0.0.5"), proxy("fd00::5")];
        let mut ops = Vec::new();
        plan(&mut ops, &want, &have, &Host(&[])).expect("plan");
        let text: Vec<String> = ops.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "- neighbour proxy 10.0.0.9 dev br0",
                "+ neighbour proxy fd00::5 dev br0"
            ]
        );
    }

    #[test]
    fn a_missing_device_is_an_error_unless_this_plan_makes_it() {
        let want = [ProxySpec {
            dev: "br9".into(),
            addr: "10.0.0.5".parse().expect("ip"),
        }];
        let mut ops = Vec::new();
        assert!(matches!(
            plan(&mut ops, &want, &[], &Host(&[])),
            Err(PlanError::Missing {
                role: "neighbour device",
                ..
            })
        ));
        plan(&mut ops, &want, &[], &Host(&["br9"])).expect("made here");
        assert_eq!(ops.len(), 1);
    }

    #[test]
    fn messages_read_back() {
        for a in ["10.0.0.5", "fd00::5"] {
            let addr: IpAddr = a.parse().expect("ip");
            let back = ProxyState::from_message(&message(4, addr)).expect("decodes");
            assert_eq!((back.index, back.addr), (4, addr));
            assert!(back.is_managed());
        }
    }
}
