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

/// A route destination, written `"default"` or as a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteDest {
    /// 0.0.0.0/0 (or ::/0 when the gateway is IPv6).
    Default,
    /// A prefix.
    Prefix(IpNet),
}

impl Serialize for RouteDest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RouteDest::Default => s.serialize_str("default"),
            RouteDest::Prefix(net) => s.collect_str(net),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip() {
        let text = "[[route]]\nto = \"default\"\nvia = \"192.0.2.1\"\n\n[[route]]\nto = \"10.1.0.0/16\"\ndev = \"br0\"\n";
        let host: HostConfig = toml::from_str(text).expect("parses");
        let again: HostConfig =
            toml::from_str(&toml::to_string(&host).expect("serializes")).expect("parses again");
        assert_eq!(again, host);
        assert_eq!(host.route[0].to, RouteDest::Default);
    }
}
