//! VXLAN links. The kernel changes learning in place; a new VNI, port, local
//! address, remote or device makes the link again (vxlan_nl2conf refuses a new
//! VNI or port on a change; vznet remakes for the others too, so that a
//! rollback restores them exactly).

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::link::{InfoData, InfoVxlan, LinkMessage};
use serde::{Deserialize, Serialize};

use super::{delta_fields, describe_field, IndexOf, LinkRef, OnOff, Spec, NO_LINK};
use crate::kernel::features::Feature;

/// The unspecified address: "no remote", "no local address".
pub const NO_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The IANA VXLAN port (RFC 7348 5); the kernel's own default is the older 8472.
pub const DEFAULT_PORT: u16 = 4789;

/// A VXLAN link's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vxlan {
    /// VNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Remote endpoint or multicast group ([`NO_ADDRESS`]: none, the FDB decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<IpAddr>,
    /// Local address ([`NO_ADDRESS`]: the kernel picks by route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<IpAddr>,
    /// The link the tunnel leaves by ([`NO_LINK`]: by route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<LinkRef>,
    /// UDP destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Learn remote MACs from received packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<bool>,
}

/// VXLAN links (CONFIG_VXLAN).
pub const FEATURE: Feature = Feature {
    name: "VXLAN",
    option: "CONFIG_VXLAN",
    probe,
};

fn probe(_: u32) -> LinkMessage {
    rtnetlink::LinkVxlan::new(crate::kernel::features::PROBE_NAME, 42)
        .port(DEFAULT_PORT)
        .build()
}

impl Vxlan {
    /// What vznet keeps on a VXLAN it makes: what the config sets, the
    /// defaults for the rest.
    pub fn from_config(v: &crate::model::Vxlan) -> Vxlan {
        Vxlan {
            id: Some(v.id),
            remote: Some(v.remote.unwrap_or(NO_ADDRESS)),
            local: Some(v.local.unwrap_or(NO_ADDRESS)),
            dev: Some(v.dev.as_deref().map_or(NO_LINK, LinkRef::from)),
            port: Some(v.port.unwrap_or(DEFAULT_PORT)),
            learning: Some(v.learning.unwrap_or(true)),
        }
    }
}

struct Addr(IpAddr);

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_unspecified() {
            f.write_str("none")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Spec for Vxlan {
    const KIND: &'static str = "vxlan";

    fn decode(data: Option<&InfoData>, _: Option<u32>) -> Vxlan {
        let mut v = Vxlan {
            remote: Some(NO_ADDRESS),
            local: Some(NO_ADDRESS),
            dev: Some(NO_LINK),
            ..Vxlan::default()
        };
        let Some(InfoData::Vxlan(attrs)) = data else {
            return v;
        };
        for a in attrs {
            match a {
                InfoVxlan::Id(id) => v.id = Some(*id),
                InfoVxlan::Group(a) if !a.is_unspecified() => v.remote = Some(IpAddr::V4(*a)),
                InfoVxlan::Group6(a) if !a.is_unspecified() => v.remote = Some(IpAddr::V6(*a)),
                InfoVxlan::Local(a) if !a.is_unspecified() => v.local = Some(IpAddr::V4(*a)),
                InfoVxlan::Local6(a) if !a.is_unspecified() => v.local = Some(IpAddr::V6(*a)),
                InfoVxlan::Link(i) => v.dev = Some(LinkRef::Index(*i)),
                InfoVxlan::Port(p) => v.port = Some(*p),
                InfoVxlan::Learning(l) => v.learning = Some(*l),
                _ => {}
            }
        }
        v
    }

    fn delta(&self, have: &Vxlan) -> Option<(Vxlan, Vxlan)> {
        delta_fields!(self, have; id, remote, local, dev, port, learning)
    }

    fn must_recreate(&self, have: &Vxlan) -> bool {
        self.delta(have).is_some_and(|(change, _)| {
            change
                != Vxlan {
                    learning: change.learning,
                    ..Vxlan::default()
                }
        })
    }

    fn lower(&self) -> Option<&LinkRef> {
        self.dev.as_ref().filter(|d| **d != NO_LINK)
    }

    fn refs_mut(&mut self) -> Vec<&mut LinkRef> {
        self.dev.iter_mut().collect()
    }

    fn info_data(&self, index: IndexOf) -> Result<Option<InfoData>, String> {
        let mut v = Vec::new();
        if let Some(id) = self.id {
            v.push(InfoVxlan::Id(id));
        }
        match self.remote {
            Some(IpAddr::V4(a)) if !a.is_unspecified() => v.push(InfoVxlan::Group(a)),
            Some(IpAddr::V6(a)) if !a.is_unspecified() => v.push(InfoVxlan::Group6(a)),
            _ => {}
        }
        match self.local {
            Some(IpAddr::V4(a)) if !a.is_unspecified() => v.push(InfoVxlan::Local(a)),
            Some(IpAddr::V6(a)) if !a.is_unspecified() => v.push(InfoVxlan::Local6(a)),
            _ => {}
        }
        if let Some(dev) = self.lower() {
            let i = index
                .index(dev)
                .ok_or_else(|| format!("VXLAN device {dev} does not exist"))?;
            v.push(InfoVxlan::Link(i));
        }
        if let Some(p) = self.port {
            v.push(InfoVxlan::Port(p));
        }
        if let Some(l) = self.learning {
            v.push(InfoVxlan::Learning(l));
        }
        Ok((!v.is_empty()).then_some(InfoData::Vxlan(v)))
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        describe_field(&mut out, "id", &self.id);
        describe_field(&mut out, "remote", &self.remote.map(Addr));
        describe_field(&mut out, "local", &self.local.map(Addr));
        describe_field(&mut out, "dev", &self.dev);
        describe_field(&mut out, "port", &self.port);
        describe_field(&mut out, "learning", &self.learning.map(OnOff));
        out
    }

    fn notable(&self) -> Vec<(&'static str, String)> {
        super::without_defaults(
            self.describe(),
            &[
                ("remote", "none"),
                ("local", "none"),
                ("dev", "none"),
                ("port", "4789"),
                ("learning", "on"),
            ],
        )
    }

    fn features(&self) -> Vec<Feature> {
        vec![FEATURE]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vx(id: u32, remote: &str) -> Vxlan {
        Vxlan {
            id: Some(id),
            remote: Some(remote.parse().expect("ip")),
            local: Some(NO_ADDRESS),
            dev: Some(NO_LINK),
            port: Some(DEFAULT_PORT),
            learning: Some(true),
        }
    }

    #[test]
    fn learning_changes_in_place_everything_else_remakes() {
        let want = vx(42, "10.0.0.2");
        let mut have = want.clone();
        have.learning = Some(false);
        assert!(!want.must_recreate(&have));
        assert!(want.must_recreate(&vx(43, "10.0.0.2")));
        assert!(want.must_recreate(&vx(42, "10.0.0.3")));
        let data = want.info_data(&|_: &LinkRef| None).expect("data");
        assert_eq!(Vxlan::decode(data.as_ref(), None), want);
    }
}
