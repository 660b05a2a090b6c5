//! The `vznet` command line.

mod agent;
mod completion;
#[cfg(feature = "faults")]
mod fault;
mod picture;
mod progress;
mod show;
mod status;
mod ve;

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
  The config folder holds host.toml (sysctls, bonds, VLANs, bridges, macvlans,
  VXLANs, dummies, the NICs vznet configures, routes) and ve/ID.toml, one file per
  VE (veth netifs, venet addresses, the netns to wire).
  Keys are described in the README.

EXIT STATUS
  0  success (for plan: whether or not changes are pending)
  1  the kernel refused a change (everything applied before it was rolled back)
  2  invalid config, a kernel feature the config needs is missing, or an MTU a
     device does not take; nothing changed

EXAMPLES
  vznet check --config-dir /etc/vznet
  vznet plan --config-dir /etc/vznet
  vznet apply --config-dir /etc/vznet --json
  vznet show
  vznet import keepalived /etc/keepalived/keepalived.conf --out /etc/vznet.new
  vznet import openvz --out /etc/vznet.new";

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
    /// State folder: VE roots (private/ID) and running VEs (run/ID.pid).
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/vznet",
        env = "VZNET_STATE_DIR"
    )]
    pub state_dir: PathBuf,
    /// Subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config; touch nothing, read nothing from the kernel but the
    /// existence of named namespaces, sysctls and the links the config uses but
    /// does not make (NICs, bridge ports, bond slaves, lower links, devices).
    Check {
        /// The config is for another host (a migration, a fleet member): links
        /// it uses but does not make need not exist on this one.
        #[arg(long)]
        other_host: bool,
    },
    /// Show what `apply` would change; touch nothing.
    Plan,
    /// Apply the config: create, change and delete only what differs, verify, and
    /// roll everything back if any step fails. A second apply prints "0 changes".
    Apply,
    /// Show bridges with their ports (like `brctl show`) and the VEs' interfaces,
    /// or draw the host (--format dot or svg): NICs, bonds, VLANs, bridges with
    /// their addresses, VE ports and VEs, VRRP instances and virtual servers, with
    /// state as colour (green up/Master/healthy, yellow Backup, red down/Fault/
    /// failing, grey unknown: vznetd does not answer).
    Show {
        /// text, dot (Graphviz; with --json its nodes and edges), or svg (runs
        /// Graphviz's `dot`).
        #[arg(long, value_enum, default_value_t = show::Format::Text)]
        format: show::Format,
    },
    /// Show vznetd's state: applies, drift repairs, last error, unwired VEs.
    Status,
    /// Run VEs: a root folder plus their own mount, UTS, IPC, network and PID
    /// namespaces; starting one wires its network, stopping it unwires it.
    Ve {
        /// What to do.
        #[command(subcommand)]
        cmd: Box<VeCommand>,
    },
    /// A fleet of hosts driven from etcd: push a host's config, get it back,
    /// list every host's status, move a VE between hosts.
    Fleet(Box<crate::fleet::command::FleetArgs>),
    /// Turn another tool's config into vznet's (keepalived.conf, an OpenVZ
    /// host); reports what is not carried over.
    Import {
        /// The source format.
        #[command(subcommand)]
        cmd: crate::import::ImportCommand,
    },
}

pub use ve::VeCommand;

/// Runs the command line; never panics on bad input.
pub fn main() -> ExitCode {
    completion::complete_if_asked();
    main_from(std::env::args_os())
}

/// Runs the command line with these arguments (the first is the program name).
pub fn main_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == "__ve-init") {
        let rest: Vec<String> = args[2..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return ExitCode::from(crate::ve::init_main(&rest).clamp(0, 255) as u8);
    }
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
pub(crate) fn raise_fd_limit() {
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
    let loaded = if let Command::Check { other_host: true } = cli.command {
        // This host's running VEs say nothing about another host's config.
        Config::load_for_other_host(&cli.config_dir)
    } else {
        Config::load(&cli.config_dir).and_then(|mut config| {
            crate::ve::overlay_running(
                &mut config,
                &cli.state_dir,
                netcfg::model::Scope::ThisHost,
            )?;
            Ok(config)
        })
    };
    match loaded {
        Ok(config) => {
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            let desired = Desired::from_config(&config);
            Ok((config, desired))
        }
        Err(errors) => {
            // A skipped file may be why the config is wrong (`ve/101.TOML`).
            let warnings = netcfg::model::skipped_files(&cli.config_dir);
            if cli.json {
                let list: Vec<_> = errors.0.iter().map(located_json).collect();
                let warnings: Vec<_> = warnings.iter().map(located_json).collect();
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "errors": list, "warnings": warnings })
                );
            }
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            print_errors_tail(cli, errors.0.len());
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// A config error or warning in `--json` output.
fn located_json(e: &netcfg::model::ConfigError) -> serde_json::Value {
    serde_json::json!({
        "file": e.location.file, "line": e.location.line,
        "column": e.location.column, "key": e.key, "message": e.message,
    })
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    if let Command::Import { cmd } = &cli.command {
        return crate::import::run(cmd, cli.json);
    }
    if let Command::Ve { cmd } = &cli.command {
        return ve::run(cli, cmd);
    }
    if let Command::Fleet(args) = &cli.command {
        return crate::fleet::command::run(args, cli.json);
    }
    if let Command::Show { format } = cli.command {
        return runtime()?.block_on(show::show(cli, format));
    }
    if let Command::Status = cli.command {
        return match agent::find(cli) {
            Some(status) => {
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&status)?);
                } else {
                    status::print(&status);
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
    // Through the agent before reading the config here: it holds the config and
    // the kernel's state already.
    if matches!(cli.command, Command::Plan | Command::Apply) && agent::find(cli).is_some() {
        let cmd = if let Command::Plan = cli.command {
            crate::control::Command::Plan
        } else {
            crate::control::Command::Apply
        };
        return agent::forward(cli, cmd);
    }
    let (config, desired) = match load(cli) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if let Command::Check { .. } = cli.command {
        if cli.json {
            println!(
                "{}",
                serde_json::json!({
                    "ok": true,
                    "ves": config.ves.len(),
                    "warnings": config.warnings.iter().map(located_json).collect::<Vec<_>>(),
                })
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
    if let Some(missing) = missing_features(&desired).context("probing kernel features")? {
        eprintln!("vznet: {missing}; nothing changed");
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let rt = runtime()?;
    rt.block_on(async {
        let engine = with_meter(
            Engine::new(&desired).context("opening netlink sockets")?,
            "applying",
            cli.json,
        );
        #[cfg(feature = "faults")]
        let (engine, points) = fault::from_env(engine)?;
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
            Command::Apply => match engine.apply(&desired).await.inspect(|_| {
                #[cfg(feature = "faults")]
                fault::report(&points);
            }) {
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
            Command::Check { .. }
            | Command::Show { .. }
            | Command::Status
            | Command::Ve { .. }
            | Command::Fleet(_)
            | Command::Import { .. } => unreachable!("handled above"),
        }
    })
}

fn print_errors_tail(cli: &Cli, n: usize) {
    eprintln!(
        "vznet: {n} error(s) in {}; nothing changed",
        cli.config_dir.display()
    );
}

/// `engine` drawing a progress line for large applies on a terminal.
fn with_meter(engine: Engine, what: &'static str, json: bool) -> Engine {
    match progress::Meter::for_terminal(what, json) {
        Some(meter) => engine.on_progress(move |done, total| meter.update(done, total)),
        None => engine,
    }
}

fn report_error(cli: &Cli, e: &ApplyError) -> ExitCode {
    let code = match e {
        ApplyError::Plan(p) if p.is_config_error() => EXIT_INVALID,
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
