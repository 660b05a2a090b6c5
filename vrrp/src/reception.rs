//! Receive rules: RFC 5798 / RFC 9568 §7.1 for VRRPv3 and RFC 3768 §7.1 for VRRPv2.
//!
//! [`receive_ipv4`] takes what a raw IPv4 socket delivers (IP header included);
//! [`receive_ipv6`] takes the VRRP payload of a raw IPv6 socket with the addresses and
//! the hop limit from ancillary data (IPv6 raw sockets never deliver the header). Both
//! either return the advert to hand to the state machine or a typed [`Discard`], whose
//! [`Discard::reason`] the shell counts in [`DropCounters`].
//!
//! The instance is found by VRID before the checksum is verified, because the checksum
//! rule (with or without the IPv4 pseudo-header) is a per-instance setting; so a packet
//! for an unknown VRID is reported as such even when its checksum is also bad.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::config::{InstanceConfig, OWNER_PRIORITY};
use crate::wire::{
    Centiseconds, Endpoints, Ipv4Packet, Version, Vrid, VrrpPacket, VrrpRepr, WireError,
    IPPROTO_VRRP, REQUIRED_HOP_LIMIT,
};

/// An advert that passed every receive rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub advert: VrrpRepr,
    /// The IP source: the sender's primary address, used to break priority ties.
    pub source: IpAddr,
    /// The advert's address list differs from the configured one. RFC 5798 §7.1 says to
    /// log this as a misconfiguration and go on; VRRPv2 drops such packets unless the
    /// sender is the owner (RFC 3768 §7.1), so for v2 this is only ever set for an owner.
    pub address_list_mismatch: bool,
}

/// Why a received packet was discarded, with the details worth logging.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("malformed IPv4 header: {0}")]
    Ipv4Header(WireError),
    #[error("IP protocol {0} is not VRRP (112)")]
    NotVrrp(u8),
    #[error("TTL / hop limit {0}, not 255 (RFC 5798 §5.1.1.3, §5.1.2.3)")]
    HopLimit(u8),
    #[error("VRRP packet of {0} bytes is shorter than its fixed header")]
    Truncated(usize),
    #[error("malformed VRRP packet: {0}")]
    Malformed(WireError),
    #[error("VRID {0} is not configured on the receiving interface")]
    UnknownVrid(u8),
    #[error("VRRP over the other address family than the instance's")]
    FamilyMismatch,
    #[error("version {received} received, the instance runs {configured}")]
    VersionMismatch { received: u8, configured: Version },
    #[error("packet type {0} is not ADVERTISEMENT")]
    UnknownType(u8),
    #[error("Count IPvX Addrs is 0 (RFC 9568 erratum 8299)")]
    NoAddresses,
    #[error("packet is {actual} bytes, its address count calls for {expected}")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("bad checksum")]
    BadChecksum,
    #[error("advert carries our own primary address as source")]
    OwnAdvert,
    #[error("local router owns the addresses (RFC 3768 §7.1)")]
    LocalIsOwner,
    #[error("auth type {received} received, {configured} configured")]
    AuthTypeMismatch { received: u8, configured: u8 },
    #[error("authentication data mismatch")]
    AuthFailure,
    #[error("address list differs from the configured one and the sender is not the owner (RFC 3768 §7.1)")]
    AddressListMismatch,
    #[error("advert interval {received} received, {configured} configured (RFC 3768 §7.1)")]
    AdvertIntervalMismatch {
        received: Centiseconds,
        configured: Centiseconds,
    },
    #[error("advert interval is 0 (RFC 9568 erratum 8301)")]
    ZeroAdvertInterval,
}

/// The kind of a [`Discard`], without details: a counter key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    Ipv4Header,
    NotVrrp,
    HopLimit,
    Truncated,
    Malformed,
    UnknownVrid,
    FamilyMismatch,
    VersionMismatch,
    UnknownType,
    NoAddresses,
    LengthMismatch,
    BadChecksum,
    OwnAdvert,
    LocalIsOwner,
    AuthTypeMismatch,
    AuthFailure,
    AddressListMismatch,
    AdvertIntervalMismatch,
    ZeroAdvertInterval,
}

impl DropReason {
    pub const ALL: [DropReason; 19] = [
        DropReason::Ipv4Header,
        DropReason::NotVrrp,
        DropReason::HopLimit,
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::UnknownVrid,
        DropReason::FamilyMismatch,
        DropReason::VersionMismatch,
        DropReason::UnknownType,
        DropReason::NoAddresses,
        DropReason::LengthMismatch,
        DropReason::BadChecksum,
        DropReason::OwnAdvert,
        DropReason::LocalIsOwner,
        DropReason::AuthTypeMismatch,
        DropReason::AuthFailure,
        DropReason::AddressListMismatch,
        DropReason::AdvertIntervalMismatch,
        DropReason::ZeroAdvertInterval,
    ];

    /// A stable snake_case name for metrics and status output.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Ipv4Header => "ipv4_header",
            DropReason::NotVrrp => "not_vrrp",
            DropReason::HopLimit => "hop_limit",
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::UnknownVrid => "unknown_vrid",
            DropReason::FamilyMismatch => "family_mismatch",
            DropReason::VersionMismatch => "version_mismatch",
            DropReason::UnknownType => "unknown_type",
            DropReason::NoAddresses => "no_addresses",
            DropReason::LengthMismatch => "length_mismatch",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::OwnAdvert => "own_advert",
            DropReason::LocalIsOwner => "local_is_owner",
            DropReason::AuthTypeMismatch => "auth_type_mismatch",
            DropReason::AuthFailure => "auth_failure",
            DropReason::AddressListMismatch => "address_list_mismatch",
            DropReason::AdvertIntervalMismatch => "advert_interval_mismatch",
            DropReason::ZeroAdvertInterval => "zero_advert_interval",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Discard {
    pub fn reason(&self) -> DropReason {
        match self {
            Discard::Ipv4Header(_) => DropReason::Ipv4Header,
            Discard::NotVrrp(_) => DropReason::NotVrrp,
            Discard::HopLimit(_) => DropReason::HopLimit,
            Discard::Truncated(_) => DropReason::Truncated,
            Discard::Malformed(_) => DropReason::Malformed,
            Discard::UnknownVrid(_) => DropReason::UnknownVrid,
            Discard::FamilyMismatch => DropReason::FamilyMismatch,
            Discard::VersionMismatch { .. } => DropReason::VersionMismatch,
            Discard::UnknownType(_) => DropReason::UnknownType,
            Discard::NoAddresses => DropReason::NoAddresses,
            Discard::LengthMismatch { .. } => DropReason::LengthMismatch,
            Discard::BadChecksum => DropReason::BadChecksum,
            Discard::OwnAdvert => DropReason::OwnAdvert,
            Discard::LocalIsOwner => DropReason::LocalIsOwner,
            Discard::AuthTypeMismatch { .. } => DropReason::AuthTypeMismatch,
            Discard::AuthFailure => DropReason::AuthFailure,
            Discard::AddressListMismatch => DropReason::AddressListMismatch,
            Discard::AdvertIntervalMismatch { .. } => DropReason::AdvertIntervalMismatch,
            Discard::ZeroAdvertInterval => DropReason::ZeroAdvertInterval,
        }
    }
}

/// One counter per [`DropReason`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::ALL.len()],
}

impl DropCounters {
    pub fn record(&mut self, reason: DropReason) {
        let slot = &mut self.counts[reason.index()];
        *slot = slot.saturating_add(1);
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Every reason with its count, zeros included, in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}

/// Validates a datagram from a raw IPv4 socket (IPv4 header first, options allowed).
///
/// `lookup` finds the instance configured for a VRID on the receiving interface.
pub fn receive_ipv4<'a, F>(datagram: &[u8], lookup: F) -> Result<Received, Discard>
where
    F: FnOnce(Vrid) -> Option<&'a InstanceConfig>,
{
    let ip = Ipv4Packet::new_checked(datagram).map_err(Discard::Ipv4Header)?;
    if ip.protocol() != IPPROTO_VRRP {
        return Err(Discard::NotVrrp(ip.protocol()));
    }
    let endpoints = Endpoints::V4 {
        source: ip.source(),
        destination: ip.destination(),
    };
    validate(ip.payload(), &endpoints, ip.ttl(), lookup)
}

/// Validates the VRRP payload from a raw IPv6 socket, given the addresses and the hop
/// limit the kernel reported (IPV6_RECVHOPLIMIT and IPV6_RECVPKTINFO).
pub fn receive_ipv6<'a, F>(
    payload: &[u8],
    source: Ipv6Addr,
    destination: Ipv6Addr,
    hop_limit: u8,
    lookup: F,
) -> Result<Received, Discard>
where
    F: FnOnce(Vrid) -> Option<&'a InstanceConfig>,
{
    let endpoints = Endpoints::V6 {
        source,
        destination,
    };
    validate(payload, &endpoints, hop_limit, lookup)
}

fn validate<'a, F>(
    payload: &[u8],
    endpoints: &Endpoints,
    hop_limit: u8,
    lookup: F,
) -> Result<Received, Discard>
where
    F: FnOnce(Vrid) -> Option<&'a InstanceConfig>,
{
    // §5.1.1.3 / §5.1.2.3 (RFC 5082): only on-link senders can arrive with 255.
    if hop_limit != REQUIRED_HOP_LIMIT {
        return Err(Discard::HopLimit(hop_limit));
    }
    let packet = VrrpPacket::new_checked(payload).map_err(|_| Discard::Truncated(payload.len()))?;
    // §7.1: "MUST verify that the VRID is configured on the receiving interface".
    let config = Vrid::new(packet.vrid())
        .and_then(lookup)
        .ok_or(Discard::UnknownVrid(packet.vrid()))?;
    if config.family() != endpoints.family() {
        return Err(Discard::FamilyMismatch);
    }
    // §7.1: "MUST verify that the VRRP version is 3" (RFC 3768: "is 2").
    if packet.version() != config.version.number() {
        return Err(Discard::VersionMismatch {
            received: packet.version(),
            configured: config.version,
        });
    }
    let advert =
        VrrpRepr::parse(&packet, endpoints, config.v3_ipv4_checksum).map_err(|e| match e {
            WireError::UnknownType(t) => Discard::UnknownType(t),
            WireError::NoAddresses => Discard::NoAddresses,
            WireError::LengthMismatch { expected, actual } => {
                Discard::LengthMismatch { expected, actual }
            }
            WireError::BadChecksum => Discard::BadChecksum,
            WireError::UnsupportedAuthType(received) => Discard::AuthTypeMismatch {
                received,
                configured: config.auth.auth_type(),
            },
            WireError::ZeroAdvertInterval => Discard::ZeroAdvertInterval,
            WireError::V2OverIpv6 => Discard::FamilyMismatch,
            other => Discard::Malformed(other),
        })?;
    let source = endpoints.source();
    // Looped-back multicast, or a peer misconfigured with our address: either way the
    // §6.4.3 tie-break on addresses would compare us with ourselves.
    if source == config.primary_address {
        return Err(Discard::OwnAdvert);
    }
    if let VrrpRepr::V2(v2) = &advert {
        // RFC 3768 §7.1: "... and the local router is not the IP Address owner". RFC 9568
        // erratum 8298 drops that clause for v3.
        if config.is_owner() {
            return Err(Discard::LocalIsOwner);
        }
        // RFC 3768 §7.1: the Auth Type must match and its method must pass.
        if v2.auth.auth_type() != config.auth.auth_type() {
            return Err(Discard::AuthTypeMismatch {
                received: v2.auth.auth_type(),
                configured: config.auth.auth_type(),
            });
        }
        // Type 0 data is ignored on reception (RFC 3768 §5.3.6.1).
        if v2.auth != config.auth {
            return Err(Discard::AuthFailure);
        }
    }
    // §7.1: "MAY verify that Count IPvX Addrs and the list of IPvX Address(es) match".
    let address_list_mismatch = !advert.addresses().same_set(&config.virtual_addresses);
    if let VrrpRepr::V2(v2) = &advert {
        // RFC 3768 §7.1: on mismatch, drop unless the sender is the owner.
        if address_list_mismatch && v2.priority != OWNER_PRIORITY {
            return Err(Discard::AddressListMismatch);
        }
        // RFC 3768 §7.1: the Adver Interval must equal the configured one.
        if v2.adver_int != config.adver_int_secs() {
            return Err(Discard::AdvertIntervalMismatch {
                received: advert.advert_interval(),
                configured: config.advertisement_interval,
            });
        }
    }
    Ok(Received {
        advert,
        source,
        address_list_mismatch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reason_table_is_consistent() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r} out of place in ALL");
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }

    #[test]
    fn counters_count_per_reason() {
        let mut c = DropCounters::default();
        c.record(DropReason::BadChecksum);
        c.record(DropReason::BadChecksum);
        c.record(DropReason::HopLimit);
        assert_eq!(c.get(DropReason::BadChecksum), 2);
        assert_eq!(c.get(DropReason::HopLimit), 1);
        assert_eq!(c.get(DropReason::UnknownVrid), 0);
        assert_eq!(c.total(), 3);
        assert_eq!(c.iter().count(), DropReason::ALL.len());
        assert_eq!(Discard::BadChecksum.reason(), DropReason::BadChecksum);
    }
}
