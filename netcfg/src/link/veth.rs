//! Veth pairs. The kernel reports nothing about a veth's peer in a dump but
//! its ifindex (IFLA_LINK): whether both ends exist and point at each other is
//! checked across namespaces by the diff; a pair whose peer changed (name or
//! netns) is made again.

use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute};
use rtnetlink::LinkUnspec;
use serde::{Deserialize, Serialize};

use super::{IndexOf, Spec, Tier};
use crate::kernel::features::Feature;
use crate::model::MacAddr;
use crate::op::NsName;

/// A veth's far end, as it is made (and remade on rollback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VethPeer {
    /// Its netns (`None`: the same as this end's).
    pub ns: NsName,
    /// Its name there.
    pub name: String,
    /// Its MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Its MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// One end of a veth pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Veth {
    /// The other end; `None` when observed (or when a deleted end's peer was
    /// in a netns vznet could not see: such a pair cannot be made again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<VethPeer>,
}

impl Veth {
    /// `veth NAME <-> NS:PEER`.
    pub fn summary(&self, name: &str) -> String {
        match &self.peer {
            Some(p) => format!(
                "veth {name} <-> {}{}",
                p.ns.as_deref().map_or(String::new(), |n| format!("{n}:")),
                p.name
            ),
            None => format!("veth {name} <-> (peer unknown)"),
        }
    }
}

impl Spec for Veth {
    const KIND: &'static str = "veth";
    const TIER: Tier = Tier::Veth;

    fn decode(_: Option<&InfoData>, _: Option<u32>) -> Veth {
        Veth::default()
    }

    /// The pair is compared by the diff, which sees both namespaces.
    fn delta(&self, _: &Veth) -> Option<(Veth, Veth)> {
        None
    }

    /// The peer is made directly in its netns. Not up here: veth_open() fails
    /// with ENOTCONN until the pair is linked; the peer goes up when vznet marks
    /// it.
    fn info_data(&self, resolve: IndexOf) -> Result<Option<InfoData>, String> {
        let peer = self
            .peer
            .as_ref()
            .ok_or("its peer's netns is not known: it cannot be made again")?;
        let mut msg = LinkUnspec::new_with_name(&peer.name);
        if let Some(m) = peer.mac {
            msg = msg.address(m.0.to_vec());
        }
        if let Some(mtu) = peer.mtu {
            msg = msg.mtu(mtu);
        }
        if let Some(ns) = &peer.ns {
            let fd = resolve
                .netns(ns)
                .ok_or_else(|| format!("network namespace {ns} is not available"))?;
            msg = msg.setns_by_fd(fd);
        }
        let mut msg = msg.build();
        // Marked as vznet's from birth, like the end the request names.
        msg.attributes
            .push(LinkAttribute::Group(crate::kernel::state::LINK_GROUP));
        Ok(Some(InfoData::Veth(InfoVeth::Peer(msg))))
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Every kernel vznet runs on has veth; no probe.
    fn features(&self) -> Vec<Feature> {
        Vec::new()
    }
}
