//! Bridge ports: the attributes a link has as a port of a bridge (isolated,
//! hairpin, learning: IFLA_BRPORT_* in the link's slave data) and its VLANs on
//! a VLAN-filtering bridge (AF_BRIDGE IFLA_AF_SPEC entries).

use std::collections::BTreeMap;
use std::fmt;

use netlink_packet_core::{Emitable, NlaBuffer, Parseable};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeVlanInfoFlags, InfoBridgePort, InfoPortData, LinkAttribute, LinkInfo,
    LinkProtoInfoBridge,
};
use serde::{Deserialize, Serialize};

use super::{delta_fields, describe_field, OnOff};

/// One VLAN of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortVlan {
    /// VLAN id.
    pub vid: u16,
    /// Untagged frames that arrive belong to it.
    pub pvid: bool,
    /// Leaves the port untagged.
    pub untagged: bool,
}

impl fmt::Display for PortVlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.vid)?;
        if self.pvid {
            f.write_str(" pvid")?;
        }
        if self.untagged {
            f.write_str(" untagged")?;
        }
        Ok(())
    }
}

/// A port's VLANs, sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortVlans(pub Vec<PortVlan>);

impl PortVlans {
    /// `pvid` untagged as the PVID (0: none), and `tagged`.
    pub fn new(pvid: u16, tagged: &[u16]) -> PortVlans {
        let mut by_vid = BTreeMap::new();
        for &vid in tagged {
            by_vid.insert(
                vid,
                PortVlan {
                    vid,
                    pvid: false,
                    untagged: false,
                },
            );
        }
        if pvid != 0 {
            by_vid.insert(
                pvid,
                PortVlan {
                    vid: pvid,
                    pvid: true,
                    untagged: true,
                },
            );
        }
        PortVlans(by_vid.into_values().collect())
    }

    /// What the kernel does to a port's VLANs when the bridge's default PVID
    /// goes from `from` to `to` (br_vlan.c, __br_vlan_set_default_pvid): a
    /// port still on the old default (its PVID, untagged) moves to the new one.
    pub fn after_default_pvid_change(&self, from: u16, to: u16) -> PortVlans {
        let on_default = self.0.iter().any(|v| v.vid == from && v.pvid && v.untagged);
        if from == to || !on_default {
            return self.clone();
        }
        let mut out = PortVlans::new(to, &[]);
        out.0.extend(
            self.0
                .iter()
                .filter(|v| v.vid != from && v.vid != to)
                .copied(),
        );
        out.0.sort();
        out
    }

    /// Entries of `self` that `other` lacks or has with other flags.
    pub fn missing_from<'a>(&'a self, other: &'a PortVlans) -> impl Iterator<Item = &'a PortVlan> {
        self.0.iter().filter(move |v| !other.0.contains(v))
    }

    /// Decodes the IFLA_AF_SPEC of an AF_BRIDGE link message.
    pub(crate) fn from_attributes(attrs: &[LinkAttribute]) -> Option<PortVlans> {
        let mut out = Vec::new();
        let mut any = false;
        for a in attrs {
            if let LinkAttribute::AfSpecBridge(spec) = a {
                any = true;
                for s in spec {
                    if let AfSpecBridge::VlanInfo(info) = s {
                        out.push(PortVlan {
                            vid: info.vid,
                            pvid: info.flags.contains(BridgeVlanInfoFlags::Pvid),
                            untagged: info.flags.contains(BridgeVlanInfoFlags::Untagged),
                        });
                    }
                }
            }
        }
        out.sort();
        any.then_some(PortVlans(out))
    }

    /// The netlink flags of an entry.
    pub(crate) fn flags(v: &PortVlan) -> BridgeVlanInfoFlags {
        let mut f = BridgeVlanInfoFlags::empty();
        if v.pvid {
            f |= BridgeVlanInfoFlags::Pvid;
        }
        if v.untagged {
            f |= BridgeVlanInfoFlags::Untagged;
        }
        f
    }
}

impl fmt::Display for PortVlans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", list.join(", "))
    }
}

/// A link's attributes as a bridge port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// Isolated ports forward only to ports that are not isolated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolated: Option<bool>,
    /// Frames may leave by the port they came in (reflective relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hairpin: Option<bool>,
    /// Source MACs are learned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<bool>,
    /// Its VLANs (a VLAN-filtering bridge only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlans: Option<PortVlans>,
}

impl Port {
    /// What a link has as it joins a bridge whose default PVID is
    /// `default_pvid` (`None`: VLANs not compared).
    pub fn joined(default_pvid: Option<u16>) -> Port {
        Port {
            isolated: Some(false),
            hairpin: Some(false),
            learning: Some(true),
            vlans: default_pvid.map(|p| PortVlans::new(p, &[])),
        }
    }

    /// What vznet keeps on a port of `bridge` with `options`: what they set,
    /// the kernel's defaults for the rest.
    pub fn from_config(bridge: &crate::model::Bridge, options: &crate::model::PortOptions) -> Port {
        let pvid = options
            .pvid
            .unwrap_or_else(|| bridge.default_pvid.unwrap_or(super::bridge::DEFAULT_PVID));
        Port {
            isolated: Some(options.isolated.unwrap_or(false)),
            hairpin: Some(options.hairpin.unwrap_or(false)),
            learning: Some(options.learning.unwrap_or(true)),
            vlans: bridge
                .vlan_filtering
                .then(|| PortVlans::new(pvid, &options.vlans)),
        }
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Port::default()
    }

    /// (change, old) for the attributes `self` sets that `have` differs on.
    pub fn delta(&self, have: &Port) -> Option<(Port, Port)> {
        delta_fields!(self, have; isolated, hairpin, learning, vlans)
    }

    /// The attributes set, as (key, value).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        describe_field(&mut out, "isolated", &self.isolated.map(OnOff));
        describe_field(&mut out, "hairpin", &self.hairpin.map(OnOff));
        describe_field(&mut out, "learning", &self.learning.map(OnOff));
        describe_field(&mut out, "vlans", &self.vlans);
        out
    }

    /// Decodes the port data of a link message (the VLANs come from another dump).
    pub(crate) fn decode(infos: &[LinkInfo]) -> Port {
        let mut p = Port::default();
        for info in infos {
            if let LinkInfo::PortData(InfoPortData::BridgePort(attrs)) = info {
                for a in attrs {
                    p.take(a);
                }
            }
        }
        p
    }

    /// Decodes the IFLA_PROTINFO of a bridge's notice about a port (an
    /// AF_BRIDGE RTM_NEWLINK): the same IFLA_BRPORT_* attributes as a link's
    /// slave data, which netlink-packet-route leaves undecoded there.
    pub(crate) fn decode_protinfo(attrs: &[LinkAttribute]) -> Port {
        let mut p = Port::default();
        for a in attrs {
            let LinkAttribute::ProtoInfoBridge(info) = a else {
                continue;
            };
            for i in info {
                let LinkProtoInfoBridge::Other(nla) = i else {
                    continue;
                };
                let mut raw = vec![0u8; nla.buffer_len()];
                nla.emit(&mut raw);
                let parsed = NlaBuffer::new_checked(&raw[..])
                    .ok()
                    .and_then(|b| InfoBridgePort::parse(&b).ok());
                if let Some(a) = parsed {
                    p.take(&a);
                }
            }
        }
        p
    }

    fn take(&mut self, a: &InfoBridgePort) {
        match a {
            InfoBridgePort::Isolated(v) => self.isolated = Some(*v),
            InfoBridgePort::HairpinMode(v) => self.hairpin = Some(*v),
            InfoBridgePort::Learning(v) => self.learning = Some(*v),
            _ => {}
        }
    }

    /// The IFLA_BRPORT_* attributes set.
    pub(crate) fn attributes(&self) -> Vec<InfoBridgePort> {
        let mut v = Vec::new();
        if let Some(x) = self.isolated {
            v.push(InfoBridgePort::Isolated(x));
        }
        if let Some(x) = self.hairpin {
            v.push(InfoBridgePort::HairpinMode(x));
        }
        if let Some(x) = self.learning {
            v.push(InfoBridgePort::Learning(x));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_default_pvid_moves_ports_that_still_use_the_old_one() {
        let on_default = PortVlans::new(1, &[137]);
        assert_eq!(
            on_default.after_default_pvid_change(1, 5),
            PortVlans::new(5, &[137])
        );
        let own = PortVlans::new(136, &[]);
        assert_eq!(own.after_default_pvid_change(1, 5), own);
    }

    #[test]
    fn vlans_print_as_a_list_and_deltas_name_only_what_differs() {
        let want = Port {
            isolated: Some(true),
            vlans: Some(PortVlans::new(136, &[137])),
            ..Port::default()
        };
        let have = Port {
            isolated: Some(false),
            vlans: Some(PortVlans::new(1, &[])),
            ..Port::joined(Some(1))
        };
        let (change, old) = want.delta(&have).expect("differs");
        assert_eq!(
            crate::link::describe_change(&change.describe(), &old.describe()),
            "isolated off -> on, vlans [1 pvid untagged] -> [136 pvid untagged, 137]"
        );
    }
}
