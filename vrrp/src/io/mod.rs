//! The Linux I/O shell around the sans-IO core: thin, boring, and the only part of the
//! crate that touches the kernel.
//!
//! - [`socket`]: raw IP protocol 112 sockets ([`AdvertSocket`]) bound to one interface,
//!   joined to 224.0.0.18 / ff02::12 there, sending with TTL / hop limit 255.
//! - [`link`]: what the shell needs to know about the interface ([`Link`]): index,
//!   hardware address, addresses (to pick the primary address).
//! - [`virtual_address`]: adding and removing the virtual addresses over rtnetlink
//!   ([`VirtualAddressSet`]).
//! - [`gratuitous`]: the announcements of a new Master: gratuitous ARP over `AF_PACKET`,
//!   unsolicited Neighbor Advertisements over a raw ICMPv6 socket.
//! - [`instance`]: the tokio runner ([`Instance`]) that owns a socket and a
//!   [`crate::Machine`], feeds it adverts, timer expiries and tracking readings and
//!   carries out its actions.
//! - [`mod@unit`]: what starts and stops together ([`Unit`]: a sync group with its
//!   members, or one instance), and the sync group's coordination.
//! - [`track`]: the sources of tracking readings: scripts run, files watched, /proc
//!   listed, shared by the instances of a process.
//! - [`address_worker`], [`virtual_route`], [`accept_filter`]: what a Master holds
//!   (addresses, routes and rules, the Accept_Mode filter), changed off the protocol's
//!   path.
//! - [`sysctl`]: the per-interface settings VRRP owns.
//! - [`warning_limit`]: one line per cause per interval for warnings that peers'
//!   packets trigger.
//!
//! ```no_run
//! # async fn example() -> Result<(), vrrp::io::Error> {
//! use vrrp::io::{Router, RunningUnit, Unit};
//! use vrrp::settings::{Instance, Settings, VirtualIp};
//!
//! let mut vi = Instance::new("VI_1", "eth0", 51, vec![
//!     VirtualIp::new("192.0.2.100/24".parse().expect("literal")),
//! ]);
//! vi.priority = 150;
//! let settings = Settings { vrrp: vec![vi], ..Settings::default() };
//! assert!(settings.validate().is_empty());
//! let router = Router::new()?;
//! let mut running = Vec::new();
//! for unit in Unit::all(&settings) {
//!     running.push(RunningUnit::start(&router, &settings, &unit).await?);
//! }
//! println!("{:?}", running[0].handles()[0].status().state);
//! let _ = tokio::signal::ctrl_c().await;
//! for r in running {
//!     for status in r.stop().await {
//!         println!("{} sent {} adverts", status.name, status.io.adverts_sent);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Needs CAP_NET_RAW (raw and packet sockets) and CAP_NET_ADMIN (addresses), and a tokio
//! runtime with the `net` and `time` drivers.
//!
//! Many instances should share one [`Router`] ([`Instance::with_router`]): one raw
//! socket per interface and family (datagrams go to the instance of their VRID), one
//! netlink connection, one packet socket.
//!
//! Accept_Mode is enforced: a Master that is not the address owner and runs without
//! `accept` drops traffic to its virtual addresses in nftables ([`accept_filter`]),
//! ARP, Neighbor Discovery and VRRP excepted. Without `use_vmac`, the interface's own
//! MAC answers for the virtual addresses, and the announcements carry it
//! ([`virtual_mac`] otherwise).
//!
//! What it sets in `/proc/sys` is listed in [`sysctl`].

pub mod accept_filter;
pub mod address_worker;
pub mod gratuitous;
pub mod instance;
pub mod link;
pub mod notify;
pub mod router;
pub mod socket;
pub mod sysctl;
pub mod timer_thread;
pub mod track;
pub mod unit;
pub mod virtual_address;
pub mod virtual_mac;
pub mod virtual_route;
pub mod warning_limit;

use std::net::IpAddr;

use crate::config::ConfigError;
use crate::wire::AddressFamily;

pub use instance::{Instance, InstanceHandle, IoCounters, Status};
pub use link::Link;
pub use notify::NotifyHooks;
pub use router::Router;
pub use socket::{AdvertSocket, Datagram};
pub use unit::{RunningUnit, Unit, UnitSettings};
pub use virtual_address::VirtualAddressSet;

/// Why the shell could not set an instance up, or an operation on the kernel failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid instance configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("interface {0:?} does not exist")]
    InterfaceNotFound(String),
    #[error("interface {interface:?} has no {family:?} address to send adverts from")]
    NoPrimaryAddress {
        interface: String,
        family: AddressFamily,
    },
    #[error("interface {0:?} has no Ethernet address to announce the virtual addresses with")]
    NoHardwareAddress(String),
    #[error("prefix length /{prefix_len} is invalid for virtual address {address}")]
    InvalidPrefixLength { address: IpAddr, prefix_len: u8 },
    #[error("unicast peer {0} is not of the instance's address family")]
    PeerFamilyMismatch(IpAddr),
    #[error("{op} on {interface:?}: {source}")]
    Socket {
        op: &'static str,
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sysctl {key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("virtual route: {0}")]
    Route(String),
    #[error("nftables (accept mode): {0}")]
    Nftables(#[source] nft::Error),
    #[error("vrrp_script {script}: {reason}")]
    Script { script: String, reason: String },
    #[error("track_file {path}: {reason}")]
    TrackFile {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("no VRRP instance is called {0:?}")]
    UnknownInstance(String),
    #[error("instance {instance}: {source}")]
    Member {
        instance: String,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    pub(crate) fn socket(
        op: &'static str,
        interface: &str,
        source: impl Into<std::io::Error>,
    ) -> Error {
        Error::Socket {
            op,
            interface: interface.to_owned(),
            source: source.into(),
        }
    }
}
