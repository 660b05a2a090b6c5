//! vznet.toml(5) cannot drift from the model: the keys are found by asking the
//! model itself, and every one must be on the page.
//!
//! Every config struct denies unknown fields, and serde names the fields it
//! expected when it meets an unknown one. So a probe key placed at each table
//! of the model (`[bridge]`, `[[virtual_server]]`, `virtual_server.check`, ...)
//! makes the parser list that table's keys; each key is probed again as a
//! table and as an array of tables to find nested ones; an internally tagged
//! table (a missing `kind`-like field) is probed once per variant the parser
//! lists. Nothing in the model has to be annotated for this.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

const PROBE: &str = "zz_probe";
const PAGE: &str = include_str!("../man/vznet.toml.5");

/// One step from a table to a nested one.
#[derive(Clone, Debug)]
enum Step {
    /// `key = { ... }`
    Table(String),
    /// `key = [{ ... }]`
    Array(String),
}

/// `(table, key)` for every key of `T`, tables written as `bridge`,
/// `virtual_server.check`, and `""` for the top level.
fn keys_of<T: DeserializeOwned>() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    walk::<T>(&[], &Table::new(), &mut out, 0);
    out
}

fn walk<T: DeserializeOwned>(
    at: &[Step],
    fixed: &Table,
    out: &mut BTreeSet<(String, String)>,
    depth: usize,
) {
    assert!(depth < 8, "the model nests deeper than expected at {at:?}");
    let mut probe = fixed.clone();
    probe.insert(PROBE.into(), Value::Integer(1));
    let fields = match parse::<T>(at, probe) {
        Shape::Fields(f) => f,
        Shape::Tagged(tag) => {
            let mut t = fixed.clone();
            t.insert(tag.clone(), Value::String(PROBE.into()));
            // Not a tag after all when no variants are listed: the missing
            // field belongs to an enclosing table and this one has free keys.
            let Shape::Variants(variants) = parse::<T>(at, t) else {
                return;
            };
            for v in variants {
                let mut t = fixed.clone();
                t.insert(tag.clone(), Value::String(v));
                walk::<T>(at, &t, out, depth + 1);
            }
            return;
        }
        _ => return,
    };
    let name = table_name(at);
    for field in fields {
        out.insert((name.clone(), field.clone()));
        for step in [Step::Table(field.clone()), Step::Array(field.clone())] {
            let mut next = at.to_vec();
            next.push(step);
            let mut probe = Table::new();
            probe.insert(PROBE.into(), Value::Integer(1));
            if matches!(
                parse::<T>(&next, probe),
                Shape::Fields(_) | Shape::Tagged(_)
            ) {
                walk::<T>(&next, &Table::new(), out, depth + 1);
                break;
            }
        }
    }
}

/// What the parser said about a probe.
#[derive(Debug)]
enum Shape {
    /// "unknown field `zz_probe`, expected one of ...": a struct with these keys.
    Fields(Vec<String>),
    /// "missing field `kind`": an internally tagged table.
    Tagged(String),
    /// "unknown variant `zz_probe`, expected one of ...".
    Variants(Vec<String>),
    /// Anything else: not a table (or a map with free keys, such as `sysctl`).
    Other,
}

fn parse<T: DeserializeOwned>(at: &[Step], leaf: Table) -> Shape {
    let mut value = Value::Table(leaf);
    for step in at.iter().rev() {
        let mut t = Table::new();
        match step {
            Step::Table(k) => t.insert(k.clone(), value),
            Step::Array(k) => t.insert(k.clone(), Value::Array(vec![value])),
        };
        value = Value::Table(t);
    }
    let text = toml::to_string(&value).expect("a probe serializes");
    let Err(e) = toml::from_str::<T>(&text) else {
        return Shape::Other;
    };
    let msg = e.message().to_string();
    let names = |after: &str| -> Vec<String> {
        msg.split_once(after)
            .map(|(_, rest)| {
                rest.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    if msg.starts_with(&format!("unknown field `{PROBE}`")) {
        if msg.contains("there are no fields") {
            return Shape::Fields(Vec::new());
        }
        return Shape::Fields(names("expected"));
    }
    if msg.starts_with(&format!("unknown variant `{PROBE}`")) {
        return Shape::Variants(names("expected"));
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        return Shape::Tagged(rest.split('`').next().unwrap_or_default().to_string());
    }
    Shape::Other
}

fn table_name(at: &[Step]) -> String {
    at.iter()
        .map(|s| match s {
            Step::Table(k) | Step::Array(k) => k.as_str(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `(table, key)` documented on the page: `.SS` headings `[table]` or
/// `[[table]]` under the `.SH` of a file, then `.TP` entries whose first line is
/// `.B key`.
fn documented(file_heading: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut in_file = false;
    let mut table = String::new();
    let mut lines = PAGE.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix(".SH ") {
            in_file = h.trim_matches('"') == file_heading;
            table.clear();
        } else if let Some(h) = line.strip_prefix(".SS ") {
            let h = h.trim_matches('"').trim();
            table = h.trim_start_matches('[').trim_end_matches(']').to_string();
            if table == "top level" {
                table.clear();
            }
        } else if in_file && line == ".TP" {
            if let Some(next) = lines.peek() {
                if let Some(keys) = next.strip_prefix(".B ") {
                    for key in keys.split(" | ") {
                        out.insert((table.clone(), key.trim().replace("\\-", "-")));
                    }
                }
            }
        }
    }
    out
}

fn check(file_heading: &str, model: BTreeSet<(String, String)>) {
    assert!(model.len() > 10, "the probe found too few keys: {model:?}");
    let page = documented(file_heading);
    let dotted = |keys: std::collections::btree_set::Difference<'_, (String, String)>| {
        keys.map(|(t, k)| {
            if t.is_empty() {
                k.clone()
            } else {
                format!("{t}.{k}")
            }
        })
        .collect::<Vec<String>>()
    };
    let missing = dotted(model.difference(&page));
    let stale = dotted(page.difference(&model));
    assert!(
        missing.is_empty() && stale.is_empty(),
        "dist/man/vznet.toml.5, section {file_heading}:\n  keys of the model missing from the page: {missing:?}\n  keys on the page the model does not have: {stale:?}"
    );
}

#[test]
fn every_host_toml_key_of_the_model_is_on_the_page_and_no_other() {
    check("HOST.TOML", keys_of::<netcfg::model::HostConfig>());
}

#[test]
fn every_ve_file_key_of_the_model_is_on_the_page_and_no_other() {
    check("VE FILES", keys_of::<netcfg::model::VeConfig>());
}

#[test]
fn the_probe_finds_nested_tables_and_arrays_of_tables() {
    let keys = keys_of::<netcfg::model::HostConfig>();
    for (t, k) in [
        ("", "bridge"),
        ("bridge", "addresses"),
        ("virtual_server", "check"),
        ("virtual_server.check", "interval_ms"),
        ("virtual_server.backends", "weight"),
    ] {
        assert!(
            keys.contains(&(t.into(), k.into())),
            "{t}.{k} not found: {keys:?}"
        );
    }
}

#[test]
fn the_page_parses_as_man_does_it() {
    // Every documented key sits under a file section: none is lost to a typo
    // in a heading.
    let all: usize = PAGE
        .split("\n.TP\n.B ")
        .skip(1)
        .map(|entry| {
            entry
                .lines()
                .next()
                .unwrap_or_default()
                .split(" | ")
                .count()
        })
        .sum();
    let found = documented("HOST.TOML").len() + documented("VE FILES").len();
    assert_eq!(
        all, found,
        "some .TP entries are outside HOST.TOML and VE FILES or repeated"
    );
}
