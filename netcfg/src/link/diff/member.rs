//! Members of vznet's bridges and bonds that are not vznet's: existing links
//! joining them, ports that leave, and the links VLANs ride on.

use std::collections::BTreeSet;

use super::{join_ops, joining_pvid, port_now, port_of, port_op, PvidMoves};
use crate::desired::Desired;
use crate::kernel::state::NsState;
use crate::link::Port;
use crate::op::Op;
use crate::plan::PlanError;

/// True when the plan takes `name` out of a bond: the bond closes a slave it
/// releases, so the link will be down.
pub(super) fn released_from_bond(ops: &[Op], host: &NsState, name: &str) -> bool {
    ops.iter().any(|op| {
        matches!(op, Op::SetMaster { ns: None, name: n, old: Some(m), .. }
            if n == name && host.link(m).is_some_and(|b| b.kind.is_bond()))
    })
}

/// The links VLANs and macvlans ride on must be up before those are made or
/// brought up (the kernel refuses with ENETDOWN): their up ops run first, and
/// a link that is not vznet's and not declared goes up too, as a bridge port
/// does.
pub(super) fn lower_up_ops(ops: &mut Vec<Op>, desired: &Desired, host: &NsState) {
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

pub(super) fn attachment_ops(
    ops: &mut Vec<Op>,
    desired: &Desired,
    host: &NsState,
    pvid_moves: &PvidMoves,
    errors: &mut Vec<PlanError>,
) {
    for att in &desired.attachments {
        let Some(port) = host.link(&att.name) else {
            errors.push(PlanError::Missing {
                role: if att.bond_slave {
                    "bond slave"
                } else {
                    "bridge port"
                },
                name: att.name.clone(),
            });
            continue;
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
                port_of(host, port),
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
}

/// Ports of vznet's bridges and bonds that the config does not list leave.
pub(super) fn stray_port_ops(
    ops: &mut Vec<Op>,
    desired: &Desired,
    host: &NsState,
    wanted: &BTreeSet<&str>,
) {
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
                port: Port::default(),
                old_port: port_of(host, link),
            });
        }
    }
}
