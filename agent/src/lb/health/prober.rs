//! The prober: every health check runs on a thread of its own, on its own
//! tokio runtime, so a probe never waits for an nftables commit, a netlink
//! dump of the agent, or anything else the agent's runtime does.
//!
//! Verdict changes (after fall/rise) go to the engine coalesced: the latest
//! verdict per target sits in a map, and a wake-up channel of capacity one
//! says "look"; however fast checks flap, the engine sees one pending change
//! per target and commits them together. Locks guard plain maps for
//! microseconds and are never held across an await.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Hysteresis, Target};

/// Counters of one target, for `vznet status` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeStats {
    /// Probes passed.
    pub ok: u64,
    /// Probes failed.
    pub failed: u64,
    /// Why the last failed probe failed.
    pub last_error: Option<String>,
    /// How late the last probe started against its schedule, µs.
    pub late_last_us: u64,
    /// The most any probe was late, µs.
    pub late_max_us: u64,
}

/// What the prober and the engine share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Verdict changes the engine has not taken yet: the latest per target.
    pending: Mutex<BTreeMap<Target, bool>>,
    stats: Mutex<HashMap<Target, ProbeStats>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind: use it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Takes every pending verdict change.
    pub fn take_changes(&self) -> BTreeMap<Target, bool> {
        std::mem::take(&mut *lock(&self.pending))
    }

    /// Counters of `target`.
    pub fn stats(&self, target: &Target) -> Option<ProbeStats> {
        lock(&self.stats).get(target).cloned()
    }
}

/// A handle to the prober thread. Dropping it stops the thread.
#[derive(Debug)]
pub struct Prober {
    targets: mpsc::Sender<Vec<Target>>,
    shared: Arc<Shared>,
}

impl Prober {
    /// Starts the thread, probing from the netns at `netns` (or the caller's);
    /// `wake` gets a token (at most one queued) when a verdict changes.
    pub fn spawn(netns: Option<PathBuf>, wake: mpsc::Sender<()>) -> std::io::Result<Prober> {
        let ns = netns.map(std::fs::File::open).transpose()?;
        let (targets, rx) = mpsc::channel::<Vec<Target>>(4);
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
        std::thread::Builder::new()
            .name("lb-health".into())
            .spawn(move || {
                let started = (|| {
                    vrrp::io::timer_thread::raise_priority("health");
                    if let Some(ns) = &ns {
                        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                    }
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                })();
                let rt = match started {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(()));
                        rt
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(run(rx, thread_shared, wake));
            })?;
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("health thread died at start"))??;
        Ok(Prober { targets, shared })
    }

    /// Probes exactly `targets` from now on (new ones start at once, gone
    /// ones stop; the others keep their schedule and hysteresis).
    pub async fn set_targets(&self, targets: Vec<Target>) {
        let _ = self.targets.send(targets).await;
    }

    /// The state shared with the engine.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

async fn run(mut rx: mpsc::Receiver<Vec<Target>>, shared: Arc<Shared>, wake: mpsc::Sender<()>) {
    let mut loops: BTreeMap<Target, JoinHandle<()>> = BTreeMap::new();
    while let Some(wanted) = rx.recv().await {
        loops.retain(|t, task| {
            let keep = wanted.contains(t);
            if !keep {
                task.abort();
            }
            keep
        });
        {
            let mut stats = lock(&shared.stats);
            stats.retain(|t, _| wanted.contains(t));
            let mut pending = lock(&shared.pending);
            pending.retain(|t, _| wanted.contains(t));
        }
        for t in wanted {
            if let std::collections::btree_map::Entry::Vacant(e) = loops.entry(t) {
                let task = tokio::spawn(check_loop(e.key().clone(), shared.clone(), wake.clone()));
                e.insert(task);
            }
        }
    }
    for task in loops.values() {
        task.abort();
    }
}

/// Probes `target` on its schedule forever.
async fn check_loop(target: Target, shared: Arc<Shared>, wake: mpsc::Sender<()>) {
    let mut verdict = Hysteresis::starting(!target.starts_down());
    let mut due = Instant::now();
    loop {
        tokio::time::sleep_until(due).await;
        let started = Instant::now();
        let late = started.saturating_duration_since(due);
        let result = target.probe().await;
        let ok = result.is_ok();
        {
            let mut stats = lock(&shared.stats);
            let s = stats.entry(target.clone()).or_default();
            let late_us = late.as_micros() as u64;
            s.late_last_us = late_us;
            s.late_max_us = s.late_max_us.max(late_us);
            match result {
                Ok(()) => s.ok += 1,
                Err(e) => {
                    s.failed += 1;
                    s.last_error = Some(e);
                }
            }
        }
        if let Some(up) = verdict.record(ok, target.check.fall, target.check.rise) {
            lock(&shared.pending).insert(target.clone(), up);
            // Full: a wake-up is already queued, and it will see this change.
            let _ = wake.try_send(());
        }
        // A failure that has not flipped the verdict yet is retried sooner
        // (keepalived's delay_before_retry).
        let gap = if !ok && verdict.streak > 0 {
            target.retry_interval()
        } else {
            target.interval()
        };
        // A probe that outlasts the interval delays the next one; that is
        // the probe's time, not the scheduler's lateness.
        due = (started + gap).max(Instant::now());
        if gap.is_zero() {
            due += Duration::from_millis(1);
        }
    }
}
