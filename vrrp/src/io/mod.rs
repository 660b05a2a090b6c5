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
//!   [`crate::Machine`], feeds it adverts and timer expiries and carries out its actions.
//!
//! ```no_run
//! # async fn example() -> Result<(), vrrp::io::Error> {
//! use std::net::{IpAddr, Ipv4Addr};
//! use vrrp::io::{Instance, InstanceSpec};
//! use vrrp::{InstanceConfig, Version, VirtualAddresses, Vrid};
//!
//! let mut config = InstanceConfig::new(
//!     Vrid::new(51).expect("non-zero"),
//!     Version::V3,
//!     // Unspecified: the instance takes the interface's first IPv4 address.
//!     IpAddr::V4(Ipv4Addr::UNSPECIFIED),
//!     VirtualAddresses::V4(vec![Ipv4Addr::new(192, 0, 2, 100)]),
//! );
//! config.priority = 150;
//! let mut spec = InstanceSpec::new("VI_1", "eth0", config);
//! spec.prefix_lengths.insert(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)), 24);
//! let instance = Instance::new(spec).await?;
//! let handle = instance.handle();
//! let runner = tokio::spawn(instance.run(async {
//!     let _ = tokio::signal::ctrl_c().await;
//! }));
//! println!("{:?}", handle.status().state);
//! let final_status = runner.await.expect("runner task");
//! println!("sent {} adverts", final_status.io.adverts_sent);
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
//! What the shell leaves to the host, as keepalived does without `vrrp_strict`:
//! - Accept_Mode is not enforced: a non-owner Master answers on the virtual addresses
//!   whatever [`crate::InstanceConfig::accept_mode`] says (filtering is the firewall's).
//! - Without [`InstanceSpec::use_vmac`], the interface's own MAC answers for the
//!   virtual addresses, and the announcements carry it ([`virtual_mac`] otherwise).
//!
//! What it does set: `net.ipv4.conf.<interface>.accept_local = 1` for IPv4 instances
//! that are not the address owner. A Backup that took the owner's address over would
//! otherwise drop the owner's adverts as martians (their source is now local) and stay
//! Master when the owner returns.

pub mod gratuitous;
pub mod instance;
pub mod link;
pub mod notify;
pub mod router;
pub mod socket;
pub mod virtual_address;
pub mod virtual_mac;

use std::net::IpAddr;

use crate::config::ConfigError;
use crate::wire::AddressFamily;

pub use instance::{Instance, InstanceHandle, InstanceSpec, IoCounters, Status, TrackedInterface};
pub use link::Link;
pub use notify::NotifyHooks;
pub use router::Router;
pub use socket::{AdvertSocket, Datagram};
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
