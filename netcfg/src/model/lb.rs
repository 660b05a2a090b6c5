//! `[[virtual_server]]`: a service address on the host spread over VE backends
//! (keepalived's `virtual_server`, done with nftables instead of IPVS).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One virtual server: `vip:port/protocol` spread over `backends`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VirtualServer {
    /// Name for status and logs; default `VIP:PORT/PROTOCOL`.
    #[serde(default)]
    pub name: Option<String>,
    /// The service address (usually a VRRP virtual IP).
    pub vip: IpAddr,
    /// The service port.
    pub port: u16,
    /// `tcp` or `udp`.
    #[serde(default)]
    pub protocol: LbProtocol,
    /// How a new connection picks its backend.
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Seed of `source-hash`; hosts that share a VIP must share the seed so that a
    /// client hashes to the same backend whichever host holds the VIP.
    #[serde(default)]
    pub hash_seed: Option<u32>,
    /// Health check run against every backend.
    #[serde(default)]
    pub check: Option<HealthCheck>,
    /// The real servers.
    pub backends: Vec<Backend>,
    /// Where new connections go when fewer than `quorum` weight is alive.
    #[serde(default)]
    pub sorry_server: Option<SorryServer>,
    /// Minimum total weight of live backends for the service to use them.
    #[serde(default = "default_quorum")]
    pub quorum: u32,
    /// What happens to a failed backend's open connections.
    #[serde(default)]
    pub on_backend_failure: OnFailure,
    /// Ramp a returning backend's weight up over this time (0: at once).
    #[serde(default)]
    pub slow_start_ms: u64,
    /// Source-NAT forwarded connections to the host's address on the backend
    /// side, so backends answer through this host whatever their default route
    /// (needed when backends do not route through the load balancer).
    #[serde(default)]
    pub masquerade: bool,
}

/// Transport protocol of a virtual server.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum LbProtocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl LbProtocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            LbProtocol::Tcp => "tcp",
            LbProtocol::Udp => "udp",
        }
    }
}

/// How new connections are spread.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Scheduler {
    /// A random slot of the weighted slot table per connection.
    #[default]
    WeightedRandom,
    /// A Jenkins hash of the client address with `hash_seed` picks the slot.
    SourceHash,
    /// The slots in turn.
    RoundRobin,
}

/// A backend: a VE (its first address) or an explicit address.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// A VE id from `ve/ID.toml`; its first address of the VIP's family is used.
    #[serde(default)]
    pub ve: Option<u32>,
    /// An address, for a backend that is not a vznet VE.
    #[serde(default)]
    pub address: Option<IpAddr>,
    /// Backend port (default: the virtual server's).
    #[serde(default)]
    pub port: Option<u16>,
    /// Relative share of new connections, 1..=1000 (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// The fallback server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SorryServer {
    /// Its address.
    pub address: IpAddr,
    /// Its port (default: the virtual server's).
    #[serde(default)]
    pub port: Option<u16>,
}

/// What a failed backend's established connections get.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Kept: conntrack keeps them on the backend until they end.
    #[default]
    Drain,
    /// Their next client packet is answered with a TCP reset.
    Reset,
}

/// A health check.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `tcp` (connect), `http` (GET, expect a status) or `command` (argv, exit 0).
    pub kind: CheckKind,
    /// Time between checks.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Time one check may take.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Consecutive failures that take a live backend out.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Consecutive successes that bring a dead backend back.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// `http`: the path to GET.
    #[serde(default)]
    pub path: Option<String>,
    /// `http`: the status that means healthy (default 200).
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// `command`: the argv; `VZNET_BACKEND_ADDRESS` and `VZNET_BACKEND_PORT` are
    /// in its environment.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Port to check (default: the backend's).
    #[serde(default)]
    pub port: Option<u16>,
}

/// The check kinds.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// TCP connect.
    Tcp,
    /// HTTP/1.0 GET.
    Http,
    /// Run an argv.
    Command,
}

fn default_quorum() -> u32 {
    1
}
fn default_weight() -> u32 {
    1
}
fn default_interval() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    500
}
fn default_fall() -> u32 {
    3
}
fn default_rise() -> u32 {
    2
}

impl VirtualServer {
    /// `name`, or `VIP:PORT/PROTOCOL`.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let vip = match self.vip {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            format!("{vip}:{}/{}", self.port, self.protocol.as_str())
        })
    }
}

/// The largest backend weight.
pub const MAX_WEIGHT: u32 = 1000;

/// A backend with its address resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedBackend {
    /// Where connections go.
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its configured weight.
    pub weight: u32,
}

/// The address a VE backend is reached at: its first netif address of the family,
/// else its first venet address of the family.
pub fn ve_address(config: &super::Config, id: u32, ipv4: bool) -> Result<IpAddr, String> {
    let ve = config
        .ve(id)
        .ok_or_else(|| format!("no VE {id} (no ve/{id}.toml)"))?;
    let from_netifs = ve
        .netif
        .iter()
        .flat_map(|n| n.addresses.iter().map(|a| a.addr()));
    let from_venet = ve.venet.iter().flat_map(|v| v.addresses.iter().copied());
    from_netifs
        .chain(from_venet)
        .find(|a| a.is_ipv4() == ipv4)
        .ok_or_else(|| {
            format!(
                "VE {id} has no {} address to send connections to",
                if ipv4 { "IPv4" } else { "IPv6" }
            )
        })
}

impl VirtualServer {
    /// The backends with VE ids replaced by addresses. Call on a validated config.
    pub fn resolve(&self, config: &super::Config) -> Result<Vec<ResolvedBackend>, String> {
        self.backends
            .iter()
            .map(|b| {
                let address = match (b.ve, b.address) {
                    (_, Some(a)) => a,
                    (Some(id), None) => ve_address(config, id, self.vip.is_ipv4())?,
                    (None, None) => return Err("backend without ve or address".into()),
                };
                Ok(ResolvedBackend {
                    address,
                    port: b.port.unwrap_or(self.port),
                    weight: b.weight,
                })
            })
            .collect()
    }
}
