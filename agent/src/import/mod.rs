//! `vznet import`: configs of other tools into vznet's files. Each importer turns
//! its source into an [`Outcome`] (host.toml tables and a [`Report`] of what was
//! not carried over); this module writes it out the same way for all of them.

pub mod fragment;
pub mod keepalived;
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
                Err(keepalived::ImportError::Read(e)) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({ "ok": false, "error": e.to_string() })
                        );
                    }
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(crate::cli::EXIT_INVALID))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
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
        (Some(dir), false) => Some(write_host_toml(dir, &outcome.host_toml)?),
        _ => None,
    };
    if json {
        let mut v = serde_json::json!({
            "ok": !refused,
            "report": outcome.report.to_json(),
            "counts": outcome.counts.iter().map(|(k, n)| (k.to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
        });
        match &written {
            Some(path) => v["written"] = serde_json::json!(path),
            None if !refused => v["host_toml"] = serde_json::json!(outcome.host_toml),
            None => {}
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        eprint!("{}", outcome.report.to_text());
        if let Some(path) = &written {
            println!("{}: written ({})", path.display(), summary(outcome));
        } else if !refused {
            std::io::stdout().write_all(outcome.host_toml.as_bytes())?;
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
        .map(|(k, n)| format!("{n} [[{k}]]"))
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

/// Writes DIR/host.toml (never over an existing one) and makes DIR/ve/.
fn write_host_toml(dir: &Path, text: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("ve"))
        .with_context(|| format!("cannot make {}/ve", dir.display()))?;
    let path = dir.join("host.toml");
    if path.symlink_metadata().is_ok() {
        bail!(
            "{} exists: not overwritten (remove it or choose another --out)",
            path.display()
        );
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
