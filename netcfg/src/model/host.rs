//! `host.toml`: the host's (VE0's) own links, addresses, routes and sysctls.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::link::{Bond, Bridge, Dummy, Ethernet, Macvlan, Vlan, Vxlan};
use super::SysctlValue;

/// Everything `host.toml` declares.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Global sysctls, `"net.ipv4.ip_forward" = 1`.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
    /// Bonds (link aggregation), created before the VLANs and bridges that use them.
    #[serde(default)]
    pub bond: Vec<Bond>,
    /// 802.1Q VLAN subinterfaces.
    #[serde(default)]
    pub vlan: Vec<Vlan>,
    /// Bridges; host IPs belong here, not on their ports.
    #[serde(default)]
    pub bridge: Vec<Bridge>,
    /// macvlan links.
    #[serde(default)]
    pub macvlan: Vec<Macvlan>,
    /// VXLAN links.
    #[serde(default)]
    pub vxlan: Vec<Vxlan>,
    /// Dummy links.
    #[serde(default)]
    pub dummy: Vec<Dummy>,
    /// Existing links (physical NICs) vznet configures but does not own.
    #[serde(default)]
    pub ethernet: Vec<Ethernet>,
    /// Routes in the host's main table.
    #[serde(default)]
    pub route: Vec<Route>,
    /// VRRP instances (run by vznetd; their virtual IPs are theirs, not netcfg's).
    #[serde(default)]
    pub vrrp: Vec<Vrrp>,
    /// Load-balanced services (run by vznetd with nftables).
    #[serde(default)]
    pub virtual_server: Vec<super::VirtualServer>,
}

/// The VRRPv3 IPv4 checksum variant (RFC 9568 vs keepalived/FRR).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VrrpChecksum {
    /// Include the IPv4 pseudo-header (keepalived's and FRR's default).
    #[default]
    WithPseudoHeader,
    /// Leave it out (RFC 9568, Cisco, Juniper).
    WithoutPseudoHeader,
}

/// One VRRP instance (a virtual router on one interface).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Vrrp {
    /// Instance name (`VI_1`).
    pub name: String,
    /// Interface the adverts and virtual IPs use.
    pub interface: String,
    /// Virtual router id, 1..255.
    pub vrid: u8,
    /// 1..254; 255 for the address owner.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// 2 (RFC 3768, IPv4 only) or 3 (RFC 5798/9568).
    #[serde(default = "default_version")]
    pub version: u8,
    /// Advertisement interval: v2 whole seconds, v3 multiples of 10 ms.
    #[serde(default = "default_interval")]
    pub advert_interval_ms: u32,
    /// The virtual addresses (all IPv4 or all IPv6), with prefix lengths.
    pub virtual_ips: Vec<IpNet>,
    /// Preempt a lower-priority master (default on).
    #[serde(default = "default_true")]
    pub preempt: bool,
    /// Delay before preempting after start.
    #[serde(default)]
    pub preempt_delay_ms: u64,
    /// Accept mode (RFC 5798 6.1).
    #[serde(default)]
    pub accept: bool,
    /// Send to these peers instead of multicast.
    #[serde(default)]
    pub unicast_peers: Vec<IpAddr>,
    /// VRRPv3 over IPv4 checksum variant.
    #[serde(default)]
    pub checksum: VrrpChecksum,
    /// VRRPv2 simple password (at most 8 bytes).
    #[serde(default)]
    pub password: Option<String>,
    /// Interfaces this instance depends on: `"eth1"` (down: Fault state, no adverts,
    /// no VIPs) or `{ interface = "eth1", weight = -50 }` (keepalived's rule: a
    /// negative weight is added to the priority while the interface is down, a
    /// positive one while it is up).
    #[serde(default)]
    pub track: Vec<VrrpTrack>,
    /// Run on becoming master: argv, never a shell; the state is in the environment
    /// (`VRRP_STATE`, `VRRP_INSTANCE`, `VRRP_VRID`, ...).
    #[serde(default)]
    pub notify_master: Vec<String>,
    /// Run on becoming backup.
    #[serde(default)]
    pub notify_backup: Vec<String>,
    /// Run on entering fault.
    #[serde(default)]
    pub notify_fault: Vec<String>,
    /// Run on every state change, with keepalived's arguments appended
    /// (`INSTANCE`, name, state, priority).
    #[serde(default)]
    pub notify: Vec<String>,
    /// A hook still running after this long is killed.
    #[serde(default = "default_notify_timeout")]
    pub notify_timeout_ms: u64,
    /// Carry the VIPs on a macvlan with the virtual router MAC 00:00:5e:00:01:VRID
    /// (IPv6: 00:00:5e:00:02:VRID).
    #[serde(default)]
    pub use_vmac: bool,
}

/// One tracked interface of a VRRP instance: a name, or a name with a weight.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum VrrpTrack {
    /// Down: the instance goes to Fault.
    Interface(String),
    /// Down (negative weight) or up (positive weight): the weight is added to the
    /// priority; weight 0 is the same as a plain name.
    Weighted(VrrpTrackWeighted),
}

/// `{ interface = "eth1", weight = -50 }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VrrpTrackWeighted {
    /// The tracked interface.
    pub interface: String,
    /// -254..=254; 0: fault.
    #[serde(default)]
    pub weight: i16,
}

impl VrrpTrack {
    /// The tracked interface's name.
    pub fn interface(&self) -> &str {
        match self {
            VrrpTrack::Interface(name) => name,
            VrrpTrack::Weighted(w) => &w.interface,
        }
    }

    /// The weight; 0 means: down is a fault.
    pub fn weight(&self) -> i16 {
        match self {
            VrrpTrack::Interface(_) => 0,
            VrrpTrack::Weighted(w) => w.weight,
        }
    }
}

fn default_notify_timeout() -> u64 {
    10_000
}

fn default_priority() -> u8 {
    100
}

fn default_version() -> u8 {
    3
}

fn default_interval() -> u32 {
    1000
}

fn default_true() -> bool {
    true
}

/// A route in the main table.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination: `"default"` or a prefix (`192.168.17.53/32`, a bare address means /32 or /128).
    pub to: RouteDest,
    /// Gateway.
    #[serde(default)]
    pub via: Option<IpAddr>,
    /// Output device.
    #[serde(default)]
    pub dev: Option<String>,
    /// Route metric (priority).
    #[serde(default)]
    pub metric: Option<u32>,
}

/// A route destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RouteDest {
    /// 0.0.0.0/0 (or ::/0 when the gateway is IPv6).
    Default,
    /// A prefix.
    Prefix(IpNet),
}

impl<'de> Deserialize<'de> for RouteDest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "default" {
            return Ok(RouteDest::Default);
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(RouteDest::Prefix(net));
        }
        s.parse::<IpAddr>()
            .map(|a| RouteDest::Prefix(IpNet::from(a)))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "invalid route destination {s:?}: expected \"default\", an address or a CIDR prefix"
                ))
            })
    }
}
