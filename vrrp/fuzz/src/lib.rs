//! The decode paths the fuzz targets drive, shared with the stable corpus test
//! (`vrrp/tests/fuzz_corpus.rs` includes this file), so both run the same code.
//!
//! Each function must not panic on any input, and checks that whatever parses emits
//! and parses back to the same [`VrrpRepr`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vrrp::wire::{MULTICAST_V4, MULTICAST_V6};
use vrrp::{
    receive_ipv4, receive_ipv6, Endpoints, InstanceConfig, Ipv4Packet, V2Auth, V3Ipv4Checksum,
    Version, VirtualAddresses, Vrid, VrrpPacket, VrrpRepr,
};

const MODES: [V3Ipv4Checksum; 2] = [
    V3Ipv4Checksum::WithPseudoHeader,
    V3Ipv4Checksum::WithoutPseudoHeader,
];

/// The instances a receiver runs: VRID 51 in every version, family and checksum mode.
fn configs_v4() -> [InstanceConfig; 3] {
    let vrid = Vrid::new(51).expect("non-zero");
    let vips = VirtualAddresses::V4(vec![Ipv4Addr::new(10, 0, 0, 100)]);
    let primary = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let mut v2 = InstanceConfig::new(vrid, Version::V2, primary, vips.clone());
    v2.auth = V2Auth::simple_password(b"secret").expect("short");
    let v3 = InstanceConfig::new(vrid, Version::V3, primary, vips.clone());
    let mut v3_plain = InstanceConfig::new(vrid, Version::V3, primary, vips);
    v3_plain.v3_ipv4_checksum = V3Ipv4Checksum::WithoutPseudoHeader;
    [v2, v3, v3_plain]
}

fn config_v6() -> InstanceConfig {
    InstanceConfig::new(
        Vrid::new(51).expect("non-zero"),
        Version::V3,
        IpAddr::V6("fe80::2".parse().expect("literal")),
        VirtualAddresses::V6(vec!["fd00::100".parse().expect("literal")]),
    )
}

/// parse -> emit -> parse must give the same repr, in every checksum mode that parses.
/// Returns how many modes parsed.
fn round_trip(payload: &[u8], endpoints: &Endpoints) -> usize {
    let Ok(packet) = VrrpPacket::new_checked(payload) else {
        return 0;
    };
    let mut parsed = 0;
    for mode in MODES {
        if let Ok(repr) = VrrpRepr::parse(&packet, endpoints, mode) {
            let bytes = repr.to_bytes(endpoints, mode).expect("a parsed repr emits");
            let again = VrrpPacket::new_checked(&bytes[..]).expect("an emitted header");
            assert_eq!(
                VrrpRepr::parse(&again, endpoints, mode).as_ref(),
                Ok(&repr),
                "parse -> emit -> parse changed the advert"
            );
            assert_eq!(
                bytes.len(),
                payload.len(),
                "a parsed advert is exactly as long"
            );
            parsed += 1;
        }
    }
    parsed
}

/// A whole IPv4 datagram: the header view, the VRRP view and repr, the receive rules.
/// Returns how many adverts round-tripped.
pub fn ipv4(data: &[u8]) -> usize {
    let mut parsed = 0;
    if let Ok(ip) = Ipv4Packet::new_checked(data) {
        let endpoints = Endpoints::V4 {
            source: ip.source(),
            destination: ip.destination(),
        };
        assert!(ip.payload().len() <= data.len());
        parsed += round_trip(ip.payload(), &endpoints);
    }
    for config in &configs_v4() {
        let _ = receive_ipv4(data, |v| (v == config.vrid).then_some(config));
    }
    parsed
}

/// A VRRP payload from fe80::1 to ff02::12 with hop limit 255. Returns how many
/// adverts round-tripped.
pub fn ipv6(data: &[u8]) -> usize {
    let source: Ipv6Addr = "fe80::1".parse().expect("literal");
    let endpoints = Endpoints::V6 {
        source,
        destination: MULTICAST_V6,
    };
    let parsed = round_trip(data, &endpoints);
    let config = config_v6();
    let _ = receive_ipv6(data, source, MULTICAST_V6, 255, |v| {
        (v == config.vrid).then_some(&config)
    });
    // The IPv6 views on an IPv4 multicast pair too: the decoders must not care.
    round_trip(
        data,
        &Endpoints::V4 {
            source: Ipv4Addr::new(10, 0, 0, 1),
            destination: MULTICAST_V4,
        },
    ) + parsed
}
