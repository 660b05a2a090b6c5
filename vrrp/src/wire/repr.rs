//! The parsed form of a VRRP advertisement, with `parse` and `emit`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    AddressFamily, Centiseconds, Endpoints, V3Ipv4Checksum, Version, Vrid, VrrpPacket, WireError,
    HEADER_LEN, MAX_ADVER_INT_V3, TYPE_ADVERTISEMENT, V2_AUTH_DATA_LEN,
};

/// VRRPv2 authentication (RFC 3768 §5.3.6, RFC 2338 §5.3.6).
///
/// RFC 3768 reserves type 1; it is kept here as RFC 2338's simple text password because
/// keepalived (`auth_type PASS`) still sends it. IP Authentication Header (type 2) is
/// not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum V2Auth {
    /// Auth Type 0: the Authentication Data is sent as zero and ignored on reception.
    #[default]
    None,
    /// Auth Type 1: the password, padded with zeros on the right to 8 octets.
    SimplePassword([u8; V2_AUTH_DATA_LEN]),
}

impl V2Auth {
    /// A simple password of at most 8 bytes, zero-padded (RFC 2338 §5.3.6.2).
    pub fn simple_password(password: &[u8]) -> Result<V2Auth, WireError> {
        let mut data = [0u8; V2_AUTH_DATA_LEN];
        data.get_mut(..password.len())
            .ok_or(WireError::PasswordTooLong(password.len()))?
            .copy_from_slice(password);
        Ok(V2Auth::SimplePassword(data))
    }

    /// The Auth Type field value.
    pub const fn auth_type(&self) -> u8 {
        match self {
            V2Auth::None => 0,
            V2Auth::SimplePassword(_) => 1,
        }
    }

    /// The Authentication Data field value.
    pub const fn data(&self) -> [u8; V2_AUTH_DATA_LEN] {
        match self {
            V2Auth::None => [0; V2_AUTH_DATA_LEN],
            V2Auth::SimplePassword(data) => *data,
        }
    }
}

/// The virtual addresses of a VRRPv3 advert: IPv4 or IPv6, never both (RFC 5798 §5.2.9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VirtualAddresses {
    V4(Vec<Ipv4Addr>),
    V6(Vec<Ipv6Addr>),
}

impl VirtualAddresses {
    pub fn family(&self) -> AddressFamily {
        match self {
            VirtualAddresses::V4(_) => AddressFamily::Ipv4,
            VirtualAddresses::V6(_) => AddressFamily::Ipv6,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            VirtualAddresses::V4(a) => a.len(),
            VirtualAddresses::V6(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The addresses as [`IpAddr`]s, in order.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (v4, v6) = match self {
            VirtualAddresses::V4(a) => (&a[..], &[][..]),
            VirtualAddresses::V6(a) => (&[][..], &a[..]),
        };
        v4.iter()
            .copied()
            .map(IpAddr::V4)
            .chain(v6.iter().copied().map(IpAddr::V6))
    }

    /// Same addresses, order ignored: the check of RFC 5798 §7.1 ("MAY verify that
    /// Count IPvX Addrs and the list of IPvX Address(es) match").
    pub fn same_set(&self, other: &VirtualAddresses) -> bool {
        fn same<A: Ord + Clone>(a: &[A], b: &[A]) -> bool {
            let (mut a, mut b) = (a.to_vec(), b.to_vec());
            a.sort_unstable();
            b.sort_unstable();
            a == b
        }
        match (self, other) {
            (VirtualAddresses::V4(a), VirtualAddresses::V4(b)) => same(a, b),
            (VirtualAddresses::V6(a), VirtualAddresses::V6(b)) => same(a, b),
            _ => false,
        }
    }
}

/// A VRRPv2 ADVERTISEMENT (RFC 3768 §5.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct V2Advert {
    pub vrid: Vrid,
    pub priority: u8,
    /// Adver Int, in seconds (RFC 3768 §5.3.7).
    pub adver_int: u8,
    pub auth: V2Auth,
    pub addresses: Vec<Ipv4Addr>,
}

/// A VRRPv3 ADVERTISEMENT (RFC 5798 / RFC 9568 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct V3Advert {
    pub vrid: Vrid,
    pub priority: u8,
    /// Max Adver Int, in centiseconds, 12 bits (RFC 5798 §5.2.7).
    pub max_adver_int: Centiseconds,
    pub addresses: VirtualAddresses,
}

/// A parsed VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VrrpRepr {
    V2(V2Advert),
    V3(V3Advert),
}

impl VrrpRepr {
    pub fn version(&self) -> Version {
        match self {
            VrrpRepr::V2(_) => Version::V2,
            VrrpRepr::V3(_) => Version::V3,
        }
    }

    pub fn vrid(&self) -> Vrid {
        match self {
            VrrpRepr::V2(a) => a.vrid,
            VrrpRepr::V3(a) => a.vrid,
        }
    }

    pub fn priority(&self) -> u8 {
        match self {
            VrrpRepr::V2(a) => a.priority,
            VrrpRepr::V3(a) => a.priority,
        }
    }

    pub fn family(&self) -> AddressFamily {
        match self {
            VrrpRepr::V2(_) => AddressFamily::Ipv4,
            VrrpRepr::V3(a) => a.addresses.family(),
        }
    }

    /// The advertised interval in centiseconds: v3's Max Adver Int, or v2's Adver Int
    /// converted from seconds.
    pub fn advert_interval(&self) -> Centiseconds {
        match self {
            VrrpRepr::V2(a) => Centiseconds::from_secs(a.adver_int),
            VrrpRepr::V3(a) => a.max_adver_int,
        }
    }

    /// The advertised virtual addresses, in order.
    pub fn addresses(&self) -> VirtualAddresses {
        match self {
            VrrpRepr::V2(a) => VirtualAddresses::V4(a.addresses.clone()),
            VrrpRepr::V3(a) => a.addresses.clone(),
        }
    }

    fn address_count(&self) -> usize {
        match self {
            VrrpRepr::V2(a) => a.addresses.len(),
            VrrpRepr::V3(a) => a.addresses.len(),
        }
    }

    /// Parses and validates a whole message received between `endpoints`.
    ///
    /// Checks, in the order of RFC 5798/9568 §7.1 and RFC 3768 §7.1 as far as they
    /// concern the packet alone: version, type (§5.2.2: unknown types are discarded),
    /// non-zero count (RFC 9568 erratum 8299), complete packet with count matching
    /// length, checksum, VRID non-zero, then v2 Auth Type known and Adver Int non-zero
    /// (RFC 9568 erratum 8301 for v3).
    pub fn parse<T: AsRef<[u8]>>(
        packet: &VrrpPacket<T>,
        endpoints: &Endpoints,
        v3_ipv4_checksum: V3Ipv4Checksum,
    ) -> Result<VrrpRepr, WireError> {
        let version = Version::try_from(packet.version())?;
        let family = endpoints.family();
        if version == Version::V2 && family == AddressFamily::Ipv6 {
            return Err(WireError::V2OverIpv6);
        }
        if packet.packet_type() != TYPE_ADVERTISEMENT {
            return Err(WireError::UnknownType(packet.packet_type()));
        }
        if packet.address_count() == 0 {
            return Err(WireError::NoAddresses);
        }
        packet.check_len(family)?;
        if !packet.verify_checksum(endpoints, v3_ipv4_checksum) {
            return Err(WireError::BadChecksum);
        }
        let vrid = Vrid::try_from(packet.vrid())?;
        let count = usize::from(packet.address_count());
        // check_len guaranteed every index below count.
        let v4 =
            || -> Vec<Ipv4Addr> { (0..count).filter_map(|i| packet.ipv4_address(i)).collect() };
        match version {
            Version::V2 => {
                let auth = match packet.auth_type() {
                    0 => V2Auth::None,
                    1 => V2Auth::SimplePassword(packet.auth_data().unwrap_or_default()),
                    other => return Err(WireError::UnsupportedAuthType(other)),
                };
                if packet.adver_int() == 0 {
                    return Err(WireError::ZeroAdvertInterval);
                }
                Ok(VrrpRepr::V2(V2Advert {
                    vrid,
                    priority: packet.priority(),
                    adver_int: packet.adver_int(),
                    auth,
                    addresses: v4(),
                }))
            }
            Version::V3 => {
                if packet.max_adver_int() == 0 {
                    return Err(WireError::ZeroAdvertInterval);
                }
                let addresses = match family {
                    AddressFamily::Ipv4 => VirtualAddresses::V4(v4()),
                    AddressFamily::Ipv6 => VirtualAddresses::V6(
                        (0..count).filter_map(|i| packet.ipv6_address(i)).collect(),
                    ),
                };
                Ok(VrrpRepr::V3(V3Advert {
                    vrid,
                    priority: packet.priority(),
                    max_adver_int: Centiseconds(packet.max_adver_int()),
                    addresses,
                }))
            }
        }
    }

    /// Bytes [`VrrpRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let trailer = match self {
            VrrpRepr::V2(_) => V2_AUTH_DATA_LEN,
            VrrpRepr::V3(_) => 0,
        };
        HEADER_LEN + self.address_count() * self.family().address_len() + trailer
    }

    /// Writes the advert into a buffer of exactly [`VrrpRepr::buffer_len`] bytes and
    /// fills in the checksum for `endpoints` (RFC 5798 §7.2).
    ///
    /// Refuses what the wire cannot carry: no addresses or more than 255, an interval of
    /// 0 or (v3) above 4095 cs, and addresses of another family than `endpoints`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut VrrpPacket<T>,
        endpoints: &Endpoints,
        v3_ipv4_checksum: V3Ipv4Checksum,
    ) -> Result<(), WireError> {
        let count = self.address_count();
        if count == 0 {
            return Err(WireError::NoAddresses);
        }
        let count = u8::try_from(count).map_err(|_| WireError::TooManyAddresses(count))?;
        if self.family() != endpoints.family() {
            return Err(WireError::FamilyMismatch);
        }
        match self {
            VrrpRepr::V2(a) if a.adver_int == 0 => return Err(WireError::ZeroAdvertInterval),
            VrrpRepr::V3(a) if a.max_adver_int.0 == 0 => return Err(WireError::ZeroAdvertInterval),
            VrrpRepr::V3(a) if a.max_adver_int.0 > MAX_ADVER_INT_V3 => {
                return Err(WireError::AdvertIntervalTooLarge(a.max_adver_int.0))
            }
            _ => {}
        }
        let expected = self.buffer_len();
        let actual = packet.as_bytes().len();
        if actual != expected {
            return Err(WireError::LengthMismatch { expected, actual });
        }

        packet.set_version(self.version().number());
        packet.set_packet_type(TYPE_ADVERTISEMENT);
        packet.set_vrid(self.vrid().get());
        packet.set_priority(self.priority());
        packet.set_address_count(count);
        match self {
            VrrpRepr::V2(a) => {
                packet.set_auth_type(a.auth.auth_type());
                packet.set_adver_int(a.adver_int);
                for (i, addr) in a.addresses.iter().enumerate() {
                    packet.set_ipv4_address(i, *addr)?;
                }
                packet.set_auth_data(&a.auth.data())?;
            }
            VrrpRepr::V3(a) => {
                packet.set_max_adver_int(a.max_adver_int.0);
                match &a.addresses {
                    VirtualAddresses::V4(list) => {
                        for (i, addr) in list.iter().enumerate() {
                            packet.set_ipv4_address(i, *addr)?;
                        }
                    }
                    VirtualAddresses::V6(list) => {
                        for (i, addr) in list.iter().enumerate() {
                            packet.set_ipv6_address(i, *addr)?;
                        }
                    }
                }
            }
        }
        packet.fill_checksum(endpoints, v3_ipv4_checksum);
        Ok(())
    }

    /// Emits into a fresh buffer.
    pub fn to_bytes(
        &self,
        endpoints: &Endpoints,
        v3_ipv4_checksum: V3Ipv4Checksum,
    ) -> Result<Vec<u8>, WireError> {
        let mut packet = VrrpPacket::new_checked(vec![0u8; self.buffer_len()])?;
        self.emit(&mut packet, endpoints, v3_ipv4_checksum)?;
        Ok(packet.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vrid(v: u8) -> Vrid {
        Vrid::new(v).expect("non-zero vrid")
    }

    fn v4_endpoints() -> Endpoints {
        Endpoints::to_multicast(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
    }

    #[test]
    fn simple_password_pads_and_limits() {
        assert_eq!(
            V2Auth::simple_password(b"abc"),
            Ok(V2Auth::SimplePassword(*b"abc\0\0\0\0\0"))
        );
        assert_eq!(
            V2Auth::simple_password(b"12345678"),
            Ok(V2Auth::SimplePassword(*b"12345678"))
        );
        assert_eq!(
            V2Auth::simple_password(b"123456789"),
            Err(WireError::PasswordTooLong(9))
        );
        assert_eq!(V2Auth::None.data(), [0; 8]);
        assert_eq!(V2Auth::None.auth_type(), 0);
    }

    #[test]
    fn emit_refuses_what_the_wire_cannot_carry() {
        let e = v4_endpoints();
        let mode = V3Ipv4Checksum::WithPseudoHeader;
        let empty = VrrpRepr::V3(V3Advert {
            vrid: vrid(1),
            priority: 100,
            max_adver_int: Centiseconds(100),
            addresses: VirtualAddresses::V4(vec![]),
        });
        assert_eq!(empty.to_bytes(&e, mode), Err(WireError::NoAddresses));
        let many = VrrpRepr::V2(V2Advert {
            vrid: vrid(1),
            priority: 100,
            adver_int: 1,
            auth: V2Auth::None,
            addresses: vec![Ipv4Addr::LOCALHOST; 256],
        });
        assert_eq!(
            many.to_bytes(&e, mode),
            Err(WireError::TooManyAddresses(256))
        );
        let big = VrrpRepr::V3(V3Advert {
            vrid: vrid(1),
            priority: 100,
            max_adver_int: Centiseconds(4096),
            addresses: VirtualAddresses::V4(vec![Ipv4Addr::LOCALHOST]),
        });
        assert_eq!(
            big.to_bytes(&e, mode),
            Err(WireError::AdvertIntervalTooLarge(4096))
        );
        let zero = VrrpRepr::V2(V2Advert {
            vrid: vrid(1),
            priority: 100,
            adver_int: 0,
            auth: V2Auth::None,
            addresses: vec![Ipv4Addr::LOCALHOST],
        });
        assert_eq!(zero.to_bytes(&e, mode), Err(WireError::ZeroAdvertInterval));
        let v6 = VrrpRepr::V3(V3Advert {
            vrid: vrid(1),
            priority: 100,
            max_adver_int: Centiseconds(100),
            addresses: VirtualAddresses::V6(vec![Ipv6Addr::LOCALHOST]),
        });
        assert_eq!(v6.to_bytes(&e, mode), Err(WireError::FamilyMismatch));
        let ok = VrrpRepr::V3(V3Advert {
            vrid: vrid(1),
            priority: 100,
            max_adver_int: Centiseconds(100),
            addresses: VirtualAddresses::V4(vec![Ipv4Addr::LOCALHOST]),
        });
        let mut short = VrrpPacket::new_checked(vec![0u8; 11]).expect("header");
        assert_eq!(
            ok.emit(&mut short, &e, mode),
            Err(WireError::LengthMismatch {
                expected: 12,
                actual: 11
            })
        );
    }

    #[test]
    fn same_set_ignores_order_but_not_family_or_count() {
        let a = VirtualAddresses::V4(vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]);
        let b = VirtualAddresses::V4(vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1)]);
        let c = VirtualAddresses::V4(vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert!(a.same_set(&b));
        assert!(!a.same_set(&c));
        assert!(!a.same_set(&VirtualAddresses::V6(vec![])));
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))
            ]
        );
    }
}
