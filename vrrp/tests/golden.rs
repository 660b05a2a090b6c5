//! Golden byte vectors for every packet form, both directions: the bytes parse to the
//! expected repr, the repr emits the same bytes. Checksums come from public captures
//! (dpkt's and scapy's test suites) where one exists, and are re-derived here with an
//! independent RFC 1071 implementation.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{internet_checksum, ipv4_pseudo_header, ipv6_pseudo_header, vrid};
use vrrp::wire::{Ipv4Packet, MULTICAST_V4, MULTICAST_V6};
use vrrp::{
    Centiseconds, Endpoints, V2Advert, V2Auth, V3Advert, V3Ipv4Checksum, VirtualAddresses,
    VrrpPacket, VrrpRepr, WireError,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test vectors are hex"))
        .collect()
}

fn v4(src: [u8; 4]) -> Endpoints {
    Endpoints::V4 {
        source: Ipv4Addr::from(src),
        destination: MULTICAST_V4,
    }
}

/// Checks parse(bytes) == repr and emit(repr) == bytes.
fn round_trip(bytes: &[u8], repr: &VrrpRepr, endpoints: &Endpoints, mode: V3Ipv4Checksum) {
    let packet = VrrpPacket::new_checked(bytes).expect("golden vector holds a header");
    assert_eq!(VrrpRepr::parse(&packet, endpoints, mode).as_ref(), Ok(repr));
    assert_eq!(repr.buffer_len(), bytes.len());
    assert_eq!(repr.to_bytes(endpoints, mode).as_deref(), Ok(bytes));
}

/// dpkt's VRRPv2 test vector: VRID 1, priority 100, one address 192.168.0.1, no
/// authentication, Adver Int 1 s, checksum 0xba52 over the message alone.
#[test]
fn v2_without_authentication() {
    let bytes = hex("21 01 64 01 00 01 ba52 c0a80001 0000000000000000");
    assert_eq!(
        internet_checksum(&[&bytes]),
        0,
        "checksum verifies independently"
    );
    let repr = VrrpRepr::V2(V2Advert {
        vrid: vrid(1),
        priority: 100,
        adver_int: 1,
        auth: V2Auth::None,
        addresses: vec![Ipv4Addr::new(192, 168, 0, 1)],
    });
    // VRRPv2 ignores the IP addresses and the v3 checksum setting.
    for mode in [
        V3Ipv4Checksum::WithPseudoHeader,
        V3Ipv4Checksum::WithoutPseudoHeader,
    ] {
        round_trip(&bytes, &repr, &v4([192, 168, 0, 2]), mode);
    }
    let packet = VrrpPacket::new_checked(&bytes[..]).expect("header");
    assert_eq!(packet.version(), 2);
    assert_eq!(packet.packet_type(), 1);
    assert_eq!(packet.checksum(), 0xba52);
}

/// VRRPv2 with RFC 2338 simple password "secret": VRID 51, priority 150, two addresses.
/// Checksum worked by hand: the 16-bit words sum to 0x3794a, fold to 0x794d, and the
/// complement is 0x86b2.
#[test]
fn v2_with_simple_password() {
    let bytes = hex("21 33 96 02 01 01 86b2 c0000264 c0000265 7365637265740000");
    assert_eq!(internet_checksum(&[&bytes]), 0);
    let repr = VrrpRepr::V2(V2Advert {
        vrid: vrid(51),
        priority: 150,
        adver_int: 1,
        auth: V2Auth::simple_password(b"secret").expect("short password"),
        addresses: vec![Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 101)],
    });
    round_trip(
        &bytes,
        &repr,
        &v4([192, 0, 2, 1]),
        V3Ipv4Checksum::WithPseudoHeader,
    );
}

fn scapy_v3_ipv4() -> VrrpRepr {
    VrrpRepr::V3(V3Advert {
        vrid: vrid(2),
        priority: 254,
        max_adver_int: Centiseconds(1),
        addresses: VirtualAddresses::V4(vec![
            Ipv4Addr::new(20, 0, 1, 2),
            Ipv4Addr::new(20, 0, 1, 3),
        ]),
    })
}

/// scapy's VRRPv3 IPv4 checksum test: 20.0.0.3 -> 224.0.0.18, VRID 2, priority 254,
/// Max Adver Int 1 cs, addresses 20.0.1.2 and 20.0.1.3: 0xb25e with the IPv4
/// pseudo-header (the keepalived/FRR reading of RFC 5798).
#[test]
fn v3_ipv4_with_pseudo_header() {
    let bytes = hex("31 02 fe 02 0001 b25e 14000102 14000103");
    let pseudo = ipv4_pseudo_header(Ipv4Addr::new(20, 0, 0, 3), MULTICAST_V4, bytes.len());
    assert_eq!(internet_checksum(&[&pseudo, &bytes]), 0);
    round_trip(
        &bytes,
        &scapy_v3_ipv4(),
        &v4([20, 0, 0, 3]),
        V3Ipv4Checksum::WithPseudoHeader,
    );
}

/// The same advert checksummed over the VRRP message alone (RFC 9568 §5.2.8, Cisco):
/// 0xa6f4, which the other mode must reject, and the other way round.
#[test]
fn v3_ipv4_without_pseudo_header() {
    let bytes = hex("31 02 fe 02 0001 a6f4 14000102 14000103");
    assert_eq!(internet_checksum(&[&bytes]), 0);
    let endpoints = v4([20, 0, 0, 3]);
    round_trip(
        &bytes,
        &scapy_v3_ipv4(),
        &endpoints,
        V3Ipv4Checksum::WithoutPseudoHeader,
    );

    let packet = VrrpPacket::new_checked(&bytes[..]).expect("header");
    assert_eq!(
        VrrpRepr::parse(&packet, &endpoints, V3Ipv4Checksum::WithPseudoHeader),
        Err(WireError::BadChecksum)
    );
    let with = hex("31 02 fe 02 0001 b25e 14000102 14000103");
    let packet = VrrpPacket::new_checked(&with[..]).expect("header");
    assert_eq!(
        VrrpRepr::parse(&packet, &endpoints, V3Ipv4Checksum::WithoutPseudoHeader),
        Err(WireError::BadChecksum)
    );
    // The pseudo-header binds the IP addresses: another source breaks it.
    assert_eq!(
        VrrpRepr::parse(
            &packet,
            &v4([20, 0, 0, 4]),
            V3Ipv4Checksum::WithPseudoHeader
        ),
        Err(WireError::BadChecksum)
    );
}

/// scapy's VRRPv3 IPv6 checksum test: 2001:db8::1 -> ff02::12, VRID 2, priority 254,
/// Max Adver Int 1 cs, addresses 2001:db8::2 and ::3: 0x481b with the RFC 8200
/// pseudo-header, whatever the IPv4 setting says.
#[test]
fn v3_ipv6() {
    let bytes = hex("31 02 fe 02 0001 481b
         20010db8000000000000000000000002
         20010db8000000000000000000000003");
    let src: Ipv6Addr = "2001:db8::1".parse().expect("literal");
    let pseudo = ipv6_pseudo_header(src, MULTICAST_V6, bytes.len());
    assert_eq!(internet_checksum(&[&pseudo, &bytes]), 0);
    let repr = VrrpRepr::V3(V3Advert {
        vrid: vrid(2),
        priority: 254,
        max_adver_int: Centiseconds(1),
        addresses: VirtualAddresses::V6(vec![
            "2001:db8::2".parse().expect("literal"),
            "2001:db8::3".parse().expect("literal"),
        ]),
    });
    let endpoints = Endpoints::V6 {
        source: src,
        destination: MULTICAST_V6,
    };
    for mode in [
        V3Ipv4Checksum::WithPseudoHeader,
        V3Ipv4Checksum::WithoutPseudoHeader,
    ] {
        round_trip(&bytes, &repr, &endpoints, mode);
    }
}

/// A realistic VRRPv3 advert, 1 s = 100 cs (0x064), 12-bit interval at its maximum
/// 4095 cs, priority 0 on shutdown: field placement checked byte by byte.
#[test]
fn v3_interval_is_centiseconds_in_twelve_bits() {
    let endpoints = Endpoints::to_multicast(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    for (interval, hi, lo) in [
        (100u16, 0x00u8, 0x64u8),
        (4095, 0x0f, 0xff),
        (1, 0x00, 0x01),
    ] {
        let repr = VrrpRepr::V3(V3Advert {
            vrid: vrid(51),
            priority: 0,
            max_adver_int: Centiseconds(interval),
            addresses: VirtualAddresses::V4(vec![Ipv4Addr::new(192, 0, 2, 100)]),
        });
        let bytes = repr
            .to_bytes(&endpoints, V3Ipv4Checksum::WithPseudoHeader)
            .expect("valid repr");
        assert_eq!(&bytes[..6], &[0x31, 51, 0, 1, hi, lo]);
        let pseudo = ipv4_pseudo_header(Ipv4Addr::new(192, 0, 2, 1), MULTICAST_V4, bytes.len());
        assert_eq!(internet_checksum(&[&pseudo, &bytes]), 0);
        assert_eq!(
            repr.advert_interval().as_duration().as_millis(),
            u128::from(interval) * 10
        );
    }
}

/// scapy's IPv4 + VRRP build test: a 20-byte header (TTL 64, protocol 112, header
/// checksum 0x7c67) around a v2 advert with no addresses (checksum 0x7afd).
#[test]
fn ipv4_header_view_on_scapy_capture() {
    let bytes = hex("45 00 0024 0001 0000 40 70 7c67 7f000001 7f000001
         21 01 64 00 00 01 7afd 0000000000000000");
    assert_eq!(
        internet_checksum(&[&bytes[..20]]),
        0,
        "IPv4 header checksum"
    );
    let ip = Ipv4Packet::new_checked(&bytes[..]).expect("valid IPv4 header");
    assert_eq!(ip.header_len(), 20);
    assert_eq!(ip.total_len(), 36);
    assert_eq!(ip.ttl(), 64);
    assert_eq!(ip.protocol(), 112);
    assert_eq!(ip.source(), Ipv4Addr::LOCALHOST);
    assert_eq!(ip.destination(), Ipv4Addr::LOCALHOST);
    let vrrp = VrrpPacket::new_checked(ip.payload()).expect("header");
    assert_eq!(vrrp.checksum(), 0x7afd);
    assert_eq!(internet_checksum(&[ip.payload()]), 0);
    // No addresses: RFC 9568 erratum 8299 says ignore it.
    let endpoints = Endpoints::V4 {
        source: ip.source(),
        destination: ip.destination(),
    };
    assert_eq!(
        VrrpRepr::parse(&vrrp, &endpoints, V3Ipv4Checksum::WithPseudoHeader),
        Err(WireError::NoAddresses)
    );
}
