//! Zero-copy view of a VRRP message (RFC 3768 §5.1, RFC 5798 §5.1).
//!
//! ```text
//!  v2: |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
//!      |   Auth Type   |   Adver Int   |          Checksum             |
//!      |  IPv4 Address(es) ...  | Authentication Data (8 bytes)       |
//!  v3: |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//!      |(rsvd) |     Max Adver Int     |          Checksum             |
//!      |  IPvX Address(es) ...                                         |
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    checksum, AddressFamily, Endpoints, V3Ipv4Checksum, WireError, HEADER_LEN, MAX_ADVER_INT_V3,
    V2_AUTH_DATA_LEN,
};

mod field {
    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    /// v2: Auth Type. v3: reserved nibble and the top 4 bits of Max Adver Int.
    pub const AUTH_TYPE: usize = 4;
    /// v2: Adver Int (seconds). v3: low 8 bits of Max Adver Int.
    pub const ADVER_INT: usize = 5;
    pub const CHECKSUM: usize = 6;
    pub const ADDRESSES: usize = 8;
}

/// A view of a VRRP message. [`VrrpPacket::new_checked`] guarantees the fixed 8-byte
/// header, so its getters and setters cannot fail; the variable part (addresses and the
/// v2 authentication trailer) is reached through bounds-checked accessors, because its
/// layout depends on the address family, which only the IP header knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VrrpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VrrpPacket<T> {
    /// Checks that the buffer holds at least the fixed header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated {
                len,
                needed: HEADER_LEN,
            });
        }
        Ok(VrrpPacket { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message as viewed.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn byte(&self, index: usize) -> u8 {
        self.buffer.as_ref()[index]
    }

    /// The 4-bit Version field.
    pub fn version(&self) -> u8 {
        self.byte(field::VER_TYPE) >> 4
    }

    /// The 4-bit Type field (1 = ADVERTISEMENT).
    pub fn packet_type(&self) -> u8 {
        self.byte(field::VER_TYPE) & 0x0f
    }

    /// Virtual Rtr ID, raw: 0 is representable on the wire but names no router.
    pub fn vrid(&self) -> u8 {
        self.byte(field::VRID)
    }

    pub fn priority(&self) -> u8 {
        self.byte(field::PRIORITY)
    }

    /// Count IPvX Addrs.
    pub fn address_count(&self) -> u8 {
        self.byte(field::COUNT)
    }

    /// VRRPv2 Auth Type (RFC 3768 §5.3.6).
    pub fn auth_type(&self) -> u8 {
        self.byte(field::AUTH_TYPE)
    }

    /// VRRPv2 Adver Int in seconds (RFC 3768 §5.3.7).
    pub fn adver_int(&self) -> u8 {
        self.byte(field::ADVER_INT)
    }

    /// VRRPv3 Max Adver Int in centiseconds: the low 12 bits (RFC 5798 §5.2.7).
    pub fn max_adver_int(&self) -> u16 {
        u16::from_be_bytes([self.byte(field::AUTH_TYPE), self.byte(field::ADVER_INT)])
            & MAX_ADVER_INT_V3
    }

    /// VRRPv3 reserved nibble: sent as zero, ignored on reception (RFC 5798 §5.2.6).
    pub fn reserved(&self) -> u8 {
        self.byte(field::AUTH_TYPE) >> 4
    }

    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.byte(field::CHECKSUM), self.byte(field::CHECKSUM + 1)])
    }

    /// The length a complete message of this version and address count must have when
    /// it carries `family` addresses: header, addresses and, for v2, the 8-byte
    /// Authentication Data (RFC 3768 §5.1). Versions other than 2 are measured as v3.
    pub fn expected_len(&self, family: AddressFamily) -> usize {
        let trailer = if self.version() == 2 {
            V2_AUTH_DATA_LEN
        } else {
            0
        };
        HEADER_LEN + usize::from(self.address_count()) * family.address_len() + trailer
    }

    /// Checks that the buffer is exactly as long as [`VrrpPacket::expected_len`]: it holds
    /// the complete packet (RFC 5798 §7.1) and the count agrees with the length.
    pub fn check_len(&self, family: AddressFamily) -> Result<(), WireError> {
        let expected = self.expected_len(family);
        let actual = self.buffer.as_ref().len();
        if expected == actual {
            Ok(())
        } else {
            Err(WireError::LengthMismatch { expected, actual })
        }
    }

    fn slice(&self, start: usize, len: usize) -> Option<&[u8]> {
        self.buffer.as_ref().get(start..start.checked_add(len)?)
    }

    /// The `index`-th IPv4 address of the list, if the buffer holds it.
    pub fn ipv4_address(&self, index: usize) -> Option<Ipv4Addr> {
        let b: [u8; 4] = self
            .slice(field::ADDRESSES + index.checked_mul(4)?, 4)?
            .try_into()
            .ok()?;
        Some(Ipv4Addr::from(b))
    }

    /// The `index`-th IPv6 address of the list, if the buffer holds it.
    pub fn ipv6_address(&self, index: usize) -> Option<Ipv6Addr> {
        let b: [u8; 16] = self
            .slice(field::ADDRESSES + index.checked_mul(16)?, 16)?
            .try_into()
            .ok()?;
        Some(Ipv6Addr::from(b))
    }

    /// VRRPv2 Authentication Data: the 8 bytes after the IPv4 address list, if present.
    pub fn auth_data(&self) -> Option<[u8; V2_AUTH_DATA_LEN]> {
        let start = field::ADDRESSES + usize::from(self.address_count()) * 4;
        self.slice(start, V2_AUTH_DATA_LEN)?.try_into().ok()
    }

    /// True when the checksum field is right for the whole buffer under the rules of
    /// this packet's version (see [`V3Ipv4Checksum`]).
    pub fn verify_checksum(&self, endpoints: &Endpoints, mode: V3Ipv4Checksum) -> bool {
        checksum::verifies(self.version(), endpoints, mode, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VrrpPacket<T> {
    fn byte_mut(&mut self, index: usize) -> &mut u8 {
        &mut self.buffer.as_mut()[index]
    }

    pub fn set_version(&mut self, version: u8) {
        let b = self.byte_mut(field::VER_TYPE);
        *b = (*b & 0x0f) | (version << 4);
    }

    pub fn set_packet_type(&mut self, packet_type: u8) {
        let b = self.byte_mut(field::VER_TYPE);
        *b = (*b & 0xf0) | (packet_type & 0x0f);
    }

    pub fn set_vrid(&mut self, vrid: u8) {
        *self.byte_mut(field::VRID) = vrid;
    }

    pub fn set_priority(&mut self, priority: u8) {
        *self.byte_mut(field::PRIORITY) = priority;
    }

    pub fn set_address_count(&mut self, count: u8) {
        *self.byte_mut(field::COUNT) = count;
    }

    pub fn set_auth_type(&mut self, auth_type: u8) {
        *self.byte_mut(field::AUTH_TYPE) = auth_type;
    }

    pub fn set_adver_int(&mut self, seconds: u8) {
        *self.byte_mut(field::ADVER_INT) = seconds;
    }

    /// Writes the 12-bit Max Adver Int and zeroes the reserved nibble (RFC 5798 §5.2.6);
    /// bits above the 12th are dropped.
    pub fn set_max_adver_int(&mut self, centiseconds: u16) {
        let [hi, lo] = (centiseconds & MAX_ADVER_INT_V3).to_be_bytes();
        *self.byte_mut(field::AUTH_TYPE) = hi;
        *self.byte_mut(field::ADVER_INT) = lo;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        let [hi, lo] = checksum.to_be_bytes();
        *self.byte_mut(field::CHECKSUM) = hi;
        *self.byte_mut(field::CHECKSUM + 1) = lo;
    }

    fn slice_mut(&mut self, start: usize, len: usize) -> Result<&mut [u8], WireError> {
        let buffer_len = self.buffer.as_ref().len();
        start
            .checked_add(len)
            .and_then(|end| self.buffer.as_mut().get_mut(start..end))
            .ok_or(WireError::LengthMismatch {
                expected: start.saturating_add(len),
                actual: buffer_len,
            })
    }

    /// Writes the `index`-th IPv4 address; fails if the buffer is too short.
    pub fn set_ipv4_address(&mut self, index: usize, addr: Ipv4Addr) -> Result<(), WireError> {
        let start = field::ADDRESSES.saturating_add(index.saturating_mul(4));
        self.slice_mut(start, 4)?.copy_from_slice(&addr.octets());
        Ok(())
    }

    /// Writes the `index`-th IPv6 address; fails if the buffer is too short.
    pub fn set_ipv6_address(&mut self, index: usize, addr: Ipv6Addr) -> Result<(), WireError> {
        let start = field::ADDRESSES.saturating_add(index.saturating_mul(16));
        self.slice_mut(start, 16)?.copy_from_slice(&addr.octets());
        Ok(())
    }

    /// Writes the VRRPv2 Authentication Data after the address list the Count field
    /// announces; fails if the buffer is too short.
    pub fn set_auth_data(&mut self, data: &[u8; V2_AUTH_DATA_LEN]) -> Result<(), WireError> {
        let start = field::ADDRESSES + usize::from(self.address_count()) * 4;
        self.slice_mut(start, V2_AUTH_DATA_LEN)?
            .copy_from_slice(data);
        Ok(())
    }

    /// Computes the checksum over the whole buffer (with the field zeroed first) and
    /// writes it.
    pub fn fill_checksum(&mut self, endpoints: &Endpoints, mode: V3Ipv4Checksum) {
        self.set_checksum(0);
        let sum = checksum::compute(self.version(), endpoints, mode, self.buffer.as_ref());
        self.set_checksum(sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_short_buffers() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                VrrpPacket::new_checked(vec![0u8; len]),
                Err(WireError::Truncated {
                    len,
                    needed: HEADER_LEN
                })
            );
        }
    }

    #[test]
    fn setters_round_trip_through_getters() {
        let mut p = VrrpPacket::new_checked(vec![0u8; 8 + 4 + 8]).expect("long enough");
        p.set_version(2);
        p.set_packet_type(1);
        p.set_vrid(51);
        p.set_priority(150);
        p.set_address_count(1);
        p.set_auth_type(1);
        p.set_adver_int(3);
        p.set_checksum(0xbeef);
        p.set_ipv4_address(0, Ipv4Addr::new(192, 0, 2, 100))
            .expect("fits");
        p.set_auth_data(b"secret\0\0").expect("fits");
        assert_eq!(p.version(), 2);
        assert_eq!(p.packet_type(), 1);
        assert_eq!(p.vrid(), 51);
        assert_eq!(p.priority(), 150);
        assert_eq!(p.address_count(), 1);
        assert_eq!(p.auth_type(), 1);
        assert_eq!(p.adver_int(), 3);
        assert_eq!(p.checksum(), 0xbeef);
        assert_eq!(p.ipv4_address(0), Some(Ipv4Addr::new(192, 0, 2, 100)));
        assert_eq!(
            p.ipv4_address(1),
            Some(Ipv4Addr::new(b's', b'e', b'c', b'r'))
        );
        assert_eq!(p.ipv4_address(3), None);
        assert_eq!(p.auth_data(), Some(*b"secret\0\0"));
        assert_eq!(p.check_len(AddressFamily::Ipv4), Ok(()));
        assert!(p.set_ipv4_address(3, Ipv4Addr::LOCALHOST).is_err());
        assert!(p.set_ipv6_address(1, Ipv6Addr::LOCALHOST).is_err());
    }

    #[test]
    fn max_adver_int_is_twelve_bits_and_clears_reserved() {
        let mut p = VrrpPacket::new_checked([0xffu8; 8]).expect("header");
        assert_eq!(p.reserved(), 0xf);
        assert_eq!(p.max_adver_int(), 0x0fff);
        p.set_max_adver_int(0xf123);
        assert_eq!(p.reserved(), 0);
        assert_eq!(p.max_adver_int(), 0x0123);
        assert_eq!(&p.as_bytes()[4..6], &[0x01, 0x23]);
    }

    #[test]
    fn variable_accessors_never_overrun() {
        let p = VrrpPacket::new_checked([0x31u8, 1, 100, 255, 0, 100, 0, 0]).expect("header");
        assert_eq!(p.ipv4_address(0), None);
        assert_eq!(p.ipv6_address(usize::MAX), None);
        assert_eq!(p.auth_data(), None);
        assert_eq!(
            p.check_len(AddressFamily::Ipv6),
            Err(WireError::LengthMismatch {
                expected: 8 + 255 * 16,
                actual: 8
            })
        );
    }
}
