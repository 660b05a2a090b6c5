//! The cargo-fuzz config target's path on stable Rust: the checked-in corpus
//! (`netcfg/fuzz/corpus/config/`) and a few thousand deterministic mutations of
//! it go through the very function the target calls (`netcfg/fuzz/src/lib.rs`):
//! no panic, every error located in a file of the folder, the same answer twice.

#[path = "../fuzz/src/lib.rs"]
mod load;

use std::path::{Path, PathBuf};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config");
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

/// Pieces of TOML and of the config's vocabulary: byte flips alone rarely make
/// a file that parses, and the checks after parsing are what this exercises.
const TOKENS: &[&[u8]] = &[
    b"\n#=== ve/",
    b"\n#=== ve/5.toml\nid = 5\n",
    b"\n[[bridge]]\nname = \"br9\"\n",
    b"\n[[netif]]\nname = \"eth0\"\n",
    b"\n[venet]\naddresses = [\"10.1.0.9\"]\n",
    b"\n[[vrrp]]\nname = \"V\"\ninterface = \"br0\"\nvrid = 9\nvirtual_ips = [\"10.0.0.9/24\"]\n",
    b"\"0.0.0.0/0\"",
    b"\"::/0\"",
    b"\"255.255.255.255/32\"",
    b"\"fe80::1\"",
    b"\"00:00:00:00:00:00\"",
    b"\"\\u0000\"",
    b"\"lo\"",
    b"\"/proc/self/ns/net\"",
    b"\"../../x\"",
    b"0",
    b"-1",
    b"4294967296",
    b"99999999999999999999",
    b"1e999",
    b"nan",
    b"[",
    b"]",
    b"{",
    b"\"\"\"",
    b"'",
    b"=",
    b"\n",
    b"\xff",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => b.truncate(at),
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.iter().copied());
            }
            3 if at < b.len() => {
                // Replace the rest of a line with a token: a value of another type.
                let end = b[at..]
                    .iter()
                    .position(|c| *c == b'\n')
                    .map_or(b.len(), |e| at + e);
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..end, t.iter().copied());
            }
            4 => {
                // Repeat a slice: duplicate keys, tables and files.
                let len = rng.below(200).min(b.len() - at.min(b.len()));
                let piece = b[at..at + len].to_vec();
                b.splice(at..at, piece);
            }
            _ => b.extend((0..rng.below(20)).map(|_| rng.next() as u8)),
        }
    }
    b
}

#[test]
fn corpus_replays_without_panics() {
    let files = corpus();
    assert!(files.len() >= 20, "corpus missing");
    for (_, data) in &files {
        let _ = load::load(data);
    }
    // The corpus means something: the lookalike names are warned about, the
    // refusal seeds are refused for what they hold.
    let get = |name: &str| &files.iter().find(|(n, _)| n == name).expect(name).1;
    let config = load::load(get("lookalike_names")).expect("only warnings");
    let warned: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(config.ves.len(), 1, "{warned:?}");
    assert!(
        warned
            .iter()
            .any(|w| w
                .contains("ve/101.TOML:1:1: skipped: VE files must end in \".toml\" (lower case)")),
        "{warned:?}"
    );
    assert!(
        warned.iter().any(|w| w.contains("ve/7.toml~")),
        "{warned:?}"
    );
    let refused = load::load(get("bad_addresses"))
        .expect_err("refused")
        .to_string();
    for says in [
        "unspecified",
        "multicast",
        "link-local",
        "limited broadcast",
        "loopback",
        "all zeros",
        "no link \"vz-no-such0\"",
        "loopback link",
    ] {
        assert!(refused.contains(says), "{says}: {refused}");
    }
    let refused = load::load(get("leading_zero"))
        .expect_err("refused")
        .to_string();
    assert!(refused.contains("leading zero"), "{refused}");
    let refused = load::load(get("ve_refusals"))
        .expect_err("refused")
        .to_string();
    assert!(refused.contains("ve/7.toml"), "{refused}");
}

#[test]
fn thousands_of_mutations_never_panic() {
    let files = corpus();
    let mut rng = Rng(0x636f_6e66_5eed);
    let (mut loaded, mut refused_late) = (0, 0);
    for _ in 0..4000 {
        let (_, seed) = &files[rng.below(files.len())];
        let input = mutate(&mut rng, seed);
        match load::load(&input) {
            Ok(_) => loaded += 1,
            // Refusals past the TOML parser: the validation checks ran.
            Err(e) if e.0.iter().any(|e| !e.key.is_empty()) => refused_late += 1,
            Err(_) => {}
        }
    }
    // Mutations that keep a file parsing must reach validation, or the loop only
    // tests the TOML parser.
    assert!(
        loaded >= 50 && refused_late >= 200,
        "only {loaded} loaded and {refused_late} refused past parsing"
    );
}
