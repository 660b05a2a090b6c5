//! The engine: a thread of its own that owns the [`Balancer`] and does the
//! blocking work (nftables commits, conntrack dumps) on a small runtime of its
//! own, where nothing time-critical runs. It serves the agent's requests,
//! takes coalesced verdict changes from the prober, ramps slow starts,
//! samples connections for lc/wlc, and starts hooks.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::balancer::{Balancer, Commit};
use super::health::prober::Prober;
use super::hooks::Hooks;
use super::leastconn::SAMPLE_INTERVAL;
use super::service::{Event, ServiceSpec, ServiceStatus};

/// A request from the agent.
#[derive(Debug)]
pub enum Msg {
    /// Serve these virtual servers.
    Sync(Vec<ServiceSpec>, oneshot::Sender<Result<(), String>>),
    /// Report.
    Status(oneshot::Sender<Vec<ServiceStatus>>),
    /// Rebuild the tables if they went missing.
    Repair,
    /// Run the shutdown (`omega`) hooks, wait for hooks, and stop.
    Shutdown(oneshot::Sender<()>),
}

/// Slow-start re-weighing period.
const RAMP_TICK: Duration = Duration::from_millis(100);

/// Runs until the agent's handle is gone or asks to stop.
pub async fn run(
    mut balancer: Balancer,
    prober: Prober,
    mut rx: mpsc::Receiver<Msg>,
    mut wake: mpsc::Receiver<()>,
) {
    let mut hooks = Hooks::default();
    let mut ramp = tokio::time::interval(RAMP_TICK);
    ramp.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sample = tokio::time::interval(SAMPLE_INTERVAL);
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                None => break,
                Some(Msg::Sync(specs, reply)) => {
                    let r = sync(&mut balancer, &specs, &mut hooks);
                    prober.set_targets(balancer.targets()).await;
                    let _ = reply.send(r);
                }
                Some(Msg::Status(reply)) => {
                    let shared = prober.shared().clone();
                    let _ = reply.send(balancer.status(Instant::now(), |t| shared.stats(t)));
                }
                Some(Msg::Repair) => match balancer.repair(Instant::now()) {
                    Ok(true) => tracing::warn!(cause = "table missing or a commit failed", "load balancer tables rebuilt"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "load balancer repair failed"),
                },
                Some(Msg::Shutdown(reply)) => {
                    let events = balancer.shutdown_events(Instant::now());
                    log_events(&events);
                    hooks.run(events);
                    hooks.wait().await;
                    let _ = reply.send(());
                    return;
                }
            },
            Some(()) = wake.recv() => {
                let changes = prober.shared().take_changes();
                let t0 = Instant::now();
                match balancer.set_health(&changes, t0) {
                    Ok(Some(commit)) => {
                        tracing::info!(
                            changes = changes.len(),
                            slots_changed = commit.slots_changed,
                            commit_us = t0.elapsed().as_micros() as u64,
                            "load balancer health commit"
                        );
                        finish(commit, &mut hooks);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "load balancer commit failed"),
                }
            }
            _ = ramp.tick(), if balancer.ramping() => match balancer.tick(Instant::now()) {
                Ok(Some(commit)) => finish(commit, &mut hooks),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "slow-start commit failed"),
            },
            _ = sample.tick(), if balancer.counts_connections() => match balancer.sample_connections(Instant::now()) {
                Ok(Some(commit)) => finish(commit, &mut hooks),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "counting connections failed"),
            },
        }
    }
    hooks.wait().await;
}

fn sync(balancer: &mut Balancer, specs: &[ServiceSpec], hooks: &mut Hooks) -> Result<(), String> {
    let t0 = Instant::now();
    match balancer.sync(specs, t0) {
        Ok(c) => {
            if c.commands > 0 {
                tracing::info!(
                    services = specs.len(),
                    slots_changed = c.slots_changed,
                    commit_us = t0.elapsed().as_micros() as u64,
                    "load balancer synced"
                );
            }
            finish(c, hooks);
            Ok(())
        }
        Err(e) => Err(format!("load balancer: {e}")),
    }
}

fn finish(commit: Commit, hooks: &mut Hooks) {
    log_events(&commit.events);
    hooks.run(commit.events);
}

/// One log event per state change.
fn log_events(events: &[Event]) {
    for e in events {
        match e {
            Event::Backend {
                service,
                address,
                port,
                up,
                ..
            } => tracing::warn!(
                vs = %service, backend = %address, port,
                state = if *up { "up" } else { "down" },
                "backend health changed"
            ),
            Event::Quorum {
                service,
                up,
                live_weight,
                ..
            } => tracing::warn!(
                vs = %service, live_weight,
                state = if *up { "up" } else { "down" },
                "virtual server quorum changed"
            ),
        }
    }
}
