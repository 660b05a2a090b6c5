//! The `vznet` command line.

mod agent;
mod completion;
mod picture;
mod progress;
mod set;
mod show;
mod status;

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
  vznet import keepalived /etc/keepalived/keepalived.conf --out /etc/vznet.new";

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
    /// existence of named namespaces and sysctls.
    Check,
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
        cmd: VeCommand,
    },
    /// A fleet of hosts driven from etcd: push a host's config, get it back,
    /// list every host's status, move a VE between hosts.
    Fleet(crate::fleet::command::FleetArgs),
    /// Turn another tool's config into vznet's (keepalived.conf); reports what
    /// is not carried over.
    Import {
        /// The source format.
        #[command(subcommand)]
        cmd: crate::import::ImportCommand,
    },
}

/// `vznet ve` subcommands.
#[derive(Debug, Subcommand)]
pub enum VeCommand {
    /// Make a VE's root from a template (`busybox`: built from the host's static
    /// busybox; a folder to copy; or a tar archive, plain or gzip, whose
    /// entries must be relative without `..`) and write ve/ID.toml if there is
    /// none.
    Create {
        /// VE id.
        id: u32,
        /// `busybox`, a folder, or FILE.tar / FILE.tar.gz.
        #[arg(long)]
        template: String,
        /// Host name (default veID).
        #[arg(long)]
        hostname: Option<String>,
    },
    /// Start a VE and wire its network (a failure stops it again).
    ///
    /// Order: the `pre_start` hook (a failure aborts, nothing is made), the
    /// VE's cgroups and limits (cpu_weight, memory_limit), its init in new
    /// namespaces, its network, its [firewall] (inside) and anti-spoofing
    /// rules (host bridge ports), the `post_start` hook (a failure is
    /// reported, the VE keeps running). Several ids start side by side and
    /// are wired with one apply; any failure stops them all again.
    ///
    /// Hooks ([hooks] in ve/ID.toml: pre_start, post_start, pre_stop,
    /// post_stop) are argv arrays with an absolute program, run on the host
    /// without a shell, with VEID, VE_STATE (starting/running/stopping/
    /// stopped), VE_ROOT, VE_HOSTNAME, VE_CONFIG, VE_HOOK and, while the VE
    /// runs, VE_PID in the environment; killed after 60 s.
    #[command(verbatim_doc_comment)]
    Start {
        /// VE ids: several start side by side and are wired with one apply.
        #[arg(required = true, num_args = 1.., add = completion::ve_ids())]
        ids: Vec<u32>,
    },
    /// Stop a VE: SIGTERM to its init, SIGKILL after --timeout.
    ///
    /// Order: the `pre_stop` hook, SIGTERM/SIGKILL, its host links, cgroups
    /// and live changes (`ve set` without --save) removed, the `post_stop`
    /// hook. Hook failures are reported and never block a stop.
    #[command(verbatim_doc_comment)]
    Stop {
        /// VE ids: several stop side by side.
        #[arg(required = true, num_args = 1.., add = completion::ve_ids())]
        ids: Vec<u32>,
        /// Seconds to wait after SIGTERM.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Remove a stopped VE's root and file.
    Destroy {
        /// VE id.
        #[arg(add = completion::ve_ids())]
        id: u32,
    },
    /// VEID NPROC STATUS IP_ADDR HOSTNAME for every VE file.
    List,
    /// An interactive shell inside a running VE (all its namespaces and
    /// cgroups), like `vzctl enter`.
    Enter {
        /// VE id.
        #[arg(add = completion::ve_ids())]
        id: u32,
        /// The shell, a path inside the VE.
        #[arg(long, default_value = "/bin/sh")]
        shell: String,
    },
    /// Change a VE's network, live and/or in its file, like `vzctl set`.
    ///
    /// On a running VE the change is applied at once (only that VE's part of
    /// the plan, verified, rolled back on failure). Without --save it lasts
    /// until the VE stops: it is kept in STATE/run/ID.live.toml, which vznet
    /// and vznetd merge into ve/ID.toml while the VE runs (so vznetd keeps it
    /// rather than repair it away). With --save ve/ID.toml is edited too
    /// (comments and layout kept). A stopped VE needs --save. On any error
    /// nothing changes.
    #[command(verbatim_doc_comment)]
    Set {
        /// VE id.
        #[arg(add = completion::ve_ids())]
        id: u32,
        /// Add a bridged veth: IF[,MAC,HOST_IF,HOST_MAC,BRIDGE] (empty fields
        /// take defaults: random MACs, host name vethID.N, no bridge).
        #[arg(long = "netif-add", value_name = "IF,MAC,HOST_IF,HOST_MAC,BRIDGE", value_parser = parse_netif_arg, add = completion::netif_bridge())]
        netif_add: Vec<netcfg::model::Netif>,
        /// Remove a veth by its name inside the VE.
        #[arg(long = "netif-del", value_name = "IF")]
        netif_del: Vec<String>,
        /// Add a routed (venet) address.
        #[arg(long, value_name = "IP")]
        ipadd: Vec<std::net::IpAddr>,
        /// Remove a routed (venet) address.
        #[arg(long, value_name = "IP")]
        ipdel: Vec<std::net::IpAddr>,
        /// Also write the change to ve/ID.toml.
        #[arg(long)]
        save: bool,
    },
    /// Run a command inside a running VE.
    Exec {
        /// VE id.
        #[arg(add = completion::ve_ids())]
        id: u32,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        argv: Vec<String>,
    },
}

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
    let loaded = Config::load(&cli.config_dir).and_then(|mut config| {
        crate::ve::overlay_running(&mut config, &cli.state_dir)?;
        Ok(config)
    });
    match loaded {
        Ok(config) => {
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
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
            print_errors_tail(cli, errors.0.len());
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    if let Command::Import { cmd } = &cli.command {
        return crate::import::run(cmd, cli.json);
    }
    if let Command::Ve { cmd } = &cli.command {
        return ve_command(cli, cmd);
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
            Command::Check
            | Command::Show { .. }
            | Command::Status
            | Command::Ve { .. }
            | Command::Fleet(_)
            | Command::Import { .. } => unreachable!("handled above"),
        }
    })
}

fn ve_command(cli: &Cli, cmd: &VeCommand) -> anyhow::Result<ExitCode> {
    use crate::ve;
    let state = &cli.state_dir;
    if !matches!(cmd, VeCommand::Create { .. } | VeCommand::Destroy { .. }) {
        ve::cgroup::ensure_visible()?;
    }
    match cmd {
        VeCommand::Create {
            id,
            template,
            hostname,
        } => {
            let root = ve::create(&cli.config_dir, state, *id, template, hostname.as_deref())?;
            println!("VE {id} created: root {}", root.display());
        }
        VeCommand::Start { ids } => {
            let (config, _) = match load(cli) {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            for (id, pid) in ve::start(&config, state, ids, || wire(cli))? {
                println!("VE {id} started (init pid {pid})");
            }
        }
        VeCommand::Stop { ids, timeout } => {
            let ves: Vec<_> = ids
                .iter()
                .map(|id| (*id, ve::ve_file(&cli.config_dir, *id)))
                .collect();
            let stopped = ve::stop(
                state,
                &ves,
                &cli.config_dir,
                std::time::Duration::from_secs(*timeout),
            );
            // vznetd must forget the VEs' netns and live changes either way.
            if agent::find(cli).is_some() {
                if let Err(e) = agent::reload(cli) {
                    eprintln!("vznet: warning: vznetd did not reload: {e:#}");
                }
            }
            stopped?;
            for id in ids {
                println!("VE {id} stopped");
            }
        }
        VeCommand::Destroy { id } => {
            ve::destroy(&cli.config_dir, state, *id)?;
            println!("VE {id} destroyed");
        }
        VeCommand::List => {
            let (config, _) = match load(cli) {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            let list = ve::list(&config, state);
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:>6} {:>6} {:<8} {:<20} HOSTNAME",
                    "VEID", "NPROC", "STATUS", "IP_ADDR"
                );
                for v in &list {
                    let ip = if v.ip_addr.is_empty() {
                        "-".to_string()
                    } else {
                        v.ip_addr.join(",")
                    };
                    println!(
                        "{:>6} {:>6} {:<8} {:<20} {}",
                        v.veid, v.nproc, v.status, ip, v.hostname
                    );
                }
            }
        }
        VeCommand::Exec { id, argv } => {
            let code = ve::exec(state, *id, argv)?;
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        VeCommand::Enter { id, shell } => {
            let ve_conf = ve::ve_file(&cli.config_dir, *id);
            let root = ve_conf.as_ref().map_or_else(
                || state.join("private").join(id.to_string()),
                |v| ve::root_of(v, state),
            );
            let code = ve::enter(state, *id, &root, Some(shell))?;
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        VeCommand::Set {
            id,
            netif_add,
            netif_del,
            ipadd,
            ipdel,
            save,
        } => {
            use crate::ve::change::Change;
            let mut changes: Vec<Change> = Vec::new();
            changes.extend(
                netif_del
                    .iter()
                    .map(|n| Change::NetifDel { name: n.clone() }),
            );
            changes.extend(
                netif_add
                    .iter()
                    .map(|n| Change::NetifAdd { netif: n.clone() }),
            );
            changes.extend(ipdel.iter().map(|ip| Change::IpDel { ip: *ip }));
            changes.extend(ipadd.iter().map(|ip| Change::IpAdd { ip: *ip }));
            return set::set(cli, *id, &changes, *save);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_errors_tail(cli: &Cli, n: usize) {
    eprintln!(
        "vznet: {n} error(s) in {}; nothing changed",
        cli.config_dir.display()
    );
}

fn parse_netif_arg(s: &str) -> Result<netcfg::model::Netif, String> {
    crate::ve::change::parse_netif(s)
}

/// Wires the VEs that run now: through vznetd when it runs for this config
/// (it must learn of the VE's netns, or it would take its links for strays),
/// else directly.
fn wire(cli: &Cli) -> anyhow::Result<()> {
    if agent::find(cli).is_some() {
        for op in agent::reload(cli)? {
            println!("{op}");
        }
        // vznetd finds running VEs in its own --state-dir.
        if let Some(status) = agent::find(cli) {
            if let Some(id) = status
                .unwired
                .iter()
                .find(|id| crate::ve::running(&cli.state_dir, **id).is_some())
            {
                anyhow::bail!(
                    "vznetd does not see VE {id} running: start vznetd with --state-dir {}",
                    cli.state_dir.display()
                );
            }
        }
        return Ok(());
    }
    let (_, desired) = load(cli).map_err(|_| anyhow::anyhow!("config became invalid"))?;
    if let Some(missing) = missing_features(&desired)? {
        anyhow::bail!("{missing}");
    }
    runtime()?.block_on(async {
        let engine = with_meter(Engine::new(&desired)?, "wiring", cli.json);
        let report = engine.apply(&desired).await?;
        for op in &report.ops {
            println!("{op}");
        }
        Ok(())
    })
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
