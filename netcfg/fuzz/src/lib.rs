//! The config loader path the fuzz target drives, shared with the stable corpus
//! test (`netcfg/tests/fuzz_corpus.rs` includes this file), so both run the same
//! code.
//!
//! One input is a whole config folder: the bytes up to the first `\n#=== ve/`
//! are `host.toml`; each such line names a `ve/` file (the rest of the line)
//! whose bytes run to the next one. The names are the fuzzer's too, so
//! `ve/101.TOML`, `ve/7.toml~` and two files of one name are reached. Nothing is
//! read from disk but the kernel facts `check` reads (links, netns, sysctls).
//!
//! Loading must not panic on any input, and what it says must be usable: an
//! error names a file of the folder, a line and a column from 1, and the same
//! input gives the same answer twice.

use std::path::Path;

use netcfg::model::{Config, ConfigError, ConfigErrors};

/// The line that starts a `ve/` file.
pub const VE_FILE: &[u8] = b"\n#=== ve/";

/// The folder the input stands for (never read).
pub const DIR: &str = "/nonexistent/vznet-fuzz";

/// `host.toml` and the `ve/` files (name, bytes) of an input.
pub fn split(data: &[u8]) -> (&[u8], Vec<(String, &[u8])>) {
    let mut parts = Vec::new();
    let mut rest = data;
    let mut host: Option<&[u8]> = None;
    loop {
        let at = find(rest, VE_FILE);
        let (part, next) = match at {
            Some(i) => (&rest[..i], Some(&rest[i + VE_FILE.len()..])),
            None => (rest, None),
        };
        if host.is_none() {
            host = Some(part);
        } else {
            let end = part.iter().position(|b| *b == b'\n').unwrap_or(part.len());
            let body = part.get(end + 1..).unwrap_or(&[]);
            parts.push((file_name(&part[..end]), body));
        }
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    (host.unwrap_or(&[]), parts)
}

/// A name that stays one file in `ve/`: the last path segment, never `.`,
/// `..` or empty (the loader reads folders, and a folder holds no such names).
fn file_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw).replace('\0', "");
    let last = s.rsplit('/').next().unwrap_or("");
    match last {
        "" | "." | ".." => "x.toml".into(),
        name => name.into(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Loads the input as a config folder, checking what the loader says.
pub fn load(data: &[u8]) -> Result<Config, ConfigErrors> {
    let dir = Path::new(DIR);
    let (host, ves) = split(data);
    let ves: Vec<(&str, &[u8])> = ves.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let result = Config::from_bytes(dir, host, &ves);
    match &result {
        Ok(config) => config.warnings.iter().for_each(|w| located(dir, w)),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refusal without a reason");
            errors.0.iter().for_each(|e| located(dir, e));
        }
    }
    let again = Config::from_bytes(dir, host, &ves);
    assert_eq!(
        result.as_ref().map_err(ToString::to_string).err(),
        again.as_ref().map_err(ToString::to_string).err(),
        "the same input gave another answer"
    );
    result
}

/// An error names a file of the folder, a line and a column, and prints.
fn located(dir: &Path, e: &ConfigError) {
    assert!(e.location.file.starts_with(dir), "{e}");
    assert!(e.location.line >= 1 && e.location.column >= 1, "{e}");
    assert!(!e.to_string().is_empty());
}
