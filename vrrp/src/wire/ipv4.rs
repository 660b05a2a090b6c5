//! A minimal read-only IPv4 header view: enough to validate what a raw IPv4 socket
//! delivers (Linux hands over the IP header, options included, in front of the payload).

use std::net::Ipv4Addr;

use super::WireError;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: core::ops::Range<usize> = 2..4;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const SRC: core::ops::Range<usize> = 12..16;
    pub const DST: core::ops::Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// A view of an IPv4 datagram whose header, options and total length were checked once
/// by [`Ipv4Packet::new_checked`]; every getter after that is infallible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks that the buffer holds a whole IPv4 header (IHL counts options, so it may
    /// be longer than 20 bytes) and the datagram its Total Length announces. Trailing
    /// bytes past Total Length (link-layer padding) are tolerated and ignored.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        if bytes.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated {
                len: bytes.len(),
                needed: MIN_HEADER_LEN,
            });
        }
        let version = bytes[field::VER_IHL] >> 4;
        if version != 4 {
            return Err(WireError::NotIpv4(version));
        }
        let header = usize::from(bytes[field::VER_IHL] & 0x0f) * 4;
        if header < MIN_HEADER_LEN || header > bytes.len() {
            return Err(WireError::BadIpv4HeaderLength(header));
        }
        let total = usize::from(u16::from_be_bytes([
            bytes[field::TOTAL_LEN.start],
            bytes[field::TOTAL_LEN.start + 1],
        ]));
        if total < header || total > bytes.len() {
            return Err(WireError::BadIpv4TotalLength {
                total,
                header,
                buffer: bytes.len(),
            });
        }
        Ok(Ipv4Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Header length in bytes, options included (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn total_len(&self) -> usize {
        let b = self.buffer.as_ref();
        usize::from(u16::from_be_bytes([
            b[field::TOTAL_LEN.start],
            b[field::TOTAL_LEN.start + 1],
        ]))
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn source(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    pub fn destination(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The bytes after the header (and its options), up to Total Length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ihl: u8, total: u16, ttl: u8, protocol: u8) -> Vec<u8> {
        let mut h = vec![0u8; usize::from(ihl) * 4];
        h[0] = 0x40 | ihl;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[8] = ttl;
        h[9] = protocol;
        h[12..16].copy_from_slice(&[192, 0, 2, 1]);
        h[16..20].copy_from_slice(&[224, 0, 0, 18]);
        h
    }

    #[test]
    fn plain_header() {
        let mut d = header(5, 24, 255, 112);
        d.extend_from_slice(&[1, 2, 3, 4]);
        let p = Ipv4Packet::new_checked(&d[..]).expect("valid header");
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.ttl(), 255);
        assert_eq!(p.protocol(), 112);
        assert_eq!(p.source(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.destination(), Ipv4Addr::new(224, 0, 0, 18));
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert_eq!(p.into_inner().len(), 24);
    }

    #[test]
    fn options_are_skipped() {
        // IHL 6: one 4-byte option (Router Alert, RFC 2113) before the payload.
        let mut d = header(6, 28, 255, 112);
        d[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        d.extend_from_slice(&[9, 8, 7, 6]);
        let p = Ipv4Packet::new_checked(&d[..]).expect("valid header with options");
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload(), &[9, 8, 7, 6]);
    }

    #[test]
    fn padding_past_total_length_is_ignored() {
        let mut d = header(5, 22, 255, 112);
        d.extend_from_slice(&[1, 2, 0, 0, 0, 0]);
        let p = Ipv4Packet::new_checked(&d[..]).expect("valid header");
        assert_eq!(p.payload(), &[1, 2]);
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(
            Ipv4Packet::new_checked(&[0x45u8; 19][..]),
            Err(WireError::Truncated {
                len: 19,
                needed: 20
            })
        ));
        let mut v6 = header(5, 20, 255, 112);
        v6[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&v6[..]), Err(WireError::NotIpv4(6)));
        let mut short_ihl = header(5, 20, 255, 112);
        short_ihl[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&short_ihl[..]),
            Err(WireError::BadIpv4HeaderLength(16))
        );
        let mut long_ihl = header(5, 20, 255, 112);
        long_ihl[0] = 0x4f;
        assert_eq!(
            Ipv4Packet::new_checked(&long_ihl[..]),
            Err(WireError::BadIpv4HeaderLength(60))
        );
        let over = header(5, 40, 255, 112);
        assert_eq!(
            Ipv4Packet::new_checked(&over[..]),
            Err(WireError::BadIpv4TotalLength {
                total: 40,
                header: 20,
                buffer: 20
            })
        );
        let mut under = header(6, 20, 255, 112);
        under[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&under[..]),
            Err(WireError::BadIpv4TotalLength {
                total: 20,
                header: 24,
                buffer: 24
            })
        );
    }
}
