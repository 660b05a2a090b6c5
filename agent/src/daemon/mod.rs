//! `vznetd`: applies the host's declared network at boot, keeps it (repairs drift
//! on managed objects), runs the VRRP instances and the load balancer, and answers
//! `vznet` on a root-only Unix socket.
//!
//! Threads (docs/ARCHITECTURE.md, "The agent's threads"):
//! - the **engine** thread (this one): config loads, the kernel view kept from netlink
//!   events, plans, applies, full reads; everything that may block on the kernel;
//! - the **protocol** thread: the VRRP instances and nothing else, so no dump, plan,
//!   apply, commit, hook or file read can delay an advert;
//! - the **control** thread: the control socket and the metrics listener; status is
//!   answered from snapshots, so `vznet status` works while the engine is busy;
//! - the load balancer's own threads (health checks apart from nftables commits).

pub(crate) mod control;
mod fleet;
mod lock;
mod metrics;
mod notify;
mod protocol;
mod reconciler;
mod retry;
mod view;
pub mod vrrp;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::control::DEFAULT_SOCKET;
pub use crate::status::{netns_inode, Status};

/// vznetd keeps this host's network as declared in its config folder: it applies
/// the config at start, repairs drift on the objects it manages (links it made,
/// their addresses, routes with protocol 249, configured sysctls), re-applies on
/// SIGHUP or `vznet apply`, runs the [[vrrp]] instances and [[virtual_server]]s,
/// and serves `vznet` on a Unix socket (root only).
#[derive(Debug, Parser)]
#[command(name = "vznetd", version)]
pub struct Options {
    /// Config folder (host.toml and ve/*.toml).
    #[arg(long, default_value = "/etc/vznet")]
    pub config_dir: PathBuf,
    /// State folder (VE roots and run files; holds the agent's instance lock).
    #[arg(long, default_value = "/var/lib/vznet")]
    pub state_dir: PathBuf,
    /// Control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Full read of every namespace and reconcile (a safety net under the
    /// event-driven repair).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Quiet time after a kernel event before re-planning.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    pub debounce: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default; e.g.
    /// 127.0.0.1:9633).
    #[arg(long)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Control connections served at once; past it the least recently active
    /// one is closed, so a flood of idle clients never locks out `vznet`.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// The agent's own settings file: the fleet keys below (`etcd`, `host`,
    /// `etcd_prefix`, `etcd_ca`, `etcd_cert`, `etcd_key`, `status_ttl_s`); flags
    /// win over it. A missing file is fine.
    #[arg(long, default_value = "/etc/vznet/vznetd.toml")]
    pub agent_config: PathBuf,
    /// Run this host's config from etcd (v3): endpoints, comma-separated
    /// (http://HOST:PORT or https://HOST:PORT). The engine then runs from
    /// STATE/fleet/config, the last good config from etcd; --config-dir is not
    /// read.
    #[arg(long, value_delimiter = ',', env = "VZNET_ETCD")]
    pub etcd: Vec<String>,
    /// This host's name in the fleet: its config is under PREFIX/hosts/NAME/,
    /// its status at PREFIX/status/NAME.
    #[arg(long)]
    pub host: Option<String>,
    /// Key prefix in etcd [default: /vznet/v1].
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
    crate::cli::raise_fd_limit();
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
            eprintln!("vznetd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A request from the control thread to the engine, with where to send the reply.
pub(crate) type Pending = (
    crate::control::Command,
    tokio::sync::oneshot::Sender<crate::control::Reply>,
);

async fn run(opts: Options) -> anyhow::Result<ExitCode> {
    let fleet = fleet::resolve(&opts)?;
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("state folder {}", opts.state_dir.display()))?;
    // One agent per state folder, and never someone else's socket.
    let _lock = lock::StateLock::acquire(&opts.state_dir)?;
    control::ControlSocket::check(&opts.socket)
        .with_context(|| format!("control socket {}", opts.socket.display()))?;
    let folders = match &fleet {
        Some(_) => Some(
            crate::fleet::Folders::prepare(&opts.state_dir)
                .with_context(|| format!("fleet folders in {}", opts.state_dir.display()))?,
        ),
        None => None,
    };
    let config_dir = folders.as_ref().map_or(&opts.config_dir, |f| &f.config);
    let config_dir = std::fs::canonicalize(config_dir)
        .with_context(|| format!("config folder {}", config_dir.display()))?;

    let mut reconciler = match reconciler::Reconciler::new(&opts, config_dir) {
        Ok(r) => r,
        Err(reconciler::StartError::Config(e)) => {
            for line in e.lines() {
                tracing::error!("{line}");
            }
            eprintln!("vznetd: invalid config, not starting");
            return Ok(ExitCode::from(crate::cli::EXIT_INVALID));
        }
        Err(reconciler::StartError::Other(e)) => return Err(e),
    };

    // Handlers first: SIGHUP's default action is to terminate, and a client may
    // signal as soon as the control socket answers.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    let (handoff_tx, handoff_rx) = mpsc::channel(1);
    if let Some(folders) = &folders {
        reconciler.attach_fleet(reconciler::FleetHook::new(folders.clone(), handoff_rx));
    }

    // Adopt what is there: objects that match are left alone, so a restart
    // touches nothing that is already right.
    reconciler.start().await;

    // Bound only now: clients take the socket's appearance for readiness.
    let socket = control::ControlSocket::bind(&opts.socket)
        .with_context(|| format!("control socket {}", opts.socket.display()))?;
    let (req_tx, req_rx) = mpsc::channel::<Pending>(16);
    let mut shared = control::Shared {
        status: reconciler.shared(),
        protocol: reconciler.protocol(),
        lb: reconciler.lb_slot(),
        requests: req_tx,
        fleet: None,
    };
    let fleet = match (fleet, folders) {
        (Some((fleet, host)), Some(folders)) => Some(fleet::start(
            fleet,
            host,
            folders,
            &opts.state_dir,
            handoff_tx,
            &mut shared,
        )?),
        _ => None,
    };
    let control = control::spawn(socket, opts.metrics, opts.max_connections, shared)?;
    notify::notify("READY=1").context("sd_notify")?;
    tracing::info!(socket = %opts.socket.display(), config = %reconciler.config_dir().display(), "ready");

    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    reconciler.run(req_rx, &mut hup, stop).await;
    reconciler.shutdown().await;
    if let Some(f) = fleet {
        f.stop();
    }
    control.stop();
    tracing::info!("stopping; the network stays as it is (VRRP instances handed over)");
    Ok(ExitCode::SUCCESS)
}

/// A status snapshot the engine publishes and the control thread reads; the lock is
/// never held across an await.
pub(crate) type SharedStatus = Arc<Mutex<Status>>;
