//! diff(desired, observed) -> ordered Plan of Ops.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::desired::{Desired, LinkSpec};
use crate::kernel::state::{LinkState, LinkType, NsState, RouteState};
use crate::op::{LinkKind, NsName, Op, Phase, RouteSpec};

/// The kernel's state in every netns the config names.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    /// The host netns.
    pub host: NsState,
    /// VE namespaces by config name.
    pub ves: BTreeMap<String, NsState>,
    /// Current values of the sysctl files the config names (`None`: no such file yet).
    pub sysctls: BTreeMap<std::path::PathBuf, Option<String>>,
}

impl Observed {
    fn ns(&self, ns: &NsName) -> Option<&NsState> {
        match ns {
            None => Some(&self.host),
            Some(n) => self.ves.get(n),
        }
    }
}

/// Why no plan can be made (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A link with a name vznet must create exists and is not vznet's.
    #[error("link {name:?}{} exists and was not created by vznet; rename it in the config or remove the link", in_ns(.ns))]
    NotOwned {
        /// Netns.
        ns: NsName,
        /// Name.
        name: String,
    },
    /// A port, slave or lower link the config names does not exist.
    #[error("{role} {name:?} does not exist")]
    Missing {
        /// "bridge port", "bond slave", "VLAN lower link", "route device".
        role: &'static str,
        /// Name.
        name: String,
    },
    /// The kernel lacks a feature the config needs.
    #[error("kernel has no {what} support ({option})")]
    NoKernelSupport {
        /// Feature.
        what: &'static str,
        /// Kernel config option.
        option: &'static str,
    },
}

fn in_ns(ns: &NsName) -> String {
    ns.as_ref()
        .map_or(String::new(), |n| format!(" in netns {n}"))
}

/// An ordered list of ops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// The ops, sorted by phase.
    pub ops: Vec<Op>,
    /// VEs that have network config but no netns to wire (not running).
    pub unwired: Vec<u32>,
}

impl Plan {
    /// True when the kernel already matches the config.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Ops grouped by phase, in order.
    pub fn phases(&self) -> Vec<(Phase, Vec<&Op>)> {
        let mut out: Vec<(Phase, Vec<&Op>)> = Vec::new();
        for op in &self.ops {
            match out.last_mut() {
                Some((p, v)) if *p == op.phase() => v.push(op),
                _ => out.push((op.phase(), vec![op])),
            }
        }
        out
    }
}

/// Computes the ops that take `observed` to `desired`.
pub fn plan(desired: &Desired, observed: &Observed) -> Result<Plan, PlanError> {
    let mut ops = Vec::new();
    let host = &observed.host;

    // Links vznet owns but the config no longer names.
    let wanted: BTreeSet<&str> = desired.links.iter().map(|l| l.name.as_str()).collect();
    for link in host
        .links
        .iter()
        .filter(|l| l.is_managed() && !wanted.contains(l.name.as_str()))
    {
        delete_link(&mut ops, None, link, host);
    }

    for spec in &desired.links {
        link_ops(&mut ops, spec, desired, observed)?;
    }

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
        let master_now = port
            .master
            .and_then(|m| host.link_by_index(m))
            .map(|m| m.name.clone());
        if master_now.as_deref() != Some(att.master.as_str()) {
            if att.bond_slave && port.up {
                ops.push(Op::SetUp {
                    ns: None,
                    name: att.name.clone(),
                    up: false,
                });
            }
            ops.push(Op::SetMaster {
                ns: None,
                name: att.name.clone(),
                master: Some(att.master.clone()),
                old: master_now,
            });
            if !att.bond_slave && !port.up {
                ops.push(Op::SetUp {
                    ns: None,
                    name: att.name.clone(),
                    up: true,
                });
            }
        } else if !port.up && !att.bond_slave {
            ops.push(Op::SetUp {
                ns: None,
                name: att.name.clone(),
                up: true,
            });
        }
    }
    // Ports of managed bridges and bonds that the config does not list.
    let port_wanted: BTreeSet<(&str, &str)> = desired
        .attachments
        .iter()
        .map(|a| (a.name.as_str(), a.master.as_str()))
        .chain(
            desired
                .links
                .iter()
                .filter_map(|l| l.master.as_deref().map(|m| (l.name.as_str(), m))),
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
            && !desired.links.iter().any(|l| l.name == link.name)
        {
            ops.push(Op::SetMaster {
                ns: None,
                name: link.name.clone(),
                master: None,
                old: Some(master.name.clone()),
            });
        }
    }

    for end in &desired.ve_ends {
        ve_end_ops(&mut ops, end, desired, observed);
    }

    for (path, value) in &desired.sysctls {
        let now = observed.sysctls.get(path).cloned().flatten();
        if now.as_deref() != Some(crate::kernel::sysctl::normalise(value).as_str()) {
            ops.push(Op::Sysctl {
                path: path.clone(),
                value: value.clone(),
                old: now,
            });
        }
    }

    route_ops(&mut ops, desired, observed)?;

    ops.sort_by_key(Op::phase);
    Ok(Plan {
        ops,
        unwired: desired.unwired.clone(),
    })
}

fn kind_matches(spec: &LinkKind, link: &LinkState) -> bool {
    match spec {
        LinkKind::Bridge { .. } => link.kind == LinkType::Bridge,
        LinkKind::Veth { .. } => link.kind == LinkType::Veth,
        LinkKind::Bond { mode, .. } => {
            link.kind == LinkType::Bond && link.bond_mode.is_none_or(|m| m == *mode)
        }
        LinkKind::Vlan { id, .. } => link.kind == LinkType::Vlan && link.vlan_id == Some(*id),
    }
}

fn delete_link(ops: &mut Vec<Op>, ns: NsName, link: &LinkState, state: &NsState) {
    for addr in state.addrs_of(link.index) {
        ops.push(Op::AddrDel {
            ns: ns.clone(),
            dev: link.name.clone(),
            addr,
        });
    }
    let kind = match &link.kind {
        LinkType::Bridge => LinkKind::Bridge {
            stp: link.stp.unwrap_or(false),
        },
        LinkType::Bond => LinkKind::Bond {
            mode: link
                .bond_mode
                .unwrap_or(crate::model::BondMode::ActiveBackup),
            miimon_ms: link.miimon_ms.unwrap_or(0),
        },
        LinkType::Vlan => LinkKind::Vlan {
            link: link
                .link
                .and_then(|i| state.link_by_index(i))
                .map_or_else(String::new, |l| l.name.clone()),
            id: link.vlan_id.unwrap_or(0),
        },
        // The peer of a veth lives elsewhere; rollback recreates it with the
        // name recorded in the alias.
        _ => LinkKind::Veth {
            peer_ns: None,
            peer_name: link
                .alias
                .as_deref()
                .and_then(|a| a.rsplit(':').next())
                .unwrap_or("")
                .to_string(),
            peer_mac: None,
        },
    };
    ops.push(Op::LinkDel {
        ns,
        name: link.name.clone(),
        kind,
        mac: link.mac,
        master: link
            .master
            .and_then(|m| state.link_by_index(m))
            .map(|m| m.name.clone()),
        alias: link.alias.clone().unwrap_or_default(),
    });
}

fn link_ops(
    ops: &mut Vec<Op>,
    spec: &LinkSpec,
    desired: &Desired,
    observed: &Observed,
) -> Result<(), PlanError> {
    let host = &observed.host;
    if let LinkKind::Vlan { link, .. } = &spec.kind {
        let made_here = desired.links.iter().any(|l| &l.name == link);
        if !made_here && host.link(link).is_none() {
            return Err(PlanError::Missing {
                role: "VLAN lower link",
                name: link.clone(),
            });
        }
    }
    let add = |ops: &mut Vec<Op>| {
        // A veth joins its bridge as it is made (bridges come first); a bond or
        // VLAN is made before the bridges, so it joins in the attach phase.
        let joins_at_create = matches!(spec.kind, LinkKind::Veth { .. });
        ops.push(Op::LinkAdd {
            ns: spec.ns.clone(),
            name: spec.name.clone(),
            kind: spec.kind.clone(),
            mac: spec.mac,
            master: spec.master.clone().filter(|_| joins_at_create),
            alias: spec.alias.clone(),
        });
        if let (Some(master), false) = (&spec.master, joins_at_create) {
            ops.push(Op::SetMaster {
                ns: spec.ns.clone(),
                name: spec.name.clone(),
                master: Some(master.clone()),
                old: None,
            });
        }
        for addr in &spec.addrs {
            ops.push(Op::AddrAdd {
                ns: spec.ns.clone(),
                dev: spec.name.clone(),
                addr: *addr,
            });
        }
    };
    let Some(link) = host.link(&spec.name) else {
        add(ops);
        return Ok(());
    };
    if !link.is_managed() {
        return Err(PlanError::NotOwned {
            ns: spec.ns.clone(),
            name: spec.name.clone(),
        });
    }
    let mut recreate =
        !kind_matches(&spec.kind, link) || link.alias.as_deref() != Some(spec.alias.as_str());
    if let LinkKind::Veth {
        peer_ns: Some(peer_ns),
        peer_name,
        ..
    } = &spec.kind
    {
        // Both ends must exist and point at each other.
        let paired = observed
            .ves
            .get(peer_ns)
            .and_then(|s| s.link(peer_name))
            .is_some_and(|peer| {
                peer.kind == LinkType::Veth
                    && peer.link == Some(link.index)
                    && link.link == Some(peer.index)
            });
        recreate |= !paired;
    }
    if recreate {
        delete_link(ops, spec.ns.clone(), link, host);
        add(ops);
        return Ok(());
    }
    if let Some(mac) = spec.mac {
        if link.mac != Some(mac) {
            ops.push(Op::SetMac {
                ns: spec.ns.clone(),
                name: spec.name.clone(),
                mac,
                old: link.mac,
            });
        }
    }
    if let (LinkKind::Bridge { stp }, Some(now)) = (&spec.kind, link.stp) {
        if *stp != now {
            ops.push(Op::SetStp {
                ns: spec.ns.clone(),
                name: spec.name.clone(),
                stp: *stp,
            });
        }
    }
    let master_now = link
        .master
        .and_then(|m| host.link_by_index(m))
        .map(|m| m.name.clone());
    if master_now != spec.master {
        ops.push(Op::SetMaster {
            ns: spec.ns.clone(),
            name: spec.name.clone(),
            master: spec.master.clone(),
            old: master_now,
        });
    }
    if !link.up {
        ops.push(Op::SetUp {
            ns: spec.ns.clone(),
            name: spec.name.clone(),
            up: true,
        });
    }
    addr_ops(
        ops,
        &spec.ns,
        &spec.name,
        &spec.addrs,
        host.addrs_of(link.index).collect(),
    );
    Ok(())
}

fn addr_ops(
    ops: &mut Vec<Op>,
    ns: &NsName,
    dev: &str,
    want: &[ipnet::IpNet],
    have: Vec<ipnet::IpNet>,
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

/// The VE end comes with its veth (`LinkAdd` creates both); here only what
/// differs on an existing, correctly paired end.
fn ve_end_ops(
    ops: &mut Vec<Op>,
    end: &crate::desired::VeEnd,
    desired: &Desired,
    observed: &Observed,
) {
    let ns = Some(end.ns.clone());
    let host_end_recreated = ops
        .iter()
        .any(|op| matches!(op, Op::LinkAdd { name, ns: None, .. } if *name == end.host_name));
    let state = observed.ves.get(&end.ns);
    let link = state.and_then(|s| s.link(&end.name));
    match (link, host_end_recreated) {
        (Some(link), false) => {
            let state = state.expect("link came from this state");
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
            if !link.up {
                ops.push(Op::SetUp {
                    ns: ns.clone(),
                    name: end.name.clone(),
                    up: true,
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
    let _ = desired;
}

fn route_ops(ops: &mut Vec<Op>, desired: &Desired, observed: &Observed) -> Result<(), PlanError> {
    // Every netns with desired routes, plus every VE netns (stale managed routes).
    let mut namespaces: BTreeSet<NsName> = desired.routes.keys().cloned().collect();
    namespaces.insert(None);
    for ns in &namespaces {
        let want = desired.routes.get(ns).map(Vec::as_slice).unwrap_or(&[]);
        let Some(state) = observed.ns(ns) else {
            for r in want {
                ops.push(Op::RouteAdd {
                    ns: ns.clone(),
                    route: r.clone(),
                });
            }
            continue;
        };
        let have: Vec<RouteSpec> = state
            .routes
            .iter()
            .filter(|r| r.is_managed())
            .map(|r| route_spec_of(r, state))
            .collect();
        let recreated: BTreeSet<String> = ops
            .iter()
            .filter_map(|op| match op {
                Op::LinkDel { ns: n, name, .. } if n == ns => Some(name.clone()),
                _ => None,
            })
            .collect();
        for r in &have {
            let gone_with_link = r.dev.as_deref().is_some_and(|d| recreated.contains(d));
            if !want.iter().any(|w| route_matches(w, r)) && !gone_with_link {
                ops.push(Op::RouteDel {
                    ns: ns.clone(),
                    route: r.clone(),
                });
            }
        }
        for r in want {
            let dev_recreated = r.dev.as_deref().is_some_and(|d| recreated.contains(d));
            if !have.iter().any(|h| route_matches(r, h)) || dev_recreated {
                if let Some(dev) = &r.dev {
                    let made = desired.links.iter().any(|l| &l.name == dev && &l.ns == ns)
                        || desired
                            .ve_ends
                            .iter()
                            .any(|e| &e.name == dev && Some(&e.ns) == ns.as_ref());
                    if !made && state.link(dev).is_none() {
                        return Err(PlanError::Missing {
                            role: "route device",
                            name: dev.clone(),
                        });
                    }
                }
                ops.push(Op::RouteAdd {
                    ns: ns.clone(),
                    route: r.clone(),
                });
            }
        }
    }
    Ok(())
}

/// A configured route without a device matches the kernel's whatever its device.
fn route_matches(want: &RouteSpec, have: &RouteSpec) -> bool {
    want.dst == have.dst
        && want.via == have.via
        && want.metric == have.metric
        && (want.dev.is_none() || want.dev == have.dev)
}

fn route_spec_of(r: &RouteState, state: &NsState) -> RouteSpec {
    RouteSpec {
        dst: r.dst,
        via: r.via,
        // Gateway routes are matched on the gateway alone unless the config names a device.
        dev: r
            .oif
            .and_then(|i| state.link_by_index(i))
            .map(|l| l.name.clone()),
        metric: r
            .metric
            .filter(|m| *m != 0 && !(r.dst.addr().is_ipv6() && *m == 1024)),
    }
}
