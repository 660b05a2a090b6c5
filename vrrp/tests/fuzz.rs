//! A PRNG-driven fuzz loop: ~100k random and mutated inputs through every decoder, the
//! receive rules and the state machine. Nothing may panic; whatever parses must emit
//! and parse back to itself.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::{ipv4_datagram, v4_config, v6_config, Rng};
use vrrp::wire::{MULTICAST_V4, MULTICAST_V6};
use vrrp::{
    receive_ipv4, receive_ipv6, AddressFamily, Endpoints, Event, InstanceConfig, Ipv4Packet,
    Machine, Timestamp, V2Auth, V3Ipv4Checksum, Version, Vrid, VrrpPacket, VrrpRepr,
};

const MODES: [V3Ipv4Checksum; 2] = [
    V3Ipv4Checksum::WithPseudoHeader,
    V3Ipv4Checksum::WithoutPseudoHeader,
];

fn endpoints() -> [Endpoints; 2] {
    [
        Endpoints::V4 {
            source: Ipv4Addr::new(192, 0, 2, 2),
            destination: MULTICAST_V4,
        },
        Endpoints::V6 {
            source: "fe80::2".parse().expect("literal"),
            destination: MULTICAST_V6,
        },
    ]
}

fn configs() -> Vec<InstanceConfig> {
    let mut v2 = v4_config(Version::V2, 1, 100);
    v2.auth = V2Auth::simple_password(b"secret").expect("short");
    let mut v3_plain = v4_config(Version::V3, 1, 100);
    v3_plain.v3_ipv4_checksum = V3Ipv4Checksum::WithoutPseudoHeader;
    vec![
        v4_config(Version::V2, 1, 100),
        v2,
        v4_config(Version::V3, 1, 100),
        v3_plain,
        v6_config(1, 100),
    ]
}

/// Valid packets to mutate: what the configured routers would send.
fn seeds(configs: &[InstanceConfig]) -> Vec<(Vec<u8>, Endpoints)> {
    let mut out = Vec::new();
    for c in configs {
        let m = Machine::new(c.clone()).expect("valid config");
        let peer = match c.primary_address {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            IpAddr::V6(_) => IpAddr::V6("fe80::2".parse::<Ipv6Addr>().expect("literal")),
        };
        let e = Endpoints::to_multicast(peer);
        for priority in [0u8, 50, 100, 200, 255] {
            let bytes = m
                .advert(priority)
                .to_bytes(&e, c.v3_ipv4_checksum)
                .expect("valid advert");
            out.push((bytes, e));
        }
    }
    out
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] = rng.byte();
            }
            2 => {
                let keep = rng.below(bytes.len() as u64 + 1) as usize;
                bytes.truncate(keep);
            }
            3 => {
                let extra = rng.below(24) as usize;
                bytes.extend(rng.bytes(extra));
            }
            4 if bytes.len() > 3 => bytes[3] = rng.byte(),
            5 if bytes.len() > 5 => {
                bytes[4] = rng.byte();
                bytes[5] = rng.byte();
            }
            _ if !bytes.is_empty() => bytes[0] = (rng.below(5) as u8) << 4 | (rng.below(3) as u8),
            _ => {}
        }
    }
}

/// Everything the view and the repr offer, on arbitrary bytes.
fn exercise_decoders(bytes: &[u8], rng: &mut Rng) {
    if let Ok(ip) = Ipv4Packet::new_checked(bytes) {
        let _ = (
            ip.ttl(),
            ip.protocol(),
            ip.source(),
            ip.destination(),
            ip.total_len(),
        );
        assert!(ip.payload().len() <= bytes.len());
    }
    let Ok(packet) = VrrpPacket::new_checked(bytes) else {
        assert!(bytes.len() < 8);
        return;
    };
    let _ = (
        packet.version(),
        packet.packet_type(),
        packet.vrid(),
        packet.priority(),
    );
    let _ = (
        packet.auth_type(),
        packet.adver_int(),
        packet.max_adver_int(),
        packet.reserved(),
    );
    let _ = (packet.auth_data(), packet.checksum());
    let i = rng.below(300) as usize;
    let _ = (packet.ipv4_address(i), packet.ipv6_address(i));
    for family in [AddressFamily::Ipv4, AddressFamily::Ipv6] {
        let ok = packet.check_len(family).is_ok();
        assert_eq!(ok, packet.expected_len(family) == bytes.len());
    }
    for e in endpoints() {
        for mode in MODES {
            if let Ok(repr) = VrrpRepr::parse(&packet, &e, mode) {
                let again = repr.to_bytes(&e, mode).expect("a parsed repr emits");
                let reparsed = VrrpPacket::new_checked(&again[..]).expect("header");
                assert_eq!(VrrpRepr::parse(&reparsed, &e, mode), Ok(repr));
            }
        }
    }
}

/// Through the receive rules of every config, and on into a machine.
fn exercise_reception(
    bytes: &[u8],
    e: &Endpoints,
    configs: &[InstanceConfig],
    machines: &mut [Machine],
    now: Timestamp,
) {
    for (config, machine) in configs.iter().zip(machines.iter_mut()) {
        let lookup = |v: Vrid| (v == config.vrid).then_some(config);
        let result = match e {
            Endpoints::V4 {
                source,
                destination,
            } => receive_ipv4(
                &ipv4_datagram(*source, *destination, 255, 112, &[], bytes),
                lookup,
            ),
            Endpoints::V6 {
                source,
                destination,
            } => receive_ipv6(bytes, *source, *destination, 255, lookup),
        };
        match result {
            Ok(received) => {
                machine.handle(now, Event::from(received));
            }
            Err(discard) => {
                let _ = discard.reason().name();
            }
        }
        if machine.poll_timeout().is_some_and(|t| t <= now) {
            machine.handle(now, Event::Timeout);
        }
    }
}

#[test]
fn hundred_thousand_inputs_never_panic() {
    let configs = configs();
    let seeds = seeds(&configs);
    let mut machines: Vec<Machine> = configs
        .iter()
        .map(|c| Machine::new(c.clone()).expect("valid config"))
        .collect();
    for m in &mut machines {
        m.handle(Timestamp::ZERO, Event::Startup);
    }
    let mut rng = Rng::new(0x5eed_0f72_7272);
    let mut now = Timestamp::ZERO;
    let mut accepted_somewhere = 0u32;
    for round in 0..100_000u32 {
        now = now + Duration::from_millis(rng.below(50));
        let (mut bytes, e) = if round % 3 == 0 {
            let len = if rng.below(10) == 0 {
                rng.below(400)
            } else {
                rng.below(64)
            } as usize;
            let mut b = rng.bytes(len);
            if b.len() > 1 && rng.below(2) == 0 {
                b[1] = 51; // reach past the VRID lookup
            }
            (b, endpoints()[rng.below(2) as usize])
        } else {
            let (b, e) = &seeds[rng.below(seeds.len() as u64) as usize];
            let mut b = b.clone();
            mutate(&mut rng, &mut b);
            (b, *e)
        };
        // Half the time repair the checksum so the rules after it get exercised.
        if rng.below(2) == 0 {
            if let Ok(mut p) = VrrpPacket::new_checked(&mut bytes[..]) {
                p.fill_checksum(&e, MODES[rng.below(2) as usize]);
            }
        }
        exercise_decoders(&bytes, &mut rng);
        let before: u64 = machines.iter().map(|m| m.counters().adverts_received).sum();
        exercise_reception(&bytes, &e, &configs, &mut machines, now);
        let after: u64 = machines.iter().map(|m| m.counters().adverts_received).sum();
        if after > before {
            accepted_somewhere += 1;
        }
        // Raw IPv4 datagrams with arbitrary headers, too.
        if round % 5 == 0 {
            let len = rng.below(80) as usize;
            let mut d = rng.bytes(len);
            if d.len() > 9 && rng.below(2) == 0 {
                d[0] = 0x45 + (rng.below(3) as u8);
                d[9] = 112;
                d[8] = 255;
            }
            exercise_decoders(&d, &mut rng);
            let c = &configs[2];
            let _ = receive_ipv4(&d, |v| (v == c.vrid).then_some(c));
        }
        // Random machine events in between.
        if round % 97 == 0 {
            let i = rng.below(machines.len() as u64) as usize;
            let event = match rng.below(11) {
                0 => Event::Shutdown,
                1 => Event::Startup,
                2 => Event::InterfaceDown,
                3 => Event::InterfaceUp,
                4 => Event::FaultRaised,
                5 => Event::FaultCleared,
                6 => Event::GroupMaster,
                7 => Event::GroupBackup,
                8 => Event::GroupFault(rng.below(2) == 0),
                9 => Event::GroupFault(false),
                _ => Event::PriorityChanged(rng.byte()),
            };
            machines[i].handle(now, event);
        }
    }
    // The mutations must not all die at the first check.
    assert!(
        accepted_somewhere > 1_000,
        "only {accepted_somewhere} inputs got through"
    );
}
