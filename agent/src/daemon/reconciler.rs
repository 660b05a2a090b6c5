//! The engine thread's work: load the config, keep the kernel view, plan against it,
//! apply unit by unit, retry the units that fail, hand VRRP and virtual servers to
//! their own threads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netcfg::apply::{missing_features, Engine, Verify};
use netcfg::desired::Desired;
use netcfg::model::{Config, LoadCache};
use netcfg::op::{NsName, Op};
use netcfg::plan::{plan_all, Plan};
use netcfg::unit::{Unit, Units};
use tokio::sync::mpsc;

mod fleet;

pub use fleet::Hook as FleetHook;

use super::protocol::Protocol;
use super::retry::{is_transient, Retries};
use super::view::{self, KernelView};
use super::{Options, Pending, SharedStatus};
use crate::control::{
    AgentError, Applied, Command, LocatedError, PlanReply, Reply, Response, UnitFailure,
};
use crate::status::Status;

/// The load balancer, shared with the control thread (for status).
pub type LbSlot = std::sync::Arc<std::sync::Mutex<Option<crate::lb::LoadBalancer>>>;

/// Why the agent cannot start.
#[derive(Debug)]
pub enum StartError {
    /// The config is invalid (the text names every error).
    Config(String),
    /// Anything else.
    Other(anyhow::Error),
}

/// Why a reconcile runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cause {
    Start,
    Event(String),
    Periodic,
    Retry,
    Apply,
    Reload,
    /// A new revision of the config from etcd.
    Fleet,
}

impl Cause {
    /// Changes found on these passes were made behind vznet's back.
    fn is_drift(&self) -> bool {
        matches!(self, Cause::Event(_) | Cause::Periodic | Cause::Retry)
    }

    /// Passes that read everything again and retry every failing unit.
    fn is_explicit(&self) -> bool {
        matches!(
            self,
            Cause::Start | Cause::Apply | Cause::Reload | Cause::Fleet
        )
    }

    fn name(&self) -> String {
        match self {
            Cause::Start => "start".into(),
            Cause::Event(e) => e.clone(),
            Cause::Periodic => "periodic".into(),
            Cause::Retry => "retry".into(),
            Cause::Apply => "apply".into(),
            Cause::Reload => "reload".into(),
            Cause::Fleet => "etcd".into(),
        }
    }
}

/// A loaded config: the network, the VRRP instances, the virtual servers.
struct Loaded {
    desired: Desired,
    units: Units,
    vrrp: vrrp::settings::Settings,
    lb: Vec<crate::lb::ServiceSpec>,
}

/// The engine thread's state.
pub struct Reconciler {
    config_dir: PathBuf,
    state_dir: PathBuf,
    interval: Duration,
    debounce: Duration,
    cache: LoadCache,
    loaded: Loaded,
    view: KernelView,
    retries: Retries,
    status: Status,
    shared: SharedStatus,
    protocol: Protocol,
    lb: LbSlot,
    started: Instant,
    /// The etcd side's handoffs, on a fleet host.
    fleet: Option<FleetHook>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("config_dir", &self.config_dir)
            .finish()
    }
}

/// Loads and checks the config folder, with live changes of running VEs merged in.
fn load(dir: &Path, state: &Path, cache: &mut LoadCache) -> Result<Loaded, AgentError> {
    let invalid = |e: netcfg::model::ConfigErrors| AgentError::InvalidConfig {
        errors: e.0.iter().map(LocatedError::from).collect(),
    };
    // A VE whose netns is gone is a unit that waits, not a refused folder.
    let mut config = Config::load_for_agent(dir, cache).map_err(invalid)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // VEs run by `vznet ve start` are wired through their init's netns.
    crate::ve::overlay_running(&mut config, state, netcfg::model::Scope::Agent).map_err(invalid)?;
    let desired = Desired::from_config(&config);
    match missing_features(&desired) {
        Ok(None) => {}
        Ok(Some(missing)) => {
            return Err(AgentError::MissingFeature {
                message: missing.to_string(),
            })
        }
        Err(e) => {
            return Err(AgentError::Kernel {
                message: format!("probing kernel features: {e}"),
            })
        }
    }
    let lb = crate::lb::specs(&config).map_err(|message| AgentError::InvalidConfig {
        errors: vec![LocatedError {
            file: dir.join("host.toml"),
            line: 1,
            column: 1,
            key: "virtual_server".into(),
            message,
        }],
    })?;
    let units = Units::new(&desired);
    Ok(Loaded {
        desired,
        units,
        vrrp: config.host.vrrp_settings(),
        lb,
    })
}

fn error_text(e: &AgentError) -> String {
    match e {
        AgentError::InvalidConfig { errors } => errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

impl Reconciler {
    /// Loads the config and starts the protocol thread.
    pub fn new(opts: &Options, config_dir: PathBuf) -> Result<Reconciler, StartError> {
        let mut cache = LoadCache::default();
        let loaded = load(&config_dir, &opts.state_dir, &mut cache)
            .map_err(|e| StartError::Config(error_text(&e)))?;
        let protocol = Protocol::spawn()
            .map_err(|e| StartError::Other(anyhow::anyhow!("starting the protocol thread: {e}")))?;
        let status = Status {
            pid: std::process::id(),
            config_dir: config_dir.clone(),
            netns_inode: crate::status::netns_inode(),
            ..Status::default()
        };
        Ok(Reconciler {
            shared: std::sync::Arc::new(std::sync::Mutex::new(status.clone())),
            config_dir,
            state_dir: opts.state_dir.clone(),
            interval: opts.interval,
            debounce: opts.debounce,
            cache,
            loaded,
            view: KernelView::new(),
            retries: Retries::default(),
            status,
            protocol,
            lb: LbSlot::default(),
            started: Instant::now(),
            fleet: None,
        })
    }

    /// The config folder.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The status snapshot the control thread reads.
    pub fn shared(&self) -> SharedStatus {
        self.shared.clone()
    }

    /// The protocol thread, for status.
    pub fn protocol(&self) -> Protocol {
        self.protocol.clone()
    }

    /// The load balancer slot, for status.
    pub fn lb_slot(&self) -> LbSlot {
        self.lb.clone()
    }

    /// The first apply (adopting what matches), then VRRP on the network it runs
    /// on, then the virtual servers.
    pub async fn start(&mut self) {
        self.view.track(&self.loaded.desired);
        let _ = self.reconcile(Cause::Start).await;
        self.protocol.sync(self.loaded.vrrp.clone()).await;
        // Their rules are in place whether or not this host holds the VIP now.
        if let Err(e) = self.sync_lb().await {
            tracing::error!(error = %e, "load balancer");
        }
        self.publish();
    }

    /// Serves until `stop` completes.
    pub async fn run(
        &mut self,
        mut requests: mpsc::Receiver<Pending>,
        hup: &mut tokio::signal::unix::Signal,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut events = match view::subscribe() {
            Ok(rx) => Some(rx),
            Err(e) => {
                tracing::error!(error = %e, "cannot subscribe to kernel events; only periodic reads will find drift");
                None
            }
        };
        // Events that arrived between the first read and the subscription are
        // caught by reading once more.
        self.view.mark_all_stale();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        tokio::pin!(stop);
        // Debounce: the first event arms a deadline; later ones push it back, but
        // never past 10x the debounce from the first.
        let mut due: Option<(Instant, Instant, String)> = None;
        loop {
            let event_due = due.as_ref().map(|(d, _, _)| *d);
            let retry_due = self.retries.next_due();
            tokio::select! {
                batches = async {
                    match events.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some(batches) = batches else {
                        tracing::error!("kernel event stream ended; only periodic reads will find drift");
                        events = None;
                        continue;
                    };
                    let kinds: Vec<&'static str> = batches.iter().flat_map(|b| b.deltas.iter().map(|d| d.kind())).collect();
                    if self.view.absorb(batches) == 0 {
                        continue;
                    }
                    self.status.events = self.view.events;
                    let now = Instant::now();
                    due = Some(match due.take() {
                        Some((_, first, cause)) => ((now + self.debounce).min(first + self.debounce * 10), first, cause),
                        None => (now + self.debounce, now, format!("{} event", kinds.first().copied().unwrap_or("kernel"))),
                    });
                }
                _ = sleep_until(event_due) => {
                    if let Some((_, _, cause)) = due.take() {
                        let _ = self.reconcile(Cause::Event(cause)).await;
                    }
                }
                _ = sleep_until(retry_due) => {
                    let _ = self.reconcile(Cause::Retry).await;
                }
                _ = tick.tick() => {
                    let _ = self.reconcile(Cause::Periodic).await;
                    if let Some(lb) = self.lb_handle() {
                        lb.repair().await;
                    }
                }
                _ = hup.recv() => { let _ = self.reload(Cause::Reload).await; }
                handoff = fleet::next(&mut self.fleet) => {
                    if let Some(h) = handoff {
                        self.adopt(h).await;
                    }
                }
                req = requests.recv() => {
                    if let Some((cmd, reply)) = req {
                        let r = self.handle(cmd).await;
                        let _ = reply.send(r);
                    }
                }
                _ = &mut stop => break,
            }
        }
    }

    /// Hands VRRP over (priority 0) and stops the protocol thread; stops the load
    /// balancer (its `omega` hooks run).
    pub async fn shutdown(&mut self) {
        self.protocol.shutdown().await;
        if let Some(lb) = self.lb_handle() {
            lb.shutdown().await;
        }
    }

    async fn handle(&mut self, cmd: Command) -> Reply {
        let t = Instant::now();
        let r = match cmd {
            // The control thread answers status itself; this is its fallback.
            Command::Status => Ok(Response::Status(Box::new(self.snapshot()))),
            Command::Apply => self.reload(Cause::Apply).await.map(Response::Applied),
            Command::Reload => self.reload(Cause::Reload).await.map(Response::Applied),
            Command::Plan => self.plan().await.map(Response::Plan),
        };
        tracing::debug!(?cmd, elapsed_us = t.elapsed().as_micros() as u64, "request");
        Reply::of(r)
    }

    fn lb_handle(&self) -> Option<crate::lb::LoadBalancer> {
        self.lb.lock().ok().and_then(|g| g.clone())
    }

    /// Hands the virtual servers to the load balancer (starting it if needed).
    async fn sync_lb(&mut self) -> Result<(), String> {
        let lb = match self.lb_handle() {
            Some(lb) => lb,
            None if self.loaded.lb.is_empty() => return Ok(()),
            None => {
                let lb = crate::lb::LoadBalancer::spawn().map_err(|e| e.to_string())?;
                if let Ok(mut slot) = self.lb.lock() {
                    *slot = Some(lb.clone());
                }
                lb
            }
        };
        let r = lb.sync(self.loaded.lb.clone()).await;
        if let Err(e) = &r {
            self.status.last_error = Some(e.clone());
        }
        r
    }

    /// Re-reads the config; an invalid one is rejected and the running state kept.
    async fn reload(&mut self, cause: Cause) -> Result<Applied, AgentError> {
        let loaded = match load(&self.config_dir, &self.state_dir, &mut self.cache) {
            Ok(l) => l,
            Err(e) => {
                let text = error_text(&e);
                tracing::error!(error = %text, "new config rejected; keeping the running state");
                self.status.config_error = Some(text);
                self.publish();
                return Err(e);
            }
        };
        self.switch(loaded, cause).await
    }

    /// Runs a new, valid config: the network, VRRP, the virtual servers.
    async fn switch(&mut self, loaded: Loaded, cause: Cause) -> Result<Applied, AgentError> {
        self.loaded = loaded;
        self.status.config_error = None;
        self.view.track(&self.loaded.desired);
        let applied = self.reconcile(cause).await;
        self.protocol.sync(self.loaded.vrrp.clone()).await;
        if let Err(e) = self.sync_lb().await {
            return Err(AgentError::Kernel { message: e });
        }
        self.publish();
        let applied = applied?;
        if applied.failed.is_empty() {
            Ok(applied)
        } else {
            Err(AgentError::UnitsFailed { applied })
        }
    }

    /// What apply would change, against the config on disk (not adopted).
    async fn plan(&mut self) -> Result<PlanReply, AgentError> {
        let loaded = load(&self.config_dir, &self.state_dir, &mut self.cache)?;
        let engine = Engine::new(&loaded.desired).map_err(|e| AgentError::Kernel {
            message: format!("opening netlink sockets: {e}"),
        })?;
        self.view.track(&loaded.desired);
        self.view.refresh(&engine, &loaded.desired, true);
        self.view.resolve();
        let (plan, errors) = plan_all(&loaded.desired, &self.view.observed);
        // The running config's namespaces stay followed.
        self.view.track(&self.loaded.desired);
        Ok(PlanReply {
            ops: plan.ops,
            blocked: errors
                .iter()
                .map(|e| UnitFailure {
                    unit: loaded.units.of_error(e),
                    error: e.to_string(),
                })
                .collect(),
            unwired: plan.unwired,
        })
    }

    /// One pass: read what is stale, plan against the view, apply the units that
    /// differ (and are not waiting out a backoff), each on its own.
    async fn reconcile(&mut self, cause: Cause) -> Result<Applied, AgentError> {
        let t = Instant::now();
        self.status.reconciles += 1;
        let desired = &self.loaded.desired;
        let engine = match Engine::new(desired) {
            Ok(e) => e,
            Err(e) => {
                let message = format!("opening netlink sockets: {e}");
                tracing::error!(error = %message, "reconcile failed");
                self.status.last_error = Some(message.clone());
                self.publish();
                return Err(AgentError::Kernel { message });
            }
        };
        if matches!(cause, Cause::Start | Cause::Periodic) {
            self.view.mark_all_stale();
            self.status.full_reads += 1;
        }
        if cause.is_explicit() || self.view.is_stale() {
            for (ns, e) in self.view.refresh(&engine, desired, cause.is_explicit()) {
                tracing::warn!(netns = ns.as_deref().unwrap_or("host"), error = %e, "cannot read namespace");
            }
        }
        self.view.resolve();
        let (plan, errors) = plan_all(desired, &self.view.observed);
        self.status.unwired = plan.unwired.clone();
        let now = Instant::now();
        if cause.is_explicit() {
            self.retries.expedite(now);
        }
        let units = &self.loaded.units;
        let mut blocked: BTreeMap<Unit, String> = BTreeMap::new();
        for e in &errors {
            blocked
                .entry(units.of_error(e))
                .or_insert_with(|| e.to_string());
        }
        let mut with_ops: BTreeMap<Unit, usize> = BTreeMap::new();
        let mut kept: Vec<Op> = Vec::new();
        for op in plan.ops {
            let unit = units.of(&op);
            *with_ops.entry(unit.clone()).or_default() += 1;
            if !blocked.contains_key(&unit) && self.retries.due(&unit, now) {
                kept.push(op);
            }
        }
        let mut applied = Applied {
            unwired: plan.unwired.clone(),
            ..Applied::default()
        };
        if !kept.is_empty() {
            let name = cause.name();
            for op in &kept {
                if self.retries.is_failing(&units.of(op)) {
                    // Logged once when it started failing; not per attempt.
                    tracing::debug!(%op, cause = %name, "retrying");
                } else if cause.is_drift() {
                    tracing::warn!(%op, cause = %name, "repairing drift");
                } else {
                    tracing::info!(%op, cause = %name, "applying");
                }
            }
            let to_apply = Plan {
                ops: kept,
                unwired: plan.unwired,
            };
            let touched = namespaces_by_unit(&to_apply, units);
            let report = engine
                .apply_units(
                    desired,
                    to_apply,
                    &|op| units.of(op),
                    Verify::Touched(&self.view.observed),
                )
                .await;
            if let Some(observed) = report.observed {
                self.view.accept(observed);
            }
            for (unit, e) in &report.failed {
                // Its rollback ran after the verifying read.
                self.view.mark_stale(
                    std::iter::once(None)
                        .chain(touched.get(unit).into_iter().flatten().cloned().map(Some)),
                );
                self.retries
                    .failed(unit, e.to_string(), is_transient(e), Instant::now());
                applied.failed.push(UnitFailure {
                    unit: unit.clone(),
                    error: e.to_string(),
                });
            }
            for (unit, ops) in report.applied {
                self.retries.succeeded(&unit);
                applied.ops.extend(ops);
            }
        }
        if !blocked.is_empty() {
            // A plan error may come from a view that went wrong (a bridge's
            // AF_BRIDGE notice once replaced its port's state): the retry plans
            // from a fresh read of the host and the blocked VEs' namespaces.
            let ves: BTreeSet<u32> = blocked
                .keys()
                .filter_map(|u| match u {
                    Unit::Ve(id) => Some(*id),
                    Unit::Host(_) => None,
                })
                .collect();
            let namespaces: Vec<NsName> = desired
                .ve_ends
                .iter()
                .filter(|e| netcfg::unit::ve_of_alias(&e.alias).is_some_and(|id| ves.contains(&id)))
                .map(|e| Some(e.ns.clone()))
                .collect();
            self.view
                .mark_stale(std::iter::once(None).chain(namespaces));
        }
        for (unit, e) in &blocked {
            self.retries.failed(unit, e.clone(), false, now);
            applied.failed.push(UnitFailure {
                unit: unit.clone(),
                error: e.clone(),
            });
        }
        // Failing units the kernel now agrees with (someone fixed them) are healthy.
        let healthy: Vec<Unit> = self
            .retries
            .status(now)
            .into_iter()
            .map(|s| s.unit)
            .filter(|u| !with_ops.contains_key(u) && !blocked.contains_key(u))
            .collect();
        for u in healthy {
            self.retries.succeeded(&u);
        }
        applied.elapsed_us = t.elapsed().as_micros() as u64;
        self.status.last_reconcile_ms = t.elapsed().as_millis() as u64;
        if !applied.ops.is_empty() {
            self.status.applies += 1;
            if cause.is_drift() {
                self.status.drift_repairs += applied.ops.len() as u64;
            }
            tracing::info!(
                changes = applied.ops.len(),
                failed_units = applied.failed.len(),
                cause = %cause.name(),
                elapsed_ms = self.status.last_reconcile_ms,
                "applied"
            );
        }
        self.status.last_error = applied
            .failed
            .first()
            .map(|f| format!("{}: {}", f.unit, f.error));
        self.publish();
        Ok(applied)
    }

    fn snapshot(&self) -> Status {
        let mut s = self.status.clone();
        s.uptime_s = self.started.elapsed().as_secs();
        s.units = self.retries.status(Instant::now());
        s
    }

    /// Publishes the engine's part of the status for the control thread.
    fn publish(&self) {
        let snap = self.snapshot();
        if let Ok(mut s) = self.shared.lock() {
            *s = snap;
        }
    }
}

/// The VE namespaces each unit's ops touch (to read again after its rollback).
fn namespaces_by_unit(plan: &Plan, units: &Units) -> BTreeMap<Unit, Vec<String>> {
    let mut out: BTreeMap<Unit, Vec<String>> = BTreeMap::new();
    for op in &plan.ops {
        let mut names: Vec<String> = op.ns().map(str::to_string).into_iter().collect();
        if let Op::LinkAdd { link, .. } = op {
            if let netcfg::link::Kind::Veth(v) = &link.kind {
                names.extend(v.peer.as_ref().and_then(|p| p.ns.clone()));
            }
        }
        if !names.is_empty() {
            out.entry(units.of(op)).or_default().extend(names);
        }
    }
    out
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
