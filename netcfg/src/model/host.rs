//! `host.toml`: the host's (VE0's) own links, addresses, routes and sysctls.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{MacAddr, SysctlValue};

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
    /// Routes (in the main table unless they name another).
    #[serde(default)]
    pub route: Vec<Route>,
    /// Policy routing rules (`ip rule`).
    #[serde(default)]
    pub rule: Vec<super::Rule>,
    /// Routed VEs' side of the host: which interfaces answer for them.
    #[serde(default)]
    pub venet: super::HostVenet,
    /// VRRP instances (run by vznetd; their virtual IPs are theirs, not netcfg's).
    #[serde(default)]
    pub vrrp: Vec<vrrp::settings::Instance>,
    /// Checks VRRP instances track by name.
    #[serde(default)]
    pub vrrp_script: Vec<vrrp::settings::Script>,
    /// VRRP instances that change state together.
    #[serde(default)]
    pub vrrp_sync_group: Vec<vrrp::settings::SyncGroup>,
    /// Load-balanced services (run by vznetd with nftables).
    #[serde(default)]
    pub virtual_server: Vec<super::VirtualServer>,
}

/// Bonding modes vznet drives (the kernel's names).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BondMode {
    /// One active slave; the others take over when its link fails (miimon).
    ActiveBackup,
    /// Round robin over the slaves.
    BalanceRr,
    /// XOR hash over the slaves.
    BalanceXor,
    /// Everything on every slave.
    Broadcast,
    /// IEEE 802.3ad dynamic link aggregation (LACP).
    #[serde(rename = "802.3ad")]
    Lacp,
    /// Adaptive transmit load balancing.
    BalanceTlb,
    /// Adaptive load balancing.
    BalanceAlb,
}

impl BondMode {
    /// The kernel's name for the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            BondMode::ActiveBackup => "active-backup",
            BondMode::BalanceRr => "balance-rr",
            BondMode::BalanceXor => "balance-xor",
            BondMode::Broadcast => "broadcast",
            BondMode::Lacp => "802.3ad",
            BondMode::BalanceTlb => "balance-tlb",
            BondMode::BalanceAlb => "balance-alb",
        }
    }
}

/// A bond over existing links (`mode=active-backup miimon=100`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bond {
    /// Interface name.
    pub name: String,
    /// Bonding mode.
    pub mode: BondMode,
    /// MII link monitoring interval; 0 disables it (and with it failover).
    #[serde(default = "default_miimon")]
    pub miimon_ms: u32,
    /// Slave links; they must exist.
    #[serde(default)]
    pub slaves: Vec<String>,
    /// Addresses on the bond itself.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// Per-interface sysctls (`forwarding`, `proxy_arp`, `rp_filter`...).
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

fn default_miimon() -> u32 {
    100
}

/// An 802.1Q VLAN subinterface.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Vlan {
    /// Interface name, by custom `LINK.ID`.
    pub name: String,
    /// The link it rides on (a bond or a physical link).
    pub link: String,
    /// VLAN id, 1..=4094.
    pub id: u16,
    /// Addresses on the VLAN link itself.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// Per-interface sysctls.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

/// A Linux bridge.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bridge {
    /// Interface name.
    pub name: String,
    /// Ports named here (VE veths join through their own files' `bridge` key).
    #[serde(default)]
    pub ports: Vec<String>,
    /// Host addresses on the bridge.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// Spanning tree on or off (off by default, as `brctl addbr`).
    #[serde(default)]
    pub stp: bool,
    /// The bridge's MAC; by default one derived from its name, so that it never
    /// changes when ports come and go.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Per-interface sysctls.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

/// A route (main table unless `table` says otherwise).
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
    /// Routing table: a number or a name from /etc/iproute2/rt_tables; main by default.
    #[serde(default)]
    pub table: Option<super::RouteTable>,
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
