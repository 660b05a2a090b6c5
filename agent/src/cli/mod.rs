//! The `vznet` command line.

mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use netcfg::apply::{missing_features, ApplyError, Engine};
use netcfg::desired::Desired;
use netcfg::model::Config;

/// Exit status for invalid input (config errors, unsupported features).
pub const EXIT_INVALID: u8 = 2;

const AFTER_HELP: &str = "\
CONFIG
  The config folder holds host.toml (sysctls, bonds, VLANs, bridges, routes) and
  ve/ID.toml, one file per VE (veth netifs, venet addresses, the netns to wire).
  Keys are described in the README.

EXIT STATUS
  0  success (for plan: whether or not changes are pending)
  1  the kernel refused a change (everything applied before it was rolled back)
  2  invalid config or a kernel feature the config needs is missing; nothing changed

EXAMPLES
  vznet check --config-dir /etc/vznet
  vznet plan --config-dir /etc/vznet
  vznet apply --config-dir /etc/vznet --json
  vznet show";

/// Declarative networking for container hosts: bridges, veth pairs into VE network
/// namespaces, routed (venet) VEs, bonds, VLANs, addresses, routes and sysctls,
/// applied over netlink with verification and rollback.
#[derive(Debug, Parser)]
#[command(name = "vznet", version, after_long_help = AFTER_HELP)]
pub struct Cli {
    /// Config folder (host.toml and ve/*.toml).
    #[arg(
        long,
        global = true,
        default_value = "/etc/vznet",
        env = "VZNET_CONFIG_DIR"
    )]
    pub config_dir: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// vznetd's control socket. When an agent answers there for the same config
    /// folder and network namespace, plan/apply/status go through it.
    #[arg(long, global = true, default_value = crate::control::DEFAULT_SOCKET, env = "VZNET_SOCKET")]
    pub socket: PathBuf,
    /// Apply directly even if vznetd runs.
    #[arg(long, global = true)]
    pub direct: bool,
    /// Subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config; touch nothing, read nothing from the kernel but the
    /// existence of named namespaces and sysctls.
    Check,
    /// Show what `apply` would change; touch nothing.
    Plan,
    /// Apply the config: create, change and delete only what differs, verify, and
    /// roll everything back if any step fails. A second apply prints "0 changes".
    Apply,
    /// Show bridges with their ports (like `brctl show`) and the VEs' interfaces.
    Show,
    /// Show vznetd's state: applies, drift repairs, last error, unwired VEs.
    Status,
}

/// Runs the command line; never panics on bad input.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// Runs the command line with these arguments (the first is the program name).
pub fn main_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = Cli::parse_from(args);
    raise_fd_limit();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VZNET_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vznet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One netns file and one netlink socket per VE: thousands of VEs need more than
/// the default 1024 descriptors.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Netlink dumps are built by the kernel as each socket reads: with one worker
    // per core, the reads of many namespaces run side by side.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Loads the config or prints its errors; `Err(code)` is the exit code.
fn load(cli: &Cli) -> Result<(Config, Desired), ExitCode> {
    match Config::load(&cli.config_dir) {
        Ok(config) => {
            let desired = Desired::from_config(&config);
            Ok((config, desired))
        }
        Err(errors) => {
            if cli.json {
                let list: Vec<_> = errors
                    .0
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "file": e.location.file, "line": e.location.line,
                            "column": e.location.column, "key": e.key, "message": e.message,
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "ok": false, "errors": list }));
            }
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!(
                "vznet: {} error(s) in {}; nothing changed",
                errors.0.len(),
                cli.config_dir.display()
            );
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// The agent, if one answers on the socket for this config folder and netns.
fn agent(cli: &Cli) -> Option<crate::daemon::Status> {
    if cli.direct {
        return None;
    }
    let reply = crate::control::request(
        &cli.socket,
        crate::control::Command::Status,
        std::time::Duration::from_secs(5),
    )
    .ok()?;
    let status: crate::daemon::Status = serde_json::from_value(reply.result?).ok()?;
    let ours = std::fs::canonicalize(&cli.config_dir).ok()?;
    (status.config_dir == ours && status.netns_inode == crate::daemon::netns_inode())
        .then_some(status)
}

fn via_agent(cli: &Cli, cmd: crate::control::Command) -> anyhow::Result<ExitCode> {
    let reply = crate::control::request(&cli.socket, cmd, std::time::Duration::from_secs(600))?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    }
    if !reply.ok {
        let err = reply.error.unwrap_or_default();
        eprintln!("vznet: vznetd: {err}");
        let code = if err.starts_with("config rejected") {
            EXIT_INVALID
        } else {
            1
        };
        return Ok(ExitCode::from(code));
    }
    if !cli.json {
        let result = reply.result.unwrap_or_default();
        if let Some(ops) = result.get("ops").and_then(|o| o.as_array()) {
            for op in ops {
                match serde_json::from_value::<netcfg::op::Op>(op.clone()) {
                    Ok(op) => println!("{op}"),
                    Err(_) => println!("{op}"),
                }
            }
            println!("{} changes (via vznetd)", ops.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    if let Command::Show = cli.command {
        return runtime()?.block_on(show::show(cli));
    }
    if let Command::Status = cli.command {
        return match agent(cli) {
            Some(status) => {
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&status)?);
                } else {
                    println!(
                        "vznetd pid {} up {} s, config {}",
                        status.pid,
                        status.uptime_s,
                        status.config_dir.display()
                    );
                    println!("  reconciles {}, applies {}, drift repairs {}, events {}, last reconcile {} ms", status.reconciles, status.applies, status.drift_repairs, status.events, status.last_reconcile_ms);
                    if let Some(e) = &status.last_error {
                        println!("  last error: {e}");
                    }
                    if let Some(e) = &status.config_error {
                        println!("  config on disk rejected (running the previous one): {e}");
                    }
                    for id in &status.unwired {
                        println!("  VE {id}: no netns, not wired");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!(
                    "vznet: no vznetd answers on {} for {}",
                    cli.socket.display(),
                    cli.config_dir.display()
                );
                Ok(ExitCode::FAILURE)
            }
        };
    }
    let (config, desired) = match load(cli) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if let Command::Check = cli.command {
        if cli.json {
            println!(
                "{}",
                serde_json::json!({ "ok": true, "ves": config.ves.len() })
            );
        } else {
            println!(
                "{}: ok ({} VE files)",
                cli.config_dir.display(),
                config.ves.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if matches!(cli.command, Command::Plan | Command::Apply) && agent(cli).is_some() {
        let cmd = if let Command::Plan = cli.command {
            crate::control::Command::Plan
        } else {
            crate::control::Command::Apply
        };
        return via_agent(cli, cmd);
    }
    if let Some(missing) = missing_features(&desired).context("probing kernel features")? {
        eprintln!("vznet: {missing}; nothing changed");
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let rt = runtime()?;
    rt.block_on(async {
        let engine = Engine::new(&desired).context("opening netlink sockets")?;
        match cli.command {
            Command::Plan => {
                let plan = match engine.plan(&desired).await {
                    Ok(p) => p,
                    Err(e) => return Ok(report_error(cli, &e)),
                };
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&plan)?);
                } else {
                    for op in &plan.ops {
                        println!("{op}");
                    }
                    for id in &plan.unwired {
                        println!("  (VE {id} has no netns: not wired until it runs)");
                    }
                    println!("{} changes", plan.ops.len());
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Apply => match engine.apply(&desired).await {
                Ok(report) => {
                    if cli.json {
                        println!("{}", serde_json::json!({ "ok": true, "changes": report.ops.len(), "ops": report.ops, "unwired": report.unwired }));
                    } else {
                        for op in &report.ops {
                            println!("{op}");
                        }
                        println!("{} changes", report.ops.len());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(report_error(cli, &e)),
            },
            Command::Check | Command::Show | Command::Status => unreachable!("handled above"),
        }
    })
}

fn report_error(cli: &Cli, e: &ApplyError) -> ExitCode {
    let code = match e {
        ApplyError::Plan(netcfg::plan::PlanError::NoKernelSupport { .. }) => EXIT_INVALID,
        _ => 1,
    };
    if cli.json {
        println!(
            "{}",
            serde_json::json!({ "ok": false, "error": e.to_string() })
        );
    }
    eprintln!("vznet: {e}");
    ExitCode::from(code)
}
