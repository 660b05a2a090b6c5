//! Load balancing (`[[virtual_server]]`): new connections to a VIP:port (or a
//! firewall mark) spread over backends by nftables, DNAT or direct routing,
//! through a Maglev slot table; backends taken out and put back by health
//! checks. Established connections stay on their backend (conntrack, or a flow
//! map for direct routing); a failed backend's are drained or reset.
//!
//! The rules are in place on every host; only the host holding the VIP (by
//! VRRP) receives the traffic, so failover needs nothing from this module.
//!
//! Threads: the agent's calls ([`LoadBalancer::sync`], `status`, `repair`)
//! are async messages over a bounded channel to the engine thread
//! ([`engine`]: commits, conntrack, hooks); health checks run on the prober
//! thread ([`health::prober`]), which no commit or agent work can delay.

pub mod balancer;
pub mod conntrack;
pub mod engine;
pub mod health;
pub mod hooks;
pub mod leastconn;
pub mod maglev;
pub mod ruleset;
pub mod service;

use std::path::{Path, PathBuf};

use netcfg::model::Config;
use tokio::sync::{mpsc, oneshot};

pub use balancer::{BackendStatus, Balancer, Commit, Event, ServiceSpec, ServiceStatus};
use engine::Msg;
use health::prober::Prober;

/// The virtual servers of a validated config, backends resolved.
pub fn specs(config: &Config) -> Result<Vec<ServiceSpec>, String> {
    config
        .host
        .virtual_server
        .iter()
        .map(|vs| {
            Ok(ServiceSpec {
                config: vs.clone(),
                backends: vs
                    .resolve(config)
                    .map_err(|e| format!("virtual server {}: {e}", vs.display_name()))?,
            })
        })
        .collect()
}

/// The agent's load balancer: a handle to the engine and prober threads.
/// Cloning shares them; they stop when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    tx: mpsc::Sender<Msg>,
}

const STOPPED: &str = "load balancer engine stopped";

impl LoadBalancer {
    /// Starts the threads, writing nftables and probing from the caller's
    /// netns.
    pub fn spawn() -> Result<LoadBalancer, String> {
        LoadBalancer::spawn_in(None)
    }

    /// Starts the threads in the netns at `netns` (or the caller's).
    pub fn spawn_in(netns: Option<&Path>) -> Result<LoadBalancer, String> {
        let nft = nft::Nft::new(netns).map_err(|e| e.to_string())?;
        let (wake_tx, wake_rx) = mpsc::channel(1);
        let prober = Prober::spawn(netns.map(PathBuf::from), wake_tx)
            .map_err(|e| format!("starting the health-check thread: {e}"))?;
        let (tx, rx) = mpsc::channel(16);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("load balancer runtime: {e}"))?;
        std::thread::Builder::new()
            .name("lb-engine".into())
            .spawn(move || {
                runtime.block_on(engine::run(
                    balancer::Balancer::new(nft),
                    prober,
                    rx,
                    wake_rx,
                ))
            })
            .map_err(|e| format!("starting the load balancer thread: {e}"))?;
        Ok(LoadBalancer { tx })
    }

    /// Serves `specs` from now on.
    pub async fn sync(&self, specs: Vec<ServiceSpec>) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Sync(specs, reply))
            .await
            .map_err(|_| STOPPED.to_string())?;
        rx.await.map_err(|_| STOPPED.to_string())?
    }

    /// Rebuilds the kernel tables if they went missing or a commit failed (the
    /// agent calls this at every periodic reconcile).
    pub async fn repair(&self) {
        let _ = self.tx.send(Msg::Repair).await;
    }

    /// Status of every virtual server.
    pub async fn status(&self) -> Vec<ServiceStatus> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Status(reply)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Runs the shutdown hooks of `omega` virtual servers and waits for every
    /// hook; the tables stay (a restarted agent adopts them).
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }
}
