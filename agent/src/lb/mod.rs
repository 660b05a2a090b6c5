//! Load balancing (`[[virtual_server]]`): new connections to a VIP:port spread
//! over backends by nftables DNAT through a Maglev slot table, backends taken
//! out and put back by health checks. Established connections stay on their
//! backend (conntrack); a failed backend's are drained or reset, by config.
//!
//! The rules are in place on every host; only the host holding the VIP (by
//! VRRP) receives the traffic, so failover needs nothing from this module.

pub mod balancer;
pub mod health;
pub mod maglev;
pub mod ruleset;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use netcfg::model::Config;
use tokio::sync::{mpsc, oneshot};

pub use balancer::{BackendStatus, Balancer, ServiceSpec, ServiceStatus};
use health::{Hysteresis, Target};

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

enum Msg {
    Sync(Vec<ServiceSpec>, oneshot::Sender<Result<(), String>>),
    Status(oneshot::Sender<Vec<ServiceStatus>>),
    Repair,
}

/// The agent's load balancer: a task that owns the [`Balancer`] and the health
/// checkers.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    tx: mpsc::Sender<Msg>,
}

#[derive(Debug, Default)]
struct Probe {
    hysteresis: Hysteresis,
    ok: u64,
    failed: u64,
    last_error: Option<String>,
}

impl LoadBalancer {
    /// Starts the task (on the current tokio runtime), writing nftables in the
    /// caller's netns.
    pub fn spawn() -> Result<LoadBalancer, nft::Error> {
        let nft = nft::Nft::new(None)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(run(Balancer::new(nft), rx));
        Ok(LoadBalancer { tx })
    }

    /// Serves `specs` from now on.
    pub async fn sync(&self, specs: Vec<ServiceSpec>) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Sync(specs, reply))
            .await
            .map_err(|_| "load balancer task stopped".to_string())?;
        rx.await
            .map_err(|_| "load balancer task stopped".to_string())?
    }

    /// Rebuilds the kernel table if it went missing or a commit failed (the
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
}

type ProbeResult = (Target, Result<(), String>);

async fn run(mut balancer: Balancer, mut rx: mpsc::Receiver<Msg>) {
    let (results_tx, mut results) = mpsc::channel::<ProbeResult>(256);
    let mut checkers: BTreeMap<Target, tokio::task::JoinHandle<()>> = BTreeMap::new();
    let mut probes: BTreeMap<Target, Probe> = BTreeMap::new();
    let mut ramp = tokio::time::interval(Duration::from_millis(100));
    ramp.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                None => break,
                Some(Msg::Sync(specs, reply)) => {
                    let r = sync(&mut balancer, &specs);
                    let wanted = balancer.targets();
                    checkers.retain(|t, task| {
                        let keep = wanted.contains(t);
                        if !keep { task.abort(); }
                        keep
                    });
                    probes.retain(|t, _| wanted.contains(t));
                    for t in wanted {
                        if let std::collections::btree_map::Entry::Vacant(e) = checkers.entry(t) {
                            let task = tokio::spawn(check_loop(e.key().clone(), results_tx.clone()));
                            e.insert(task);
                        }
                    }
                    let _ = reply.send(r);
                }
                Some(Msg::Status(reply)) => {
                    let _ = reply.send(status(&balancer, &probes));
                }
                Some(Msg::Repair) => match balancer.repair(Instant::now()) {
                    Ok(true) => tracing::warn!(cause = "table missing or a commit failed", "load balancer table rebuilt"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "load balancer repair failed"),
                },
            },
            Some((target, result)) = results.recv() => {
                if !checkers.contains_key(&target) {
                    continue;
                }
                let probe = probes.entry(target.clone()).or_default();
                let ok = result.is_ok();
                match result {
                    Ok(()) => probe.ok += 1,
                    Err(e) => { probe.failed += 1; probe.last_error = Some(e); }
                }
                if let Some(up) = probe.hysteresis.record(ok, target.fall, target.rise) {
                    let t0 = Instant::now();
                    match balancer.set_health(&target, up, t0) {
                        Ok(commit) => tracing::warn!(
                            backend = %target.address, port = target.port,
                            state = if up { "up" } else { "down" },
                            slots_changed = commit.map_or(0, |c| c.slots_changed),
                            commit_us = t0.elapsed().as_micros() as u64,
                            reason = probe.last_error.as_deref().unwrap_or("checks pass"),
                            "backend health changed"),
                        Err(e) => tracing::error!(error = %e, backend = %target.address, "load balancer commit failed"),
                    }
                }
            }
            _ = ramp.tick(), if balancer.ramping() => {
                if let Err(e) = balancer.tick(Instant::now()) {
                    tracing::error!(error = %e, "slow-start commit failed");
                }
            }
        }
    }
    for task in checkers.values() {
        task.abort();
    }
}

fn sync(balancer: &mut Balancer, specs: &[ServiceSpec]) -> Result<(), String> {
    let t0 = Instant::now();
    let r = if specs.is_empty() {
        balancer.clear().map(|_| balancer::Commit::default())
    } else {
        balancer.sync(specs, t0)
    };
    match r {
        Ok(c) => {
            if c.commands > 0 {
                tracing::info!(
                    services = specs.len(),
                    slots_changed = c.slots_changed,
                    commit_us = t0.elapsed().as_micros() as u64,
                    "load balancer synced"
                );
            }
            Ok(())
        }
        Err(e) => Err(format!("load balancer: {e}")),
    }
}

async fn check_loop(target: Target, results: mpsc::Sender<ProbeResult>) {
    let mut tick = tokio::time::interval(target.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let r = target.probe().await;
        if results.send((target.clone(), r)).await.is_err() {
            return;
        }
    }
}

fn status(balancer: &Balancer, probes: &BTreeMap<Target, Probe>) -> Vec<ServiceStatus> {
    let mut out = balancer.status(Instant::now());
    for (svc, targets) in out.iter_mut().zip(balancer.backend_targets()) {
        for (b, t) in svc.backends.iter_mut().zip(targets) {
            if let Some(p) = t.and_then(|t| probes.get(&t)) {
                b.checks_ok = p.ok;
                b.checks_failed = p.failed;
                b.last_error = p.last_error.clone();
            }
        }
    }
    out
}
