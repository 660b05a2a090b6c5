//! `vznet fleet`: push a host's config folder to etcd, get it back, list the
//! hosts' status, move a VE between hosts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::change::{self, ChangeError, Outcome};
use super::etcd::Client;
use super::folder;
use super::options::{self, Keys, Tls};
use super::report::HostReport;

/// The file `fleet get` leaves in a folder: the revision it read, which `fleet
/// push` then takes as the base (a push fails if the host changed since).
pub const BASE_FILE: &str = ".fleet-revision";

/// Exit status of a push or move refused because someone changed the keys since.
pub const EXIT_CONFLICT: u8 = 3;

const AFTER_HELP: &str = "\
KEYS
  PREFIX/hosts/NAME/host.toml and PREFIX/hosts/NAME/ve/ID.toml hold a host's
  config (the same TOML as on disk); PREFIX/status/NAME is the host's status,
  written by its vznetd under a lease (it disappears when the host dies).

EXIT STATUS
  0  done
  1  etcd unreachable or refused, a host did not answer in time, or bad usage
  2  the config is invalid (nothing was written), or a host rejected it
  3  someone changed the host's keys since the revision read (nothing was written)

EXAMPLES
  vznet fleet --etcd http://10.0.0.1:2379 get --host web1 --out web1/
  vznet fleet push web1/ --host web1 --wait 30
  vznet fleet status
  vznet fleet move 112 --from web1 --to web2 --wait 30";

/// Where the fleet's etcd is (flags, else `vznetd.toml`).
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct FleetArgs {
    /// etcd endpoints, comma-separated [default: `etcd` in --agent-config].
    #[arg(long, value_delimiter = ',', env = "VZNET_ETCD")]
    pub etcd: Vec<String>,
    /// Key prefix [default: /vznet/v1].
    #[arg(long)]
    pub etcd_prefix: Option<String>,
    /// CA bundle of the etcd servers (https endpoints).
    #[arg(long)]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd (PEM).
    #[arg(long)]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long)]
    pub etcd_key: Option<PathBuf>,
    /// vznetd's settings file, read for the keys not given as flags.
    #[arg(long, default_value = "/etc/vznet/vznetd.toml")]
    pub agent_config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub cmd: FleetCommand,
}

/// `vznet fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Validate a config folder, then write it as the whole config of a host in
    /// one transaction. The transaction fails (exit 3, nothing written) if any
    /// of the host's keys changed since the base revision: the one in
    /// DIR/.fleet-revision (left by `fleet get`), --base-revision, or the one
    /// read at the push.
    Push {
        /// Config folder (host.toml, ve/*.toml).
        dir: PathBuf,
        /// The host.
        #[arg(long)]
        host: String,
        /// Fail if the host's keys changed after this revision.
        #[arg(long)]
        base_revision: Option<i64>,
        /// Wait up to SECONDS for the host to apply (or reject) it.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Write a host's config into a folder (empty, new, or one made by `fleet
    /// get`), with the revision read in DIR/.fleet-revision.
    Get {
        /// The host.
        #[arg(long)]
        host: String,
        /// The folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// One line per host: the revision applied, errors, VRRP instances it is
    /// Master of, VEs. A host with config but no status is down (its lease
    /// expired) or has never run.
    Status,
    /// Move a VE's file from one host's keys to another's in one transaction
    /// (both resulting configs validated first): the source host unwires it,
    /// the destination wires it; VRRP moves the service addresses that track it.
    Move {
        /// VE id.
        id: u32,
        /// The host it is on.
        #[arg(long)]
        from: String,
        /// The host it goes to.
        #[arg(long)]
        to: String,
        /// Wait up to SECONDS for both hosts to apply the move.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
}

/// Runs `vznet fleet ...`.
pub fn run(args: &FleetArgs, json: bool) -> anyhow::Result<ExitCode> {
    let file = options::File::read(&args.agent_config)?;
    let endpoints = if args.etcd.is_empty() {
        file.etcd.clone()
    } else {
        args.etcd.clone()
    };
    let endpoints = options::parse_endpoints(&endpoints)
        .context("give --etcd URL[,URL...] (or VZNET_ETCD, or etcd in vznetd.toml)")?;
    let tls = Tls {
        ca: args.etcd_ca.clone().or(file.etcd_ca),
        cert: args.etcd_cert.clone().or(file.etcd_cert),
        key: args.etcd_key.clone().or(file.etcd_key),
    }
    .for_endpoints(&endpoints)?;
    let keys = Keys::new(
        args.etcd_prefix
            .as_deref()
            .or(file.etcd_prefix.as_deref())
            .unwrap_or(options::DEFAULT_PREFIX),
    );
    let mut client = Client::new(endpoints, tls, super::ATTEMPT_TIMEOUT);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match &args.cmd {
            FleetCommand::Push {
                dir,
                host,
                base_revision,
                wait,
            } => push(&mut client, &keys, dir, host, *base_revision, *wait, json).await,
            FleetCommand::Get { host, out } => get(&mut client, &keys, host, out, json).await,
            FleetCommand::Status => status(&mut client, &keys, json).await,
            FleetCommand::Move { id, from, to, wait } => {
                move_ve(&mut client, &keys, *id, from, to, *wait, json).await
            }
        }
    })
}

/// Prints a refused change and picks the exit status.
fn refused(e: &ChangeError, json: bool) -> ExitCode {
    let (kind, code) = match e {
        ChangeError::Invalid(_) => ("invalid_config", crate::cli::EXIT_INVALID),
        ChangeError::Conflict { .. } => ("conflict", EXIT_CONFLICT),
        _ => ("failed", 1),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "ok": false, "error": kind, "message": e.to_string() })
        );
    }
    match e {
        ChangeError::Invalid(errors) => {
            for err in &errors.0 {
                eprintln!("error: {err}");
            }
            eprintln!(
                "vznet: {} error(s); nothing written to etcd",
                errors.0.len()
            );
        }
        ChangeError::Conflict { .. } => {
            eprintln!("vznet: refused, nothing written: the host's keys {e}");
            eprintln!("vznet: get the host's config again (vznet fleet get), merge, and push");
        }
        other => eprintln!("vznet: {other}"),
    }
    ExitCode::from(code)
}

#[allow(clippy::too_many_arguments)]
async fn push(
    client: &mut Client,
    keys: &Keys,
    dir: &Path,
    host: &str,
    base: Option<i64>,
    wait: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    options::check_host_name(host)?;
    let base = base.unwrap_or_else(|| {
        std::fs::read_to_string(dir.join(BASE_FILE))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    });
    let pushed = match change::push_folder(client, keys, host, dir, base).await {
        Ok(p) => p,
        Err(e) => return Ok(refused(&e, json)),
    };
    let changed = pushed.written.len() + pushed.deleted.len();
    if changed > 0 {
        // The folder is now as etcd holds it at this revision.
        let _ = folder::write_atomic(
            &dir.join(BASE_FILE),
            format!("{}\n", pushed.revision).as_bytes(),
        );
    }
    let outcome = match wait {
        Some(secs) if changed > 0 => {
            let w = change::wait(
                client,
                keys,
                &[host],
                pushed.revision,
                Duration::from_secs(secs),
                Duration::from_millis(20),
            )
            .await?;
            Some(w.get(host).cloned())
        }
        _ => None,
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": !matches!(outcome, Some(None) | Some(Some(Outcome::Rejected(_)))),
                "host": host, "revision": pushed.revision,
                "written": pushed.written, "deleted": pushed.deleted,
                "applied": outcome.as_ref().map(|o| matches!(o, Some(Outcome::Applied(_)))),
                "rejected": match &outcome { Some(Some(Outcome::Rejected(e))) => Some(e), _ => None },
            })
        );
    } else {
        for f in &pushed.written {
            println!("+ {f}");
        }
        for f in &pushed.deleted {
            println!("- {f}");
        }
        if changed == 0 {
            println!("{host}: no changes (revision {})", pushed.revision);
        } else {
            println!(
                "{host}: {changed} file(s) pushed at revision {}",
                pushed.revision
            );
        }
    }
    Ok(report_wait(host, &outcome, json))
}

/// Prints how a host answered and picks the exit status.
fn report_wait(host: &str, outcome: &Option<Option<Outcome>>, json: bool) -> ExitCode {
    match outcome {
        None => ExitCode::SUCCESS,
        Some(Some(Outcome::Applied(r))) => {
            if !json {
                println!("{host}: applied (running revision {r})");
            }
            ExitCode::SUCCESS
        }
        Some(Some(Outcome::Rejected(e))) => {
            eprintln!("vznet: {host} rejected it and keeps its previous config:\n{e}");
            ExitCode::from(crate::cli::EXIT_INVALID)
        }
        Some(None) => {
            eprintln!("vznet: {host} did not report it applied in time (is its vznetd running?)");
            ExitCode::FAILURE
        }
    }
}

async fn get(
    client: &mut Client,
    keys: &Keys,
    host: &str,
    out: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    options::check_host_name(host)?;
    let fresh = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_none() || out.join(BASE_FILE).exists(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", out.display())),
    };
    anyhow::ensure!(
        fresh,
        "{} is not empty and was not made by `vznet fleet get`; give a new folder",
        out.display()
    );
    let read = change::read_host(client, keys, host, 0).await?;
    let files = read.texts();
    let (_, present) = folder::read(out).unwrap_or_default();
    for (rel, text) in &files {
        folder::write_atomic(&out.join(rel), text)?;
    }
    for rel in present.keys().filter(|r| !files.contains_key(*r)) {
        std::fs::remove_file(out.join(rel))?;
    }
    std::fs::create_dir_all(out.join("ve"))?;
    folder::write_atomic(
        &out.join(BASE_FILE),
        format!("{}\n", read.revision).as_bytes(),
    )?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "ok": true, "host": host, "revision": read.revision, "files": files.keys().collect::<Vec<_>>() })
        );
    } else {
        println!(
            "{host}: {} file(s) at revision {} in {}",
            files.len(),
            read.revision,
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One host's line of `fleet status`.
#[derive(Debug, Clone, serde::Serialize)]
struct Line {
    host: String,
    /// `ok`, `pending` (config newer than the revision applied), `rejected`,
    /// `errors` (units failing), `down` (config but no status).
    state: String,
    /// The latest revision of the host's config keys.
    config_revision: i64,
    report: Option<HostReport>,
}

async fn status(client: &mut Client, keys: &Keys, json: bool) -> anyhow::Result<ExitCode> {
    let reports = change::reports(client, keys).await?;
    let hosts_prefix = keys.hosts();
    let configs = client.range_prefix(hosts_prefix.as_bytes()).await?;
    let mut latest: std::collections::BTreeMap<String, i64> = Default::default();
    for kv in &configs.kvs {
        let key = String::from_utf8_lossy(&kv.key);
        if let Some((host, _)) = key
            .strip_prefix(&hosts_prefix)
            .and_then(|r| r.split_once('/'))
        {
            let e = latest.entry(host.to_string()).or_default();
            *e = (*e).max(kv.mod_revision);
        }
    }
    let mut names: Vec<String> = latest.keys().chain(reports.keys()).cloned().collect();
    names.sort();
    names.dedup();
    let lines: Vec<Line> = names
        .into_iter()
        .map(|host| {
            let config_revision = latest.get(&host).copied().unwrap_or(0);
            let report = reports.get(&host).cloned();
            let state = match &report {
                None => "down",
                Some(r) if r.rejected.is_some() => "rejected",
                Some(r) if r.revision < config_revision => "pending",
                Some(r) if !r.errors.is_empty() => "errors",
                Some(_) => "ok",
            }
            .to_string();
            Line {
                host,
                state,
                config_revision,
                report,
            }
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<9} {:>9} {:>7}  {:<20} VES",
        "HOST", "STATE", "REVISION", "ERRORS", "MASTER OF"
    );
    for l in &lines {
        let Some(r) = &l.report else {
            println!(
                "{:<16} {:<9} {:>9} {:>7}  {:<20} -",
                l.host, l.state, "-", "-", "-"
            );
            continue;
        };
        let masters = r.masters();
        let ves: Vec<String> = r
            .ves
            .iter()
            .map(|v| {
                if v.state == "wired" {
                    v.id.to_string()
                } else {
                    format!("{}({})", v.id, v.state)
                }
            })
            .collect();
        println!(
            "{:<16} {:<9} {:>9} {:>7}  {:<20} {}",
            l.host,
            l.state,
            r.revision,
            r.errors.len() + usize::from(r.rejected.is_some()),
            if masters.is_empty() {
                "-".into()
            } else {
                masters.join(",")
            },
            if ves.is_empty() {
                "-".into()
            } else {
                ves.join(",")
            }
        );
        if let Some(rej) = &r.rejected {
            println!(
                "    rejected revision {}: {}",
                rej.revision,
                rej.error.replace('\n', "\n    ")
            );
        }
        for e in &r.errors {
            println!("    error: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn move_ve(
    client: &mut Client,
    keys: &Keys,
    id: u32,
    from: &str,
    to: &str,
    wait: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    options::check_host_name(from)?;
    options::check_host_name(to)?;
    let revision = match change::move_ve(client, keys, id, from, to).await {
        Ok(r) => r,
        Err(e) => return Ok(refused(&e, json)),
    };
    if !json {
        println!("VE {id}: moved from {from} to {to} at revision {revision}");
    }
    let mut code = ExitCode::SUCCESS;
    let mut answers = Vec::new();
    if let Some(secs) = wait {
        let w = change::wait(
            client,
            keys,
            &[from, to],
            revision,
            Duration::from_secs(secs),
            Duration::from_millis(20),
        )
        .await?;
        for host in [from, to] {
            let o = w.get(host).cloned();
            let c = report_wait(host, &Some(o.clone()), json);
            if o != Some(Outcome::Applied(revision)) && !matches!(o, Some(Outcome::Applied(_))) {
                code = c;
            }
            answers.push((host, o));
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": code == ExitCode::SUCCESS, "ve": id, "from": from, "to": to, "revision": revision,
                "applied": answers.iter().filter(|(_, o)| matches!(o, Some(Outcome::Applied(_)))).map(|(h, _)| *h).collect::<Vec<_>>(),
            })
        );
    }
    Ok(code)
}
