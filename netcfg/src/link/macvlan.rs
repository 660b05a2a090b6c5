//! macvlan links: a second MAC on a lower link. The mode changes in place,
//! except into or out of passthru (macvlan_changelink refuses that); a new
//! lower link makes the link again.

use netlink_packet_route::link::{InfoData, InfoMacVlan, LinkMessage, MacVlanMode};
use serde::{Deserialize, Serialize};

use super::{delta_fields, describe_field, IndexOf, LinkRef, Spec};
use crate::kernel::features::Feature;
use crate::model::MacvlanMode;

/// A macvlan link's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Macvlan {
    /// The lower link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkRef>,
    /// Mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MacvlanMode>,
}

/// macvlan links (CONFIG_MACVLAN).
pub const FEATURE: Feature = Feature {
    name: "macvlan",
    option: "CONFIG_MACVLAN",
    probe,
};

fn probe(lower: u32) -> LinkMessage {
    rtnetlink::LinkMacVlan::new(
        crate::kernel::features::PROBE_NAME,
        lower,
        MacVlanMode::Bridge,
    )
    .build()
}

fn to_nl(m: MacvlanMode) -> MacVlanMode {
    match m {
        MacvlanMode::Private => MacVlanMode::Private,
        MacvlanMode::Vepa => MacVlanMode::Vepa,
        MacvlanMode::Bridge => MacVlanMode::Bridge,
        MacvlanMode::Passthru => MacVlanMode::Passthrough,
    }
}

impl Spec for Macvlan {
    const KIND: &'static str = "macvlan";

    fn decode(data: Option<&InfoData>, link: Option<u32>) -> Macvlan {
        let mut m = Macvlan {
            link: link.map(LinkRef::Index),
            ..Macvlan::default()
        };
        if let Some(InfoData::MacVlan(attrs)) = data {
            for a in attrs {
                if let InfoMacVlan::Mode(mode) = a {
                    m.mode = match mode {
                        MacVlanMode::Private => Some(MacvlanMode::Private),
                        MacVlanMode::Vepa => Some(MacvlanMode::Vepa),
                        MacVlanMode::Bridge => Some(MacvlanMode::Bridge),
                        MacVlanMode::Passthrough => Some(MacvlanMode::Passthru),
                        _ => None,
                    };
                }
            }
        }
        m
    }

    fn delta(&self, have: &Macvlan) -> Option<(Macvlan, Macvlan)> {
        delta_fields!(self, have; link, mode)
    }

    fn must_recreate(&self, have: &Macvlan) -> bool {
        let passthru = |m: &Macvlan| m.mode == Some(MacvlanMode::Passthru);
        (self.link.is_some() && self.link != have.link)
            || (self.mode.is_some() && self.mode != have.mode && (passthru(self) || passthru(have)))
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
        Ok(self
            .mode
            .map(|m| InfoData::MacVlan(vec![InfoMacVlan::Mode(to_nl(m))])))
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        describe_field(&mut out, "link", &self.link);
        describe_field(&mut out, "mode", &self.mode.map(MacvlanMode::as_str));
        out
    }

    fn features(&self) -> Vec<Feature> {
        vec![FEATURE]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(link: &str, mode: MacvlanMode) -> Macvlan {
        Macvlan {
            link: Some(link.into()),
            mode: Some(mode),
        }
    }

    #[test]
    fn the_mode_changes_in_place_except_to_or_from_passthru() {
        let want = mv("eth0", MacvlanMode::Bridge);
        let have = mv("eth0", MacvlanMode::Vepa);
        assert!(!want.must_recreate(&have));
        let (change, old) = want.delta(&have).expect("differs");
        assert_eq!(change.describe(), [("mode", "bridge".to_string())]);
        assert_eq!(old.mode, Some(MacvlanMode::Vepa));
        assert!(want.must_recreate(&mv("eth0", MacvlanMode::Passthru)));
        assert!(want.must_recreate(&mv("eth1", MacvlanMode::Bridge)));
    }
}
