//! `vznet ve list` (vzlist's -o, -H, -a, -S, -s) and `vznet ve status`.

use std::cmp::Ordering;
use std::process::ExitCode;

use serde_json::{json, Value};

use super::{invalid, Cli};
use crate::ve::{self, VeInfo};

/// Which VEs a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Running ones (vzlist's default).
    Running,
    /// Stopped ones (`-S`).
    Stopped,
    /// All (`-a`).
    All,
}

/// What `ve list` was asked.
#[derive(Debug)]
pub struct Options<'a> {
    /// Only these VEs (empty: all).
    pub ids: &'a [u32],
    /// Running, stopped or all.
    pub which: Which,
    /// `-o` fields (empty: the default columns).
    pub fields: &'a [String],
    /// Print the header line.
    pub header: bool,
    /// `-s [-]FIELD`.
    pub sort: Option<&'a str>,
}

/// A column of `ve list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Veid,
    Nproc,
    Status,
    Ip,
    Hostname,
    Onboot,
    BootOrder,
    CpuWeight,
    MemoryLimit,
    Root,
    Pid,
    Nameserver,
    Searchdomain,
}

/// Every field: its names (the first is ours, the others vzlist's), header,
/// width (negative: left-aligned).
const FIELDS: &[(Field, &[&str], &str, i32)] = &[
    (Field::Veid, &["veid", "ctid"], "VEID", 6),
    (Field::Nproc, &["nproc", "numproc"], "NPROC", 6),
    (Field::Status, &["status"], "STATUS", -8),
    (Field::Ip, &["ip", "ip_addr"], "IP_ADDR", -20),
    (Field::Hostname, &["hostname"], "HOSTNAME", -20),
    (Field::Onboot, &["onboot"], "ONBOOT", -6),
    (
        Field::BootOrder,
        &["bootorder", "boot_order"],
        "BOOTORDER",
        9,
    ),
    (
        Field::CpuWeight,
        &["cpu_weight", "cpuweight"],
        "CPU_WEIGHT",
        10,
    ),
    (
        Field::MemoryLimit,
        &["memory_limit", "memlimit"],
        "MEMORY_LIMIT",
        12,
    ),
    (Field::Root, &["root", "private"], "ROOT", -30),
    (Field::Pid, &["pid"], "PID", 8),
    (
        Field::Nameserver,
        &["nameserver", "nameservers"],
        "NAMESERVER",
        -20,
    ),
    (
        Field::Searchdomain,
        &["searchdomain", "search"],
        "SEARCHDOMAIN",
        -20,
    ),
];

const DEFAULT: &[Field] = &[
    Field::Veid,
    Field::Nproc,
    Field::Status,
    Field::Ip,
    Field::Hostname,
];

fn field(name: &str) -> Result<Field, String> {
    FIELDS
        .iter()
        .find(|(_, names, _, _)| names.contains(&name))
        .map(|(f, _, _, _)| *f)
        .ok_or_else(|| {
            let known: Vec<&str> = FIELDS.iter().map(|(_, n, _, _)| n[0]).collect();
            format!("unknown field {name:?}; fields: {}", known.join(", "))
        })
}

fn spec(f: Field) -> (&'static str, &'static str, i32) {
    FIELDS
        .iter()
        .find(|(g, _, _, _)| *g == f)
        .map(|(_, names, header, width)| (names[0], *header, *width))
        .unwrap_or(("?", "?", 0))
}

/// A field's value: JSON, and the text column (`-` when unset).
fn value(v: &VeInfo, f: Field) -> Value {
    let list = |l: &[String]| -> Value { json!(l) };
    match f {
        Field::Veid => json!(v.veid),
        Field::Nproc => json!(v.nproc),
        Field::Status => json!(v.status),
        Field::Ip => list(&v.ip_addr),
        Field::Hostname => json!(v.hostname),
        Field::Onboot => json!(v.onboot),
        Field::BootOrder => json!(v.boot_order),
        Field::CpuWeight => json!(v.cpu_weight),
        Field::MemoryLimit => json!(v.memory_limit),
        Field::Root => json!(v.root),
        Field::Pid => json!(v.pid),
        Field::Nameserver => list(&v.nameservers),
        Field::Searchdomain => list(&v.search),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Orders values of one field: numbers as numbers, unset first.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => text(a).cmp(&text(b)),
    }
}

/// Prints the listing.
pub fn print(cli: &Cli, all: &[VeInfo], opts: &Options<'_>) -> anyhow::Result<ExitCode> {
    let fields: Vec<Field> = if opts.fields.is_empty() {
        DEFAULT.to_vec()
    } else {
        match opts.fields.iter().map(|f| field(f.trim())).collect() {
            Ok(f) => f,
            Err(e) => return invalid(format!("ve list -o: {e}")),
        }
    };
    let sort = match opts.sort {
        None => None,
        Some(s) => {
            let (reverse, name) = match s.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, s),
            };
            match field(name) {
                Ok(f) => Some((f, reverse)),
                Err(e) => return invalid(format!("ve list -s: {e}")),
            }
        }
    };
    let mut rows: Vec<&VeInfo> = all
        .iter()
        .filter(|v| opts.ids.is_empty() || opts.ids.contains(&v.veid))
        .filter(|v| match opts.which {
            Which::All => true,
            Which::Running => v.pid.is_some(),
            Which::Stopped => v.pid.is_none(),
        })
        .collect();
    if let Some((f, reverse)) = sort {
        rows.sort_by(|a, b| {
            let o = compare(&value(a, f), &value(b, f));
            let o = if reverse { o.reverse() } else { o };
            // Ties stay in id order either way.
            o.then(a.veid.cmp(&b.veid))
        });
    }
    if cli.json {
        let out: Vec<Value> = if opts.fields.is_empty() {
            rows.iter()
                .map(|v| serde_json::to_value(v).unwrap_or(Value::Null))
                .collect()
        } else {
            rows.iter()
                .map(|v| {
                    let m: serde_json::Map<String, Value> = fields
                        .iter()
                        .map(|f| (spec(*f).0.to_string(), value(v, *f)))
                        .collect();
                    Value::Object(m)
                })
                .collect()
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let line = |cells: Vec<String>| -> String {
        let last = fields.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (f, c)) in fields.iter().zip(cells).enumerate() {
            let (_, _, w) = spec(*f);
            let w = w.unsigned_abs() as usize;
            let cell = if i == last && spec(*f).2 < 0 {
                c
            } else if spec(*f).2 < 0 {
                format!("{c:<w$}")
            } else {
                format!("{c:>w$}")
            };
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&cell);
        }
        out.trim_end().to_string()
    };
    if opts.header {
        println!(
            "{}",
            line(fields.iter().map(|f| spec(*f).1.to_string()).collect())
        );
    }
    for v in rows {
        println!(
            "{}",
            line(fields.iter().map(|f| text(&value(v, *f))).collect())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `ve status ID`: exit 0 running, 3 stopped, 4 no such VE.
pub fn status(cli: &Cli, id: u32) -> anyhow::Result<ExitCode> {
    let file = ve::ve_file(&cli.config_dir, id);
    let p = ve::presence(id, file.as_ref(), &cli.config_dir, &cli.state_dir);
    if cli.json {
        println!("{}", serde_json::to_string(&p)?);
    } else {
        println!(
            "VEID {id} {} {} {}",
            if p.exists { "exist" } else { "deleted" },
            if p.mounted { "mounted" } else { "unmounted" },
            if p.running { "running" } else { "down" }
        );
    }
    Ok(ExitCode::from(match (p.exists, p.running) {
        (_, true) => 0,
        (true, false) => 3,
        (false, false) => 4,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vzlist_names_map_to_fields_and_unset_values_print_a_dash() {
        assert_eq!(field("ctid"), Ok(Field::Veid));
        assert_eq!(field("numproc"), Ok(Field::Nproc));
        assert_eq!(field("private"), Ok(Field::Root));
        assert!(field("physpages").is_err_and(|e| e.contains("veid, nproc")));
        assert_eq!(text(&Value::Null), "-");
        assert_eq!(text(&json!(true)), "yes");
        assert_eq!(text(&json!(["a", "b"])), "a,b");
        assert_eq!(
            compare(&json!(9), &json!(10)),
            Ordering::Less,
            "numbers as numbers"
        );
        assert_eq!(compare(&Value::Null, &json!(0)), Ordering::Less);
    }
}
