//! `vznet import`: configs of other tools into vznet's files. Each importer turns
//! its source into an [`Outcome`] (host.toml tables and a [`Report`] of what was
//! not carried over); this module writes it out the same way for all of them.

pub mod fragment;
pub mod keepalived;
pub mod openvz;
pub mod report;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

pub use report::{Item, Kind, Report};

/// `vznet import` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a keepalived.conf: VRRP instances, scripts and sync groups, virtual
    /// servers and their checks, static routes and rules.
    ///
    /// The file is read as keepalived 2.2.7 reads it: `!` and `#` comments,
    /// `include` with globs (relative to the including file), double-quoted
    /// strings, `@ID` / `@^ID` lines for one config id, `$NAME=VALUE` definitions
    /// and `~SEQ` sequences. The result is host.toml tables ([[vrrp]],
    /// [[vrrp_script]], [[vrrp_sync_group]], [[virtual_server]], [[route]],
    /// [[rule]]) with
    /// keepalived's defaults written out where vznet's differ (keepalived speaks
    /// VRRPv2 unless told otherwise, vznet v3; health checks every 60 s). They
    /// pass `vznet check`; the import reads nothing from the kernel, so the
    /// interfaces may live on another host.
    ///
    /// Every keyword that is not carried over is reported on stderr, one line
    /// each: FILE:LINE: KEYWORD: not carried: WHY. "changed" lines name what is
    /// carried but done differently; "no effect" lines name what keepalived
    /// itself ignores there.
    ///
    /// EXIT STATUS: 0 imported; 2 the file cannot be read, or --strict and
    /// something is not carried (nothing is written then); 1 the output cannot
    /// be written.
    ///
    /// EXAMPLES
    ///   vznet import keepalived /etc/keepalived/keepalived.conf
    ///   vznet import keepalived keepalived.conf --config-id lb1 --out /etc/vznet.new
    ///   vznet check --config-dir /etc/vznet.new
    ///   vznet import keepalived keepalived.conf --strict --json
    #[command(verbatim_doc_comment)]
    Keepalived(KeepalivedArgs),
    /// Import an OpenVZ host: its containers (vzctl's vz.conf and CTID.conf)
    /// into ve/ID.toml, its network files and net.* sysctls into host.toml.
    ///
    /// Read under --root (default /), as vzctl 4 and the distribution read them:
    ///   /etc/vz/vz.conf, /etc/vz/conf/CTID.conf   shell assignments, quoted as
    ///       the shell quotes ("a b", 'x', \ escapes, $VEID), vz.conf's VE_PRIVATE
    ///       and VE_LAYOUT the defaults of each CTID.conf; NETIF (ifname, mac,
    ///       host_ifname, host_mac, bridge), IP_ADDRESS (venet), HOSTNAME,
    ///       NAMESERVER, SEARCHDOMAIN, ONBOOT, BOOTORDER, VE_PRIVATE (root),
    ///       CPUUNITS (cpu_weight), PHYSPAGES (memory_limit), NEIGHBOUR_DEVS
    ///   /etc/sysconfig/network, /etc/sysconfig/network-scripts/ifcfg-*   RHEL:
    ///       TYPE=Bond/Bridge, MASTER, BONDING_OPTS, VLAN=yes (DEVICE=bond0.136),
    ///       BRIDGE=, IPADDR[N]/PREFIX[N]/NETMASK[N], IPV6ADDR, GATEWAY, MTU
    ///   /etc/network/interfaces (and what it sources)   Debian: iface stanzas
    ///       with address/netmask/gateway, bond-*, vlan-raw-device, bridge_ports
    ///   /etc/modprobe.conf, /etc/modprobe.d/*.conf, /etc/bonding.cfg
    ///       `options bonding ...` (every bond's defaults), `alias bond0 bonding`
    ///       with `options bond0 ...`
    ///   /etc/sysctl.d/*.conf, /etc/sysctl.conf   net.* keys; per-interface keys
    ///       go into that interface's sysctl map
    ///
    /// The files written pass `vznet check` (the import runs netcfg's own
    /// checks; an object vznet refuses is dropped and reported). VE files have
    /// no netns: `vznet ve start` runs and wires the VE. Nothing is read from
    /// the kernel, so a copy of another host's /etc imports as that host.
    ///
    /// Every value that is not carried over is reported on stderr, one line
    /// each: FILE:LINE: KEY: not carried: WHY (user beancounters, quotas, CPU
    /// limits, commands in up/down lines, DHCP...). "changed" lines name what is
    /// carried but done differently; "no effect" lines what does nothing here.
    ///
    /// EXIT STATUS: 0 imported; 2 no OpenVZ or network file under --root, or
    /// --strict and something is not carried (nothing is written then); 1 the
    /// output cannot be written (an existing file is never overwritten).
    ///
    /// EXAMPLES
    ///   vznet import openvz                          # this host: files on stdout
    ///   vznet import openvz --out /etc/vznet.new     # host.toml and ve/ID.toml
    ///   vznet check --config-dir /etc/vznet.new
    ///   vznet import openvz --root /mnt/oldhost --out /tmp/oldhost --strict
    ///   vznet import openvz --json | jq '.report[] | select(.kind == "not carried")'
    #[command(verbatim_doc_comment)]
    Openvz(OpenvzArgs),
}

/// `vznet import openvz` arguments.
#[derive(Debug, Args)]
pub struct OpenvzArgs {
    /// The folder the host's files are under (a mounted disk or a copy of
    /// its /etc).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Write DIR/host.toml and DIR/ve/ID.toml instead of printing them;
    /// existing files are never overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Exit 2 and write nothing when anything is not carried over.
    #[arg(long)]
    pub strict: bool,
}

/// `vznet import keepalived` arguments.
#[derive(Debug, Args)]
pub struct KeepalivedArgs {
    /// The keepalived.conf to read.
    pub file: PathBuf,
    /// Write DIR/host.toml (and an empty DIR/ve/) instead of printing the
    /// tables; an existing host.toml is never overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Exit 2 and write nothing when anything is not carried over.
    #[arg(long)]
    pub strict: bool,
    /// The config id for `@ID` lines (keepalived's -i; default: this host's
    /// name up to the first dot).
    #[arg(long, value_name = "ID")]
    pub config_id: Option<String>,
}

/// What an importer produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The host.toml tables.
    pub host_toml: String,
    /// ve/ID.toml files by id (none for importers of host settings only).
    pub ve_files: Vec<(u32, String)>,
    /// What was not carried, changed, or had no effect.
    pub report: Report,
    /// How many tables of each array.
    pub counts: Vec<(&'static str, usize)>,
}

/// Runs `vznet import ...`.
pub fn run(cmd: &ImportCommand, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        ImportCommand::Keepalived(args) => {
            let options = keepalived::Options {
                config_id: args
                    .config_id
                    .clone()
                    .unwrap_or_else(keepalived::default_config_id),
            };
            match keepalived::import(&args.file, &options) {
                Ok(outcome) => deliver(&outcome, args.out.as_deref(), args.strict, json),
                Err(keepalived::ImportError::Read(e)) => Ok(refuse_input(&e.to_string(), json)),
                Err(e) => Err(e.into()),
            }
        }
        ImportCommand::Openvz(args) => match openvz::import(&args.root) {
            Ok(outcome) => deliver(&outcome, args.out.as_deref(), args.strict, json),
            Err(e @ openvz::ImportError::Nothing(_)) => Ok(refuse_input(&e.to_string(), json)),
            Err(e) => Err(e.into()),
        },
    }
}

/// Reports input that cannot be imported at all; exit 2.
fn refuse_input(error: &str, json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::json!({ "ok": false, "error": error }));
    }
    eprintln!("error: {error}");
    ExitCode::from(crate::cli::EXIT_INVALID)
}

/// Prints or writes an outcome and its report; the exit code.
pub fn deliver(
    outcome: &Outcome,
    out: Option<&Path>,
    strict: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let refused = strict && outcome.report.loses_something();
    let written = match (out, refused) {
        (Some(dir), false) => Some(write_files(dir, outcome)?),
        _ => None,
    };
    if json {
        let mut v = serde_json::json!({
            "ok": !refused,
            "report": outcome.report.to_json(),
            "counts": outcome.counts.iter().map(|(k, n)| (k.to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
        });
        match &written {
            Some(paths) => {
                v["written"] = serde_json::json!(paths[0]);
                if !outcome.ve_files.is_empty() {
                    v["written_ve"] = serde_json::json!(paths[1..]);
                }
            }
            None if !refused => {
                v["host_toml"] = serde_json::json!(outcome.host_toml);
                if !outcome.ve_files.is_empty() {
                    v["ve"] = outcome
                        .ve_files
                        .iter()
                        .map(|(id, text)| (id.to_string(), serde_json::json!(text)))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
            }
            None => {}
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        eprint!("{}", outcome.report.to_text());
        if let Some(paths) = &written {
            println!("{}: written ({})", paths[0].display(), summary(outcome));
            for path in &paths[1..] {
                println!("{}: written", path.display());
            }
        } else if !refused {
            let mut stdout = std::io::stdout();
            if outcome.ve_files.is_empty() {
                stdout.write_all(outcome.host_toml.as_bytes())?;
            } else {
                // Several files: each under a line naming it (as `head` does).
                writeln!(stdout, "# ==> host.toml <==")?;
                stdout.write_all(outcome.host_toml.as_bytes())?;
                for (id, text) in &outcome.ve_files {
                    writeln!(stdout, "\n# ==> ve/{id}.toml <==")?;
                    stdout.write_all(text.as_bytes())?;
                }
            }
        }
        eprintln!("vznet import: {}", tally(&outcome.report));
    }
    if refused {
        eprintln!("vznet import: --strict: not everything is carried over; nothing written");
        return Ok(ExitCode::from(crate::cli::EXIT_INVALID));
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(outcome: &Outcome) -> String {
    let parts: Vec<String> = outcome
        .counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| match *k {
            "ve" => format!("{n} VE files"),
            _ => format!("{n} [[{k}]]"),
        })
        .collect();
    if parts.is_empty() {
        "no tables".into()
    } else {
        parts.join(", ")
    }
}

fn tally(report: &Report) -> String {
    let count = |k: Kind| report.items().iter().filter(|i| i.kind == k).count();
    format!(
        "{} not carried, {} changed, {} without effect",
        count(Kind::NotCarried),
        count(Kind::Changed),
        count(Kind::NoEffect)
    )
}

/// Writes DIR/host.toml and DIR/ve/ID.toml (never over existing files: none is
/// written then); the paths, host.toml first.
fn write_files(dir: &Path, outcome: &Outcome) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir.join("ve"))
        .with_context(|| format!("cannot make {}/ve", dir.display()))?;
    let mut files = vec![(dir.join("host.toml"), outcome.host_toml.as_str())];
    for (id, text) in &outcome.ve_files {
        files.push((dir.join(format!("ve/{id}.toml")), text.as_str()));
    }
    for (path, _) in &files {
        if path.symlink_metadata().is_ok() {
            bail!(
                "{} exists: not overwritten (remove it or choose another --out)",
                path.display()
            );
        }
    }
    for (path, text) in &files {
        write_new(path, text)?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    if path.symlink_metadata().is_ok() {
        bail!(
            "{} exists: not overwritten (remove it or choose another --out)",
            path.display()
        );
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
