//! VRRP v2 (RFC 3768) and v3 (RFC 5798, RFC 9568) for IPv4 and IPv6, sans I/O.
//!
//! - [`wire`]: zero-copy packet views ([`wire::VrrpPacket`], [`wire::Ipv4Packet`]) and the
//!   high-level [`wire::VrrpRepr`] with `parse` and `emit`.
//! - [`reception`]: the receive rules of RFC 5798/9568 §7.1 and RFC 3768 §7.1, turning a
//!   raw datagram into a [`reception::Received`] advert or a typed [`reception::Discard`].
//! - [`machine`]: the Initialize/Backup/Master state machine of RFC 5798/9568 §6.4 and
//!   RFC 3768 §6.4. It takes `(now, event)` and returns [`machine::Action`]s; it owns no
//!   socket and reads no clock, so tests drive hours of protocol in microseconds.
//!
//! The I/O shell (raw sockets, gratuitous ARP, unsolicited NA, VIP add/remove) lives
//! elsewhere and stays thin: it feeds received datagrams through
//! [`reception::receive_ipv4`] / [`reception::receive_ipv6`], hands the result to
//! [`machine::Machine::handle`], performs the returned actions and sleeps until
//! [`machine::Machine::poll_timeout`].

pub mod config;
pub mod machine;
pub mod reception;
pub mod time;
pub mod wire;

pub use config::{ConfigError, InstanceConfig};
pub use machine::{Action, Counters, Event, Machine, State, TransitionReason};
pub use reception::{receive_ipv4, receive_ipv6, Discard, DropCounters, DropReason, Received};
pub use time::Timestamp;
pub use wire::{
    AddressFamily, Centiseconds, Endpoints, Ipv4Packet, V2Advert, V2Auth, V3Advert, V3Ipv4Checksum,
    Version, VirtualAddresses, Vrid, VrrpPacket, VrrpRepr, WireError,
};
