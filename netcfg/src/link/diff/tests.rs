//! The links' part of plans, against hand-built kernel states.

use super::*;
use crate::desired::{Attachment, Nic};
use crate::kernel::state::{AddrState, LinkState, RTPROT_VZNET};
use crate::link::bond::Bond;
use crate::link::fixture;
use crate::link::port::PortVlans;
use crate::link::vlan::Vlan;
use crate::model::{BondMode, VlanProtocol};
use crate::op::Phase;
use crate::plan::plan as full_plan;

fn text(ops: &[Op]) -> Vec<String> {
    ops.iter().map(ToString::to_string).collect()
}

fn bond_spec(miimon: u32) -> LinkSpec {
    let mut cfg = fixture::bond_config(BondMode::ActiveBackup);
    cfg.miimon_ms = Some(miimon);
    cfg.slaves.clear();
    fixture::spec(
        "bond0",
        Kind::Bond(Bond::from_config(&cfg)),
        "vznet:bond",
        &[],
    )
}

/// A bond as the kernel reports the one `bond_spec(miimon)` makes.
fn observed_bond(index: u32, miimon: u32) -> LinkState {
    let Kind::Bond(mut b) = bond_spec(miimon).link.kind else {
        unreachable!()
    };
    b.lacp_rate = Some(crate::model::LacpRate::Slow);
    b.ad_select = Some(crate::model::AdSelect::Stable);
    fixture::observed(index, "bond0", Kind::Bond(b), Some("vznet:bond"))
}

fn vlan_spec(name: &str, link: &str, id: u16) -> LinkSpec {
    let mut s = fixture::spec(
        name,
        Kind::Vlan(Vlan::new(link, id, VlanProtocol::Ieee8021Q)),
        "vznet:vlan",
        &[],
    );
    s.link.depth = 1;
    s
}

#[test]
fn a_new_miimon_is_exactly_one_change_and_undoes_exactly() {
    let mut d = Desired::default();
    d.links.push(bond_spec(200));
    let mut o = Observed::default();
    o.host.links.push(observed_bond(4, 100));
    let p = full_plan(&d, &o).expect("plan");
    assert_eq!(text(&p.ops), ["~ bond bond0 miimon_ms 100 -> 200"]);
    assert_eq!(p.ops[0].phase(), Phase::Modify);
    assert_eq!(p.ops[0].inverse().inverse(), p.ops[0]);
    let Op::LinkSet { old, .. } = p.ops[0].inverse() else {
        panic!("{:?}", p.ops[0]);
    };
    assert_eq!(old.describe()[0], ("miimon_ms", "200".to_string()));
}

#[test]
fn a_link_of_a_kind_vznet_cannot_make_is_never_deleted_as_something_else() {
    let mut o = Observed::default();
    o.host.links.push(fixture::observed(
        4,
        "ipvl0",
        Kind::Other {
            kind: "ipvlan".into(),
        },
        Some("vznet:old"),
    ));
    assert_eq!(
        full_plan(&Desired::default(), &o).err(),
        Some(PlanError::CannotRecreate {
            name: "ipvl0".into(),
            kind: "ipvlan".into()
        })
    );
}

#[test]
fn a_deleted_vlan_records_its_lower_link_id_and_protocol() {
    let mut o = Observed::default();
    o.host.links.push(observed_bond(4, 100));
    let mut v = fixture::observed(
        5,
        "bond0.136",
        Kind::Vlan(Vlan::new("bond0", 136, VlanProtocol::Ieee8021Ad)),
        Some("vznet:vlan"),
    );
    v.mtu = Some(1496);
    o.host.links.push(v);
    let mut d = Desired::default();
    d.links.push(bond_spec(100));
    let p = full_plan(&d, &o).expect("plan");
    assert_eq!(text(&p.ops), ["- link bond0.136"]);
    let Op::LinkAdd { link, .. } = p.ops[0].inverse() else {
        panic!("{:?}", p.ops[0]);
    };
    assert_eq!(
        link.summary(),
        "vlan bond0.136 (link bond0, id 136, protocol 802.1ad) mtu 1496"
    );
    assert_eq!(p.ops[0].phase(), Phase::Delete(std::cmp::Reverse(1), 1));
}

#[test]
fn a_new_vlan_id_makes_the_vlan_and_what_rides_on_it_again() {
    let mut d = Desired::default();
    d.links.push(bond_spec(100));
    d.links.push(vlan_spec("bond0.136", "bond0", 137));
    let mut inner = vlan_spec("qinq", "bond0.136", 10);
    inner.link.depth = 2;
    d.links.push(inner);
    let mut o = Observed::default();
    o.host.links.push(observed_bond(4, 100));
    o.host.links.push(fixture::observed(
        5,
        "bond0.136",
        Kind::Vlan(Vlan::new("bond0", 136, VlanProtocol::Ieee8021Q)),
        Some("vznet:vlan"),
    ));
    o.host.links.push(fixture::observed(
        6,
        "qinq",
        Kind::Vlan(Vlan::new("bond0.136", 10, VlanProtocol::Ieee8021Q)),
        Some("vznet:vlan"),
    ));
    let p = full_plan(&d, &o).expect("plan");
    assert_eq!(
        text(&p.ops),
        [
            "- link qinq",
            "- link bond0.136",
            "+ vlan bond0.136 (link bond0, id 137, protocol 802.1Q)",
            "+ vlan qinq (link bond0.136, id 10, protocol 802.1Q)",
        ]
    );
}

#[test]
fn mtus_grow_from_the_bottom_and_shrink_from_the_top() {
    let mut d = Desired::default();
    let mut bond = bond_spec(100);
    bond.link.mtu = Some(9000);
    d.links.push(bond);
    let mut vlan = vlan_spec("bond0.136", "bond0", 136);
    vlan.link.mtu = Some(9000);
    d.links.push(vlan);
    let mut o = Observed::default();
    o.host.links.push(observed_bond(4, 100));
    o.host.links.push(fixture::observed(
        5,
        "bond0.136",
        Kind::Vlan(Vlan::new("bond0", 136, VlanProtocol::Ieee8021Q)),
        Some("vznet:vlan"),
    ));
    let p = full_plan(&d, &o).expect("plan");
    assert_eq!(
        text(&p.ops),
        [
            "~ link bond0 mtu 1500 -> 9000",
            "~ link bond0.136 mtu 1500 -> 9000"
        ]
    );
    // The undo runs in reverse: the VLAN shrinks before its bond.
    let undo: Vec<Phase> = p.ops.iter().rev().map(|o| o.inverse().phase()).collect();
    assert!(undo.windows(2).all(|w| w[0] <= w[1]), "{undo:?}");
    o.host.links[0].max_mtu = Some(1500);
    assert!(matches!(
        full_plan(&d, &o),
        Err(PlanError::MtuTooLarge { max: 1500, .. })
    ));
}

#[test]
fn a_port_attribute_changed_by_hand_is_put_back() {
    let mut d = Desired::default();
    d.links.push(fixture::bridge("br0", &[]));
    d.attachments.push(Attachment {
        name: "eth1".into(),
        master: "br0".into(),
        bond_slave: false,
        port: Port {
            isolated: Some(true),
            ..Port::joined(None)
        },
    });
    let mut o = Observed::default();
    o.host.links.push(fixture::observed(
        2,
        "br0",
        fixture::observed_bridge(),
        Some("vznet:bridge"),
    ));
    let mut eth1 = fixture::nic(3, "eth1");
    eth1.master = Some(2);
    eth1.port = Port::joined(None);
    o.host.links.push(eth1);
    let p = full_plan(&d, &o).expect("plan");
    assert_eq!(text(&p.ops), ["~ port eth1 isolated off -> on"]);
    assert_eq!(p.ops[0].phase(), Phase::Port);
}

#[test]
fn a_new_default_pvid_is_expected_to_move_the_ports_on_the_old_one() {
    let mut br = fixture::bridge("br0", &[]);
    let Kind::Bridge(b) = &mut br.link.kind else {
        unreachable!()
    };
    b.vlan_filtering = Some(true);
    b.default_pvid = Some(5);
    let mut d = Desired::default();
    d.links.push(br);
    d.attachments.push(Attachment {
        name: "eth1".into(),
        master: "br0".into(),
        bond_slave: false,
        port: Port::joined(Some(5)),
    });
    let mut o = Observed::default();
    let Kind::Bridge(mut have) = fixture::observed_bridge() else {
        unreachable!()
    };
    have.vlan_filtering = Some(true);
    have.default_pvid = Some(1);
    o.host.links.push(fixture::observed(
        2,
        "br0",
        Kind::Bridge(have),
        Some("vznet:bridge"),
    ));
    let mut eth1 = fixture::nic(3, "eth1");
    eth1.master = Some(2);
    eth1.port = Port {
        vlans: Some(PortVlans::new(1, &[])),
        ..Port::joined(None)
    };
    o.host.links.push(eth1);
    let p = full_plan(&d, &o).expect("plan");
    assert_eq!(text(&p.ops), ["~ bridge br0 default_pvid 1 -> 5"]);
}

#[test]
fn a_deleted_bond_lets_its_slaves_go_first_and_a_vlan_on_one_brings_it_up() {
    let mut d = Desired::default();
    d.links.push(vlan_spec("eth0.5", "eth0", 5));
    let mut o = Observed::default();
    o.host.links.push(observed_bond(4, 100));
    let mut eth0 = fixture::nic(2, "eth0");
    eth0.master = Some(4);
    o.host.links.push(eth0);
    let p = full_plan(&d, &o).expect("plan");
    assert_eq!(
        text(&p.ops),
        [
            "~ link eth0 nomaster (was bond0)",
            "- link bond0",
            "~ link eth0 up",
            "+ vlan eth0.5 (link eth0, id 5, protocol 802.1Q)",
        ]
    );
    assert_eq!(p.ops[2].phase(), Phase::LowerUp);
    // Undone in reverse: down, the bond back, eth0 enslaved again.
    assert!(matches!(
        p.ops[0].inverse(),
        Op::SetMaster { master: Some(ref m), .. } if m == "bond0"
    ));
}

#[test]
fn a_nic_keeps_foreign_addresses_and_loses_vznet_ones_no_longer_declared() {
    let mut d = Desired::default();
    d.nics.push(Nic {
        name: "eth0".into(),
        mtu: Some(9000),
        up: true,
        addrs: vec!["10.0.0.2/24".parse().expect("cidr")],
    });
    let mut o = Observed::default();
    o.host.links.push(fixture::nic(2, "eth0"));
    o.host.links.push(fixture::nic(3, "eth1"));
    for (index, addr, protocol) in [
        (2, "10.0.0.9/24", None),
        (2, "10.0.0.3/24", Some(RTPROT_VZNET)),
        (3, "10.1.0.3/24", Some(RTPROT_VZNET)),
        (3, "10.1.0.4/24", None),
    ] {
        o.host.addrs.push(AddrState {
            index,
            addr: addr.parse().expect("cidr"),
            protocol,
            secondary: false,
            nodad: false,
        });
    }
    let p = full_plan(&d, &o).expect("plan");
    assert_eq!(
        text(&p.ops),
        [
            "- address 10.0.0.3/24 dev eth0",
            "- address 10.1.0.3/24 dev eth1",
            "~ link eth0 mtu 1500 -> 9000",
            "+ address 10.0.0.2/24 dev eth0",
        ]
    );
}
