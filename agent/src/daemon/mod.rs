//! `vznetd`: applies the host's declared network at boot, keeps it (repairs drift
//! on managed objects), and answers `vznet` on a root-only Unix socket.
//!
//! One task owns all state. It wakes for kernel events (debounced), a periodic
//! full reconcile, SIGHUP (reload), SIGTERM/SIGINT (exit) and control requests.

mod control;
mod metrics;
mod notify;
pub mod vrrp;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use netcfg::apply::{missing_features, Engine};
use netcfg::desired::Desired;
use netcfg::model::Config;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::control::{Command, Reply, DEFAULT_SOCKET};

/// vznetd keeps this host's network as declared in its config folder: it applies
/// the config at start, repairs drift on the objects it manages (links it made,
/// their addresses, routes with protocol 249, configured sysctls), re-applies on
/// SIGHUP or `vznet apply`, and serves `vznet` on a Unix socket (root only).
#[derive(Debug, Parser)]
#[command(name = "vznetd", version)]
pub struct Options {
    /// Config folder (host.toml and ve/*.toml).
    #[arg(long, default_value = "/etc/vznet")]
    pub config_dir: PathBuf,
    /// State folder.
    #[arg(long, default_value = "/var/lib/vznet")]
    pub state_dir: PathBuf,
    /// Control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Full reconcile interval (a safety net under the event-driven repair).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Quiet time after a kernel event before re-planning.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    pub debounce: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default; e.g.
    /// 127.0.0.1:9633).
    #[arg(long)]
    pub metrics: Option<std::net::SocketAddr>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 500ms, 30s, 5m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("invalid duration unit in {s:?}: use ms, s or m")),
    }
}

/// Counters and facts for `vznet status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// Agent pid.
    pub pid: u32,
    /// Config folder (canonical).
    pub config_dir: PathBuf,
    /// Inode of the agent's network namespace (clients compare it with theirs).
    pub netns_inode: u64,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Successful applies that changed something.
    pub applies: u64,
    /// Reconciles run (each a full plan).
    pub reconciles: u64,
    /// Ops that repaired drift (changes not made through vznet).
    pub drift_repairs: u64,
    /// Duration of the last reconcile.
    pub last_reconcile_ms: u64,
    /// Last error, if the last reconcile failed.
    pub last_error: Option<String>,
    /// Why the config on disk was rejected, while the agent keeps running the
    /// previous one; cleared by the next valid load.
    pub config_error: Option<String>,
    /// VEs with network config but no netns.
    pub unwired: Vec<u32>,
    /// Kernel events seen.
    pub events: u64,
    /// VRRP instances.
    #[serde(default)]
    pub vrrp: Vec<vrrp::VrrpStatus>,
    /// Virtual servers and their backends.
    #[serde(default)]
    pub virtual_servers: Vec<crate::lb::ServiceStatus>,
}

/// The inode of the calling thread's netns.
pub fn netns_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino())
}

/// Runs the agent; returns the exit code.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// Runs the agent with these arguments (the first is the program name).
pub fn main_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let opts = Options::parse_from(args);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VZNET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vznetd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A loaded config: the network, the VRRP instances, the virtual servers.
type Loaded = (
    Desired,
    Vec<netcfg::model::Vrrp>,
    Vec<crate::lb::ServiceSpec>,
);

struct Agent {
    opts: Options,
    config_dir: PathBuf,
    desired: Desired,
    vrrp_config: Vec<netcfg::model::Vrrp>,
    vrrp: vrrp::Instances,
    lb_specs: Vec<crate::lb::ServiceSpec>,
    /// Started on first use, so hosts without virtual servers need no nftables.
    lb: Option<crate::lb::LoadBalancer>,
    status: Status,
    started: Instant,
}

impl Agent {
    fn load(dir: &Path, state: &Path) -> Result<Loaded, String> {
        let mut config = Config::load(dir).map_err(|e| e.to_string())?;
        // VEs run by `vznet ve start` are wired through their init's netns.
        crate::ve::overlay_running(&mut config, state).map_err(|e| e.to_string())?;
        let desired = Desired::from_config(&config);
        if let Some(missing) = missing_features(&desired).map_err(|e| e.to_string())? {
            return Err(missing.to_string());
        }
        let lb = crate::lb::specs(&config)?;
        Ok((desired, config.host.vrrp, lb))
    }

    /// Hands the virtual servers to the load balancer (starting it if needed).
    async fn sync_lb(&mut self) -> Result<(), String> {
        if self.lb.is_none() {
            if self.lb_specs.is_empty() {
                return Ok(());
            }
            self.lb = Some(crate::lb::LoadBalancer::spawn().map_err(|e| e.to_string())?);
        }
        let Some(lb) = &self.lb else { return Ok(()) };
        let r = lb.sync(self.lb_specs.clone()).await;
        if let Err(e) = &r {
            tracing::error!(error = %e, "load balancer sync failed");
            self.status.last_error = Some(e.clone());
        }
        r
    }

    /// One full plan and, if anything differs, apply. `cause` is logged with
    /// every repaired op.
    async fn reconcile(&mut self, cause: &str) -> Result<Vec<netcfg::op::Op>, String> {
        let t = Instant::now();
        self.status.reconciles += 1;
        let result: Result<Vec<netcfg::op::Op>, String> = async {
            let engine = Engine::new(&self.desired).map_err(|e| e.to_string())?;
            let plan = engine
                .plan(&self.desired)
                .await
                .map_err(|e| e.to_string())?;
            self.status.unwired = plan.unwired.clone();
            if plan.is_empty() {
                return Ok(Vec::new());
            }
            let drift = !matches!(cause, "start" | "apply" | "reload");
            for op in &plan.ops {
                if drift {
                    tracing::warn!(%op, cause, "repairing drift");
                } else {
                    tracing::info!(%op, cause, "applying");
                }
            }
            let report = engine
                .apply_plan(&self.desired, plan)
                .await
                .map_err(|e| e.to_string())?;
            Ok(report.ops)
        }
        .await;
        self.status.last_reconcile_ms = t.elapsed().as_millis() as u64;
        match &result {
            Ok(ops) if !ops.is_empty() => {
                self.status.applies += 1;
                if cause != "apply" && cause != "start" && cause != "reload" {
                    self.status.drift_repairs += ops.len() as u64;
                }
                self.status.last_error = None;
                tracing::info!(
                    changes = ops.len(),
                    cause,
                    elapsed_ms = self.status.last_reconcile_ms,
                    "applied"
                );
            }
            Ok(_) => self.status.last_error = None,
            Err(e) => {
                tracing::error!(error = %e, cause, "reconcile failed");
                self.status.last_error = Some(e.clone());
            }
        }
        result
    }

    /// Re-reads the config; an invalid one is rejected and the running state kept.
    async fn reload(&mut self, cause: &str) -> Result<Vec<netcfg::op::Op>, String> {
        match Agent::load(&self.config_dir, &self.opts.state_dir) {
            Ok((desired, vrrp, lb)) => {
                self.desired = desired;
                self.vrrp_config = vrrp;
                self.lb_specs = lb;
                self.status.config_error = None;
                let r = self.reconcile(cause).await;
                self.vrrp.sync(&self.vrrp_config).await;
                let lb = self.sync_lb().await;
                r.and_then(|ops| lb.map(|()| ops))
            }
            Err(e) => {
                tracing::error!(error = %e, "new config rejected; keeping the running state");
                self.status.config_error = Some(e.clone());
                Err(format!("config rejected, running state kept: {e}"))
            }
        }
    }

    async fn plan(&mut self) -> Result<netcfg::plan::Plan, String> {
        let (desired, _, _) = Agent::load(&self.config_dir, &self.opts.state_dir)?;
        let engine = Engine::new(&desired).map_err(|e| e.to_string())?;
        engine.plan(&desired).await.map_err(|e| e.to_string())
    }

    async fn status(&self) -> Status {
        let mut s = self.status.clone();
        s.vrrp = self.vrrp.status();
        if let Some(lb) = &self.lb {
            s.virtual_servers = lb.status().await;
        }
        s.uptime_s = self.started.elapsed().as_secs();
        s
    }

    async fn handle(&mut self, cmd: Command) -> Reply {
        let ops_reply = |r: Result<Vec<netcfg::op::Op>, String>| match r {
            Ok(ops) => Reply::ok(serde_json::json!({ "changes": ops.len(), "ops": ops })),
            Err(e) => Reply::err(e),
        };
        match cmd {
            Command::Status => {
                Reply::ok(serde_json::to_value(self.status().await).unwrap_or_default())
            }
            Command::Apply => ops_reply(self.reload("apply").await),
            Command::Reload => ops_reply(self.reload("reload").await),
            Command::Plan => match self.plan().await {
                Ok(plan) => Reply::ok(serde_json::to_value(&plan).unwrap_or_default()),
                Err(e) => Reply::err(e),
            },
        }
    }
}

async fn run(opts: Options) -> anyhow::Result<ExitCode> {
    let config_dir = std::fs::canonicalize(&opts.config_dir)
        .with_context(|| format!("config folder {}", opts.config_dir.display()))?;
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("state folder {}", opts.state_dir.display()))?;
    let (desired, vrrp_config, lb_specs) = match Agent::load(&config_dir, &opts.state_dir) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vznetd: invalid config, not starting");
            return Ok(ExitCode::from(crate::cli::EXIT_INVALID));
        }
    };
    let mut agent = Agent {
        status: Status {
            pid: std::process::id(),
            config_dir: config_dir.clone(),
            netns_inode: netns_inode(),
            ..Status::default()
        },
        config_dir,
        desired,
        vrrp_config,
        vrrp: vrrp::Instances::default(),
        lb_specs,
        lb: None,
        opts,
        started: Instant::now(),
    };

    // Handlers first: SIGHUP's default action is to terminate, and a client may
    // signal as soon as the control socket answers.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut events = watch::spawn().context("subscribing to netlink events")?;
    // Adopt what is there: objects that match are left alone, so a restart
    // touches nothing that is already right.
    if let Err(e) = agent.reconcile("start").await {
        tracing::error!(error = %e, "initial apply failed; will retry");
    }
    // VRRP after the network it runs on exists.
    agent.vrrp.sync(&agent.vrrp_config).await;
    // Virtual servers: their rules are in place whether or not this host holds
    // the VIP now.
    let _ = agent.sync_lb().await;
    let listener = control::bind(&agent.opts.socket)
        .with_context(|| format!("control socket {}", agent.opts.socket.display()))?;
    let (req_tx, mut req_rx) = mpsc::channel::<control::Pending>(16);
    if let Some(addr) = agent.opts.metrics {
        let l = metrics::bind(addr)
            .await
            .with_context(|| format!("metrics listener {addr}"))?;
        tracing::info!(%addr, "serving /metrics");
        tokio::spawn(metrics::serve(l, req_tx.clone()));
    }
    tokio::spawn(control::serve(listener, req_tx));
    let mut tick = tokio::time::interval(agent.opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    notify::notify("READY=1").context("sd_notify")?;
    tracing::info!(socket = %agent.opts.socket.display(), config = %agent.config_dir.display(), "ready");

    // Debounce: the first event arms a deadline; later ones push it back, but
    // never past 10x the debounce from the first.
    let mut due: Option<(Instant, Instant, watch::Event)> = None;
    loop {
        let sleep_until = due.as_ref().map(|(d, _, _)| *d);
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { anyhow::bail!("netlink event stream ended") };
                agent.status.events += 1;
                let now = Instant::now();
                due = Some(match due.take() {
                    Some((_, first, e0)) => ((now + agent.opts.debounce).min(first + agent.opts.debounce * 10), first, e0),
                    None => (now + agent.opts.debounce, now, ev),
                });
            }
            _ = async { if let Some(d) = sleep_until { tokio::time::sleep_until(d.into()).await } else { std::future::pending::<()>().await } } => {
                if let Some((_, _, ev)) = due.take() {
                    // The kernel names the requester's netlink port on address and
                    // route events; link events carry 0.
                    let cause = if ev.port_id == 0 {
                        format!("{} event", ev.kind)
                    } else {
                        format!("{} event from netlink port {} (another process)", ev.kind, ev.port_id)
                    };
                    let _ = agent.reconcile(&cause).await;
                }
            }
            _ = tick.tick() => {
                let _ = agent.reconcile("periodic").await;
                agent.vrrp.sync(&agent.vrrp_config).await;
                if let Some(lb) = &agent.lb {
                    lb.repair().await;
                }
            }
            _ = hup.recv() => { let _ = agent.reload("reload").await; }
            _ = term.recv() => break,
            _ = int.recv() => break,
            req = req_rx.recv() => {
                if let Some((cmd, reply)) = req {
                    let r = agent.handle(cmd).await;
                    let _ = reply.send(r);
                }
            }
        }
    }
    agent.vrrp.shutdown().await;
    if let Some(lb) = &agent.lb {
        // omega hooks, and any hook still running.
        lb.shutdown().await;
    }
    tracing::info!("stopping; the network stays as it is (VRRP instances handed over)");
    let _ = std::fs::remove_file(&agent.opts.socket);
    Ok(ExitCode::SUCCESS)
}
