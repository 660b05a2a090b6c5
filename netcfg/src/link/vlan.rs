//! 802.1Q and 802.1ad (QinQ outer tag) VLAN links. None of their attributes
//! changes in place: a new id, lower link or protocol makes the link again.

use netlink_packet_route::link::{InfoData, InfoVlan, LinkMessage, VlanProtocol as NlProtocol};
use serde::{Deserialize, Serialize};

use super::{delta_fields, describe_field, IndexOf, LinkRef, Spec};
use crate::kernel::features::Feature;
use crate::model::VlanProtocol;

/// A VLAN link's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vlan {
    /// The link it rides on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkRef>,
    /// VLAN id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
    /// Tag protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<VlanProtocol>,
}

/// 802.1Q VLANs (CONFIG_VLAN_8021Q; 802.1ad comes with it).
pub const FEATURE: Feature = Feature {
    name: "802.1Q VLAN",
    option: "CONFIG_VLAN_8021Q",
    probe,
};

fn probe(lower: u32) -> LinkMessage {
    // Loopback refuses VLANs with the same EOPNOTSUPP as a kernel without
    // 8021q: the probe needs an Ethernet lower link.
    rtnetlink::LinkVlan::new(crate::kernel::features::PROBE_NAME, lower, 2).build()
}

impl Vlan {
    /// A VLAN on `link` with `id`.
    pub fn new(link: &str, id: u16, protocol: VlanProtocol) -> Vlan {
        Vlan {
            link: Some(LinkRef::from(link)),
            id: Some(id),
            protocol: Some(protocol),
        }
    }
}

impl Spec for Vlan {
    const KIND: &'static str = "vlan";

    fn decode(data: Option<&InfoData>, link: Option<u32>) -> Vlan {
        let mut v = Vlan {
            link: link.map(LinkRef::Index),
            ..Vlan::default()
        };
        let Some(InfoData::Vlan(attrs)) = data else {
            return v;
        };
        for a in attrs {
            match a {
                InfoVlan::Id(id) => v.id = Some(*id),
                InfoVlan::Protocol(p) => {
                    v.protocol = match p {
                        NlProtocol::Ieee8021Q => Some(VlanProtocol::Ieee8021Q),
                        NlProtocol::Ieee8021Ad => Some(VlanProtocol::Ieee8021Ad),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        v
    }

    fn delta(&self, have: &Vlan) -> Option<(Vlan, Vlan)> {
        delta_fields!(self, have; link, id, protocol)
    }

    fn must_recreate(&self, have: &Vlan) -> bool {
        self.delta(have).is_some()
    }

    fn lower(&self) -> Option<&LinkRef> {
        self.link.as_ref()
    }

    fn ifla_link(&self) -> Option<&LinkRef> {
        self.link.as_ref()
    }

    fn refs_mut(&mut self) -> Vec<&mut LinkRef> {
        self.link.iter_mut().collect()
    }

    fn info_data(&self, _: IndexOf) -> Result<Option<InfoData>, String> {
        let mut v = Vec::new();
        if let Some(id) = self.id {
            v.push(InfoVlan::Id(id));
        }
        if let Some(p) = self.protocol {
            v.push(InfoVlan::Protocol(match p {
                VlanProtocol::Ieee8021Q => NlProtocol::Ieee8021Q,
                VlanProtocol::Ieee8021Ad => NlProtocol::Ieee8021Ad,
            }));
        }
        Ok((!v.is_empty()).then_some(InfoData::Vlan(v)))
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        describe_field(&mut out, "link", &self.link);
        describe_field(&mut out, "id", &self.id);
        describe_field(
            &mut out,
            "protocol",
            &self.protocol.map(VlanProtocol::as_str),
        );
        out
    }

    fn features(&self) -> Vec<Feature> {
        vec![FEATURE]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_difference_makes_the_vlan_again() {
        let want = Vlan::new("bond0", 136, VlanProtocol::Ieee8021Q);
        assert!(!want.must_recreate(&want.clone()));
        for have in [
            Vlan::new("bond0", 137, VlanProtocol::Ieee8021Q),
            Vlan::new("eth0", 136, VlanProtocol::Ieee8021Q),
            Vlan::new("bond0", 136, VlanProtocol::Ieee8021Ad),
        ] {
            assert!(want.must_recreate(&have), "{have:?}");
        }
    }

    #[test]
    fn the_request_decodes_to_the_spec_with_its_lower_link_by_index() {
        let want = Vlan::new("bond0", 136, VlanProtocol::Ieee8021Ad);
        let data = want.info_data(&|_: &LinkRef| None).expect("data");
        let mut got = Vlan::decode(data.as_ref(), Some(4));
        assert_eq!(got.link, Some(LinkRef::Index(4)));
        for r in got.refs_mut() {
            r.resolve(&|i| (i == 4).then(|| "bond0".to_string()));
        }
        assert_eq!(got, want);
    }
}
