//! The cargo-fuzz targets' decode paths on stable Rust: the checked-in corpus
//! (`vrrp/fuzz/corpus/`) and a few thousand deterministic mutations of it go through
//! the very functions the targets call (`vrrp/fuzz/src/lib.rs`): no panic, and every
//! advert that parses emits and parses back to itself.

#[path = "../fuzz/src/lib.rs"]
mod decode;

use std::path::{Path, PathBuf};

use vrrp::{Endpoints, Ipv4Packet, V3Ipv4Checksum, VrrpPacket, VrrpRepr};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&p).expect("readable corpus file"))
        })
        .collect()
}

/// xorshift64*: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..=rng.below(3) {
        match rng.below(5) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            2 => b.truncate(rng.below(b.len() + 1)),
            3 => b.extend((0..rng.below(20)).map(|_| rng.next() as u8)),
            _ => b = (0..rng.below(80)).map(|_| rng.next() as u8).collect(),
        }
    }
    b
}

/// Whether an IPv4 corpus file holds an advert some checksum mode parses.
fn parses_v4(data: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(data) else {
        return false;
    };
    let e = Endpoints::V4 {
        source: ip.source(),
        destination: ip.destination(),
    };
    VrrpPacket::new_checked(ip.payload()).is_ok_and(|p| {
        [
            V3Ipv4Checksum::WithPseudoHeader,
            V3Ipv4Checksum::WithoutPseudoHeader,
        ]
        .iter()
        .any(|m| VrrpRepr::parse(&p, &e, *m).is_ok())
    })
}

/// Recomputes the VRRP checksum of a mutated input, so that the rules after the
/// checksum get exercised too.
fn fix_checksum(target: &str, input: &mut [u8], pseudo_header: bool) {
    let mode = if pseudo_header {
        V3Ipv4Checksum::WithPseudoHeader
    } else {
        V3Ipv4Checksum::WithoutPseudoHeader
    };
    if target == "ipv6" {
        let e = Endpoints::V6 {
            source: "fe80::1".parse().expect("literal"),
            destination: vrrp::wire::MULTICAST_V6,
        };
        if let Ok(mut p) = VrrpPacket::new_checked(&mut input[..]) {
            p.fill_checksum(&e, mode);
        }
        return;
    }
    let Ok(ip) = Ipv4Packet::new_checked(&input[..]) else {
        return;
    };
    let e = Endpoints::V4 {
        source: ip.source(),
        destination: ip.destination(),
    };
    let start = usize::from(input[0] & 0x0f) * 4;
    let end = start + ip.payload().len();
    if let Ok(mut p) = VrrpPacket::new_checked(&mut input[start..end]) {
        p.fill_checksum(&e, mode);
    }
}

#[test]
fn corpus_replays_without_panics() {
    let v4 = corpus("ipv4");
    let v6 = corpus("ipv6");
    assert!(v4.len() >= 10 && v6.len() >= 5, "corpus missing");
    for (_, data) in &v4 {
        decode::ipv4(data);
    }
    for (_, data) in &v6 {
        decode::ipv6(data);
    }
    // The corpus means something: its valid adverts parse, its near misses do not.
    for (name, data) in &v4 {
        // TTL and VRID are the receive rules' business, options are allowed (RFC 5798
        // §7.1): those parse; a wrong address count, a cut header or a zero interval do not.
        let expected = ![
            "count_too_large",
            "empty",
            "truncated_header",
            "v2_interval_zero",
        ]
        .contains(&name.as_str());
        assert_eq!(parses_v4(data), expected, "{name}");
    }
}

#[test]
fn thousands_of_mutations_never_panic_and_round_trip() {
    let mut rng = Rng(0x7672_7270_5eed);
    for (target, files) in [("ipv4", corpus("ipv4")), ("ipv6", corpus("ipv6"))] {
        let mut round_trips = 0;
        for _ in 0..4000 {
            let (_, seed) = &files[rng.below(files.len())];
            let mut input = mutate(&mut rng, seed);
            if rng.below(2) == 0 {
                fix_checksum(target, &mut input, rng.below(2) == 0);
            }
            round_trips += match target {
                "ipv4" => decode::ipv4(&input),
                _ => decode::ipv6(&input),
            };
        }
        // Mutations that keep an advert valid (IPv4 header bytes, a no-op cut) must
        // reach the round trip, or the loop only tests the first length check.
        assert!(
            round_trips >= 100,
            "{target}: only {round_trips} round trips"
        );
    }
}
