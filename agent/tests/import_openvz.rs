//! `vznet import openvz` on whole OpenVZ hosts: `seed/`, a RHEL-style host as the
//! seed ran it (bond0 active-backup with miimon 100 from modprobe options over
//! eth0/eth1, VLANs bond0.136/137, bridges br104/136/137 with the host's
//! addresses, VEs 112 and 113 with three netifs each, sysctl.conf's forwarding
//! and proxy_arp lines), and `debian/`, a Debian ifupdown host (802.3ad bond,
//! both VLAN spellings, bridges, a sourced file, a venet VE, a VE whose bridge
//! is missing). Each import's report and files must equal the golden files in
//! tests/import_openvz/golden/ (UPDATE_GOLDEN=1 rewrites them), and `vznet
//! check` must accept what `vznet import openvz --out` wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agent::import::openvz::import;

const VZNET: &str = env!("CARGO_BIN_EXE_vznet");
const HOSTS: &[&str] = &["seed", "debian"];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import_openvz")
}

/// Compares `actual` with the golden file `name` (or writes it with UPDATE_GOLDEN=1).
fn golden(name: &str, actual: &str) -> Option<String> {
    let path = dir().join("golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    (expected != actual).then(|| {
        format!("{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it):\n--- golden\n{expected}\n--- now\n{actual}")
    })
}

fn vznet(args: &[&str]) -> Output {
    Command::new(VZNET).args(args).output().expect("run vznet")
}

#[test]
fn whole_hosts_import_as_their_golden_files_say() {
    let mut problems = Vec::new();
    for host in HOSTS {
        let outcome = import(&dir().join(host)).unwrap_or_else(|e| panic!("{host}: {e}"));
        problems.extend(golden(&format!("{host}.report"), &outcome.report.to_text()));
        problems.extend(golden(&format!("{host}.host.toml"), &outcome.host_toml));
        for (id, text) in &outcome.ve_files {
            problems.extend(golden(&format!("{host}.ve{id}.toml"), text));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn vznet_check_accepts_every_imported_host() {
    for host in HOSTS {
        let out = tempfile::tempdir().expect("tempdir");
        let target = out.path().join("vznet");
        let root = dir().join(host);
        let import = vznet(&[
            "import",
            "openvz",
            "--root",
            root.to_str().expect("utf-8"),
            "--out",
            target.to_str().expect("utf-8"),
        ]);
        assert!(
            import.status.success(),
            "{host}: import failed: {}",
            String::from_utf8_lossy(&import.stderr)
        );
        let ves = std::fs::read_dir(target.join("ve"))
            .expect("ve dir")
            .count();
        assert!(ves >= 2, "{host}: {ves} VE files written");
        let check = vznet(&[
            "check",
            "--other-host",
            "--config-dir",
            target.to_str().expect("utf-8"),
        ]);
        assert!(
            check.status.success(),
            "{host}: vznet check refuses the import: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn the_seed_host_comes_over_as_the_seed_runs_it() {
    let outcome = import(&dir().join("seed")).expect("import");
    let host: netcfg::model::HostConfig = toml::from_str(&outcome.host_toml).expect("host.toml");
    let bond = &host.bond[0];
    assert_eq!(
        (bond.name.as_str(), bond.mode.as_str(), bond.miimon_ms),
        ("bond0", "active-backup", Some(100))
    );
    assert_eq!(bond.slaves, ["eth0", "eth1"]);
    let vlans: Vec<(&str, &str, u16)> = host
        .vlan
        .iter()
        .map(|v| (v.name.as_str(), v.link.as_str(), v.id))
        .collect();
    assert_eq!(
        vlans,
        [("bond0.136", "bond0", 136), ("bond0.137", "bond0", 137)]
    );
    let bridges: Vec<(String, String)> = host
        .bridge
        .iter()
        .map(|b| (b.name.clone(), b.addresses[0].to_string()))
        .collect();
    assert_eq!(
        bridges,
        [
            ("br104".to_string(), "192.168.17.52/24".to_string()),
            ("br136".to_string(), "192.168.136.52/24".to_string()),
            ("br137".to_string(), "192.168.137.52/24".to_string())
        ]
    );
    assert_eq!(host.sysctl["net.ipv4.ip_forward"].to_string(), "1");
    assert_eq!(host.bridge[0].sysctl["proxy_arp"].to_string(), "1");
    for (id, text) in &outcome.ve_files {
        let ve: netcfg::model::VeConfig = toml::from_str(text).expect("ve file");
        assert_eq!(ve.id, *id);
        let bridges: Vec<&str> = ve
            .netif
            .iter()
            .filter_map(|n| n.bridge.as_deref())
            .collect();
        assert_eq!(bridges, ["br104", "br136", "br137"], "VE {id}");
        assert!(ve
            .netif
            .iter()
            .all(|n| n.mac.is_some() && n.host_mac.is_some()));
        assert!(ve.onboot);
    }
}

#[test]
fn strict_refuses_a_lossy_host_and_writes_nothing() {
    let out = tempfile::tempdir().expect("tempdir");
    let target = out.path().join("vznet");
    let root = dir().join("seed");
    let run = vznet(&[
        "import",
        "openvz",
        "--root",
        root.to_str().expect("utf-8"),
        "--out",
        target.to_str().expect("utf-8"),
        "--strict",
        "--json",
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(!target.join("host.toml").exists());
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    assert_eq!(v["ok"], false);
    let lost = v["report"]
        .as_array()
        .expect("report")
        .iter()
        .find(|i| i["keyword"] == "KMEMSIZE")
        .expect("KMEMSIZE reported");
    assert_eq!(lost["kind"], "not carried");
    assert_eq!(lost["file"], "/etc/vz/conf/112.conf");
    assert_eq!(lost["line"], 15);
}

#[test]
fn strict_passes_a_host_carried_whole_and_existing_files_stay() {
    let root = tempfile::tempdir().expect("tempdir");
    let conf = root.path().join("etc/vz/conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("120.conf"),
        "ONBOOT=\"yes\"\nHOSTNAME=\"a.example.org\"\nIP_ADDRESS=\"10.1.0.20\"\n",
    )
    .expect("write");
    let out = tempfile::tempdir().expect("tempdir");
    let args = |strict: bool| {
        let mut a = vec![
            "import".to_string(),
            "openvz".into(),
            "--root".into(),
            root.path().display().to_string(),
            "--out".into(),
            out.path().display().to_string(),
        ];
        if strict {
            a.push("--strict".into());
        }
        a
    };
    let run = Command::new(VZNET).args(args(true)).output().expect("run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let ve = std::fs::read_to_string(out.path().join("ve/120.toml")).expect("ve file");
    assert!(ve.contains("addresses = [\"10.1.0.20\"]"), "{ve}");
    let again = Command::new(VZNET).args(args(false)).output().expect("run");
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing host.toml must stay"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("ve/120.toml")).expect("ve file"),
        ve
    );
}

/// xorshift64: deterministic mutations, the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every file of a fixture host, relative to its root.
fn files(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(root.join(rel)).expect("read fixture") {
        let entry = entry.expect("entry");
        let rel = rel.join(entry.file_name());
        if entry.path().is_dir() {
            files(root, &rel, out);
        } else {
            out.push(rel);
        }
    }
}

fn copy_tree(from: &Path, to: &Path, list: &[PathBuf]) {
    for rel in list {
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from.join(rel), dest).expect("copy");
    }
}

#[test]
fn mutated_hosts_never_break_the_importer() {
    let junk = [
        "\"",
        "'",
        "\\",
        "$VEID",
        "=",
        ";",
        "bond0",
        "br104",
        "vmbr9",
        "eth0",
        "999999999999",
        "0",
        "::",
        "255.255.255.255/33",
        "MASTER=br104",
        "BRIDGE=bond0",
        "TYPE=Bridge",
        "VLAN=yes",
        "bridge_ports eth0",
        "bond-slaves br104",
        "net.ipv4.conf.br104.nonsense = 1",
        "NETIF=\"ifname=eth0,bridge=br104;ifname=eth0\"",
        "IP_ADDRESS=\"10.0.0.1 ::1 x\"",
        "BONDING_OPTS=\"mode=9 miimon=x arp_ip_target=1.2.3.4,::\"",
    ];
    let scratch = tempfile::tempdir().expect("tempdir");
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let host = dir().join(HOSTS[rng.below(HOSTS.len())]);
        let mut list = Vec::new();
        files(&host, Path::new(""), &mut list);
        let root = scratch.path().join(format!("h{seed}"));
        copy_tree(&host, &root, &list);
        for _ in 0..1 + rng.below(4) {
            let victim = root.join(&list[rng.below(list.len())]);
            let text = std::fs::read_to_string(&victim).expect("read");
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.is_empty() {
                lines.push(String::new());
            }
            let at = rng.below(lines.len());
            match rng.below(4) {
                0 => lines.insert(at, junk[rng.below(junk.len())].to_string()),
                1 => {
                    let cut = rng.below(lines[at].len() + 1);
                    let mut line = lines[at].clone();
                    while !line.is_char_boundary(cut.min(line.len())) {
                        line.pop();
                    }
                    line.truncate(cut.min(line.len()));
                    lines[at] = line;
                }
                2 => lines[at].push_str(junk[rng.below(junk.len())]),
                _ => {
                    let other = rng.below(lines.len());
                    lines.swap(at, other);
                }
            }
            std::fs::write(&victim, lines.join("\n")).expect("write");
        }
        if let Err(e) = import(&root) {
            let dump: Vec<String> = list
                .iter()
                .map(|f| {
                    format!(
                        "--- {}\n{}",
                        f.display(),
                        std::fs::read_to_string(root.join(f)).unwrap_or_default()
                    )
                })
                .collect();
            panic!("seed {seed}: {e}\n{}", dump.join("\n"));
        }
        std::fs::remove_dir_all(&root).expect("clean");
    }
}

#[test]
fn a_root_without_openvz_files_is_refused() {
    let empty = tempfile::tempdir().expect("tempdir");
    let run = vznet(&[
        "import",
        "openvz",
        "--root",
        empty.path().to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(run.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert!(
        v["error"].as_str().expect("error").contains("--root"),
        "{v}"
    );
}
