//! `[[virtual_server]]`: a service address on the host spread over VE backends
//! (keepalived's `virtual_server`, done with nftables instead of IPVS).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod validate;

/// One virtual server: `vip:port/protocol` (or a firewall mark, or several
/// addresses) spread over `backends`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VirtualServer {
    /// Name for status and logs; default `VIP:PORT/PROTOCOL`.
    #[serde(default)]
    pub name: Option<String>,
    /// The service address (usually a VRRP virtual IP). Give `vip` and `port`,
    /// or `fwmark`, or `members`.
    #[serde(default)]
    pub vip: Option<IpAddr>,
    /// The service port (with `vip`).
    #[serde(default)]
    pub port: Option<u16>,
    /// Balance packets carrying this firewall mark (`meta mark`, set by the
    /// user's own rules before DNAT) instead of one address and port.
    #[serde(default)]
    pub fwmark: Option<u32>,
    /// Several addresses and ports (or marks) served as one (keepalived's
    /// `virtual_server_group`): one backend pool, one set of checks.
    #[serde(default)]
    pub members: Vec<Member>,
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
    /// How packets reach a backend: `nat` (DNAT, the default) or `dr` (direct
    /// routing: the packet is sent unchanged to the backend's MAC; the backend
    /// holds the VIP on its loopback and answers the client directly).
    #[serde(default)]
    pub lb_kind: LbKind,
    /// A client's new connections stick to its backend until it has been idle
    /// this long (0: off). Works with every scheduler.
    #[serde(default)]
    pub persistence_timeout_ms: u64,
    /// Clients sharing this many leading address bits share a backend under
    /// persistence (default: the whole address, 32 or 128).
    #[serde(default)]
    pub persistence_granularity: Option<u8>,
    /// Health check run against every backend (a backend's own `checks` replace it).
    #[serde(default)]
    pub check: Option<HealthCheck>,
    /// The real servers.
    pub backends: Vec<Backend>,
    /// Where new connections go when the live weight falls below `quorum`.
    #[serde(default)]
    pub sorry_server: Option<SorryServer>,
    /// Minimum total weight of live backends (keepalived's `quorum`).
    #[serde(default = "default_quorum")]
    pub quorum: u32,
    /// Quorum is lost below `quorum - hysteresis` and regained at
    /// `quorum + hysteresis` (keepalived's `hysteresis`).
    #[serde(default)]
    pub hysteresis: u32,
    /// Argv run when quorum is gained (keepalived's `quorum_up`).
    #[serde(default)]
    pub quorum_up: Option<Vec<String>>,
    /// Argv run when quorum is lost (keepalived's `quorum_down`).
    #[serde(default)]
    pub quorum_down: Option<Vec<String>>,
    /// Backends start down and come up only after passing their checks
    /// (keepalived's `alpha`); default: trusted until `fall` checks fail.
    #[serde(default)]
    pub alpha: bool,
    /// At shutdown (or when the virtual server is removed), run `notify_down`
    /// of live backends and `quorum_down` (keepalived's `omega`).
    #[serde(default)]
    pub omega: bool,
    /// Time a notify hook may run before it is killed.
    #[serde(default = "default_notify_timeout")]
    pub notify_timeout_ms: u64,
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

/// One address of a multi-address virtual server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Address (with `port`).
    #[serde(default)]
    pub vip: Option<IpAddr>,
    /// Port (with `vip`).
    #[serde(default)]
    pub port: Option<u16>,
    /// Or a firewall mark.
    #[serde(default)]
    pub fwmark: Option<u32>,
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

/// How packets are forwarded to a backend.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LbKind {
    /// Destination NAT (keepalived's `lb_kind NAT`).
    #[default]
    Nat,
    /// Direct routing (keepalived's `lb_kind DR`).
    Dr,
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
    /// Least connections: new connections favour backends with fewer open ones
    /// (from conntrack counts).
    #[serde(rename = "lc")]
    LeastConnection,
    /// Weighted least connections: fewer open connections per unit of weight.
    #[serde(rename = "wlc")]
    WeightedLeastConnection,
}

impl Scheduler {
    /// Whether the slot table follows conntrack counts.
    pub fn least_connection(self) -> bool {
        matches!(
            self,
            Scheduler::LeastConnection | Scheduler::WeightedLeastConnection
        )
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduler::WeightedRandom => "weighted-random",
            Scheduler::SourceHash => "source-hash",
            Scheduler::RoundRobin => "round-robin",
            Scheduler::LeastConnection => "lc",
            Scheduler::WeightedLeastConnection => "wlc",
        }
    }
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
    /// Backend port (default: the virtual server's; with `fwmark` or `members`,
    /// default: the port the client asked for).
    #[serde(default)]
    pub port: Option<u16>,
    /// Relative share of new connections, 1..=1000 (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// This backend's own checks, replacing the virtual server's `check`; all
    /// must pass.
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
    /// Argv run when the backend comes up (keepalived's `notify_up`).
    #[serde(default)]
    pub notify_up: Option<Vec<String>>,
    /// Argv run when the backend goes down (keepalived's `notify_down`).
    #[serde(default)]
    pub notify_down: Option<Vec<String>>,
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `tcp` (connect), `http` (GET), `https` (GET over TLS, keepalived's
    /// `SSL_GET`) or `command` (argv, exit 0).
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
    /// Time to the next check after a failure that has not yet taken the
    /// backend out (keepalived's `delay_before_retry`; default `interval_ms`).
    #[serde(default)]
    pub retry_interval_ms: Option<u64>,
    /// Whether backends under this check start down (default: the virtual
    /// server's `alpha`).
    #[serde(default)]
    pub alpha: Option<bool>,
    /// `http`/`https`: the path to GET (shorthand for one URL).
    #[serde(default)]
    pub path: Option<String>,
    /// `http`/`https`: the status that means healthy with `path`.
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// `http`/`https`: URLs to GET, each must pass.
    #[serde(default)]
    pub urls: Vec<Url>,
    /// `http`/`https`: the `Host` header (default: the address and port); a
    /// URL's own `virtualhost` wins.
    #[serde(default)]
    pub virtualhost: Option<String>,
    /// `https`: verify the backend's certificate (default false, as keepalived).
    #[serde(default)]
    pub tls_verify: bool,
    /// `https`: PEM file of the certificate authorities to verify against
    /// (default: the system's, /etc/ssl/certs/ca-certificates.crt).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// `https`: the name sent as SNI and verified (default: the virtualhost;
    /// none: no SNI, and the certificate must name the address).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// `command`: the argv; `VZNET_BACKEND_ADDRESS` and `VZNET_BACKEND_PORT` are
    /// in its environment.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Port to check (default: the backend's).
    #[serde(default)]
    pub port: Option<u16>,
}

/// One URL of an HTTP check (keepalived's `url { ... }`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct Url {
    /// The path to GET.
    pub path: String,
    /// Statuses that pass: codes and `"LOW-HIGH"` ranges (default 200-299).
    #[serde(default)]
    pub status: Vec<StatusCodes>,
    /// MD5 of the body, 32 hex digits, as keepalived's `genhash` prints it.
    #[serde(default)]
    pub digest: Option<String>,
    /// The `Host` header for this URL.
    #[serde(default)]
    pub virtualhost: Option<String>,
}

/// A status code or a range of them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(untagged)]
pub enum StatusCodes {
    /// `200`.
    Code(u16),
    /// `"200-299"` (or `"200"`).
    Range(String),
}

impl StatusCodes {
    /// The inclusive range, if it is one of 100..=599.
    pub fn bounds(&self) -> Option<(u16, u16)> {
        let (lo, hi) = match self {
            StatusCodes::Code(c) => (*c, *c),
            StatusCodes::Range(s) => match s.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let c = s.trim().parse().ok()?;
                    (c, c)
                }
            },
        };
        ((100..=599).contains(&lo) && (100..=599).contains(&hi) && lo <= hi).then_some((lo, hi))
    }
}

/// The check kinds.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// TCP connect.
    Tcp,
    /// HTTP/1.0 GET.
    Http,
    /// HTTP/1.0 GET over TLS.
    Https,
    /// Run an argv.
    Command,
}

impl CheckKind {
    /// Whether it GETs URLs.
    pub fn is_http(self) -> bool {
        matches!(self, CheckKind::Http | CheckKind::Https)
    }
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
fn default_notify_timeout() -> u64 {
    10_000
}

fn socket_name(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

impl VirtualServer {
    /// `name`, or `VIP:PORT/PROTOCOL`, `fwmark:N/PROTOCOL`, or the first
    /// member and how many more.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let proto = self.protocol.as_str();
        let matchers = self.matchers();
        let first = match matchers.first() {
            Some(Matcher::Address { vip, port }) => socket_name(*vip, *port),
            Some(Matcher::Mark(m)) => format!("fwmark:{m}"),
            None => "unaddressed".into(),
        };
        match matchers.len() {
            0 | 1 => format!("{first}/{proto}"),
            n => format!("{first}/{proto}+{}", n - 1),
        }
    }

    /// What traffic the virtual server takes: `vip:port`, the mark, or its members.
    pub fn matchers(&self) -> Vec<Matcher> {
        let one = |vip: Option<IpAddr>, port: Option<u16>, mark: Option<u32>| match (vip, mark) {
            (Some(vip), _) => Some(Matcher::Address {
                vip,
                port: port.unwrap_or(0),
            }),
            (None, Some(m)) => Some(Matcher::Mark(m)),
            (None, None) => None,
        };
        let mut out: Vec<Matcher> = one(self.vip, self.port, self.fwmark).into_iter().collect();
        out.extend(
            self.members
                .iter()
                .filter_map(|m| one(m.vip, m.port, m.fwmark)),
        );
        out
    }

    /// The service port when there is exactly one (`vip` and `port`).
    pub fn single_port(&self) -> Option<u16> {
        match self.matchers().as_slice() {
            [Matcher::Address { port, .. }] => Some(*port),
            _ => None,
        }
    }

    /// Whether the virtual server serves IPv4 (else IPv6): its addresses'
    /// family, or for marks only, its backends'.
    pub fn is_ipv4(&self) -> bool {
        for m in self.matchers() {
            if let Matcher::Address { vip, .. } = m {
                return vip.is_ipv4();
            }
        }
        self.backends
            .iter()
            .find_map(|b| b.address)
            .is_none_or(|a| a.is_ipv4())
    }

    /// The checks of backend `b`: its own, else the virtual server's.
    pub fn checks_of<'a>(&'a self, b: &'a Backend) -> &'a [HealthCheck] {
        if b.checks.is_empty() {
            self.check.as_slice()
        } else {
            &b.checks
        }
    }
}

/// One thing a virtual server matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Matcher {
    /// Destination address and port.
    Address {
        /// Address.
        vip: IpAddr,
        /// Port.
        port: u16,
    },
    /// `meta mark`.
    Mark(u32),
}

/// The largest backend weight.
pub const MAX_WEIGHT: u32 = 1000;

/// A backend with its address resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedBackend {
    /// Where connections go.
    pub address: IpAddr,
    /// Its port (0: the port the client asked for; fwmark and members only).
    pub port: u16,
    /// Its configured weight.
    pub weight: u32,
    /// Its checks (its own or the virtual server's).
    pub checks: Vec<HealthCheck>,
    /// Argv run when it comes up.
    pub notify_up: Option<Vec<String>>,
    /// Argv run when it goes down.
    pub notify_down: Option<Vec<String>>,
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
        let ipv4 = self.is_ipv4();
        self.backends
            .iter()
            .map(|b| {
                let address = match (b.ve, b.address) {
                    (_, Some(a)) => a,
                    (Some(id), None) => ve_address(config, id, ipv4)?,
                    (None, None) => return Err("backend without ve or address".into()),
                };
                Ok(ResolvedBackend {
                    address,
                    port: b.port.or(self.single_port()).unwrap_or(0),
                    weight: b.weight,
                    checks: self.checks_of(b).to_vec(),
                    notify_up: b.notify_up.clone(),
                    notify_down: b.notify_down.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(StatusCodes::Code(200).bounds(), Some((200, 200)));
        assert_eq!(
            StatusCodes::Range("200-299".into()).bounds(),
            Some((200, 299))
        );
        assert_eq!(StatusCodes::Range("301".into()).bounds(), Some((301, 301)));
        for bad in ["299-200", "99-200", "200-600", "2xx", ""] {
            assert_eq!(StatusCodes::Range(bad.into()).bounds(), None, "{bad}");
        }
    }

    #[test]
    fn names_and_matchers() {
        let vs: VirtualServer = toml::from_str(
            r#"members = [ { vip = "10.0.0.1", port = 80 }, { fwmark = 7 } ]
backends = [ { address = "10.0.1.1" } ]"#,
        )
        .expect("parse");
        assert_eq!(vs.display_name(), "10.0.0.1:80/tcp+1");
        assert_eq!(vs.single_port(), None);
        assert_eq!(
            vs.matchers(),
            [
                Matcher::Address {
                    vip: "10.0.0.1".parse().expect("ip"),
                    port: 80
                },
                Matcher::Mark(7)
            ]
        );
        let fw: VirtualServer = toml::from_str(
            "fwmark = 3\nprotocol = \"udp\"\nbackends = [ { address = \"fd00::1\" } ]",
        )
        .expect("parse");
        assert_eq!(fw.display_name(), "fwmark:3/udp");
        assert!(!fw.is_ipv4());
    }
}
