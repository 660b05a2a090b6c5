//! A fleet of hosts driven from etcd (v3 API).
//!
//! The agent side runs on a thread of its own with its own runtime (like the load
//! balancer's): the config source (`source`) reads the host's keys, watches them,
//! writes them into the staging folder and hands the engine a revision to validate
//! over a bounded channel; the status publisher (`publish`) keeps the host's status
//! key alive under a lease. Nothing here ever blocks the engine's applies or the
//! protocol thread: both only ever see a message on a channel.
//!
//! The `vznet fleet` commands (`command`) use the same client and key layout.

pub mod change;
pub mod command;
pub mod etcd;
pub mod folder;
pub mod http;
pub mod options;
mod publish;
pub mod report;
mod source;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

pub use folder::{Files, Folders};
pub use options::{Fleet, Keys};

use crate::status::FleetStatus;

/// Each attempt at one etcd endpoint gives up after this long, so a member that
/// is gone (or cut off) costs the agent this much before the next one is tried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// A staged revision handed to the engine: validate `Folders::staging` and, if
/// valid, promote and apply it.
#[derive(Debug)]
pub struct Handoff {
    /// The etcd revision of the staged content.
    pub revision: i64,
    /// What config errors name instead of the staging folder
    /// (`etcd:/vznet/v1/hosts/NAME/`).
    pub origin: String,
    /// The engine's verdict.
    pub reply: oneshot::Sender<Verdict>,
}

/// What the engine did with a handoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: promoted and applied (units that failed are retried as usual).
    Applied,
    /// Invalid: the running config is kept. Every error, located.
    Rejected(String),
}

/// The fleet side's state, shared with the control thread for `vznet status`.
pub type SharedFleet = Arc<Mutex<FleetStatus>>;

/// The running fleet thread.
#[derive(Debug)]
pub struct FleetThread {
    stop: Option<oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl FleetThread {
    /// Stops it: the status key goes at once (its lease is revoked), within a
    /// few seconds at most if etcd does not answer.
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// What the fleet thread needs.
#[derive(Debug)]
pub struct Context {
    /// Endpoints, TLS, keys.
    pub fleet: Fleet,
    /// This host's name.
    pub host: String,
    /// The config folders.
    pub folders: Folders,
    /// The state folder (running VEs).
    pub state_dir: PathBuf,
    /// Where staged revisions go.
    pub to_engine: mpsc::Sender<Handoff>,
    /// The fleet side's state.
    pub status: SharedFleet,
    /// The whole agent status (engine, VRRP, load balancer), for the status key.
    pub agent: crate::daemon::control::Shared,
}

/// Starts the fleet thread.
pub fn spawn(ctx: Context) -> anyhow::Result<FleetThread> {
    let tls = ctx.fleet.tls.for_endpoints(&ctx.fleet.endpoints)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let join = std::thread::Builder::new()
        .name("vznetd-fleet".into())
        .spawn(move || {
            rt.block_on(async move {
                let ctx = Arc::new(ctx);
                let changed = Arc::new(Notify::new());
                // A watch over a cut link waits forever; the publisher's lease
                // renewals notice and make the source reconnect.
                let lost = Arc::new(Notify::new());
                let source = source::run(ctx.clone(), tls.clone(), changed.clone(), lost.clone());
                let mut publisher = publish::Publisher::new(ctx.clone(), tls, changed, lost);
                tokio::select! {
                    _ = source => {}
                    _ = publisher.run() => {}
                    _ = stop_rx => {}
                }
                publisher.retire().await;
            });
        })?;
    Ok(FleetThread {
        stop: Some(stop_tx),
        join: Some(join),
    })
}

/// Exponential backoff between reconnects: 100 ms doubling to 5 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }
}
