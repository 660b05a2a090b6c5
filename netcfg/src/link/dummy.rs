//! Dummy links: a place for addresses (a loopback-like service IP) or a
//! stand-in bond slave. They have no attributes of their own.

use netlink_packet_route::link::{InfoData, LinkMessage};
use serde::{Deserialize, Serialize};

use super::{IndexOf, Spec};
use crate::kernel::features::Feature;

/// A dummy link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dummy {}

/// Dummy links (CONFIG_DUMMY).
pub const FEATURE: Feature = Feature {
    name: "dummy link",
    option: "CONFIG_DUMMY",
    probe,
};

fn probe(_: u32) -> LinkMessage {
    rtnetlink::LinkDummy::new(crate::kernel::features::PROBE_NAME).build()
}

impl Spec for Dummy {
    const KIND: &'static str = "dummy";

    fn decode(_: Option<&InfoData>, _: Option<u32>) -> Dummy {
        Dummy {}
    }

    fn delta(&self, _: &Dummy) -> Option<(Dummy, Dummy)> {
        None
    }

    fn info_data(&self, _: IndexOf) -> Result<Option<InfoData>, String> {
        Ok(None)
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    fn features(&self) -> Vec<Feature> {
        vec![FEATURE]
    }
}
