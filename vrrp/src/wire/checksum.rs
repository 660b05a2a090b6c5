//! The Internet checksum (RFC 1071) and the pseudo-headers VRRP may prepend.

use super::{Endpoints, V3Ipv4Checksum, IPPROTO_VRRP};

/// One's complement sum of `data` as big-endian 16-bit words, not yet folded; an odd
/// trailing byte is padded with zero (RFC 1071 §4.1).
fn sum_words(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    let mut sum: u64 = chunks
        .by_ref()
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 16 significant bits.
    sum as u16
}

/// Sum of the pseudo-header that precedes `length` bytes of VRRP, or 0 when the checksum
/// covers the message only.
fn pseudo_header_sum(
    version: u8,
    endpoints: &Endpoints,
    mode: V3Ipv4Checksum,
    length: usize,
) -> u64 {
    // VRRPv2 checksums the message only (RFC 3768 §5.3.8).
    if version == 2 {
        return 0;
    }
    match endpoints {
        Endpoints::V4 {
            source,
            destination,
        } => match mode {
            V3Ipv4Checksum::WithoutPseudoHeader => 0,
            // RFC 768-style pseudo-header: src, dst, zero, protocol, 16-bit length.
            V3Ipv4Checksum::WithPseudoHeader => {
                sum_words(&source.octets())
                    + sum_words(&destination.octets())
                    + u64::from(IPPROTO_VRRP)
                    + (length as u64 & 0xffff)
            }
        },
        // RFC 8200 §8.1: src, dst, 32-bit upper-layer length, zero, next header.
        Endpoints::V6 {
            source,
            destination,
        } => {
            sum_words(&source.octets())
                + sum_words(&destination.octets())
                + sum_words(&u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes())
                + u64::from(IPPROTO_VRRP)
        }
    }
}

/// The checksum over `message` (with its checksum field as it is) plus the pseudo-header
/// that `version`, `endpoints` and `mode` call for. Writing the result into a zeroed
/// checksum field makes [`verifies`] true.
pub(crate) fn compute(
    version: u8,
    endpoints: &Endpoints,
    mode: V3Ipv4Checksum,
    message: &[u8],
) -> u16 {
    !fold(pseudo_header_sum(version, endpoints, mode, message.len()) + sum_words(message))
}

/// True when `message`, checksum field included, sums to all ones.
pub(crate) fn verifies(
    version: u8,
    endpoints: &Endpoints,
    mode: V3Ipv4Checksum,
    message: &[u8],
) -> bool {
    compute(version, endpoints, mode, message) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_sum() {
        // RFC 1071 §3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&data)), 0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum_words(&[0x12]), 0x1200);
        assert_eq!(sum_words(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn fold_handles_large_carries() {
        assert_eq!(fold(0x1_ffff), 0x0001);
        assert_eq!(fold(u64::from(u32::MAX)), 0xffff);
    }
}
