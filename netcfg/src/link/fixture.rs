//! Links as tests build them: observed links with every attribute the kernel
//! reports, and desired specs as the config gives them.

use super::bridge::Bridge;
use super::veth::{Veth, VethPeer};
use super::{Kind, LinkDef, Port};
use crate::desired::LinkSpec;
use crate::kernel::state::LinkState;

/// An observed link, up, with an MTU of 1500.
pub fn observed(index: u32, name: &str, kind: Kind, alias: Option<&str>) -> LinkState {
    LinkState {
        index,
        name: name.into(),
        kind,
        alias: alias.map(Into::into),
        group: if alias.is_some() {
            crate::kernel::state::LINK_GROUP
        } else {
            0
        },
        mac: None,
        master: None,
        up: true,
        link: None,
        mtu: Some(1500),
        max_mtu: Some(65535),
        port: Port::default(),
        link_netnsid: None,
    }
}

/// A physical NIC as observed.
pub fn nic(index: u32, name: &str) -> LinkState {
    observed(
        index,
        name,
        Kind::Other {
            kind: String::new(),
        },
        None,
    )
}

/// A bridge as the kernel reports one made with the defaults.
pub fn observed_bridge() -> Kind {
    Kind::Bridge(Bridge {
        stp: Some(false),
        forward_delay_cs: Some(1500),
        hello_time_cs: Some(200),
        max_age_cs: Some(2000),
        priority: Some(0x8000),
        vlan_filtering: Some(false),
        default_pvid: None,
    })
}

/// A bridge spec with the defaults, as the config gives one.
pub fn bridge(name: &str, addrs: &[&str]) -> LinkSpec {
    spec(name, observed_bridge(), "vznet:bridge", addrs)
}

/// A spec of `kind` in the host netns.
pub fn spec(name: &str, kind: Kind, alias: &str, addrs: &[&str]) -> LinkSpec {
    LinkSpec {
        ns: None,
        link: LinkDef {
            name: name.into(),
            kind,
            mtu: None,
            mac: None,
            master: None,
            port: Port::default(),
            alias: alias.into(),
            depth: 0,
            sysctls: Default::default(),
        },
        addrs: addrs.iter().map(|a| a.parse().expect("cidr")).collect(),
    }
}

/// A VE's veth, host end `host` in `bridge`, peer `peer` in netns `ns`.
pub fn veth(host: &str, ns: &str, peer: &str, bridge: Option<&str>, alias: &str) -> LinkSpec {
    let mut s = spec(
        host,
        Kind::Veth(Veth {
            peer: Some(VethPeer {
                ns: Some(ns.into()),
                name: peer.into(),
                mac: None,
                mtu: None,
            }),
        }),
        alias,
        &[],
    );
    s.link.master = bridge.map(Into::into);
    if bridge.is_some() {
        s.link.port = Port::joined(None);
    }
    s
}

/// `[[bond]] name = "bond0"` over eth0 and eth1 in `mode`, every option left out.
pub fn bond_config(mode: crate::model::BondMode) -> crate::model::Bond {
    crate::model::Bond {
        name: "bond0".into(),
        mode,
        mtu: None,
        miimon_ms: None,
        updelay_ms: None,
        downdelay_ms: None,
        lacp_rate: None,
        xmit_hash_policy: None,
        ad_select: None,
        min_links: None,
        primary: None,
        arp_interval_ms: None,
        arp_ip_targets: Vec::new(),
        slaves: vec!["eth0".into(), "eth1".into()],
        addresses: Vec::new(),
        sysctl: Default::default(),
    }
}
