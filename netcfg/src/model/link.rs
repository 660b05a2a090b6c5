//! The links `host.toml` declares: bonds, VLANs, bridges (with their ports),
//! macvlans, VXLANs, dummies, and the physical NICs vznet configures but does
//! not own (`[[ethernet]]`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{MacAddr, SysctlValue};

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
    /// Every mode.
    pub const ALL: [BondMode; 7] = [
        BondMode::BalanceRr,
        BondMode::ActiveBackup,
        BondMode::BalanceXor,
        BondMode::Broadcast,
        BondMode::Lacp,
        BondMode::BalanceTlb,
        BondMode::BalanceAlb,
    ];

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

/// The LACPDU rate a bond asks of its partner.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LacpRate {
    /// Every 30 s (the kernel's default).
    #[default]
    Slow,
    /// Every second.
    Fast,
}

impl LacpRate {
    /// The kernel's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LacpRate::Slow => "slow",
            LacpRate::Fast => "fast",
        }
    }
}

/// How balance-xor, 802.3ad and balance-tlb bonds pick a slave for a frame.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum XmitHashPolicy {
    /// MACs (the kernel's default).
    #[default]
    #[serde(rename = "layer2")]
    Layer2,
    /// IPs and ports.
    #[serde(rename = "layer3+4")]
    Layer34,
    /// MACs and IPs.
    #[serde(rename = "layer2+3")]
    Layer23,
    /// Inner MACs and IPs of tunnels.
    #[serde(rename = "encap2+3")]
    Encap23,
    /// Inner IPs and ports of tunnels.
    #[serde(rename = "encap3+4")]
    Encap34,
    /// VLAN and source MAC.
    #[serde(rename = "vlan+srcmac")]
    VlanSrcMac,
}

impl XmitHashPolicy {
    /// The kernel's name.
    pub fn as_str(self) -> &'static str {
        match self {
            XmitHashPolicy::Layer2 => "layer2",
            XmitHashPolicy::Layer34 => "layer3+4",
            XmitHashPolicy::Layer23 => "layer2+3",
            XmitHashPolicy::Encap23 => "encap2+3",
            XmitHashPolicy::Encap34 => "encap3+4",
            XmitHashPolicy::VlanSrcMac => "vlan+srcmac",
        }
    }
}

/// How an 802.3ad bond picks its active aggregator.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AdSelect {
    /// Keep the aggregator until all its slaves fail (the kernel's default).
    #[default]
    Stable,
    /// The one with the most bandwidth.
    Bandwidth,
    /// The one with the most slaves.
    Count,
}

impl AdSelect {
    /// The kernel's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AdSelect::Stable => "stable",
            AdSelect::Bandwidth => "bandwidth",
            AdSelect::Count => "count",
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
    /// MTU (default: the kernel's, 1500).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// MII link monitoring interval; 0 disables it (and with it failover).
    /// Default 100, or 0 with ARP monitoring.
    #[serde(default)]
    pub miimon_ms: Option<u32>,
    /// Delay before a slave whose link came up is used (multiple of miimon).
    #[serde(default)]
    pub updelay_ms: Option<u32>,
    /// Delay before a slave whose link went down is dropped (multiple of miimon).
    #[serde(default)]
    pub downdelay_ms: Option<u32>,
    /// 802.3ad: the LACPDU rate asked of the partner.
    #[serde(default)]
    pub lacp_rate: Option<LacpRate>,
    /// balance-xor, 802.3ad, balance-tlb: the transmit hash.
    #[serde(default)]
    pub xmit_hash_policy: Option<XmitHashPolicy>,
    /// 802.3ad: aggregator selection.
    #[serde(default)]
    pub ad_select: Option<AdSelect>,
    /// Slaves that must be up for the bond to have carrier (default 0).
    #[serde(default)]
    pub min_links: Option<u32>,
    /// active-backup, balance-tlb, balance-alb: the preferred slave.
    #[serde(default)]
    pub primary: Option<String>,
    /// ARP link monitoring interval (instead of miimon).
    #[serde(default)]
    pub arp_interval_ms: Option<u32>,
    /// ARP monitoring targets.
    #[serde(default)]
    pub arp_ip_targets: Vec<Ipv4Addr>,
    /// Slave links; they must exist (or be declared here).
    #[serde(default)]
    pub slaves: Vec<String>,
    /// Addresses on the bond itself.
    #[serde(default, deserialize_with = "super::address::networks")]
    pub addresses: Vec<IpNet>,
    /// Per-interface sysctls (`forwarding`, `proxy_arp`, `rp_filter`...).
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

/// A VLAN's tag protocol.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum VlanProtocol {
    /// 802.1Q (customer tag; the default).
    #[default]
    #[serde(rename = "802.1Q", alias = "802.1q")]
    Ieee8021Q,
    /// 802.1ad (service tag: the outer tag of QinQ).
    #[serde(rename = "802.1ad", alias = "802.1AD")]
    Ieee8021Ad,
}

impl VlanProtocol {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            VlanProtocol::Ieee8021Q => "802.1Q",
            VlanProtocol::Ieee8021Ad => "802.1ad",
        }
    }
}

/// A VLAN subinterface.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Vlan {
    /// Interface name, by custom `LINK.ID`.
    pub name: String,
    /// The link it rides on (a bond, a physical link, or an 802.1ad VLAN for QinQ).
    pub link: String,
    /// VLAN id, 1..=4094.
    pub id: u16,
    /// Tag protocol (default 802.1Q).
    #[serde(default)]
    pub protocol: VlanProtocol,
    /// MTU (at most the lower link's; default: the lower link's).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Addresses on the VLAN link itself.
    #[serde(default, deserialize_with = "super::address::networks")]
    pub addresses: Vec<IpNet>,
    /// Per-interface sysctls.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

/// A bridge port's options (in `[[bridge]] ports` or a VE netif).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortOptions {
    /// The VLAN untagged frames belong to (VLAN-filtering bridges; default the
    /// bridge's default_pvid).
    #[serde(default)]
    pub pvid: Option<u16>,
    /// VLANs carried tagged.
    #[serde(default)]
    pub vlans: Vec<u16>,
    /// Forwards only to ports that are not isolated (default false).
    #[serde(default)]
    pub isolated: Option<bool>,
    /// Frames may leave by the port they came in (default false).
    #[serde(default)]
    pub hairpin: Option<bool>,
    /// Learns source MACs (default true).
    #[serde(default)]
    pub learning: Option<bool>,
}

/// A port with options: `{ name = "bond0", vlans = [136, 137] }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NamedPort {
    /// The port's interface name.
    pub name: String,
    /// VLAN untagged frames belong to.
    #[serde(default)]
    pub pvid: Option<u16>,
    /// VLANs carried tagged.
    #[serde(default)]
    pub vlans: Vec<u16>,
    /// Isolated.
    #[serde(default)]
    pub isolated: Option<bool>,
    /// Hairpin.
    #[serde(default)]
    pub hairpin: Option<bool>,
    /// Learning.
    #[serde(default)]
    pub learning: Option<bool>,
}

/// One entry of a bridge's `ports`: a name, or a table with options.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum BridgePort {
    /// `"bond0"`.
    Name(String),
    /// `{ name = "bond0", vlans = [136] }`.
    Options(NamedPort),
}

/// A string or a table, each with its own errors (an untagged enum would
/// only say that neither matched).
impl<'de> Deserialize<'de> for BridgePort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BridgePort, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BridgePort;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an interface name or a table such as { name = \"bond0\", vlans = [136] }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BridgePort, E> {
                Ok(BridgePort::Name(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<BridgePort, A::Error> {
                NamedPort::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(BridgePort::Options)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl BridgePort {
    /// The port's interface name.
    pub fn name(&self) -> &str {
        match self {
            BridgePort::Name(n) => n,
            BridgePort::Options(p) => &p.name,
        }
    }

    /// Its options.
    pub fn options(&self) -> PortOptions {
        match self {
            BridgePort::Name(_) => PortOptions::default(),
            BridgePort::Options(p) => PortOptions {
                pvid: p.pvid,
                vlans: p.vlans.clone(),
                isolated: p.isolated,
                hairpin: p.hairpin,
                learning: p.learning,
            },
        }
    }
}

/// A Linux bridge.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bridge {
    /// Interface name.
    pub name: String,
    /// Ports named here (VE veths join through their own files' `bridge` key).
    #[serde(default)]
    pub ports: Vec<BridgePort>,
    /// Host addresses on the bridge.
    #[serde(default, deserialize_with = "super::address::networks")]
    pub addresses: Vec<IpNet>,
    /// Spanning tree on or off (off by default, as `brctl addbr`).
    #[serde(default)]
    pub stp: bool,
    /// STP forward delay, 2..30 s (default 15).
    #[serde(default)]
    pub forward_delay_s: Option<u32>,
    /// STP hello time, 1..10 s (default 2).
    #[serde(default)]
    pub hello_time_s: Option<u32>,
    /// STP max age, 6..40 s (default 20).
    #[serde(default)]
    pub max_age_s: Option<u32>,
    /// STP bridge priority (default 32768).
    #[serde(default)]
    pub priority: Option<u16>,
    /// 802.1Q VLAN filtering (default false).
    #[serde(default)]
    pub vlan_filtering: bool,
    /// With VLAN filtering: the PVID ports get by default (default 1; 0: none).
    #[serde(default)]
    pub default_pvid: Option<u16>,
    /// The bridge's MAC; by default one derived from its name, so that it never
    /// changes when ports come and go.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// MTU (default: the kernel's; it then follows the smallest port's).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Per-interface sysctls.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

/// A macvlan's mode.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    /// No traffic between macvlans of one lower link.
    Private,
    /// Traffic between them goes through the external switch.
    Vepa,
    /// Traffic between them is switched locally (vznet's default).
    #[default]
    Bridge,
    /// The one macvlan takes over the lower link.
    Passthru,
}

impl MacvlanMode {
    /// The kernel's name.
    pub fn as_str(self) -> &'static str {
        match self {
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Passthru => "passthru",
        }
    }
}

/// A macvlan link.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Macvlan {
    /// Interface name.
    pub name: String,
    /// The lower link.
    pub link: String,
    /// Mode (default bridge).
    #[serde(default)]
    pub mode: MacvlanMode,
    /// MAC (default: random).
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// MTU (at most the lower link's).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Addresses.
    #[serde(default, deserialize_with = "super::address::networks")]
    pub addresses: Vec<IpNet>,
    /// Per-interface sysctls.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

/// A VXLAN link.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Vxlan {
    /// Interface name.
    pub name: String,
    /// VNI, 0..16777215.
    pub id: u32,
    /// Remote endpoint, or a multicast group (default: none; the FDB decides).
    #[serde(default)]
    pub remote: Option<IpAddr>,
    /// Local address (default: by route).
    #[serde(default)]
    pub local: Option<IpAddr>,
    /// The link the tunnel leaves by (default: by route).
    #[serde(default)]
    pub dev: Option<String>,
    /// UDP port (default 4789).
    #[serde(default)]
    pub port: Option<u16>,
    /// Learn remote MACs (default true).
    #[serde(default)]
    pub learning: Option<bool>,
    /// MAC (default: random).
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// MTU (default 1450 over IPv4: the kernel's, lower link minus 50).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Addresses.
    #[serde(default, deserialize_with = "super::address::networks")]
    pub addresses: Vec<IpNet>,
    /// Per-interface sysctls.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

/// A dummy link.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dummy {
    /// Interface name.
    pub name: String,
    /// MAC (default: random).
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// MTU.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Addresses.
    #[serde(default, deserialize_with = "super::address::networks")]
    pub addresses: Vec<IpNet>,
    /// Per-interface sysctls.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

/// A link that exists already (a physical NIC): vznet sets what is declared
/// and never deletes it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ethernet {
    /// Interface name.
    pub name: String,
    /// MTU (default: left as it is).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Up (default true).
    #[serde(default = "yes")]
    pub up: bool,
    /// Addresses vznet adds (marked as vznet's; others on the link stay).
    #[serde(default, deserialize_with = "super::address::networks")]
    pub addresses: Vec<IpNet>,
    /// Per-interface sysctls.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

fn yes() -> bool {
    true
}
