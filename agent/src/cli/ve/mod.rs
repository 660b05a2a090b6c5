//! `vznet ve`: the VE runtime's verbs, as `vzctl` and `vzlist` had them.

mod list;
mod set;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use netcfg::apply::{missing_features, Engine};
use serde_json::json;

use super::{agent, completion, load, runtime, with_meter, Cli, EXIT_INVALID};
use crate::ve;

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
    /// Start VEs and wire their network (a failure stops them again).
    ///
    /// Order: the `pre_start` hook (a failure aborts, nothing is made), the
    /// VE's /etc/hostname, /etc/hosts and /etc/resolv.conf (hostname,
    /// nameservers, search), its cgroups and limits (cpu_weight,
    /// memory_limit), its init in new namespaces, its network, its [firewall]
    /// (inside) and anti-spoofing rules (host), the `post_start` hook (a
    /// failure is reported, the VE keeps running). Several ids start side by
    /// side and are wired with one apply; any failure stops them all again.
    ///
    /// --onboot starts every VE with `onboot = true` that is not running, by
    /// `boot_order` (higher first, unset last), the VEs of one order side by
    /// side; a group that fails is retried one VE at a time, so one broken VE
    /// keeps no other down. This is what the vznet-ves unit runs at boot.
    ///
    /// Hooks ([hooks] in ve/ID.toml: pre_start, post_start, pre_stop,
    /// post_stop) are argv arrays with an absolute program, run on the host
    /// without a shell, with VEID, VE_STATE (starting/running/stopping/
    /// stopped), VE_ROOT, VE_HOSTNAME, VE_CONFIG, VE_HOOK and, while the VE
    /// runs, VE_PID in the environment; killed after 60 s.
    ///
    /// Exit status: 0 all started; 1 a VE did not start; 2 invalid config.
    #[command(verbatim_doc_comment)]
    Start {
        /// VE ids: several start side by side and are wired with one apply.
        #[arg(required_unless_present = "onboot", conflicts_with = "onboot", num_args = 1.., add = completion::ve_ids())]
        ids: Vec<u32>,
        /// Start every onboot VE that is not running, in boot order.
        #[arg(long)]
        onboot: bool,
    },
    /// Stop VEs: SIGTERM to their init, SIGKILL after --timeout.
    ///
    /// Order: the `pre_stop` hook, SIGTERM/SIGKILL, its host links, cgroups
    /// and live changes (`ve set` without --save) removed, the `post_stop`
    /// hook. Hook failures are reported and never block a stop.
    ///
    /// --all stops every running VE in the reverse of the boot order (unset
    /// first, then lower orders first; one order side by side), each group
    /// given --timeout: what the vznet-ves unit runs at shutdown.
    #[command(verbatim_doc_comment)]
    Stop {
        /// VE ids: several stop side by side.
        #[arg(required_unless_present = "all", conflicts_with = "all", num_args = 1.., add = completion::ve_ids())]
        ids: Vec<u32>,
        /// Stop every running VE, in reverse boot order.
        #[arg(long)]
        all: bool,
        /// Seconds to wait after SIGTERM.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Stop VEs (if they run) and start them again, with their files as they
    /// are now (live changes of `ve set` without --save end).
    Restart {
        /// VE ids.
        #[arg(required = true, num_args = 1.., add = completion::ve_ids())]
        ids: Vec<u32>,
        /// Seconds to wait after SIGTERM.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Whether a VE exists, is mounted and runs (like `vzctl status`).
    ///
    /// Prints `VEID 112 exist mounted running` (or `deleted`, `unmounted`,
    /// `down`). A VE exists when its file or its root does; its root is
    /// mounted (in its own mount namespace) while it runs.
    ///
    /// Exit status: 0 running; 3 exists but is stopped; 4 does not exist.
    #[command(verbatim_doc_comment)]
    Status {
        /// VE id.
        #[arg(add = completion::ve_ids())]
        id: u32,
    },
    /// Remove a stopped VE's root and file.
    Destroy {
        /// VE id.
        #[arg(add = completion::ve_ids())]
        id: u32,
    },
    /// List VEs (like `vzlist`; the running ones unless -a or -S).
    ///
    /// Default columns: VEID NPROC STATUS IP_ADDR HOSTNAME.
    ///
    /// Fields for -o and -s: veid (ctid), nproc (numproc), status, ip,
    /// hostname, onboot, bootorder, cpu_weight, memory_limit, root (private),
    /// pid, nameserver, searchdomain. A field that is not set prints `-`.
    #[command(verbatim_doc_comment)]
    List {
        /// Only these VEs.
        #[arg(add = completion::ve_ids())]
        ids: Vec<u32>,
        /// Running and stopped VEs.
        #[arg(short = 'a', long, conflicts_with = "stopped")]
        all: bool,
        /// Stopped VEs only.
        #[arg(short = 'S', long)]
        stopped: bool,
        /// Fields to show, comma-separated (with --json too).
        #[arg(short = 'o', long, value_name = "FIELD,...", value_delimiter = ',')]
        output: Vec<String>,
        /// No header line.
        #[arg(short = 'H', long)]
        no_header: bool,
        /// Sort by this field; `-FIELD` sorts in reverse.
        #[arg(short = 's', long, value_name = "[-]FIELD", allow_hyphen_values = true)]
        sort: Option<String>,
    },
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
    /// Change a VE, live and/or in its file, like `vzctl set`.
    ///
    /// On a running VE a change is applied at once: its network (only that
    /// VE's part of the plan, verified, rolled back on failure), its
    /// anti-spoofing rules, its /etc/hostname, /etc/hosts and /etc/resolv.conf
    /// (the rest of those files kept), its host name. Without --save it lasts
    /// until the VE stops: it is kept in STATE/run/ID.live.toml, which vznet
    /// and vznetd merge into ve/ID.toml while the VE runs (so vznetd keeps it
    /// rather than repair it away). With --save ve/ID.toml is edited too
    /// (comments and layout kept). A stopped VE, --onboot and --bootorder need
    /// --save. On any error nothing changes.
    ///
    /// --ipadd, --ipdel and --gateway act on the routed (venet) addresses, or,
    /// after --ifname IF, on that bridged netif (addresses with a prefix
    /// length: --ifname eth0 --ipadd 10.0.0.5/24).
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
        /// The netif --ipadd, --ipdel and --gateway act on (default: venet).
        #[arg(long, value_name = "IF")]
        ifname: Option<String>,
        /// Add an address: IP (venet) or IP/LEN (with --ifname).
        #[arg(long, value_name = "IP[/LEN]")]
        ipadd: Vec<String>,
        /// Remove an address, or `all` of them.
        #[arg(long, value_name = "IP|all")]
        ipdel: Vec<String>,
        /// The netif's default gateway of the address's family (an IPv6 one
        /// beside an IPv4 one is its gateway6), or `none` for both (needs
        /// --ifname, unless the VE has one netif).
        #[arg(long, value_name = "IP|none")]
        gateway: Option<String>,
        /// Host name (UTS, /etc/hostname, the VE's line in /etc/hosts).
        #[arg(long)]
        hostname: Option<String>,
        /// Name server for /etc/resolv.conf; repeat for several (the list
        /// replaces the VE's).
        #[arg(long, value_name = "IP")]
        nameserver: Vec<std::net::IpAddr>,
        /// Search domain for /etc/resolv.conf; repeat for several (the list
        /// replaces the VE's).
        #[arg(long, value_name = "DOMAIN")]
        searchdomain: Vec<String>,
        /// Start at boot (`vznet ve start --onboot`): yes or no.
        #[arg(long, value_name = "yes|no", value_parser = parse_yes_no)]
        onboot: Option<bool>,
        /// Boot order (higher starts first), or `none`.
        #[arg(long, value_name = "N|none", value_parser = parse_order)]
        bootorder: Option<BootOrderArg>,
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

fn parse_netif_arg(s: &str) -> Result<netcfg::model::Netif, String> {
    ve::change::parse_netif(s)
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(format!("{s:?}: use yes or no")),
    }
}

/// `--bootorder N|none` (a type of its own: clap reads `Option<Option<_>>`
/// as a flag whose value may be left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootOrderArg(pub Option<u32>);

fn parse_order(s: &str) -> Result<BootOrderArg, String> {
    if s == "none" {
        return Ok(BootOrderArg(None));
    }
    s.parse()
        .map(|n| BootOrderArg(Some(n)))
        .map_err(|_| format!("{s:?}: use a number 0..4294967295 or none"))
}

/// Runs a `vznet ve` command; with --json an error is also printed as
/// `{"ok": false, "error": ...}` on stdout.
pub(super) fn run(cli: &Cli, cmd: &VeCommand) -> anyhow::Result<ExitCode> {
    match dispatch(cli, cmd) {
        Err(e) if cli.json => {
            println!("{}", json!({ "ok": false, "error": format!("{e:#}") }));
            Err(e)
        }
        r => r,
    }
}

fn dispatch(cli: &Cli, cmd: &VeCommand) -> anyhow::Result<ExitCode> {
    let state = &cli.state_dir;
    if !matches!(
        cmd,
        VeCommand::Create { .. } | VeCommand::Destroy { .. } | VeCommand::Status { .. }
    ) {
        ve::cgroup::ensure_visible()?;
    }
    match cmd {
        VeCommand::Create {
            id,
            template,
            hostname,
        } => {
            let root = ve::create(&cli.config_dir, state, *id, template, hostname.as_deref())?;
            if cli.json {
                println!("{}", json!({ "ok": true, "veid": id, "root": root }));
            } else {
                println!("VE {id} created: root {}", root.display());
            }
        }
        VeCommand::Start { ids, onboot: false } => return start(cli, ids),
        VeCommand::Start { onboot: true, .. } => return start_onboot(cli),
        VeCommand::Stop { ids, all, timeout } => {
            let timeout = Duration::from_secs(*timeout);
            if *all {
                return stop_all(cli, timeout);
            }
            stop(cli, ids, timeout)?;
            if cli.json {
                println!("{}", json!({ "ok": true, "stopped": ids }));
            } else {
                for id in ids {
                    println!("VE {id} stopped");
                }
            }
        }
        VeCommand::Restart { ids, timeout } => {
            let up: Vec<u32> = ids
                .iter()
                .copied()
                .filter(|id| ve::running(state, *id).is_some())
                .collect();
            if !up.is_empty() {
                stop(cli, &up, Duration::from_secs(*timeout))?;
            }
            let (config, _) = match load(cli) {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            let pids = ve::start(&config, state, ids, || wire(cli))?;
            if cli.json {
                let list: Vec<_> = pids
                    .iter()
                    .map(|(id, pid)| json!({ "veid": id, "pid": pid }))
                    .collect();
                println!("{}", json!({ "ok": true, "restarted": list }));
            } else {
                for (id, pid) in pids {
                    println!("VE {id} restarted (init pid {pid})");
                }
            }
        }
        VeCommand::Status { id } => return list::status(cli, *id),
        VeCommand::Destroy { id } => {
            ve::destroy(&cli.config_dir, state, *id)?;
            if cli.json {
                println!("{}", json!({ "ok": true, "destroyed": id }));
            } else {
                println!("VE {id} destroyed");
            }
        }
        VeCommand::List {
            ids,
            all,
            stopped,
            output,
            no_header,
            sort,
        } => {
            let (config, _) = match load(cli) {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            let which = if *all {
                list::Which::All
            } else if *stopped {
                list::Which::Stopped
            } else {
                list::Which::Running
            };
            let opts = list::Options {
                ids,
                which,
                fields: output,
                header: !no_header,
                sort: sort.as_deref(),
            };
            return list::print(cli, &ve::list(&config, state), &opts);
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
        VeCommand::Set { .. } => return set::run(cli, cmd),
    }
    Ok(ExitCode::SUCCESS)
}

fn start(cli: &Cli, ids: &[u32]) -> anyhow::Result<ExitCode> {
    let (config, _) = match load(cli) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let pids = ve::start(&config, &cli.state_dir, ids, || wire(cli))?;
    if cli.json {
        let list: Vec<_> = pids
            .iter()
            .map(|(id, pid)| json!({ "veid": id, "pid": pid }))
            .collect();
        println!("{}", json!({ "ok": true, "started": list }));
    } else {
        for (id, pid) in pids {
            println!("VE {id} started (init pid {pid})");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the onboot VEs group by group; a group that fails is tried again
/// one VE at a time.
fn start_onboot(cli: &Cli) -> anyhow::Result<ExitCode> {
    let (config, _) = match load(cli) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let groups = ve::boot::onboot(&config, &cli.state_dir);
    let mut started: Vec<(u32, u32)> = Vec::new();
    let mut failed: Vec<(u32, String)> = Vec::new();
    for group in &groups {
        match ve::start(&config, &cli.state_dir, group, || wire(cli)) {
            Ok(pids) => started.extend(pids),
            Err(e) if group.len() == 1 => failed.push((group[0], format!("{e:#}"))),
            Err(e) => {
                eprintln!("vznet: VEs {group:?} did not start together ({e:#}); one by one:");
                for &id in group {
                    match ve::start(&config, &cli.state_dir, &[id], || wire(cli)) {
                        Ok(pids) => started.extend(pids),
                        Err(e) => failed.push((id, format!("{e:#}"))),
                    }
                }
            }
        }
        if !cli.json {
            for (id, pid) in started.iter().filter(|(id, _)| group.contains(id)) {
                println!("VE {id} started (init pid {pid})");
            }
        }
    }
    if cli.json {
        let list: Vec<_> = started
            .iter()
            .map(|(id, pid)| json!({ "veid": id, "pid": pid }))
            .collect();
        let bad: Vec<_> = failed
            .iter()
            .map(|(id, e)| json!({ "veid": id, "error": e }))
            .collect();
        println!(
            "{}",
            json!({ "ok": failed.is_empty(), "groups": groups, "started": list, "failed": bad })
        );
    } else if groups.is_empty() {
        println!("no onboot VE to start");
    }
    for (id, e) in &failed {
        eprintln!("vznet: VE {id} not started: {e}");
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Stops VEs and has vznetd forget their netns and live changes.
fn stop(cli: &Cli, ids: &[u32], timeout: Duration) -> anyhow::Result<()> {
    let ves: Vec<_> = ids
        .iter()
        .map(|id| (*id, ve::ve_file(&cli.config_dir, *id)))
        .collect();
    let stopped = ve::stop(&cli.state_dir, &ves, &cli.config_dir, timeout);
    // vznetd must forget the VEs' netns and live changes either way.
    if agent::find(cli).is_some() {
        if let Err(e) = agent::reload(cli) {
            eprintln!("vznet: warning: vznetd did not reload: {e:#}");
        }
    } else if let Err(e) = unwire(cli, &ves) {
        eprintln!("vznet: warning: {e:#}; `vznet apply` removes it");
    }
    stopped
}

/// Without vznetd: what stopped routed VEs leave on the host beyond their
/// links (the proxy neighbour entries of `[venet] neighbour_devs`; links,
/// routes and their sysctls went with the netns) is removed by a plan scoped
/// to those VEs.
fn unwire(cli: &Cli, ves: &[(u32, Option<netcfg::model::VeConfig>)]) -> anyhow::Result<()> {
    let routed: Vec<&netcfg::model::VeConfig> = ves
        .iter()
        .filter_map(|(_, v)| v.as_ref())
        .filter(|v| v.venet.is_some())
        .collect();
    if routed.is_empty() {
        return Ok(());
    }
    let mut config = netcfg::model::Config::load(&cli.config_dir)
        .map_err(|e| anyhow::anyhow!("the stopped VEs' proxy neighbour entries stay: {e}"))?;
    if config.host.venet.neighbour_devs.is_empty() {
        return Ok(());
    }
    ve::overlay_running(&mut config, &cli.state_dir)
        .map_err(|e| anyhow::anyhow!("the stopped VEs' proxy neighbour entries stay: {e}"))?;
    let pairs: Vec<_> = routed.iter().map(|v| (*v, *v)).collect();
    for op in apply_scoped(&config, &pairs)? {
        if !cli.json {
            println!("{op}");
        }
    }
    Ok(())
}

/// Plans the whole config and applies only the part of it that belongs to
/// these VEs, each before and after a change ([`ve::change::scope`]).
fn apply_scoped(
    config: &netcfg::model::Config,
    ves: &[(&netcfg::model::VeConfig, &netcfg::model::VeConfig)],
) -> anyhow::Result<Vec<netcfg::op::Op>> {
    let desired = netcfg::desired::Desired::from_config(config);
    if let Some(missing) = missing_features(&desired)? {
        anyhow::bail!("{missing}");
    }
    let scopes: Vec<_> = ves
        .iter()
        .map(|(before, after)| ve::change::scope(before, after))
        .collect();
    let keep = |op: &netcfg::op::Op| scopes.iter().any(|s| s(op));
    runtime()?.block_on(async {
        let engine = Engine::new(&desired).context("opening netlink sockets")?;
        let plan = engine.plan(&desired).await?;
        let report = engine.apply_plan_where(&desired, plan, &keep).await?;
        Ok(report.ops)
    })
}

/// Stops every running VE in reverse boot order, each group with `timeout`;
/// a group's failure never keeps the next from stopping.
fn stop_all(cli: &Cli, timeout: Duration) -> anyhow::Result<ExitCode> {
    let groups = ve::boot::running_for_shutdown(&cli.config_dir, &cli.state_dir);
    let mut stopped = Vec::new();
    let mut errors = Vec::new();
    for group in &groups {
        match stop(cli, group, timeout) {
            Ok(()) => stopped.extend(group.iter().copied()),
            Err(e) => errors.push(format!("{e:#}")),
        }
        if !cli.json {
            for id in group.iter().filter(|id| stopped.contains(id)) {
                println!("VE {id} stopped");
            }
        }
    }
    if cli.json {
        println!(
            "{}",
            json!({ "ok": errors.is_empty(), "stopped": stopped, "errors": errors })
        );
    }
    for e in &errors {
        eprintln!("vznet: {e}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Wires the VEs that run now: through vznetd when it runs for this config
/// (it must learn of the VE's netns, or it would take its links for strays),
/// else directly.
fn wire(cli: &Cli) -> anyhow::Result<()> {
    if agent::find(cli).is_some() {
        for op in agent::reload(cli)? {
            if !cli.json {
                println!("{op}");
            }
        }
        // vznetd finds running VEs in its own --state-dir.
        if let Some(status) = agent::find(cli) {
            if let Some(id) = status
                .unwired
                .iter()
                .find(|id| ve::running(&cli.state_dir, **id).is_some())
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
        let engine = with_meter(
            Engine::new(&desired).context("opening netlink sockets")?,
            "wiring",
            cli.json,
        );
        let report = engine.apply(&desired).await?;
        if !cli.json {
            for op in &report.ops {
                println!("{op}");
            }
        }
        Ok(())
    })
}

/// Exit 2 with a message: invalid input, nothing changed.
fn invalid(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("vznet: {msg}; nothing changed");
    Ok(ExitCode::from(EXIT_INVALID))
}
