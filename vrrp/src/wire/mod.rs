//! VRRP on the wire: zero-copy views and the high-level representation.
//!
//! Following the smoltcp habit, [`VrrpPacket`] and [`Ipv4Packet`] are views over any
//! `T: AsRef<[u8]>` whose constructor validates lengths once; [`VrrpRepr`] is the parsed,
//! owned form with `parse` and `emit`.

mod checksum;
mod ipv4;
mod packet;
mod repr;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU8;
use std::time::Duration;

pub use ipv4::Ipv4Packet;
pub use packet::VrrpPacket;
pub use repr::{V2Advert, V2Auth, V3Advert, VirtualAddresses, VrrpRepr};

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4, RFC 3768 §5.2.4).
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 multicast group adverts are sent to (RFC 5798 §5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group adverts are sent to (RFC 5798 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / Hop Limit every advert is sent with and must arrive with (RFC 5798 §5.1.1.3,
/// §5.1.2.3; RFC 3768 §5.2.3): a packet from off-link cannot arrive with 255.
pub const REQUIRED_HOP_LIMIT: u8 = 255;
/// The only VRRP packet type: ADVERTISEMENT (RFC 5798 §5.2.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Length of the fixed VRRP header (version .. checksum).
pub const HEADER_LEN: usize = 8;
/// Length of the VRRPv2 Authentication Data trailer (RFC 3768 §5.3.10).
pub const V2_AUTH_DATA_LEN: usize = 8;
/// The largest Max Adver Int a VRRPv3 packet can carry: a 12-bit field (RFC 5798 §5.2.7).
pub const MAX_ADVER_INT_V3: u16 = 0x0fff;

/// Errors from parsing or emitting VRRP and IPv4 packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("buffer of {len} bytes is shorter than the {needed}-byte header")]
    Truncated { len: usize, needed: usize },
    #[error("IP version {0} where IPv4 was expected")]
    NotIpv4(u8),
    #[error("IPv4 header length {0} bytes is invalid for this buffer")]
    BadIpv4HeaderLength(usize),
    #[error("IPv4 total length {total} does not fit header {header} and buffer {buffer}")]
    BadIpv4TotalLength {
        total: usize,
        header: usize,
        buffer: usize,
    },
    #[error("unknown VRRP version {0}")]
    UnknownVersion(u8),
    #[error("VRRPv2 carries IPv4 only (RFC 3768)")]
    V2OverIpv6,
    #[error("VRRP packet type {0} is not ADVERTISEMENT (1)")]
    UnknownType(u8),
    #[error("Count IPvX Addrs is 0")]
    NoAddresses,
    #[error("{0} addresses do not fit the 8-bit Count IPvX Addrs field")]
    TooManyAddresses(usize),
    #[error("VRRP length {actual} bytes, the header announces {expected}")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("VRRP checksum mismatch")]
    BadChecksum,
    #[error("VRID 0 is not a valid virtual router id")]
    InvalidVrid,
    #[error("unsupported VRRPv2 auth type {0}")]
    UnsupportedAuthType(u8),
    #[error("advertisement interval is 0")]
    ZeroAdvertInterval,
    #[error("advertisement interval {0} cs does not fit the 12-bit field")]
    AdvertIntervalTooLarge(u16),
    #[error("address family of the addresses differs from the IP header's")]
    FamilyMismatch,
    #[error("simple password of {0} bytes is longer than 8")]
    PasswordTooLong(usize),
}

/// Virtual Router Identifier, 1..=255 (RFC 5798 §5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vrid(NonZeroU8);

impl Vrid {
    /// VRID 1.
    pub const MIN: Vrid = Vrid(NonZeroU8::MIN);

    /// `None` for 0, which names no virtual router.
    pub const fn new(value: u8) -> Option<Vrid> {
        match NonZeroU8::new(value) {
            Some(v) => Some(Vrid(v)),
            None => None,
        }
    }

    pub const fn get(self) -> u8 {
        self.0.get()
    }
}

impl TryFrom<u8> for Vrid {
    type Error = WireError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Vrid::new(value).ok_or(WireError::InvalidVrid)
    }
}

impl fmt::Display for Vrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Protocol version: 2 (RFC 3768) or 3 (RFC 5798, RFC 9568).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    /// The value of the 4-bit Version field.
    pub const fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl TryFrom<u8> for Version {
    type Error = WireError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            2 => Ok(Version::V2),
            3 => Ok(Version::V3),
            other => Err(WireError::UnknownVersion(other)),
        }
    }
}

/// In settings, the version is the number users write: `version = 3`.
#[cfg(feature = "serde")]
impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.number())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u8::try_from(n)
            .ok()
            .and_then(|n| Version::try_from(n).ok())
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "VRRP version {n}: use 2 (RFC 3768) or 3 (RFC 5798)"
                ))
            })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VRRPv{}", self.number())
    }
}

/// IPv4 or IPv6: a virtual router protects addresses of one family only (RFC 5798 §5.2.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    Ipv4,
    Ipv6,
}

impl AddressFamily {
    /// Bytes one address of this family takes in the address list.
    pub const fn address_len(self) -> usize {
        match self {
            AddressFamily::Ipv4 => 4,
            AddressFamily::Ipv6 => 16,
        }
    }

    pub fn of(addr: IpAddr) -> AddressFamily {
        match addr {
            IpAddr::V4(_) => AddressFamily::Ipv4,
            IpAddr::V6(_) => AddressFamily::Ipv6,
        }
    }
}

/// A time interval in centiseconds, VRRPv3's unit for (Max) Adver Int (RFC 5798 §5.2.7).
/// VRRPv2's whole seconds convert exactly (1 s = 100 cs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Centiseconds(pub u16);

impl Centiseconds {
    pub const fn from_secs(secs: u8) -> Centiseconds {
        // 255 * 100 fits in u16.
        Centiseconds(secs as u16 * 100)
    }

    pub const fn get(self) -> u16 {
        self.0
    }

    pub const fn as_duration(self) -> Duration {
        Duration::from_millis(self.0 as u64 * 10)
    }
}

impl fmt::Display for Centiseconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}cs", self.0)
    }
}

/// How the VRRPv3 checksum is computed for IPv4, chosen per instance.
///
/// RFC 5798 §5.2.8 names only the IPv6 pseudo-header, and implementations split:
/// keepalived and FRR prepend the IPv4 pseudo-header, while Cisco, Juniper and RFC 9568
/// §5.2.8 checksum the VRRP message alone. IPv6 always uses the pseudo-header and VRRPv2
/// never does (RFC 3768 §5.3.8), whatever this setting says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum V3Ipv4Checksum {
    /// Include the IPv4 pseudo-header (source, destination, zero, protocol 112, length):
    /// the keepalived and FRR default.
    #[default]
    WithPseudoHeader,
    /// The VRRP message only: RFC 9568 §5.2.8, Cisco, Juniper.
    WithoutPseudoHeader,
}

/// The IP source and destination an advert travels between: they fix the address family
/// and feed the pseudo-header checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoints {
    V4 {
        source: Ipv4Addr,
        destination: Ipv4Addr,
    },
    V6 {
        source: Ipv6Addr,
        destination: Ipv6Addr,
    },
}

impl Endpoints {
    pub fn family(&self) -> AddressFamily {
        match self {
            Endpoints::V4 { .. } => AddressFamily::Ipv4,
            Endpoints::V6 { .. } => AddressFamily::Ipv6,
        }
    }

    pub fn source(&self) -> IpAddr {
        match *self {
            Endpoints::V4 { source, .. } => IpAddr::V4(source),
            Endpoints::V6 { source, .. } => IpAddr::V6(source),
        }
    }

    pub fn destination(&self) -> IpAddr {
        match *self {
            Endpoints::V4 { destination, .. } => IpAddr::V4(destination),
            Endpoints::V6 { destination, .. } => IpAddr::V6(destination),
        }
    }

    /// From the sender's address to the VRRP multicast group of its family.
    pub fn to_multicast(source: IpAddr) -> Endpoints {
        match source {
            IpAddr::V4(source) => Endpoints::V4 {
                source,
                destination: MULTICAST_V4,
            },
            IpAddr::V6(source) => Endpoints::V6 {
                source,
                destination: MULTICAST_V6,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrid_is_one_to_255() {
        assert_eq!(Vrid::new(0), None);
        assert_eq!(Vrid::try_from(0), Err(WireError::InvalidVrid));
        let v = Vrid::try_from(255).expect("valid");
        assert_eq!(v.get(), 255);
        assert_eq!(v.to_string(), "255");
    }

    #[test]
    fn version_numbers() {
        assert_eq!(Version::try_from(2), Ok(Version::V2));
        assert_eq!(Version::try_from(3), Ok(Version::V3));
        assert_eq!(Version::try_from(1), Err(WireError::UnknownVersion(1)));
        assert_eq!(Version::V3.number(), 3);
        assert_eq!(Version::V2.to_string(), "VRRPv2");
    }

    #[test]
    fn families_and_endpoints() {
        assert_eq!(AddressFamily::Ipv4.address_len(), 4);
        assert_eq!(AddressFamily::Ipv6.address_len(), 16);
        let v6: IpAddr = "fe80::1".parse().expect("literal");
        assert_eq!(AddressFamily::of(v6), AddressFamily::Ipv6);
        let e = Endpoints::to_multicast(v6);
        assert_eq!(e.family(), AddressFamily::Ipv6);
        assert_eq!(e.source(), v6);
        assert_eq!(e.destination(), IpAddr::V6(MULTICAST_V6));
        let e = Endpoints::to_multicast(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(e.destination(), IpAddr::V4(MULTICAST_V4));
    }

    #[test]
    fn centiseconds() {
        assert_eq!(Centiseconds::from_secs(255), Centiseconds(25_500));
        assert_eq!(Centiseconds(5).as_duration(), Duration::from_millis(50));
        assert_eq!(Centiseconds(4095).get(), 4095);
        assert_eq!(Centiseconds(7).to_string(), "7cs");
    }
}
