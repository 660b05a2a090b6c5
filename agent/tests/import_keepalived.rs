//! `vznet import keepalived` against every sample Debian ships with keepalived
//! 2.2.7 (/usr/share/doc/keepalived/samples, GPL-2 files read from there and not
//! copied into this repository), and a config of our own that uses every feature
//! of the syntax. Each import's report and host.toml tables must equal the golden
//! files in tests/import_keepalived/ (UPDATE_GOLDEN=1 rewrites them), and `vznet
//! check` must accept every imported config.

use std::path::{Path, PathBuf};
use std::process::Command;

use agent::import::keepalived::{import, Options};
use agent::import::Outcome;

const SAMPLES: &str = "/usr/share/doc/keepalived/samples";
const VZNET: &str = env!("CARGO_BIN_EXE_vznet");

/// The samples that must be carried whole (nothing "not carried").
const CARRIED_WHOLE: &[&str] = &[
    "keepalived.conf.fwmark",
    "keepalived.conf.quorum",
    "keepalived.conf.track_interface",
    "keepalived.conf.vrrp.localcheck",
    "keepalived.conf.vrrp.scripts",
    "keepalived.conf.vrrp.sync",
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import_keepalived")
}

/// The Debian samples, decompressed into `scratch` when Debian gzipped them.
fn samples(scratch: &Path) -> Vec<PathBuf> {
    let dir = Path::new(SAMPLES);
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "{SAMPLES}: {e}: keepalived's samples are missing; `apt-get install keepalived` \
             (scripts/setup.sh does) installs them, unless dpkg is told to skip /usr/share/doc"
        )
    });
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.starts_with("keepalived.conf.") {
            continue;
        }
        match name.strip_suffix(".gz") {
            Some(plain) => {
                let file = std::fs::File::open(&path).expect("open sample");
                let mut text = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(file), &mut text)
                    .expect("gunzip sample");
                let dest = scratch.join(plain);
                std::fs::write(&dest, text).expect("write sample");
                out.push(dest);
            }
            None => out.push(path),
        }
    }
    out.sort();
    assert!(out.len() >= 20, "only {} samples in {SAMPLES}", out.len());
    out
}

/// The conditional_conf sample is written for `keepalived -i high` (or `-i low`).
fn run_import(path: &Path) -> Outcome {
    let options = Options {
        config_id: "high".into(),
    };
    import(path, &options).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text with the sample's folder left out of its paths.
fn relative(text: &str, path: &Path) -> String {
    let dir = path.parent().expect("parent").display().to_string();
    text.replace(&format!("{dir}/"), "")
}

/// Compares `actual` with the golden file `name` (or writes it with UPDATE_GOLDEN=1).
fn golden(name: &str, actual: &str) -> Option<String> {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    (expected != actual).then(|| {
        format!("{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it):\n--- golden\n{expected}\n--- now\n{actual}")
    })
}

fn check_outcome(path: &Path, name: &str) -> Vec<String> {
    let outcome = run_import(path);
    let mut problems = Vec::new();
    problems.extend(golden(
        &format!("{name}.report"),
        &relative(&outcome.report.to_text(), path),
    ));
    problems.extend(golden(
        &format!("{name}.toml"),
        &relative(&outcome.host_toml, path),
    ));
    problems
}

#[test]
fn every_debian_sample_imports_as_its_golden_files_say() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut problems = Vec::new();
    let mut names = Vec::new();
    for path in samples(scratch.path()) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        problems.extend(check_outcome(&path, &name));
        names.push(name);
    }
    // No golden file for a sample that is gone.
    for entry in std::fs::read_dir(golden_dir()).expect("golden dir") {
        let file = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        let stem = file.trim_end_matches(".report").trim_end_matches(".toml");
        if stem.starts_with("keepalived.conf.") && !names.iter().any(|n| n == stem) {
            problems.push(format!("{file}: no such sample any more"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn at_least_five_samples_are_carried_whole() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let whole: Vec<String> = samples(scratch.path())
        .iter()
        .filter(|p| !run_import(p).report.loses_something())
        .map(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .expect("name")
                .to_string()
        })
        .collect();
    assert_eq!(whole, CARRIED_WHOLE, "the samples carried whole changed");
}

/// Writes the tables into a config folder with an empty ve/ and runs `vznet check`.
fn vznet_check(host_toml: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("ve")).expect("ve/");
    std::fs::write(dir.path().join("host.toml"), host_toml).expect("host.toml");
    Command::new(VZNET)
        .args(["check", "--config-dir"])
        .arg(dir.path())
        .output()
        .expect("run vznet check")
}

#[test]
fn vznet_check_accepts_every_imported_config() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut paths = samples(scratch.path());
    paths.push(golden_dir().join("features.conf"));
    for path in paths {
        let outcome = run_import(&path);
        let out = vznet_check(&outcome.host_toml);
        assert!(
            out.status.success(),
            "{}: vznet check refused the import:\n{}\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr),
            outcome.host_toml
        );
    }
}

#[test]
fn a_config_using_every_feature_imports_as_its_golden_files_say() {
    let path = golden_dir().join("features.conf");
    let problems = check_outcome(&path, "features");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    let outcome = run_import(&path);
    assert!(
        !outcome.report.loses_something(),
        "{}",
        outcome.report.to_text()
    );
}

fn vznet(args: &[&str]) -> std::process::Output {
    Command::new(VZNET).args(args).output().expect("run vznet")
}

#[test]
fn the_command_prints_writes_refuses_and_reports() {
    let sample = golden_dir().join("features.conf");
    let lossy = golden_dir().join("features.lossy.conf");
    let sample_s = sample.to_str().expect("utf-8");
    let lossy_s = lossy.to_str().expect("utf-8");

    // Without --out: the tables on stdout, the report on stderr.
    let out = vznet(&["import", "keepalived", sample_s, "--config-id", "high"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[[vrrp]]"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 not carried"));

    // A lossy config: reported with file and line; --strict exits 2 and prints no tables.
    let out = vznet(&["import", "keepalived", lossy_s]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{lossy_s}:4: smtp_server: not carried: ")),
        "{stderr}"
    );
    let out = vznet(&["import", "keepalived", lossy_s, "--strict"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "--strict printed tables");

    // --json: the same items as objects.
    let out = vznet(&["import", "keepalived", lossy_s, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true);
    let items = v["report"].as_array().expect("report array");
    let smtp = items
        .iter()
        .find(|i| i["keyword"] == "smtp_server")
        .expect("smtp_server reported");
    assert_eq!(smtp["line"], 4);
    assert_eq!(smtp["kind"], "not carried");
    assert_eq!(smtp["file"], lossy_s);
    assert!(v["host_toml"]
        .as_str()
        .is_some_and(|t| t.contains("[[vrrp]]")));

    // --out writes DIR/host.toml and an empty ve/, never over an existing file.
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("etc-vznet");
    let od = out_dir.to_str().expect("utf-8");
    let out = vznet(&[
        "import",
        "keepalived",
        sample_s,
        "--config-id",
        "high",
        "--out",
        od,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out_dir.join("ve").is_dir());
    let written = std::fs::read_to_string(out_dir.join("host.toml")).expect("written");
    assert_eq!(
        written,
        String::from_utf8_lossy(
            &vznet(&["import", "keepalived", sample_s, "--config-id", "high"]).stdout
        )
    );
    let out = vznet(&["check", "--config-dir", od]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = vznet(&["import", "keepalived", sample_s, "--out", od]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not overwritten"));
    // --strict with something lost writes nothing.
    let strict_dir = dir.path().join("strict");
    let sd = strict_dir.to_str().expect("utf-8");
    let out = vznet(&["import", "keepalived", lossy_s, "--strict", "--out", sd]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!strict_dir.join("host.toml").exists());

    // An unreadable file is exit 2 with its name.
    let out = vznet(&["import", "keepalived", "/nonexistent/keepalived.conf"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/keepalived.conf"));
}

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Configs made by mutating real ones (lines dropped, repeated, moved, words
/// swapped, braces and junk inserted) never panic the importer, and every import
/// still passes netcfg's checks (an error here is a bug: the importer drops what
/// vznet refuses before it renders).
#[test]
fn mutated_configs_never_break_the_importer() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut sources = samples(scratch.path());
    sources.push(golden_dir().join("features.conf"));
    let lines: Vec<String> = sources
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let words: Vec<String> = lines
        .iter()
        .flat_map(|l| l.split_whitespace().map(str::to_string))
        .collect();
    let junk = [
        "{",
        "}",
        "\"",
        "$X=1",
        "$X",
        "${X}",
        "@high",
        "~SEQ(i, 1, 3) x $i",
        "include *",
        "0",
        "-1",
        "999999999999",
        "::",
        "255.255.255.255/33",
        "weight",
        "\\",
    ];
    let file = scratch.path().join("mutated.conf");
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let base = &sources[rng.below(sources.len())];
        let mut out: Vec<String> = std::fs::read_to_string(base)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(out.len() + 1);
            match rng.below(6) {
                0 if !out.is_empty() => {
                    out.remove(at.min(out.len() - 1));
                }
                1 => out.insert(at, lines[rng.below(lines.len())].clone()),
                2 => out.insert(at, junk[rng.below(junk.len())].to_string()),
                3 if !out.is_empty() => {
                    let i = at.min(out.len() - 1);
                    let mut w: Vec<String> =
                        out[i].split_whitespace().map(str::to_string).collect();
                    if !w.is_empty() {
                        let k = rng.below(w.len());
                        w[k] = words[rng.below(words.len())].clone();
                    }
                    out[i] = w.join(" ");
                }
                4 if !out.is_empty() => {
                    let i = at.min(out.len() - 1);
                    let line = out.remove(i);
                    let j = rng.below(out.len() + 1);
                    out.insert(j, line);
                }
                _ => out.insert(
                    at,
                    format!(
                        "{} {}",
                        words[rng.below(words.len())],
                        words[rng.below(words.len())]
                    ),
                ),
            }
        }
        std::fs::write(&file, out.join("\n")).expect("write");
        let result = std::panic::catch_unwind(|| {
            import(
                &file,
                &Options {
                    config_id: "high".into(),
                },
            )
        });
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!(
                "seed {seed} (from {}): {e}\n{}",
                base.display(),
                out.join("\n")
            ),
            Err(_) => panic!(
                "seed {seed} (from {}) panicked:\n{}",
                base.display(),
                out.join("\n")
            ),
        }
    }
}

/// What keepalived accepts but vznet refuses (here a VRID used twice on one link)
/// is dropped with a report line, with what refers to it, and the rest still passes
/// `vznet check`.
#[test]
fn objects_vznet_refuses_are_dropped_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keepalived.conf");
    std::fs::write(
        &path,
        "vrrp_instance A {\n interface eth0\n virtual_router_id 5\n virtual_ipaddress { 10.0.0.1/24 }\n}\n\
         vrrp_instance B {\n interface eth0\n virtual_router_id 5\n virtual_ipaddress { 10.0.0.2/24 }\n}\n\
         vrrp_sync_group G {\n group { B }\n}\n",
    )
    .expect("write");
    let outcome = run_import(&path);
    let report = relative(&outcome.report.to_text(), &path);
    assert_eq!(
        report,
        "keepalived.conf:6: vrrp_instance: not carried: vznet refuses vrid: VRID 5 is already used on eth0 for this address family (at vrrp[0].vrid): vrrp_instance B not carried\n\
         keepalived.conf:11: vrrp_sync_group: not carried: its last member B is not carried: vrrp_sync_group G not carried\n"
    );
    assert!(
        !outcome.host_toml.contains("vrrp_sync_group"),
        "{}",
        outcome.host_toml
    );
    let out = vznet_check(&outcome.host_toml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
