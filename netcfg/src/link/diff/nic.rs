//! NICs the config declares (`[[ethernet]]`), and the addresses vznet added to
//! links it does not own.

use ipnet::IpNet;

use super::member::released_from_bond;
use super::mtu_op;
use crate::desired::Desired;
use crate::kernel::state::{NsState, RTPROT_VZNET};
use crate::op::Op;
use crate::plan::PlanError;

/// Declared NICs: MTU, up state and the addresses vznet added (marked with
/// IFA_PROTO); other addresses on them stay. Addresses vznet added to links it
/// neither owns nor has declared (a NIC dropped from the config) go.
pub(super) fn nic_ops(
    ops: &mut Vec<Op>,
    desired: &Desired,
    host: &NsState,
    errors: &mut Vec<PlanError>,
) {
    for nic in &desired.nics {
        let Some(link) = host.link(&nic.name) else {
            errors.push(PlanError::Missing {
                role: "ethernet link",
                name: nic.name.clone(),
            });
            continue;
        };
        if let Err(e) = mtu_op(ops, &None, link, nic.mtu, 0) {
            errors.push(e);
            continue;
        }
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
                nodad: false,
            });
        }
        for a in nic.addrs.iter().filter(|a| !all.contains(a)) {
            ops.push(Op::AddrAdd {
                ns: None,
                dev: nic.name.clone(),
                addr: *a,
                nodad: false,
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
                    nodad: false,
                });
            }
        }
    }
}

fn vznet_addrs(host: &NsState, index: u32) -> impl Iterator<Item = IpNet> + '_ {
    host.addrs
        .iter()
        .filter(move |a| a.index == index && a.protocol == Some(RTPROT_VZNET) && !a.is_link_local())
        .map(|a| a.addr)
}
