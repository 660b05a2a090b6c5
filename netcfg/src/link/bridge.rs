//! Linux bridges: STP and its timers, priority, VLAN filtering.

use netlink_packet_route::link::{BridgeStpState, InfoBridge, InfoData, LinkMessage};
use serde::{Deserialize, Serialize};

use super::{delta_fields, describe_field, IndexOf, OnOff, Spec};
use crate::kernel::features::Feature;

/// A bridge's attributes. STP timers are in centiseconds, as netlink carries
/// them (the config gives whole seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bridge {
    /// Spanning tree on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stp: Option<bool>,
    /// STP forward delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_delay_cs: Option<u32>,
    /// STP hello time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello_time_cs: Option<u32>,
    /// STP max age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_cs: Option<u32>,
    /// STP bridge priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
    /// 802.1Q VLAN filtering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_filtering: Option<bool>,
    /// The VLAN a new port gets untagged as its PVID (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pvid: Option<u16>,
}

/// The kernel's defaults (net/bridge/br_if.c, br_device.c): what a bridge
/// vznet makes has unless the config says otherwise.
pub const DEFAULT_FORWARD_DELAY_S: u32 = 15;
/// Default hello time.
pub const DEFAULT_HELLO_TIME_S: u32 = 2;
/// Default max age.
pub const DEFAULT_MAX_AGE_S: u32 = 20;
/// Default bridge priority.
pub const DEFAULT_PRIORITY: u16 = 0x8000;
/// Default PVID of new ports.
pub const DEFAULT_PVID: u16 = 1;

/// Bridges (CONFIG_BRIDGE).
pub const FEATURE: Feature = Feature {
    name: "bridge",
    option: "CONFIG_BRIDGE",
    probe: probe_bridge,
};

/// VLAN-aware bridges (CONFIG_BRIDGE_VLAN_FILTERING).
pub const VLAN_FILTERING: Feature = Feature {
    name: "bridge VLAN filtering",
    option: "CONFIG_BRIDGE_VLAN_FILTERING",
    probe: probe_vlan_filtering,
};

fn probe_bridge(_: u32) -> LinkMessage {
    rtnetlink::LinkBridge::new(crate::kernel::features::PROBE_NAME).build()
}

fn probe_vlan_filtering(_: u32) -> LinkMessage {
    rtnetlink::LinkBridge::new(crate::kernel::features::PROBE_NAME)
        .vlan_filtering(true)
        .build()
}

impl Bridge {
    /// What vznet keeps on a bridge it makes: what the config sets, the
    /// kernel's defaults for the rest (removing a key brings its default back).
    pub fn from_config(b: &crate::model::Bridge) -> Bridge {
        Bridge {
            stp: Some(b.stp),
            forward_delay_cs: Some(b.forward_delay_s.unwrap_or(DEFAULT_FORWARD_DELAY_S) * 100),
            hello_time_cs: Some(b.hello_time_s.unwrap_or(DEFAULT_HELLO_TIME_S) * 100),
            max_age_cs: Some(b.max_age_s.unwrap_or(DEFAULT_MAX_AGE_S) * 100),
            priority: Some(b.priority.unwrap_or(DEFAULT_PRIORITY)),
            vlan_filtering: Some(b.vlan_filtering),
            // Kernels without VLAN filtering do not report it; it only matters
            // with filtering on.
            default_pvid: b
                .vlan_filtering
                .then(|| b.default_pvid.unwrap_or(DEFAULT_PVID)),
        }
    }
}

struct Seconds(u32);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_multiple_of(100) {
            write!(f, "{}", self.0 / 100)
        } else {
            write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
        }
    }
}

impl Spec for Bridge {
    const KIND: &'static str = "bridge";

    fn decode(data: Option<&InfoData>, _: Option<u32>) -> Bridge {
        let mut b = Bridge::default();
        let Some(InfoData::Bridge(attrs)) = data else {
            return b;
        };
        for a in attrs {
            match a {
                InfoBridge::StpState(s) => b.stp = Some(*s != BridgeStpState::Disabled),
                InfoBridge::ForwardDelay(v) => b.forward_delay_cs = Some(*v),
                InfoBridge::HelloTime(v) => b.hello_time_cs = Some(*v),
                InfoBridge::MaxAge(v) => b.max_age_cs = Some(*v),
                InfoBridge::Priority(v) => b.priority = Some(*v),
                InfoBridge::VlanFiltering(v) => b.vlan_filtering = Some(*v),
                InfoBridge::VlanDefaultPvid(v) => b.default_pvid = Some(*v),
                _ => {}
            }
        }
        b
    }

    fn delta(&self, have: &Bridge) -> Option<(Bridge, Bridge)> {
        delta_fields!(self, have; stp, forward_delay_cs, hello_time_cs, max_age_cs, priority, vlan_filtering, default_pvid)
    }

    /// A kernel without VLAN filtering refuses the attribute even to turn it
    /// off (EOPNOTSUPP): off is the default, so a new bridge goes without it.
    fn created(&self) -> Bridge {
        Bridge {
            vlan_filtering: self.vlan_filtering.filter(|on| *on),
            ..self.clone()
        }
    }

    fn info_data(&self, _: IndexOf) -> Result<Option<InfoData>, String> {
        let mut v = Vec::new();
        // br_changelink applies timers before the STP state: enabling STP then
        // never sees an out-of-range forward delay.
        if let Some(x) = self.forward_delay_cs {
            v.push(InfoBridge::ForwardDelay(x));
        }
        if let Some(x) = self.hello_time_cs {
            v.push(InfoBridge::HelloTime(x));
        }
        if let Some(x) = self.max_age_cs {
            v.push(InfoBridge::MaxAge(x));
        }
        if let Some(on) = self.stp {
            v.push(InfoBridge::StpState(if on {
                BridgeStpState::KernelStp
            } else {
                BridgeStpState::Disabled
            }));
        }
        if let Some(x) = self.priority {
            v.push(InfoBridge::Priority(x));
        }
        if let Some(x) = self.vlan_filtering {
            v.push(InfoBridge::VlanFiltering(x));
        }
        if let Some(x) = self.default_pvid {
            v.push(InfoBridge::VlanDefaultPvid(x));
        }
        Ok((!v.is_empty()).then_some(InfoData::Bridge(v)))
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        describe_field(&mut out, "stp", &self.stp.map(OnOff));
        describe_field(
            &mut out,
            "forward_delay_s",
            &self.forward_delay_cs.map(Seconds),
        );
        describe_field(&mut out, "hello_time_s", &self.hello_time_cs.map(Seconds));
        describe_field(&mut out, "max_age_s", &self.max_age_cs.map(Seconds));
        describe_field(&mut out, "priority", &self.priority);
        describe_field(&mut out, "vlan_filtering", &self.vlan_filtering.map(OnOff));
        describe_field(&mut out, "default_pvid", &self.default_pvid);
        out
    }

    fn notable(&self) -> Vec<(&'static str, String)> {
        super::without_defaults(
            self.describe(),
            &[
                ("forward_delay_s", "15"),
                ("hello_time_s", "2"),
                ("max_age_s", "20"),
                ("priority", "32768"),
                ("vlan_filtering", "off"),
            ],
        )
    }

    /// Every kernel vznet runs on has bridges; only VLAN filtering is probed.
    fn features(&self) -> Vec<Feature> {
        let mut f = Vec::new();
        if self.vlan_filtering == Some(true) {
            f.push(VLAN_FILTERING);
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::LinkRef;

    #[test]
    fn a_changed_timer_is_the_only_change_and_undeclared_ones_are_ignored() {
        let want = Bridge {
            stp: Some(true),
            forward_delay_cs: Some(400),
            ..Bridge::default()
        };
        let crate::link::Kind::Bridge(mut have) = crate::link::fixture::observed_bridge() else {
            unreachable!("a bridge")
        };
        have.stp = Some(true);
        let (change, old) = want.delta(&have).expect("differs");
        assert_eq!(change.describe(), [("forward_delay_s", "4".to_string())]);
        assert_eq!(old.describe(), [("forward_delay_s", "15".to_string())]);
        assert_eq!(
            want.delta(&Bridge {
                forward_delay_cs: Some(400),
                ..have
            }),
            None
        );
    }

    #[test]
    fn decoding_what_the_request_carries_gives_the_spec_back() {
        let b = Bridge {
            stp: Some(false),
            forward_delay_cs: Some(300),
            hello_time_cs: Some(100),
            max_age_cs: Some(600),
            priority: Some(4096),
            vlan_filtering: Some(true),
            default_pvid: Some(136),
        };
        let data = b.info_data(&|_: &LinkRef| None).expect("data");
        assert_eq!(Bridge::decode(data.as_ref(), None), b);
    }
}
