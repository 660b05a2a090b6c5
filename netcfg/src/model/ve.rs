//! `ve/ID.toml`: one virtual environment's network (the seed's `ID.conf`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{MacAddr, SysctlValue};

/// One VE.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VeConfig {
    /// The VE id; must match the file name.
    pub id: u32,
    /// Host name inside the VE.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Root folder (used by the VE runtime).
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Wire an existing network namespace: a name under /run/netns or an absolute path.
    #[serde(default)]
    pub netns: Option<String>,
    /// The VE's init, run by `vznet ve start` (default `/sbin/init`).
    #[serde(default)]
    pub init: Option<Vec<String>>,
    /// Bridged veth interfaces (`vzctl set --netif_add`).
    #[serde(default)]
    pub netif: Vec<Netif>,
    /// Routed mode (`vzctl set --ipadd`): /32 routes and proxy ARP on the host.
    #[serde(default)]
    pub venet: Option<Venet>,
}

/// A veth pair: one end in the VE, the other on the host (usually a bridge port).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Netif {
    /// Name inside the VE (`eth0`).
    pub name: String,
    /// MAC inside the VE.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Host-side name; default `veth<ID>.<n>` (n = position in the file).
    #[serde(default)]
    pub host_name: Option<String>,
    /// Host-side MAC.
    #[serde(default)]
    pub host_mac: Option<MacAddr>,
    /// Bridge the host end joins.
    #[serde(default)]
    pub bridge: Option<String>,
    /// Addresses inside the VE.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// Default gateway inside the VE.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Sysctls on the host end (`forwarding`, `proxy_arp`...).
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

/// Routed ("venet") networking: a veth with no bridge, /32 host routes to it, and
/// proxy ARP on it, so VEs in any subnet reach each other through the host.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Venet {
    /// The VE's addresses (host routes /32 or /128 point at them).
    pub addresses: Vec<IpAddr>,
    /// Host-side name; default `venet<ID>`.
    #[serde(default)]
    pub host_name: Option<String>,
}
