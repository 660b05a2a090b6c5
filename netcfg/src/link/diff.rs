//! The links' part of a plan: links vznet makes, deletes, makes again or
//! changes in place; existing links that join bridges and bonds or that the
//! config declares as NICs; the VE ends of veth pairs. Pure, like the rest of
//! the plan: the same desired and observed state give the same ops.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::veth::{Veth, VethPeer};
use super::{Kind, LinkDef, Port, Tier};
use crate::desired::{Desired, LinkSpec, VeEnd};
use crate::kernel::state::{LinkState, NsState, RTPROT_VZNET};
use crate::op::{NsName, Op};
use crate::plan::{Observed, PlanError};

/// Host links the plan makes (or makes again): the kernel gives them default
/// per-interface sysctls, whatever the old link had.
pub(crate) type Fresh = BTreeSet<String>;

/// Appends the link ops that take `observed` to `desired`.
pub(crate) fn plan(
    ops: &mut Vec<Op>,
    desired: &Desired,
    observed: &Observed,
) -> Result<Fresh, PlanError> {
    let host = &observed.host;
    let mut fresh = Fresh::new();

    // Links vznet owns but the config no longer names.
    let wanted: BTreeSet<&str> = desired
        .links
        .iter()
        .map(|l| l.link.name.as_str())
        .chain(desired.nics.iter().map(|n| n.name.as_str()))
        .collect();
    let going = |l: &LinkState| l.is_managed() && !wanted.contains(l.name.as_str());
    for link in host.links.iter().filter(|l| going(l)) {
        delete(ops, &None, link, host, observed, None)?;
        // Its ports and slaves leave it first, so that undoing puts them back
        // (deleting it would release them without a trace).
        for port in host
            .links
            .iter()
            .filter(|p| p.master == Some(link.index) && !going(p))
        {
            ops.push(Op::SetMaster {
                ns: None,
                name: port.name.clone(),
                master: None,
                old: Some(link.name.clone()),
            });
        }
    }

    let pvid_moves = default_pvid_moves(desired, host);
    let mut by_depth: Vec<&LinkSpec> = desired.links.iter().collect();
    by_depth.sort_by_key(|l| l.link.depth);
    for spec in by_depth {
        link_ops(ops, spec, desired, observed, &pvid_moves, &mut fresh)?;
    }
    attachment_ops(ops, desired, host, &pvid_moves)?;
    stray_port_ops(ops, desired, host, &wanted);
    nic_ops(ops, desired, host)?;
    for end in &desired.ve_ends {
        ve_end_ops(ops, end, observed);
    }
    lower_up_ops(ops, desired, host);
    Ok(fresh)
}

/// True when the plan takes `name` out of a bond: the bond closes a slave it
/// releases, so the link will be down.
fn released_from_bond(ops: &[Op], host: &NsState, name: &str) -> bool {
    ops.iter().any(|op| {
        matches!(op, Op::SetMaster { ns: None, name: n, old: Some(m), .. }
            if n == name && host.link(m).is_some_and(|b| b.kind.is_bond()))
    })
}

/// The links VLANs and macvlans ride on must be up before those are made or
/// brought up (the kernel refuses with ENETDOWN): their up ops run first, and
/// a link that is not vznet's and not declared goes up too, as a bridge port
/// does.
fn lower_up_ops(ops: &mut Vec<Op>, desired: &Desired, host: &NsState) {
    let lowers: BTreeSet<&str> = desired
        .links
        .iter()
        .filter(|l| l.ns.is_none())
        .filter_map(|l| l.link.kind.ifla_link().and_then(|r| r.name()))
        .collect();
    for op in ops.iter_mut() {
        if let Op::SetUp {
            ns: None,
            name,
            up: true,
            lower,
        } = op
        {
            *lower = lowers.contains(name.as_str());
        }
    }
    for name in lowers {
        let Some(link) = host.link(name) else {
            continue;
        };
        let handled = ops
            .iter()
            .any(|op| matches!(op, Op::SetUp { ns: None, name: n, .. } if n == name));
        let released = released_from_bond(ops, host, name);
        let declared = desired.host_link(name).is_some();
        if (!link.up || released) && !handled && !declared {
            ops.push(Op::SetUp {
                ns: None,
                name: name.to_string(),
                up: true,
                lower: true,
            });
        }
    }
}

/// Bridges whose default PVID changes: (old, new) by name.
type PvidMoves = BTreeMap<String, (u16, u16)>;

fn default_pvid_moves(desired: &Desired, host: &NsState) -> PvidMoves {
    let mut out = PvidMoves::new();
    for spec in desired.links.iter().filter(|l| l.ns.is_none()) {
        let Some(want) = spec.link.kind.as_bridge().and_then(|b| b.default_pvid) else {
            continue;
        };
        let have = host
            .link(&spec.link.name)
            .and_then(|l| l.kind.as_bridge())
            .and_then(|b| b.default_pvid);
        if let Some(have) = have.filter(|h| *h != want) {
            out.insert(spec.link.name.clone(), (have, want));
        }
    }
    out
}

/// The default PVID a port of `bridge` gets when it joins (after this plan's
/// changes to the bridge); `None` when the bridge's VLANs are not compared.
fn joining_pvid(desired: &Desired, bridge: &str) -> Option<u16> {
    desired
        .host_link(bridge)
        .and_then(|b| b.kind.as_bridge())
        .and_then(|b| b.default_pvid)
}

fn is_bridge(desired: &Desired, name: &str) -> bool {
    desired
        .host_link(name)
        .is_some_and(|l| l.kind.as_bridge().is_some())
}

fn is_bond(desired: &Desired, name: &str) -> bool {
    desired.host_link(name).is_some_and(|l| l.kind.is_bond())
}

/// A port's ops once it is (or stays) in `bridge`: what differs from `have`.
fn port_op(ops: &mut Vec<Op>, ns: &NsName, name: &str, want: &Port, have: &Port) {
    if let Some((change, old)) = want.delta(have) {
        ops.push(Op::PortSet {
            ns: ns.clone(),
            name: name.to_string(),
            change,
            old,
        });
    }
}

/// Joins `name` to `master`: a bond slave goes down first (the kernel refuses
/// to enslave a link that is up; the bond brings it up).
fn join_ops(
    ops: &mut Vec<Op>,
    ns: &NsName,
    name: &str,
    master: &str,
    bond: bool,
    up: bool,
    old: Option<String>,
) {
    if bond && up {
        ops.push(Op::SetUp {
            ns: ns.clone(),
            name: name.to_string(),
            up: false,
            lower: false,
        });
    }
    ops.push(Op::SetMaster {
        ns: ns.clone(),
        name: name.to_string(),
        master: Some(master.to_string()),
        old,
    });
}

fn lower_role(kind: &Kind) -> &'static str {
    match kind {
        Kind::Vlan(_) => "VLAN lower link",
        Kind::Macvlan(_) => "macvlan lower link",
        Kind::Vxlan(_) => "VXLAN device",
        Kind::Bond(_) => "bond primary slave",
        _ => "lower link",
    }
}

fn link_ops(
    ops: &mut Vec<Op>,
    spec: &LinkSpec,
    desired: &Desired,
    observed: &Observed,
    pvid_moves: &PvidMoves,
    fresh: &mut Fresh,
) -> Result<(), PlanError> {
    let host = &observed.host;
    let def = &spec.link;
    for r in def.kind.refs() {
        let name = r.name().unwrap_or_default();
        if desired.host_link(name).is_none() && host.link(name).is_none() {
            return Err(PlanError::Missing {
                role: lower_role(&def.kind),
                name: name.to_string(),
            });
        }
    }
    let Some(link) = host.link(&def.name) else {
        add(ops, spec, desired);
        fresh.insert(def.name.clone());
        return Ok(());
    };
    if !link.is_managed() {
        return Err(PlanError::NotOwned {
            ns: spec.ns.clone(),
            name: def.name.clone(),
        });
    }
    // Deleting a link deletes what is stacked on it: those are made again too.
    let lower_remade = def
        .kind
        .lower()
        .and_then(|r| r.name())
        .is_some_and(|n| fresh.contains(n));
    let recreate = lower_remade
        || def.kind.must_recreate(&link.kind)
        || link.alias.as_deref() != Some(def.alias.as_str())
        || !veth_paired(def, link, observed);
    if recreate {
        let peer = match &def.kind {
            Kind::Veth(v) => v.peer.clone(),
            _ => None,
        };
        delete(ops, &spec.ns, link, host, observed, peer)?;
        add(ops, spec, desired);
        fresh.insert(def.name.clone());
        return Ok(());
    }
    if let Some((change, old)) = def.kind.delta(&link.kind) {
        ops.push(Op::LinkSet {
            ns: spec.ns.clone(),
            name: def.name.clone(),
            change,
            old,
        });
    }
    mtu_op(ops, &spec.ns, link, def.mtu, def.depth)?;
    if let Some(mac) = def.mac {
        if link.mac != Some(mac) {
            ops.push(Op::SetMac {
                ns: spec.ns.clone(),
                name: def.name.clone(),
                mac,
                old: link.mac,
            });
        }
    }
    let master_now = host.master_name(link);
    if master_now != def.master {
        match &def.master {
            Some(m) => {
                join_ops(
                    ops,
                    &spec.ns,
                    &def.name,
                    m,
                    is_bond(desired, m),
                    link.up,
                    master_now,
                );
                if is_bridge(desired, m) {
                    port_op(
                        ops,
                        &spec.ns,
                        &def.name,
                        &def.port,
                        &Port::joined(joining_pvid(desired, m)),
                    );
                }
            }
            None => ops.push(Op::SetMaster {
                ns: spec.ns.clone(),
                name: def.name.clone(),
                master: None,
                old: master_now,
            }),
        }
    } else if let Some(m) = def.master.as_deref().filter(|m| is_bridge(desired, m)) {
        port_op(
            ops,
            &spec.ns,
            &def.name,
            &def.port,
            &port_now(link, m, pvid_moves),
        );
    }
    let enslaved = def.master.as_deref().is_some_and(|m| is_bond(desired, m));
    if !link.up && !enslaved {
        ops.push(Op::SetUp {
            ns: spec.ns.clone(),
            name: def.name.clone(),
            up: true,
            lower: false,
        });
    }
    // A VRRP virtual IP comes and goes with mastership: not drift.
    let have = host
        .addrs_of(link.index)
        .filter(|a| {
            !desired
                .vips
                .iter()
                .any(|(dev, vip)| dev == &def.name && vip.addr() == a.addr())
        })
        .collect();
    addr_ops(ops, &spec.ns, &def.name, &spec.addrs, have);
    Ok(())
}

/// A port's attributes now, as they will be once its bridge's default PVID
/// moved (the kernel moves the ports that still use it).
fn port_now(link: &LinkState, bridge: &str, pvid_moves: &PvidMoves) -> Port {
    let mut now = link.port.clone();
    if let (Some((from, to)), Some(v)) = (pvid_moves.get(bridge), &now.vlans) {
        now.vlans = Some(v.after_default_pvid_change(*from, *to));
    }
    now
}

fn mtu_op(
    ops: &mut Vec<Op>,
    ns: &NsName,
    link: &LinkState,
    want: Option<u32>,
    depth: u8,
) -> Result<(), PlanError> {
    let Some(mtu) = want.filter(|m| link.mtu != Some(*m)) else {
        return Ok(());
    };
    // IFLA_MAX_MTU 0: no limit (dummy).
    if let Some(max) = link.max_mtu.filter(|max| *max > 0 && mtu > *max) {
        return Err(PlanError::MtuTooLarge {
            name: link.name.clone(),
            mtu,
            max,
        });
    }
    ops.push(Op::SetMtu {
        ns: ns.clone(),
        name: link.name.clone(),
        mtu,
        old: link.mtu,
        depth,
    });
    Ok(())
}

/// Both ends of a veth exist and point at each other (true for other kinds).
fn veth_paired(def: &LinkDef, link: &LinkState, observed: &Observed) -> bool {
    let Kind::Veth(Veth {
        peer:
            Some(VethPeer {
                ns: Some(peer_ns),
                name: peer_name,
                ..
            }),
    }) = &def.kind
    else {
        return true;
    };
    observed
        .ves
        .get(peer_ns)
        .and_then(|s| s.link(peer_name))
        .is_some_and(|peer| {
            matches!(peer.kind, Kind::Veth(_))
                && peer.link == Some(link.index)
                && link.link == Some(peer.index)
        })
}

/// Makes `spec`'s link with everything it has: a veth joins its bridge as it
/// is made (bridges exist by then); other links join in the attach phase.
fn add(ops: &mut Vec<Op>, spec: &LinkSpec, desired: &Desired) {
    let mut link = spec.link.clone();
    let joins_at_create = link.kind.tier() == Some(Tier::Veth);
    if !joins_at_create {
        link.master = None;
        link.port = Port::default();
    }
    ops.push(Op::LinkAdd {
        ns: spec.ns.clone(),
        link,
    });
    if let (Some(m), false) = (&spec.link.master, joins_at_create) {
        // Made up: a bond slave goes down to join.
        join_ops(
            ops,
            &spec.ns,
            &spec.link.name,
            m,
            is_bond(desired, m),
            true,
            None,
        );
        if is_bridge(desired, m) {
            port_op(
                ops,
                &spec.ns,
                &spec.link.name,
                &spec.link.port,
                &Port::joined(joining_pvid(desired, m)),
            );
        }
    }
    for addr in &spec.addrs {
        ops.push(Op::AddrAdd {
            ns: spec.ns.clone(),
            dev: spec.link.name.clone(),
            addr: *addr,
        });
    }
}

/// Deletes a link vznet made, recording all it takes to make it again: its
/// kind's every attribute, MTU, MAC, master and port attributes, its
/// addresses (as ops of their own) and a veth's peer. `remake_peer` is the
/// peer to record when the observed one cannot be found (the pair is made
/// again by this plan).
fn delete(
    ops: &mut Vec<Op>,
    ns: &NsName,
    link: &LinkState,
    state: &NsState,
    observed: &Observed,
    remake_peer: Option<VethPeer>,
) -> Result<(), PlanError> {
    let kind = match &link.kind {
        Kind::Other { kind } => {
            return Err(PlanError::CannotRecreate {
                name: link.name.clone(),
                kind: kind.clone(),
            })
        }
        Kind::Veth(_) => Kind::Veth(Veth {
            peer: observed_peer(link, observed).or(remake_peer),
        }),
        other => other.clone(),
    };
    for addr in state.addrs_of(link.index) {
        ops.push(Op::AddrDel {
            ns: ns.clone(),
            dev: link.name.clone(),
            addr,
        });
    }
    let master = state.master_name(link);
    let in_bridge = link
        .master
        .and_then(|m| state.link_by_index(m))
        .is_some_and(LinkState::is_bridge);
    ops.push(Op::LinkDel {
        ns: ns.clone(),
        link: LinkDef {
            name: link.name.clone(),
            kind,
            mtu: link.mtu,
            mac: link.mac,
            master,
            port: if in_bridge {
                link.port.clone()
            } else {
                Port::default()
            },
            alias: link.alias.clone().unwrap_or_default(),
            depth: observed_depth(link, state),
        },
    });
    Ok(())
}

/// How many links `link` is stacked on, in `state`.
fn observed_depth(link: &LinkState, state: &NsState) -> u8 {
    let mut depth = 0;
    let mut cur = link;
    while let Some(lower) = cur
        .kind
        .lower()
        .and_then(|r| r.name())
        .and_then(|n| state.link(n))
    {
        depth += 1;
        cur = lower;
        if depth >= 16 {
            break;
        }
    }
    depth
}

/// The other end of a host veth, if it is in a netns vznet reads.
fn observed_peer(link: &LinkState, observed: &Observed) -> Option<VethPeer> {
    let paired = |peer: &LinkState| {
        matches!(peer.kind, Kind::Veth(_))
            && peer.link == Some(link.index)
            && link.link == Some(peer.index)
    };
    observed.ves.iter().find_map(|(ns, st)| {
        st.links.iter().find(|p| paired(p)).map(|p| VethPeer {
            ns: Some(ns.clone()),
            name: p.name.clone(),
            mac: p.mac,
            mtu: p.mtu,
        })
    })
}

fn attachment_ops(
    ops: &mut Vec<Op>,
    desired: &Desired,
    host: &NsState,
    pvid_moves: &PvidMoves,
) -> Result<(), PlanError> {
    for att in &desired.attachments {
        let Some(port) = host.link(&att.name) else {
            return Err(PlanError::Missing {
                role: if att.bond_slave {
                    "bond slave"
                } else {
                    "bridge port"
                },
                name: att.name.clone(),
            });
        };
        let master_now = host.master_name(port);
        let bridge = !att.bond_slave;
        if master_now.as_deref() != Some(att.master.as_str()) {
            join_ops(
                ops,
                &None,
                &att.name,
                &att.master,
                att.bond_slave,
                port.up,
                master_now,
            );
            if bridge {
                port_op(
                    ops,
                    &None,
                    &att.name,
                    &att.port,
                    &Port::joined(joining_pvid(desired, &att.master)),
                );
            }
        } else if bridge {
            port_op(
                ops,
                &None,
                &att.name,
                &att.port,
                &port_now(port, &att.master, pvid_moves),
            );
        }
        if bridge && (!port.up || released_from_bond(ops, host, &att.name)) {
            ops.push(Op::SetUp {
                ns: None,
                name: att.name.clone(),
                up: true,
                lower: false,
            });
        }
    }
    Ok(())
}

/// Ports of vznet's bridges and bonds that the config does not list leave.
fn stray_port_ops(ops: &mut Vec<Op>, desired: &Desired, host: &NsState, wanted: &BTreeSet<&str>) {
    let port_wanted: BTreeSet<(&str, &str)> = desired
        .attachments
        .iter()
        .map(|a| (a.name.as_str(), a.master.as_str()))
        .chain(
            desired
                .links
                .iter()
                .filter_map(|l| l.link.master.as_deref().map(|m| (l.link.name.as_str(), m))),
        )
        .collect();
    for link in &host.links {
        let Some(master) = link.master.and_then(|m| host.link_by_index(m)) else {
            continue;
        };
        if !master.is_managed() || !wanted.contains(master.name.as_str()) {
            continue;
        }
        let going = link.is_managed() && !wanted.contains(link.name.as_str());
        if !going
            && !port_wanted.contains(&(link.name.as_str(), master.name.as_str()))
            && desired.host_link(&link.name).is_none()
        {
            ops.push(Op::SetMaster {
                ns: None,
                name: link.name.clone(),
                master: None,
                old: Some(master.name.clone()),
            });
        }
    }
}

/// Declared NICs: MTU, up state and the addresses vznet added (marked with
/// IFA_PROTO); other addresses on them stay. Addresses vznet added to links it
/// neither owns nor has declared (a NIC dropped from the config) go.
fn nic_ops(ops: &mut Vec<Op>, desired: &Desired, host: &NsState) -> Result<(), PlanError> {
    for nic in &desired.nics {
        let Some(link) = host.link(&nic.name) else {
            return Err(PlanError::Missing {
                role: "ethernet link",
                name: nic.name.clone(),
            });
        };
        mtu_op(ops, &None, link, nic.mtu, 0)?;
        let slave = desired
            .attachments
            .iter()
            .any(|a| a.name == nic.name && a.bond_slave);
        let up = link.up && !released_from_bond(ops, host, &nic.name);
        if up != nic.up && !slave {
            ops.push(Op::SetUp {
                ns: None,
                name: nic.name.clone(),
                up: nic.up,
                lower: false,
            });
        }
        let all: Vec<IpNet> = host.addrs_of(link.index).collect();
        let mine: Vec<IpNet> = vznet_addrs(host, link.index).collect();
        for a in mine.iter().filter(|a| !nic.addrs.contains(a)) {
            ops.push(Op::AddrDel {
                ns: None,
                dev: nic.name.clone(),
                addr: *a,
            });
        }
        for a in nic.addrs.iter().filter(|a| !all.contains(a)) {
            ops.push(Op::AddrAdd {
                ns: None,
                dev: nic.name.clone(),
                addr: *a,
            });
        }
    }
    for link in host.links.iter().filter(|l| {
        !l.is_managed()
            && desired.host_link(&l.name).is_none()
            && !desired.nics.iter().any(|n| n.name == l.name)
    }) {
        for a in vznet_addrs(host, link.index) {
            if !desired
                .vips
                .iter()
                .any(|(dev, vip)| dev == &link.name && vip.addr() == a.addr())
            {
                ops.push(Op::AddrDel {
                    ns: None,
                    dev: link.name.clone(),
                    addr: a,
                });
            }
        }
    }
    Ok(())
}

fn vznet_addrs(host: &NsState, index: u32) -> impl Iterator<Item = IpNet> + '_ {
    host.addrs
        .iter()
        .filter(move |a| a.index == index && a.protocol == Some(RTPROT_VZNET) && !a.is_link_local())
        .map(|a| a.addr)
}

/// Exact address set on a link vznet owns.
pub(crate) fn addr_ops(
    ops: &mut Vec<Op>,
    ns: &NsName,
    dev: &str,
    want: &[IpNet],
    have: Vec<IpNet>,
) {
    for a in have.iter().filter(|a| !want.contains(a)) {
        ops.push(Op::AddrDel {
            ns: ns.clone(),
            dev: dev.to_string(),
            addr: *a,
        });
    }
    for a in want.iter().filter(|a| !have.contains(a)) {
        ops.push(Op::AddrAdd {
            ns: ns.clone(),
            dev: dev.to_string(),
            addr: *a,
        });
    }
}

/// The VE end comes with its veth (`LinkAdd` makes both); here only what
/// differs on an existing, correctly paired end.
fn ve_end_ops(ops: &mut Vec<Op>, end: &VeEnd, observed: &Observed) {
    let ns = Some(end.ns.clone());
    let host_end_made = ops
        .iter()
        .any(|op| matches!(op, Op::LinkAdd { ns: None, link } if link.name == end.host_name));
    let state = observed.ves.get(&end.ns);
    let link = state.and_then(|s| s.link(&end.name));
    match (state, link, host_end_made) {
        (Some(state), Some(link), false) => {
            if let Some(mac) = end.mac {
                if link.mac != Some(mac) {
                    ops.push(Op::SetMac {
                        ns: ns.clone(),
                        name: end.name.clone(),
                        mac,
                        old: link.mac,
                    });
                }
            }
            if let Some(mtu) = end.mtu.filter(|m| link.mtu != Some(*m)) {
                ops.push(Op::SetMtu {
                    ns: ns.clone(),
                    name: end.name.clone(),
                    mtu,
                    old: link.mtu,
                    depth: 0,
                });
            }
            if !link.up {
                ops.push(Op::SetUp {
                    ns: ns.clone(),
                    name: end.name.clone(),
                    up: true,
                    lower: false,
                });
            }
            addr_ops(
                ops,
                &ns,
                &end.name,
                &end.addrs,
                state.addrs_of(link.index).collect(),
            );
        }
        _ => {
            for a in &end.addrs {
                ops.push(Op::AddrAdd {
                    ns: ns.clone(),
                    dev: end.name.clone(),
                    addr: *a,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::bond::Bond;
    use super::super::fixture;
    use super::super::port::PortVlans;
    use super::super::vlan::Vlan;
    use super::*;
    use crate::desired::{Attachment, Nic};
    use crate::kernel::state::AddrState;
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
        assert_eq!(p.ops[0].phase(), Phase::Delete(std::cmp::Reverse(1)));
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
}
