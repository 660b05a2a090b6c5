//! One test per receive rule of RFC 5798/9568 §7.1 and RFC 3768 §7.1.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{ipv4_datagram, v4_config, v6_config, vrid, VIP4};
use vrrp::wire::{MULTICAST_V4, MULTICAST_V6};
use vrrp::{
    receive_ipv4, receive_ipv6, Centiseconds, Discard, DropCounters, DropReason, Endpoints,
    InstanceConfig, V2Advert, V2Auth, V3Advert, V3Ipv4Checksum, Version, VirtualAddresses, Vrid,
    VrrpRepr, WireError,
};

const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn peer6() -> Ipv6Addr {
    "fe80::2".parse().expect("literal")
}

fn lookup<'a>(config: &'a InstanceConfig) -> impl FnOnce(Vrid) -> Option<&'a InstanceConfig> {
    move |v| (v == config.vrid).then_some(config)
}

fn v3_advert(priority: u8, interval: u16, addresses: Vec<Ipv4Addr>) -> VrrpRepr {
    VrrpRepr::V3(V3Advert {
        vrid: vrid(51),
        priority,
        max_adver_int: Centiseconds(interval),
        addresses: VirtualAddresses::V4(addresses),
    })
}

fn v2_advert(priority: u8, adver_int: u8, auth: V2Auth, addresses: Vec<Ipv4Addr>) -> VrrpRepr {
    VrrpRepr::V2(V2Advert {
        vrid: vrid(51),
        priority,
        adver_int,
        auth,
        addresses,
    })
}

fn peer_endpoints() -> Endpoints {
    Endpoints::V4 {
        source: PEER,
        destination: MULTICAST_V4,
    }
}

/// The advert as a raw IPv4 socket would deliver it from PEER.
fn datagram(advert: &VrrpRepr, mode: V3Ipv4Checksum, ttl: u8) -> Vec<u8> {
    let payload = advert
        .to_bytes(&peer_endpoints(), mode)
        .expect("valid advert");
    ipv4_datagram(PEER, MULTICAST_V4, ttl, 112, &[], &payload)
}

/// Datagram with the VRRP payload edited after emit; the checksum is recomputed unless
/// the edit is the point.
fn edited(advert: &VrrpRepr, edit: impl FnOnce(&mut Vec<u8>), fix_checksum: bool) -> Vec<u8> {
    let mut payload = advert
        .to_bytes(&peer_endpoints(), V3Ipv4Checksum::WithPseudoHeader)
        .expect("valid advert");
    edit(&mut payload);
    if fix_checksum {
        payload[6..8].copy_from_slice(&[0, 0]);
        let pseudo = common::ipv4_pseudo_header(PEER, MULTICAST_V4, payload.len());
        let sum = if payload[0] >> 4 == 2 {
            common::internet_checksum(&[&payload])
        } else {
            common::internet_checksum(&[&pseudo, &payload])
        };
        payload[6..8].copy_from_slice(&sum.to_be_bytes());
    }
    ipv4_datagram(PEER, MULTICAST_V4, 255, 112, &[], &payload)
}

fn v3_config() -> InstanceConfig {
    v4_config(Version::V3, 1, 100)
}

fn v2_config() -> InstanceConfig {
    v4_config(Version::V2, 1, 100)
}

fn discard(result: Result<vrrp::Received, Discard>) -> Discard {
    result.expect_err("the packet must be discarded")
}

#[test]
fn accepts_valid_v3_ipv4_in_both_checksum_modes() {
    for mode in [
        V3Ipv4Checksum::WithPseudoHeader,
        V3Ipv4Checksum::WithoutPseudoHeader,
    ] {
        let mut config = v3_config();
        config.v3_ipv4_checksum = mode;
        let advert = v3_advert(200, 100, vec![VIP4]);
        let received = receive_ipv4(&datagram(&advert, mode, 255), lookup(&config))
            .expect("valid advert passes");
        assert_eq!(received.advert, advert);
        assert_eq!(received.source, IpAddr::V4(PEER));
        assert!(!received.address_list_mismatch);
    }
}

#[test]
fn accepts_valid_v2() {
    let config = v2_config();
    let advert = v2_advert(200, 1, V2Auth::None, vec![VIP4]);
    let received = receive_ipv4(
        &datagram(&advert, V3Ipv4Checksum::WithPseudoHeader, 255),
        lookup(&config),
    )
    .expect("valid advert passes");
    assert_eq!(received.advert, advert);
}

#[test]
fn accepts_valid_v3_ipv6() {
    let config = v6_config(1, 100);
    let advert = VrrpRepr::V3(V3Advert {
        vrid: vrid(51),
        priority: 200,
        max_adver_int: Centiseconds(100),
        addresses: config.virtual_addresses.clone(),
    });
    let endpoints = Endpoints::V6 {
        source: peer6(),
        destination: MULTICAST_V6,
    };
    // The IPv4 checksum setting has no say over IPv6.
    let payload = advert
        .to_bytes(&endpoints, V3Ipv4Checksum::WithoutPseudoHeader)
        .expect("valid advert");
    let received = receive_ipv6(&payload, peer6(), MULTICAST_V6, 255, lookup(&config))
        .expect("valid advert passes");
    assert_eq!(received.advert, advert);
    assert_eq!(received.source, IpAddr::V6(peer6()));
}

/// Raw IPv4 sockets deliver options too; a 24-byte header must not shift the payload
/// (the "assumes a 20-byte IPv4 header" gap).
#[test]
fn ipv4_options_are_fine() {
    let config = v3_config();
    let advert = v3_advert(200, 100, vec![VIP4]);
    let payload = advert
        .to_bytes(&peer_endpoints(), V3Ipv4Checksum::WithPseudoHeader)
        .expect("valid advert");
    let router_alert = [0x94, 0x04, 0x00, 0x00];
    let d = ipv4_datagram(PEER, MULTICAST_V4, 255, 112, &router_alert, &payload);
    assert_eq!(
        receive_ipv4(&d, lookup(&config)).map(|r| r.advert),
        Ok(advert)
    );
}

/// RFC 5798 §5.1.1.3 / §5.1.2.3: TTL and hop limit must be 255 (the check holo skips).
#[test]
fn ttl_and_hop_limit_must_be_255() {
    let config = v3_config();
    let advert = v3_advert(200, 100, vec![VIP4]);
    for ttl in [0u8, 1, 64, 254] {
        let d = datagram(&advert, V3Ipv4Checksum::WithPseudoHeader, ttl);
        assert_eq!(
            discard(receive_ipv4(&d, lookup(&config))),
            Discard::HopLimit(ttl)
        );
    }
    let config6 = v6_config(1, 100);
    let advert6 = VrrpRepr::V3(V3Advert {
        vrid: vrid(51),
        priority: 200,
        max_adver_int: Centiseconds(100),
        addresses: config6.virtual_addresses.clone(),
    });
    let endpoints = Endpoints::V6 {
        source: peer6(),
        destination: MULTICAST_V6,
    };
    let payload = advert6
        .to_bytes(&endpoints, V3Ipv4Checksum::WithPseudoHeader)
        .expect("valid advert");
    assert_eq!(
        discard(receive_ipv6(
            &payload,
            peer6(),
            MULTICAST_V6,
            1,
            lookup(&config6)
        )),
        Discard::HopLimit(1)
    );
}

#[test]
fn malformed_ipv4_header_and_other_protocols_are_dropped() {
    let config = v3_config();
    let mut d = datagram(
        &v3_advert(200, 100, vec![VIP4]),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    d[2..4].copy_from_slice(&1000u16.to_be_bytes());
    let got = discard(receive_ipv4(&d, lookup(&config)));
    assert!(
        matches!(
            got,
            Discard::Ipv4Header(WireError::BadIpv4TotalLength { .. })
        ),
        "{got:?}"
    );
    assert_eq!(got.reason(), DropReason::Ipv4Header);

    let d = ipv4_datagram(PEER, MULTICAST_V4, 255, 17, &[], &[0; 16]);
    assert_eq!(
        discard(receive_ipv4(&d, lookup(&config))),
        Discard::NotVrrp(17)
    );
}

#[test]
fn shorter_than_fixed_header_is_dropped() {
    let config = v3_config();
    let d = ipv4_datagram(
        PEER,
        MULTICAST_V4,
        255,
        112,
        &[],
        &[0x31, 51, 100, 1, 0, 100, 0],
    );
    assert_eq!(
        discard(receive_ipv4(&d, lookup(&config))),
        Discard::Truncated(7)
    );
}

/// §7.1: the VRID must be configured on the receiving interface.
#[test]
fn unknown_vrid_is_dropped() {
    let config = v3_config();
    let advert = VrrpRepr::V3(V3Advert {
        vrid: vrid(52),
        priority: 200,
        max_adver_int: Centiseconds(100),
        addresses: VirtualAddresses::V4(vec![VIP4]),
    });
    let d = datagram(&advert, V3Ipv4Checksum::WithPseudoHeader, 255);
    assert_eq!(
        discard(receive_ipv4(&d, lookup(&config))),
        Discard::UnknownVrid(52)
    );
    // VRID 0 names no router and never reaches the lookup.
    let d = edited(&v3_advert(200, 100, vec![VIP4]), |p| p[1] = 0, true);
    let never =
        |_: Vrid| -> Option<&'static InstanceConfig> { panic!("VRID 0 must not be looked up") };
    assert_eq!(discard(receive_ipv4(&d, never)), Discard::UnknownVrid(0));
}

/// §7.1: the version must be the instance's.
#[test]
fn version_mismatch_is_dropped() {
    let v3 = v3_config();
    let v2_packet = datagram(
        &v2_advert(200, 1, V2Auth::None, vec![VIP4]),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    assert_eq!(
        discard(receive_ipv4(&v2_packet, lookup(&v3))),
        Discard::VersionMismatch {
            received: 2,
            configured: Version::V3
        }
    );
    let v4_packet = edited(&v3_advert(200, 100, vec![VIP4]), |p| p[0] = 0x41, true);
    assert_eq!(
        discard(receive_ipv4(&v4_packet, lookup(&v3))).reason(),
        DropReason::VersionMismatch
    );
}

/// §5.2.2: a packet with unknown type MUST be discarded.
#[test]
fn unknown_type_is_dropped() {
    let d = edited(&v3_advert(200, 100, vec![VIP4]), |p| p[0] = 0x32, true);
    assert_eq!(
        discard(receive_ipv4(&d, lookup(&v3_config()))),
        Discard::UnknownType(2)
    );
}

/// RFC 9568 erratum 8299: a count of 0 is ignored.
#[test]
fn zero_address_count_is_dropped() {
    let d = edited(
        &v3_advert(200, 100, vec![VIP4]),
        |p| {
            p[3] = 0;
            p.truncate(8);
        },
        true,
    );
    assert_eq!(
        discard(receive_ipv4(&d, lookup(&v3_config()))),
        Discard::NoAddresses
    );
}

/// §7.1: the complete packet must be there, and the count must agree with the length.
#[test]
fn count_and_length_must_agree() {
    let config = v3_config();
    let claims_two = edited(&v3_advert(200, 100, vec![VIP4]), |p| p[3] = 2, true);
    assert_eq!(
        discard(receive_ipv4(&claims_two, lookup(&config))),
        Discard::LengthMismatch {
            expected: 16,
            actual: 12
        }
    );
    let trailing = edited(
        &v3_advert(200, 100, vec![VIP4]),
        |p| p.extend_from_slice(&[0; 4]),
        true,
    );
    assert_eq!(
        discard(receive_ipv4(&trailing, lookup(&config))),
        Discard::LengthMismatch {
            expected: 12,
            actual: 16
        }
    );
    // v2 must carry its 8-byte Authentication Data.
    let v2 = v2_config();
    let no_auth_data = edited(
        &v2_advert(200, 1, V2Auth::None, vec![VIP4]),
        |p| p.truncate(12),
        true,
    );
    assert_eq!(
        discard(receive_ipv4(&no_auth_data, lookup(&v2))),
        Discard::LengthMismatch {
            expected: 20,
            actual: 12
        }
    );
}

/// §7.1: the checksum must verify, under the instance's IPv4 checksum mode.
#[test]
fn bad_checksum_is_dropped() {
    let config = v3_config();
    let flipped = edited(&v3_advert(200, 100, vec![VIP4]), |p| p[2] ^= 0x01, false);
    assert_eq!(
        discard(receive_ipv4(&flipped, lookup(&config))),
        Discard::BadChecksum
    );

    // A Cisco-style peer (no pseudo-header) against a keepalived-style instance: every
    // advert fails the checksum, which the counters make visible.
    let cisco = datagram(
        &v3_advert(200, 100, vec![VIP4]),
        V3Ipv4Checksum::WithoutPseudoHeader,
        255,
    );
    let mut counters = DropCounters::default();
    for _ in 0..3 {
        counters.record(discard(receive_ipv4(&cisco, lookup(&config))).reason());
    }
    assert_eq!(counters.get(DropReason::BadChecksum), 3);
}

/// RFC 9568 erratum 8301: Max Adver Int must be non-zero.
#[test]
fn zero_interval_is_dropped() {
    let d = edited(&v3_advert(200, 100, vec![VIP4]), |p| p[5] = 0, true);
    assert_eq!(
        discard(receive_ipv4(&d, lookup(&v3_config()))),
        Discard::ZeroAdvertInterval
    );
}

/// §5.2.6: the reserved bits are ignored on reception.
#[test]
fn reserved_bits_are_ignored() {
    let d = edited(&v3_advert(200, 100, vec![VIP4]), |p| p[4] |= 0xf0, true);
    let received = receive_ipv4(&d, lookup(&v3_config())).expect("reserved bits ignored");
    assert_eq!(received.advert.advert_interval(), Centiseconds(100));
}

/// RFC 5798 §7.1: an address list mismatch is logged, not dropped.
#[test]
fn v3_address_list_mismatch_is_flagged_not_dropped() {
    let config = v3_config();
    let other = v3_advert(200, 100, vec![Ipv4Addr::new(192, 0, 2, 200)]);
    let received = receive_ipv4(
        &datagram(&other, V3Ipv4Checksum::WithPseudoHeader, 255),
        lookup(&config),
    )
    .expect("mismatch is not a drop in v3");
    assert!(received.address_list_mismatch);
    let extra = v3_advert(200, 100, vec![VIP4, Ipv4Addr::new(192, 0, 2, 200)]);
    let received = receive_ipv4(
        &datagram(&extra, V3Ipv4Checksum::WithPseudoHeader, 255),
        lookup(&config),
    )
    .expect("mismatch is not a drop in v3");
    assert!(received.address_list_mismatch);
}

/// RFC 3768 §7.1: on mismatch, a v2 receiver drops unless the sender is the owner.
#[test]
fn v2_address_list_mismatch_drops_unless_from_owner() {
    let config = v2_config();
    let other = vec![Ipv4Addr::new(192, 0, 2, 200)];
    let d = datagram(
        &v2_advert(200, 1, V2Auth::None, other.clone()),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    assert_eq!(
        discard(receive_ipv4(&d, lookup(&config))),
        Discard::AddressListMismatch
    );
    let d = datagram(
        &v2_advert(255, 1, V2Auth::None, other),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    let received = receive_ipv4(&d, lookup(&config)).expect("owner's advert continues");
    assert!(received.address_list_mismatch);
}

/// RFC 3768 §7.1: the v2 Adver Interval must equal the configured one.
#[test]
fn v2_interval_mismatch_is_dropped() {
    let config = v2_config();
    let d = datagram(
        &v2_advert(200, 2, V2Auth::None, vec![VIP4]),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    assert_eq!(
        discard(receive_ipv4(&d, lookup(&config))),
        Discard::AdvertIntervalMismatch {
            received: Centiseconds(200),
            configured: Centiseconds(100)
        }
    );
}

/// v3 has no such rule: a Backup adopts the Master's interval instead.
#[test]
fn v3_interval_difference_is_accepted() {
    let d = datagram(
        &v3_advert(200, 5, vec![VIP4]),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    let received = receive_ipv4(&d, lookup(&v3_config())).expect("v3 adopts intervals");
    assert_eq!(received.advert.advert_interval(), Centiseconds(5));
}

/// RFC 3768 §7.1: the Auth Type must match, and its method must pass.
#[test]
fn v2_authentication() {
    let mut config = v2_config();
    config.auth = V2Auth::simple_password(b"secret").expect("short");
    let good = datagram(
        &v2_advert(200, 1, config.auth, vec![VIP4]),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    assert!(receive_ipv4(&good, lookup(&config)).is_ok());

    let wrong = datagram(
        &v2_advert(
            200,
            1,
            V2Auth::simple_password(b"guess").expect("short"),
            vec![VIP4],
        ),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    assert_eq!(
        discard(receive_ipv4(&wrong, lookup(&config))),
        Discard::AuthFailure
    );

    let none = datagram(
        &v2_advert(200, 1, V2Auth::None, vec![VIP4]),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    assert_eq!(
        discard(receive_ipv4(&none, lookup(&config))),
        Discard::AuthTypeMismatch {
            received: 0,
            configured: 1
        }
    );

    // Type 2 (IP AH) is not supported: a mismatch whatever is configured.
    let ah = edited(
        &v2_advert(200, 1, V2Auth::None, vec![VIP4]),
        |p| p[4] = 2,
        true,
    );
    assert_eq!(
        discard(receive_ipv4(&ah, lookup(&config))),
        Discard::AuthTypeMismatch {
            received: 2,
            configured: 1
        }
    );

    // Type 0: the data is ignored on reception (RFC 3768 §5.3.6.1).
    let plain = v2_config();
    let junk = edited(
        &v2_advert(200, 1, V2Auth::None, vec![VIP4]),
        |p| p[12..20].copy_from_slice(b"garbage!"),
        true,
    );
    assert!(receive_ipv4(&junk, lookup(&plain)).is_ok());
}

/// RFC 3768 §7.1: a v2 owner drops adverts for its VRID; RFC 9568 erratum 8298 drops
/// that clause, so a v3 owner listens.
#[test]
fn local_owner() {
    let mut v2 = v2_config();
    v2.priority = 255;
    let d = datagram(
        &v2_advert(200, 1, V2Auth::None, vec![VIP4]),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    assert_eq!(
        discard(receive_ipv4(&d, lookup(&v2))),
        Discard::LocalIsOwner
    );

    let mut v3 = v3_config();
    v3.priority = 255;
    let d = datagram(
        &v3_advert(200, 100, vec![VIP4]),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    assert!(receive_ipv4(&d, lookup(&v3)).is_ok());
}

#[test]
fn own_advert_is_dropped() {
    let mut config = v3_config();
    config.primary_address = IpAddr::V4(PEER);
    let d = datagram(
        &v3_advert(200, 100, vec![VIP4]),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    assert_eq!(
        discard(receive_ipv4(&d, lookup(&config))),
        Discard::OwnAdvert
    );
}

/// An IPv6 instance found for an IPv4 packet (or the reverse) is a family mismatch.
#[test]
fn family_mismatch_is_dropped() {
    let v6 = v6_config(1, 100);
    let d = datagram(
        &v3_advert(200, 100, vec![VIP4]),
        V3Ipv4Checksum::WithPseudoHeader,
        255,
    );
    assert_eq!(
        discard(receive_ipv4(&d, lookup(&v6))),
        Discard::FamilyMismatch
    );
    let v4 = v3_config();
    let payload = VrrpRepr::V3(V3Advert {
        vrid: vrid(51),
        priority: 200,
        max_adver_int: Centiseconds(100),
        addresses: v6.virtual_addresses.clone(),
    })
    .to_bytes(
        &Endpoints::V6 {
            source: peer6(),
            destination: MULTICAST_V6,
        },
        V3Ipv4Checksum::WithPseudoHeader,
    )
    .expect("valid advert");
    assert_eq!(
        discard(receive_ipv6(
            &payload,
            peer6(),
            MULTICAST_V6,
            255,
            lookup(&v4)
        )),
        Discard::FamilyMismatch
    );
}

#[test]
fn every_discard_has_a_message_and_reason_name() {
    let samples = [
        Discard::HopLimit(1),
        Discard::BadChecksum,
        Discard::UnknownVrid(9),
        Discard::Malformed(WireError::InvalidVrid),
    ];
    for d in samples {
        assert!(!d.to_string().is_empty());
        assert!(!d.reason().name().is_empty());
    }
    assert_eq!(DropReason::BadChecksum.to_string(), "bad_checksum");
}
