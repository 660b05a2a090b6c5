//! The links' part of a plan: links vznet makes, deletes, makes again or
//! changes in place; existing links that join bridges and bonds or that the
//! config declares as NICs; the VE ends of veth pairs. Pure, like the rest of
//! the plan: the same desired and observed state give the same ops.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

mod member;
mod nic;
#[cfg(test)]
mod tests;

use super::veth::{Veth, VethPeer};
use super::{Kind, LinkDef, Port, Tier};
use crate::desired::{Desired, LinkSpec, VeEnd};
use crate::kernel::state::{LinkState, NsState};
use crate::op::{NsName, Op};
use crate::plan::{Observed, PlanError};

/// Host links the plan makes (or makes again): the kernel gives them default
/// per-interface sysctls, whatever the old link had.
pub(crate) type Fresh = BTreeSet<String>;

/// Appends the link ops that take `observed` to `desired`; an object that cannot
/// be planned is left out and its error added to `errors`.
pub(crate) fn plan(
    ops: &mut Vec<Op>,
    desired: &Desired,
    observed: &Observed,
    errors: &mut Vec<PlanError>,
) -> Fresh {
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
        if let Err(e) = delete(ops, &None, link, host, observed, None) {
            errors.push(e);
            continue;
        }
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
                port: Port::default(),
                old_port: port_of(host, port),
            });
        }
    }

    let pvid_moves = default_pvid_moves(desired, host);
    let mut by_depth: Vec<&LinkSpec> = desired.links.iter().collect();
    by_depth.sort_by_key(|l| l.link.depth);
    for spec in by_depth {
        if let Err(e) = link_ops(ops, spec, desired, observed, &pvid_moves, &mut fresh) {
            errors.push(e);
        }
    }
    member::attachment_ops(ops, desired, host, &pvid_moves, errors);
    member::stray_port_ops(ops, desired, host, &wanted);
    nic::nic_ops(ops, desired, host, errors);
    for end in &desired.ve_ends {
        ve_end_ops(ops, end, observed, desired);
    }
    member::lower_up_ops(ops, desired, host);
    moves_from_going_masters(ops);
    bridge_mtu_holds(ops, desired, host);
    fresh
}

/// A bridge whose config sets its MTU, made before this plan (making one holds
/// its MTU), while its ports change (join, leave, are made, deleted or get
/// a new MTU): its MTU is held after them. A bridge whose MTU was never set
/// by a write that changed it follows its smallest port (an empty one goes
/// back to 1500), and which bridges are marked set cannot be read.
fn bridge_mtu_holds(ops: &mut Vec<Op>, desired: &Desired, host: &NsState) {
    let master_of = |name: &str| {
        host.link(name)
            .and_then(|l| host.master_name(l))
            .or_else(|| desired.host_link(name).and_then(|l| l.master.clone()))
    };
    let mut holds = Vec::new();
    for spec in desired.links.iter().filter(|l| l.ns.is_none()) {
        let def = &spec.link;
        let (Some(mtu), Some(_)) = (def.mtu, def.kind.as_bridge()) else {
            continue;
        };
        let br = Some(def.name.as_str());
        let mut ports_change = false;
        let mut made_here = false;
        for op in ops.iter() {
            match op {
                Op::LinkAdd { ns: None, link } if link.name == def.name => made_here = true,
                Op::SetMaster {
                    ns: None,
                    master,
                    old,
                    ..
                } => ports_change |= master.as_deref() == br || old.as_deref() == br,
                Op::LinkAdd { ns: None, link } | Op::LinkDel { ns: None, link } => {
                    ports_change |=
                        link.master.as_deref() == br || master_of(&link.name).as_deref() == br
                }
                Op::SetMtu { ns: None, name, .. } => {
                    ports_change |= master_of(name).as_deref() == br
                }
                _ => {}
            }
        }
        if ports_change && !made_here && host.link(&def.name).is_some() {
            holds.push(Op::SetMtu {
                ns: None,
                name: def.name.clone(),
                mtu,
                old: Some(mtu),
                depth: def.depth,
            });
        }
    }
    ops.extend(holds);
}

/// A port that leaves a master this plan deletes, for another master: it
/// leaves first (Detach, before the deletion), so its join comes from no master
/// at all. Were the join to record the going master as its `old`, undoing it,
/// which runs before the master is made again, would fail (ENODEV); and the
/// port's other ops that restore the same departure are one, not two.
fn moves_from_going_masters(ops: &mut Vec<Op>) {
    let left: BTreeSet<(NsName, String, String)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::SetMaster {
                ns,
                name,
                master: None,
                old: Some(old),
                ..
            } => Some((ns.clone(), name.clone(), old.clone())),
            _ => None,
        })
        .collect();
    let mut seen = BTreeSet::new();
    ops.retain_mut(|op| {
        let Op::SetMaster {
            ns,
            name,
            master,
            old,
            old_port,
            ..
        } = op
        else {
            return true;
        };
        let Some(from) = old.as_ref() else {
            return true;
        };
        let key = (ns.clone(), name.clone(), from.clone());
        if !left.contains(&key) {
            return true;
        }
        if master.is_none() {
            // The same departure planned twice (the master going, and the
            // port's own config without a master): once.
            return seen.insert(key);
        }
        *old = None;
        *old_port = Port::default();
        true
    });
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

/// A link's attributes as a port of its master now, if that is a bridge (what
/// an op that takes it away records for its inverse).
fn port_of(state: &NsState, link: &LinkState) -> Port {
    let in_bridge = link
        .master
        .and_then(|m| state.link_by_index(m))
        .is_some_and(LinkState::is_bridge);
    if in_bridge {
        link.port.clone()
    } else {
        Port::default()
    }
}

/// Joins `name` to `master`: a bond slave goes down first (the kernel refuses
/// to enslave a link that is up; the bond brings it up). `old_port`: its
/// attributes as a port of `old`.
#[allow(clippy::too_many_arguments)]
fn join_ops(
    ops: &mut Vec<Op>,
    ns: &NsName,
    name: &str,
    master: &str,
    bond: bool,
    up: bool,
    old: Option<String>,
    old_port: Port,
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
        port: Port::default(),
        old_port,
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
                    port_of(host, link),
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
                port: Port::default(),
                old_port: port_of(host, link),
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
        .addrs_for(
            link.index,
            &spec.addrs,
            desired.owns_link_local(&spec.ns, &def.name),
        )
        .filter(|a| {
            !desired
                .vips
                .iter()
                .any(|(dev, vip)| dev == &def.name && vip.addr() == a.addr())
        })
        .collect();
    addr_ops(
        ops,
        &spec.ns,
        (host, link),
        &spec.addrs,
        have,
        desired.skips_dad(&spec.ns, &def.name),
    );
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

/// Both ends of a veth exist, point at each other and are marked (true for
/// other kinds).
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
    // A peer without the alias was made by a run that died before marking it.
    observed
        .ves
        .get(peer_ns)
        .and_then(|s| s.link(peer_name))
        .is_some_and(|peer| {
            matches!(peer.kind, Kind::Veth(_))
                && peer.link == Some(link.index)
                && link.link == Some(peer.index)
                && peer.alias.as_deref() == Some(def.alias.as_str())
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
            Port::default(),
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
            nodad: desired.skips_dad(&spec.ns, &spec.link.name),
        });
    }
}

/// Deletes a link vznet made, recording all it takes to make it again: its
/// kind's every attribute, MTU, MAC, master and port attributes, its
/// addresses (as ops of their own) and a veth's peer with the peer's
/// addresses (its routes go in the plan's route part). `remake_peer` is the
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
    let peer = match &link.kind {
        Kind::Veth(_) => observed_peer(link, observed),
        _ => None,
    };
    let kind = match &link.kind {
        Kind::Other { kind } => {
            return Err(PlanError::CannotRecreate {
                name: link.name.clone(),
                kind: kind.clone(),
            })
        }
        Kind::Veth(_) => Kind::Veth(Veth {
            peer: peer
                .map(|(pns, _, p)| VethPeer {
                    ns: Some(pns.to_string()),
                    name: p.name.clone(),
                    mac: p.mac,
                    mtu: p.mtu,
                })
                .or(remake_peer),
        }),
        other => other.clone(),
    };
    addr_del_ops(ops, ns, link, state);
    if let Some((pns, pstate, p)) = peer {
        addr_del_ops(ops, &Some(pns.to_string()), p, pstate);
    }
    ops.push(Op::LinkDel {
        ns: ns.clone(),
        link: LinkDef {
            name: link.name.clone(),
            kind,
            mtu: link.mtu,
            mac: link.mac,
            master: state.master_name(link),
            port: port_of(state, link),
            alias: link.alias.clone().unwrap_or_default(),
            depth: observed_depth(link, state),
            // The engine reads them when it runs the plan (a plan is pure).
            sysctls: Default::default(),
        },
    });
    Ok(())
}

/// The addresses that go with `link` when it is deleted, removed first so that
/// undoing puts them back as they were.
fn addr_del_ops(ops: &mut Vec<Op>, ns: &NsName, link: &LinkState, state: &NsState) {
    for a in state.addrs_made_on(link.index) {
        ops.push(Op::AddrDel {
            ns: ns.clone(),
            dev: link.name.clone(),
            addr: a.addr,
            nodad: a.nodad,
        });
    }
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

/// The other end of a host veth, if it is in a netns vznet reads: its netns,
/// that netns's state and the end.
fn observed_peer<'a>(
    link: &LinkState,
    observed: &'a Observed,
) -> Option<(&'a str, &'a NsState, &'a LinkState)> {
    let paired = |peer: &LinkState| {
        matches!(peer.kind, Kind::Veth(_))
            && peer.link == Some(link.index)
            && link.link == Some(peer.index)
    };
    observed.ves.iter().find_map(|(ns, st)| {
        st.links
            .iter()
            .find(|p| paired(p))
            .map(|p| (ns.as_str(), st, p))
    })
}

/// The address changes of a link that stays: its exact address set. When IPv4
/// addresses go, the kernel may take others with them: removing a primary
/// address removes its secondaries (the addresses in its subnet), and removing
/// the last one disables IPv4 on the link and flushes its routes. So a change
/// that would hit either case renumbers: every IPv4 address goes and the wanted
/// ones come back, and the plan's route part takes the link's routes down first
/// and puts them back after (`plan::readdressed`). `(state, link)`: the link
/// as observed, for which of its addresses are secondaries or skip DAD.
pub(crate) fn addr_ops(
    ops: &mut Vec<Op>,
    ns: &NsName,
    (state, link): (&NsState, &LinkState),
    want: &[IpNet],
    have: Vec<IpNet>,
    nodad: bool,
) {
    let dev = link.name.as_str();
    let secondaries = state.secondaries_of(link.index);
    let have_nodad = state.nodad_of(link.index);
    let is4 = |a: &IpNet| a.addr().is_ipv4();
    let removed4: Vec<&IpNet> = have
        .iter()
        .filter(|a| is4(a) && !want.contains(a))
        .collect();
    let kept4: Vec<&IpNet> = have.iter().filter(|a| is4(a) && want.contains(a)).collect();
    // A kept secondary of a removed primary would go with it.
    let takes_a_secondary = removed4.iter().any(|r| {
        !secondaries.contains(r)
            && kept4
                .iter()
                .any(|k| secondaries.contains(k) && r.contains(&k.addr()))
    });
    let renumber = !removed4.is_empty() && (kept4.is_empty() || takes_a_secondary);
    let gone: Vec<IpNet> = have
        .iter()
        .filter(|a| !want.contains(a) || (renumber && is4(a)))
        .copied()
        .collect();
    let present: Vec<IpNet> = have.iter().filter(|a| !gone.contains(a)).copied().collect();
    for a in &gone {
        ops.push(Op::AddrDel {
            ns: ns.clone(),
            dev: dev.to_string(),
            addr: *a,
            nodad: have_nodad.contains(a),
        });
    }
    for a in want.iter().filter(|a| !present.contains(a)) {
        ops.push(Op::AddrAdd {
            ns: ns.clone(),
            dev: dev.to_string(),
            addr: *a,
            nodad,
        });
    }
}

/// The VE end comes with its veth (`LinkAdd` makes both); here only what
/// differs on an existing, correctly paired end.
fn ve_end_ops(ops: &mut Vec<Op>, end: &VeEnd, observed: &Observed, desired: &Desired) {
    let ns = Some(end.ns.clone());
    let nodad = desired.skips_dad(&ns, &end.name);
    let host_end_made = ops
        .iter()
        .any(|op| matches!(op, Op::LinkAdd { ns: None, link } if link.name == end.host_name));
    let state = observed.ves.get(&end.ns);
    let link = state.and_then(|s| s.link(&end.name));
    // Its host end still in the host is deleted with the pair by the host
    // end's own op: deleting the VE end too would race it (ENODEV).
    let host_end_gone = observed.host.link(&end.host_name).is_none();
    if let (Some(state), Some(stale), true) = (state, link, host_end_made && host_end_gone) {
        // A VE end vznet made whose host end is gone from the host (moved to
        // another netns): making the pair again would fail with EEXIST on
        // every run. It goes first (with its far end, wherever that is).
        if matches!(stale.kind, Kind::Veth(_)) && stale.is_managed() {
            let _cannot_fail_for_a_veth = delete(ops, &ns, stale, state, observed, None);
        }
    }
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
                (state, link),
                &end.addrs,
                state.addrs_for(link.index, &end.addrs, false).collect(),
                nodad,
            );
        }
        _ => {
            for a in &end.addrs {
                ops.push(Op::AddrAdd {
                    ns: ns.clone(),
                    dev: end.name.clone(),
                    addr: *a,
                    nodad,
                });
            }
        }
    }
}
