//! VRRP v2 (RFC 3768) and v3 (RFC 5798, RFC 9568) for IPv4 and IPv6, sans I/O.
//!
//! - [`wire`]: zero-copy packet views ([`wire::VrrpPacket`], [`wire::Ipv4Packet`]) and the
//!   high-level [`wire::VrrpRepr`] with `parse` and `emit`.
//! - [`reception`]: the receive rules of RFC 5798/9568 §7.1 and RFC 3768 §7.1, turning a
//!   raw datagram into a [`reception::Received`] advert or a typed [`reception::Discard`].
//! - [`machine`]: the Initialize/Backup/Master state machine of RFC 5798/9568 §6.4 and
//!   RFC 3768 §6.4. It takes `(now, event)` and returns [`machine::Action`]s; it owns no
//!   socket and reads no clock, so tests drive hours of protocol in microseconds.
//! - [`track`]: what tracked interfaces, scripts, files and processes do to an
//!   instance (keepalived's arithmetic), a script's schedule and rise/fall counting.
//! - [`sync_group`]: members of a sync group that are Master together or not at all.
//! - [`settings`]: what users configure (`[[vrrp]]`, `[[vrrp_script]]`,
//!   `[[vrrp_sync_group]]`), the one definition vznetd and `vznet-vrrp` share, with
//!   serde behind the `serde` feature.
//! - `io` (feature `io`, on by default): the Linux shell (raw sockets, gratuitous ARP,
//!   unsolicited NA, VIP add/remove over rtnetlink) and the tokio `io::Instance` runner.
//!   It stays thin: it feeds received datagrams through [`reception::receive_ipv4`] /
//!   [`reception::receive_ipv6`], hands the result to [`machine::Machine::handle`],
//!   performs the returned actions and sleeps until [`machine::Machine::poll_timeout`].
//!   The rest of the crate never depends on it.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use vrrp::{Action, Event, InstanceConfig, Machine, State, Timestamp, Version,
//!            VirtualAddresses, Vrid};
//!
//! let mut config = InstanceConfig::new(
//!     Vrid::new(51).expect("non-zero"),
//!     Version::V3,
//!     IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
//!     VirtualAddresses::V4(vec![Ipv4Addr::new(192, 0, 2, 100)]),
//! );
//! config.priority = 150;
//! let mut machine = Machine::new(config).expect("valid config");
//!
//! // Startup: Backup until Master_Down_Interval (3 s + skew) passes without adverts.
//! machine.handle(Timestamp::ZERO, Event::Startup);
//! let deadline = machine.poll_timeout().expect("Master_Down_Timer runs");
//! let actions = machine.handle(deadline, Event::Timeout);
//! assert_eq!(machine.state(), State::Master);
//! for action in &actions {
//!     if let Action::SendAdvert(advert) = action {
//!         let c = machine.config();
//!         let bytes = advert.to_bytes(&c.advert_endpoints(), c.v3_ipv4_checksum)
//!             .expect("the machine's adverts emit");
//!         assert_eq!(bytes.len(), 12); // header + one IPv4 address
//!     }
//! }
//! ```

pub mod config;
#[cfg(feature = "io")]
pub mod io;
pub mod machine;
pub mod reception;
pub mod settings;
pub mod sync_group;
pub mod time;
pub mod track;
pub mod wire;

pub use config::{ConfigError, Gratuitous, InstanceConfig};
pub use machine::{Action, Counters, Event, Machine, State, TransitionReason};
pub use reception::{receive_ipv4, receive_ipv6, Discard, DropCounters, DropReason, Received};
pub use time::Timestamp;
pub use wire::{
    AddressFamily, Centiseconds, Endpoints, Ipv4Packet, V2Advert, V2Auth, V3Advert, V3Ipv4Checksum,
    Version, VirtualAddresses, Vrid, VrrpPacket, VrrpRepr, WireError,
};
