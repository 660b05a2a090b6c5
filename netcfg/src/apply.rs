//! The engine: observe the kernel, plan, apply in phases (ops of one phase run
//! concurrently over one netlink socket per netns), verify, roll back on failure.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;

use ipnet::IpNet;

use futures::StreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressProtocol};
use netlink_packet_route::route::RouteScope;
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::desired::Desired;
use crate::kernel::link::nl_err;
use crate::kernel::state::{self, vznet_protocol, RTPROT_VZNET};
use crate::kernel::{self, netns, sysctl};
use crate::link::veth::{Veth, VethPeer};
use crate::link::Kind;
use crate::model::{netns_path, Config};
use crate::op::{NsName, Op};
use crate::plan::{self, Observed, Plan, PlanError};
use crate::unit::Unit;

/// What went wrong, with the op and the kernel's answer.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Nothing could be planned; nothing changed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Reading the kernel's state failed; nothing changed.
    #[error("reading kernel state{}: {source}", ns_suffix(.ns))]
    Observe {
        /// Netns.
        ns: NsName,
        /// Cause.
        source: io::Error,
    },
    /// An op failed; the ops before it were undone.
    #[error("`{op}` failed: {source}{}", rollback_note(.rollback_errors))]
    Op {
        /// The op.
        op: Box<Op>,
        /// The kernel's error.
        source: io::Error,
        /// Inverse ops that failed in turn (the kernel is not exactly as before).
        rollback_errors: Vec<String>,
    },
    /// Apply succeeded but a re-read still differs; the ops were undone.
    #[error("verification failed: after apply the kernel still differs: {remaining}{}", rollback_note(.rollback_errors))]
    Verify {
        /// What still differs.
        remaining: String,
        /// Inverse ops that failed in turn.
        rollback_errors: Vec<String>,
    },
}

fn ns_suffix(ns: &NsName) -> String {
    ns.as_ref()
        .map_or(String::new(), |n| format!(" in netns {n}"))
}

fn rollback_note(errors: &[String]) -> String {
    if errors.is_empty() {
        "; every change made before it was rolled back".into()
    } else {
        format!("; rollback was incomplete: {}", errors.join("; "))
    }
}

/// How [`Engine::apply_units`] verifies what it applied.
#[derive(Debug, Clone, Copy)]
pub enum Verify<'a> {
    /// Read every netns and sysctl again.
    Full,
    /// Read only the host netns, the namespaces the applied ops touched and the
    /// sysctls of the units that changed, on top of this state (a caller's
    /// event-maintained view of the rest).
    Touched(&'a Observed),
}

/// What [`Engine::apply_units`] did, unit by unit.
#[derive(Debug, Default)]
pub struct UnitsReport {
    /// Units whose ops all ran and verified, with those ops.
    pub applied: BTreeMap<Unit, Vec<Op>>,
    /// Units that failed and were rolled back (alone), with why.
    pub failed: BTreeMap<Unit, ApplyError>,
    /// VEs not wired (no netns).
    pub unwired: Vec<u32>,
    /// The state read to verify; the namespaces of failed units may have changed
    /// since (their rollback ran after it was read).
    pub observed: Option<Observed>,
}

/// The result of a successful apply.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// The ops that ran.
    pub ops: Vec<Op>,
    /// VEs not wired (no netns).
    pub unwired: Vec<u32>,
}

/// Ops of one phase in flight at once.
const IN_FLIGHT: usize = 64;

/// VE namespaces with an open netlink socket at any one time. Each socket's
/// connection keeps a 64 KiB read buffer: 1000 VEs at once would cost ~70 MB.
const WINDOW: usize = 128;

/// One run of vznet against the kernel: the namespaces the config names, a
/// netlink handle in the host netns and in a window of VE namespaces, and a
/// name -> ifindex cache.
///
/// Namespace files are opened when first needed and closed with the engine: an
/// open file pins its netns, and a VE's netns must die with its last process.
#[derive(Debug)]
pub struct Engine {
    host: Handle,
    host_file: File,
    /// Every VE netns the desired state names.
    names: Vec<String>,
    /// A bridge filters VLANs: reads include the ports' VLANs.
    bridge_vlans: bool,
    files: RefCell<HashMap<String, Rc<File>>>,
    missing: RefCell<HashMap<String, String>>,
    open: RefCell<HashMap<String, Handle>>,
    index: RefCell<HashMap<(NsName, String), u32>>,
    progress: Option<Progress>,
    /// Namespaces the config no longer names that hold the VE end of a veth
    /// vznet made: read so that deleting the veth records that end (its netns,
    /// addresses, routes) and undoing it makes the end again there.
    found: RefCell<Vec<String>>,
    /// Gratuitous ARPs under way, waited for when the apply ends.
    announcements: RefCell<Vec<crate::kernel::garp::Announcement>>,
    #[cfg(feature = "faults")]
    fault: Option<crate::fault::Faults>,
}

/// Told `(ops done, ops in the plan)` after each op an apply runs.
pub struct Progress(Box<dyn Fn(usize, usize)>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

impl Engine {
    /// Opens the host netns's socket. Must run inside a tokio runtime.
    pub fn new(desired: &Desired) -> io::Result<Engine> {
        let host = netns::handle(netns::route_socket()?)?;
        // The caller's netns, for the reader threads to enter.
        let host_file = File::open("/proc/thread-self/ns/net")?;
        let mut names: Vec<String> = desired.ve_ends.iter().map(|e| e.ns.clone()).collect();
        names.extend(desired.routes.keys().flatten().cloned());
        names.sort();
        names.dedup();
        Ok(Engine {
            host,
            host_file,
            names,
            bridge_vlans: desired.bridge_vlans,
            files: RefCell::new(HashMap::new()),
            missing: RefCell::new(HashMap::new()),
            open: RefCell::new(HashMap::new()),
            index: RefCell::new(HashMap::new()),
            progress: None,
            found: RefCell::new(Vec::new()),
            announcements: RefCell::new(Vec::new()),
            #[cfg(feature = "faults")]
            fault: None,
        })
    }

    /// The netns file of VE namespace `n`, opened on first use.
    fn file(&self, n: &str) -> io::Result<Rc<File>> {
        if let Some(f) = self.files.borrow().get(n) {
            return Ok(f.clone());
        }
        if !self.names.iter().any(|m| m == n) && !self.found.borrow().iter().any(|m| m == n) {
            return Err(self.unavailable(n));
        }
        match netns::open(&netns_path(n)) {
            Ok(f) => {
                let f = Rc::new(f);
                self.files.borrow_mut().insert(n.to_string(), f.clone());
                self.missing.borrow_mut().remove(n);
                Ok(f)
            }
            Err(e) => {
                self.missing
                    .borrow_mut()
                    .insert(n.to_string(), e.to_string());
                Err(self.unavailable(n))
            }
        }
    }

    fn unavailable(&self, n: &str) -> io::Error {
        let why = self
            .missing
            .borrow()
            .get(n)
            .cloned()
            .unwrap_or_else(|| "not in the config".to_string());
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("network namespace {n} is not available: {why}"),
        )
    }

    /// Opens sockets in those of `names` that have none, on one helper thread.
    fn open_handles<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        let mut todo = Vec::new();
        let mut dups = Vec::new();
        for n in names {
            if self.open.borrow().contains_key(n) || todo.contains(&n) {
                continue;
            }
            if let Ok(f) = self.file(n) {
                dups.push(f.try_clone()?);
                todo.push(n);
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let sockets = netns::route_sockets(dups)?;
        let mut open = self.open.borrow_mut();
        for (n, socket) in todo.into_iter().zip(sockets) {
            // A namespace whose socket fails stays closed; its ops fail by name.
            if let Ok(fd) = socket {
                open.insert(n.to_string(), netns::handle(fd)?);
            }
        }
        Ok(())
    }

    /// Closes every VE socket (their connection tasks end with the last handle).
    fn close_handles(&self) {
        self.open.borrow_mut().clear();
    }

    fn handle(&self, ns: &NsName) -> io::Result<Handle> {
        let Some(n) = ns else {
            return Ok(self.host.clone());
        };
        if let Some(h) = self.open.borrow().get(n) {
            return Ok(h.clone());
        }
        self.file(n)?;
        self.open_handles([n.as_str()])?;
        self.open
            .borrow()
            .get(n)
            .cloned()
            .ok_or_else(|| self.unavailable(n))
    }

    /// Reads every netns and sysctl the config involves. A VE netns that cannot be
    /// opened is left out (its ops fail by name); one that cannot be read fails all.
    pub async fn observe(&self, desired: &Desired) -> Result<Observed, ApplyError> {
        let mut all: Vec<NsName> = vec![None];
        all.extend(self.names.iter().cloned().map(Some));
        let paths: Vec<PathBuf> = desired.sysctls.iter().map(|(p, _)| p.clone()).collect();
        let (mut observed, mut failed) = self.observe_some(&all, &paths);
        if let Some((ns, source)) = failed.pop() {
            return Err(ApplyError::Observe { ns, source });
        }
        self.find_far_ends(&mut observed);
        Ok(observed)
    }

    /// Reads, among the named namespaces (`/run/netns`) the config does not
    /// name, those that hold the far end of a host veth vznet made whose end is
    /// nowhere in `observed` (its VE left the config), found by their netns id
    /// in the host netns (IFLA_LINK_NETNSID): only when there is such a veth.
    fn find_far_ends(&self, observed: &mut Observed) {
        let wanted = plan::lost_far_ends(observed);
        if wanted.is_empty() {
            return;
        }
        let known = |n: &str| {
            self.names.iter().any(|m| m == n) || self.found.borrow().iter().any(|m| m == n)
        };
        let Ok(dir) = std::fs::read_dir("/run/netns") else {
            return;
        };
        let holders: Vec<String> = dir
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !known(n))
            .filter(|n| {
                netns::open(&netns_path(n))
                    .and_then(|f| kernel::events::nsid_if_any(&f))
                    .is_ok_and(|id| id.is_some_and(|id| wanted.contains(&id)))
            })
            .collect();
        if holders.is_empty() {
            return;
        }
        self.found.borrow_mut().extend(holders.iter().cloned());
        let which: Vec<NsName> = holders.iter().cloned().map(Some).collect();
        let (more, unreadable) = self.observe_some(&which, &[]);
        for (ns, e) in unreadable {
            tracing::warn!(netns = ?ns, error = %e, "reading a netns that holds a VE end");
        }
        for (n, st) in more.ves {
            tracing::debug!(netns = %n, "holds the VE end of a veth vznet made");
            observed.ves.insert(n, st);
        }
    }

    /// Reads the namespaces in `which` (`None`: the host's) and the sysctl files
    /// `sysctls`. Namespaces that cannot be opened are left out; those that cannot
    /// be read are returned with their error.
    pub fn observe_some(
        &self,
        which: &[NsName],
        sysctls: &[PathBuf],
    ) -> (Observed, Vec<(NsName, io::Error)>) {
        let t = std::time::Instant::now();
        let mut failed = Vec::new();
        let mut files: Vec<(NsName, File)> = Vec::new();
        for ns in which {
            let file = match ns {
                None => self.host_file.try_clone(),
                Some(n) => match self.file(n) {
                    Ok(f) => f.try_clone(),
                    // Not there (yet): planned as empty, its ops fail by name.
                    Err(_) => continue,
                },
            };
            match file {
                Ok(f) => files.push((ns.clone(), f)),
                Err(e) => failed.push((ns.clone(), e)),
            }
        }
        // Plain threads with blocking sockets, one per core: far cheaper than an
        // async connection per namespace. The host first; its dump is the large
        // one. Blocking the caller is by design: the agent runs this on its
        // engine thread, never where protocol timers run.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let named: Vec<(String, File)> = files
            .into_iter()
            .map(|(ns, f)| (ns.unwrap_or_default(), f))
            .collect();
        let results = crate::kernel::dump::read_namespaces(&named, threads, self.bridge_vlans);
        let mut observed = Observed::default();
        let mut cache = self.index.borrow_mut();
        for ((name, _), res) in named.into_iter().zip(results) {
            let ns = (!name.is_empty()).then_some(name);
            let st = match res {
                Ok(st) => st,
                Err(e) => {
                    failed.push((ns, e));
                    continue;
                }
            };
            cache.retain(|(n, _), _| *n != ns);
            for l in &st.links {
                cache.insert((ns.clone(), l.name.clone()), l.index);
            }
            match ns {
                None => observed.host = st,
                Some(n) => {
                    observed.ves.insert(n, st);
                }
            }
        }
        for path in sysctls {
            match sysctl::read(path) {
                Ok(v) => {
                    observed.sysctls.insert(path.clone(), v);
                }
                Err(e) => failed.push((None, e)),
            }
        }
        tracing::debug!(
            namespaces = observed.ves.len() + 1,
            elapsed_ms = t.elapsed().as_millis() as u64,
            "observed"
        );
        (observed, failed)
    }

    /// Observes and plans.
    pub async fn plan(&self, desired: &Desired) -> Result<Plan, ApplyError> {
        let observed = self.observe(desired).await?;
        Ok(plan::plan(desired, &observed)?)
    }

    /// Calls `f(done, total)` after each op of an apply (a terminal's progress).
    pub fn on_progress(mut self, f: impl Fn(usize, usize) + 'static) -> Engine {
        self.progress = Some(Progress(Box::new(f)));
        self
    }

    /// Installs a test hook asked at every fault point of the applies that
    /// follow ([`crate::fault`]).
    #[cfg(feature = "faults")]
    pub fn inject(mut self, hook: crate::fault::Hook) -> Engine {
        self.fault = Some(crate::fault::Faults::new(hook));
        self
    }

    /// Asks the test hook, if any, at `point`.
    fn fault_point(&self, _point: FaultPoint<'_>) -> io::Result<()> {
        #[cfg(feature = "faults")]
        if let Some(faults) = &self.fault {
            return faults.at(_point);
        }
        Ok(())
    }

    /// Plans, applies, verifies; on any failure undoes what it did.
    pub async fn apply(&self, desired: &Desired) -> Result<Report, ApplyError> {
        let t = std::time::Instant::now();
        let plan = self.plan(desired).await?;
        tracing::debug!(
            ops = plan.ops.len(),
            elapsed_ms = t.elapsed().as_millis() as u64,
            "planned"
        );
        self.apply_plan(desired, plan).await
    }

    /// Applies a plan made earlier, then verifies against `desired`.
    pub async fn apply_plan(&self, desired: &Desired, plan: Plan) -> Result<Report, ApplyError> {
        self.apply_plan_where(desired, plan, &|_| true).await
    }

    /// Like [`Engine::apply_plan`] for only the ops `keep` selects: the rest of
    /// the plan is neither run nor verified (a change to one VE leaves drift
    /// elsewhere to whoever owns it).
    pub async fn apply_plan_where(
        &self,
        desired: &Desired,
        mut plan: Plan,
        keep: &dyn Fn(&Op) -> bool,
    ) -> Result<Report, ApplyError> {
        plan.ops.retain(|op| keep(op));
        let unwired = plan.unwired.clone();
        let ours = Unit::Host("plan".into());
        let unit_of = |op: &Op| {
            if keep(op) {
                Unit::Host("plan".into())
            } else {
                Unit::Host("elsewhere".into())
            }
        };
        let mut report = self
            .apply_units(desired, plan, &unit_of, Verify::Full)
            .await;
        if let Some(e) = report.failed.remove(&ours) {
            return Err(e);
        }
        Ok(Report {
            ops: report.applied.remove(&ours).unwrap_or_default(),
            unwired,
        })
    }

    /// Applies `plan` unit by unit: the ops of all units run together phase by
    /// phase, but a unit whose op fails, or that still differs after the apply, is
    /// rolled back alone (its own ops, in reverse) and the others go on. Rollback
    /// never undoes another unit's ops. Verification reads the namespaces the
    /// applied ops touched ([`Verify`]).
    pub async fn apply_units(
        &self,
        desired: &Desired,
        plan: Plan,
        unit_of: &dyn Fn(&Op) -> Unit,
        verify: Verify<'_>,
    ) -> UnitsReport {
        let report = self.apply_units_now(desired, plan, unit_of, verify).await;
        for a in std::mem::take(&mut *self.announcements.borrow_mut()) {
            if let Err(e) = a.wait() {
                tracing::debug!(error = %e, "gratuitous ARP not sent");
            }
        }
        report
    }

    async fn apply_units_now(
        &self,
        desired: &Desired,
        plan: Plan,
        unit_of: &dyn Fn(&Op) -> Unit,
        verify: Verify<'_>,
    ) -> UnitsReport {
        let mut plan = plan;
        record_sysctls(&mut plan);
        let total = plan.ops.len();
        let mut ran = 0usize;
        let mut done: BTreeMap<Unit, Vec<Op>> = BTreeMap::new();
        let mut failed: BTreeMap<Unit, ApplyError> = BTreeMap::new();
        for (phase, ops) in plan.phases() {
            let t = std::time::Instant::now();
            for chunk in windows(&ops) {
                let chunk: Vec<&Op> = chunk
                    .into_iter()
                    .filter(|op| !failed.contains_key(&unit_of(op)))
                    .collect();
                if chunk.is_empty() {
                    continue;
                }
                if let Err(e) = self.open_handles(chunk.iter().flat_map(|op| op_namespaces(op))) {
                    // The ops that need these sockets fail one by one and roll back.
                    tracing::warn!(error = %e, "opening netns sockets");
                }
                // A bounded number in flight: the kernel takes one request of
                // a socket at a time anyway, and each pending op is a future of
                // a few KiB (3000 sysctls at once cost ~10 MB).
                let results: Vec<io::Result<()>> = futures::stream::iter(chunk.iter())
                    .map(|op| self.run(op))
                    .buffered(IN_FLIGHT)
                    .collect()
                    .await;
                self.close_handles();
                let mut broken: BTreeMap<Unit, (Op, io::Error)> = BTreeMap::new();
                for (op, res) in chunk.iter().zip(results) {
                    let unit = unit_of(op);
                    match res {
                        Ok(()) => {
                            done.entry(unit).or_default().push((*op).clone());
                            ran += 1;
                            if let Some(Progress(f)) = &self.progress {
                                f(ran, total);
                            }
                        }
                        Err(e) if !broken.contains_key(&unit) => {
                            broken.insert(unit, ((*op).clone(), e));
                        }
                        Err(e) => {
                            tracing::warn!(%op, error = %e, "op failed after an earlier failure of its unit")
                        }
                    }
                }
                for (unit, (op, source)) in broken {
                    // The caller reports it (the agent once per state change).
                    tracing::debug!(%unit, %op, error = %source, "apply failed; rolling this unit back");
                    let rollback_errors =
                        self.rollback(done.remove(&unit).unwrap_or_default()).await;
                    failed.insert(
                        unit,
                        ApplyError::Op {
                            op: Box::new(op),
                            source,
                            rollback_errors,
                        },
                    );
                }
            }
            tracing::debug!(
                ?phase,
                ops = ops.len(),
                elapsed_ms = t.elapsed().as_millis() as u64,
                "phase done"
            );
        }
        let mut report = UnitsReport {
            unwired: plan.unwired,
            ..UnitsReport::default()
        };
        if done.is_empty() {
            report.failed = failed;
            return report;
        }
        let t = std::time::Instant::now();
        let observed = self.verify_state(desired, &done, unit_of, verify);
        let (observed, unreadable) = observed;
        // Units whose namespaces cannot be read cannot be verified: undo them.
        let mut remaining: BTreeMap<Unit, Vec<String>> = BTreeMap::new();
        for (ns, e) in &unreadable {
            for (unit, ops) in &done {
                let touched = match ns {
                    None => true,
                    Some(n) => ops.iter().any(|op| op_namespaces(op).contains(&n.as_str())),
                };
                if touched {
                    remaining
                        .entry(unit.clone())
                        .or_default()
                        .push(format!("cannot read{}: {e}", ns_suffix(ns)));
                }
            }
        }
        match plan::plan(desired, &observed) {
            Ok(again) => {
                for op in &again.ops {
                    let unit = unit_of(op);
                    if done.contains_key(&unit) {
                        remaining.entry(unit).or_default().push(op.to_string());
                    }
                }
            }
            Err(e) => {
                for unit in done.keys() {
                    remaining
                        .entry(unit.clone())
                        .or_default()
                        .push(e.to_string());
                }
            }
        }
        tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "verified");
        for (unit, what) in remaining {
            let ops = done.remove(&unit).unwrap_or_default();
            tracing::debug!(%unit, remaining = %what.join(", "), "verification failed; rolling this unit back");
            let rollback_errors = self.rollback(ops).await;
            failed.insert(
                unit,
                ApplyError::Verify {
                    remaining: what.join(", "),
                    rollback_errors,
                },
            );
        }
        report.applied = done;
        report.failed = failed;
        report.observed = Some(observed);
        report
    }

    /// The state to verify `done` against: what `verify` says, with the sysctls of
    /// the units that changed read again.
    fn verify_state(
        &self,
        desired: &Desired,
        done: &BTreeMap<Unit, Vec<Op>>,
        unit_of: &dyn Fn(&Op) -> Unit,
        verify: Verify<'_>,
    ) -> (Observed, Vec<(NsName, io::Error)>) {
        match verify {
            Verify::Full => {
                let mut all: Vec<NsName> = vec![None];
                all.extend(self.names.iter().cloned().map(Some));
                let paths: Vec<PathBuf> = desired.sysctls.iter().map(|(p, _)| p.clone()).collect();
                self.observe_some(&all, &paths)
            }
            Verify::Touched(base) => {
                let mut touched: Vec<NsName> = vec![None];
                for op in done.values().flatten() {
                    for ns in op_namespaces(op) {
                        let ns = Some(ns.to_string());
                        if !touched.contains(&ns) {
                            touched.push(ns);
                        }
                    }
                }
                let paths: Vec<PathBuf> = desired
                    .sysctls
                    .iter()
                    .filter(|(p, v)| {
                        let probe = Op::Sysctl {
                            path: p.clone(),
                            value: v.clone(),
                            old: None,
                            propagated: BTreeMap::new(),
                        };
                        done.contains_key(&unit_of(&probe))
                    })
                    .map(|(p, _)| p.clone())
                    .collect();
                let (fresh, failed) = self.observe_some(&touched, &paths);
                let mut merged = base.clone();
                merged.host = fresh.host;
                merged.ves.extend(fresh.ves);
                merged.sysctls.extend(fresh.sysctls);
                (merged, failed)
            }
        }
    }

    async fn rollback(&self, done: Vec<Op>) -> Vec<String> {
        let mut errors = Vec::new();
        for op in done.iter().rev() {
            // A sysctl of a link that did not exist before goes with the link.
            if let Op::Sysctl { old: None, .. } = op {
                continue;
            }
            let inv = op.inverse();
            // What the interfaces hold before the switch is written back.
            let now = match op {
                Op::Sysctl { propagated, .. } if !propagated.is_empty() => propagated
                    .keys()
                    .filter_map(|p| Some((p.clone(), sysctl::read(p).ok()??)))
                    .collect(),
                _ => BTreeMap::new(),
            };
            let res = self.run(&inv).await;
            if res.is_ok() {
                if let Op::Sysctl {
                    value, propagated, ..
                } = op
                {
                    errors.extend(restore_propagated(value, propagated, &now));
                }
            }
            if let Err(e) = res {
                // Deleting a link also deleted what hung on it: not an error
                // when undoing means removing it too. Making something again
                // that cannot be made is one.
                let gone =
                    e.raw_os_error() == Some(libc::ENODEV) || e.kind() == io::ErrorKind::NotFound;
                if gone && inv.removes() {
                    continue;
                }
                tracing::error!(op = %inv, error = %e, "rollback op failed");
                errors.push(format!("`{inv}`: {e}"));
            }
        }
        errors
    }

    async fn ifindex(&self, ns: &NsName, name: &str) -> io::Result<u32> {
        if let Some(i) = self.index.borrow().get(&(ns.clone(), name.to_string())) {
            return Ok(*i);
        }
        let h = self.handle(ns)?;
        let link = state::read_link(&h, name).await.map_err(nl_err)?;
        let link = link.ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
        self.index
            .borrow_mut()
            .insert((ns.clone(), name.to_string()), link.index);
        Ok(link.index)
    }

    fn forget(&self, ns: &NsName, name: &str) {
        self.index
            .borrow_mut()
            .remove(&(ns.clone(), name.to_string()));
    }

    async fn run(&self, op: &Op) -> io::Result<()> {
        tracing::debug!(%op, "apply");
        self.fault_point(FaultPoint::Op(op))?;
        match op {
            Op::Sysctl { path, value, .. } => sysctl::write(path, value),
            Op::LinkAdd { ns, link } => kernel::link::add(self, ns, link).await,
            Op::LinkDel { ns, link } => kernel::link::delete(self, ns, link).await,
            Op::LinkSet {
                ns,
                name,
                change,
                old,
            } => kernel::link::change(self, ns, name, change, old).await,
            Op::PortSet {
                ns,
                name,
                change,
                old,
            } => kernel::link::set_port(self, ns, name, change, old).await,
            Op::SetMtu {
                ns, name, mtu, old, ..
            } if *old == Some(*mtu) => kernel::link::hold_mtu(self, ns, name, *mtu).await,
            Op::SetMtu {
                ns, name, mtu, old, ..
            } => kernel::link::set_mtu(self, ns, name, *mtu, *old).await,
            Op::SetMaster {
                ns,
                name,
                master,
                port,
                ..
            } => {
                kernel::link::set_master(self, ns, name, master.as_deref()).await?;
                match master {
                    Some(m) => kernel::link::restore_port(self, ns, name, m, port).await,
                    None => Ok(()),
                }
            }
            Op::SetUp { ns, name, up, .. } => kernel::link::set_up(self, ns, name, *up).await,
            Op::SetMac { ns, name, mac, .. } => kernel::link::set_mac(self, ns, name, *mac).await,
            Op::AddrAdd {
                ns,
                dev,
                addr,
                nodad,
            } => {
                let idx = self.ifindex(ns, dev).await?;
                let mut req = self
                    .handle(ns)?
                    .address()
                    .add(idx, addr.addr(), addr.prefix_len());
                if *nodad && addr.addr().is_ipv6() {
                    req.message_mut()
                        .attributes
                        .push(AddressAttribute::Flags(AddressFlags::Nodad));
                }
                // Marked as vznet's: on links it does not own (NICs) it
                // removes only addresses so marked.
                req.message_mut()
                    .attributes
                    .push(AddressAttribute::Protocol(AddressProtocol::from(
                        RTPROT_VZNET,
                    )));
                req.execute().await.map_err(nl_err)?;
                // Inside a VE, as its own ifup would: the neighbours learn the
                // address's (new) MAC now, not when their entry goes stale.
                if let (Some(ns), IpAddr::V4(v4)) = (ns, addr.addr()) {
                    match crate::kernel::garp::announce(&crate::model::netns_path(ns), dev, v4) {
                        Ok(a) => self.announcements.borrow_mut().push(a),
                        Err(e) => {
                            tracing::debug!(netns = %ns, %dev, addr = %v4, error = %e, "gratuitous ARP not sent")
                        }
                    }
                }
                Ok(())
            }
            Op::AddrDel { ns, dev, addr, .. } => {
                let idx = self.ifindex(ns, dev).await?;
                // Named directly, not looked up with a dump: dumps on one socket
                // must not overlap (EBUSY), and ops run side by side.
                let mut msg = netlink_packet_route::address::AddressMessage::default();
                msg.header.family = match addr {
                    IpNet::V4(_) => netlink_packet_route::AddressFamily::Inet,
                    IpNet::V6(_) => netlink_packet_route::AddressFamily::Inet6,
                };
                msg.header.prefix_len = addr.prefix_len();
                msg.header.index = idx;
                if addr.addr().is_ipv4() {
                    msg.attributes.push(AddressAttribute::Local(addr.addr()));
                }
                msg.attributes.push(AddressAttribute::Address(addr.addr()));
                match self
                    .handle(ns)?
                    .address()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(nl_err)
                {
                    // Gone already: what the op wants.
                    Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
                    other => other,
                }
            }
            Op::RouteAdd { ns, route } => {
                let msg = self.route_message(ns, route).await?;
                self.handle(ns)?
                    .route()
                    .add(msg)
                    .execute()
                    .await
                    .map_err(nl_err)
            }
            Op::RouteDel { ns, route } => {
                let msg = self.route_message(ns, route).await?;
                self.handle(ns)?
                    .route()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(nl_err)
            }
            Op::RuleAdd { rule } => {
                let mut req = self.host.rule().add();
                *req.message_mut() = rule.message();
                req.execute().await.map_err(nl_err)
            }
            Op::RuleDel { rule } => self
                .host
                .rule()
                .del(rule.message())
                .execute()
                .await
                .map_err(nl_err),
            Op::ProxyAdd { proxy } => {
                let idx = self.ifindex(&None, &proxy.dev).await?;
                let mut req = self.host.neighbours().add(idx, proxy.addr);
                *req.message_mut() = crate::neighbour::message(idx, proxy.addr);
                req.execute().await.map_err(nl_err)
            }
            Op::ProxyDel { proxy } => {
                let idx = self.ifindex(&None, &proxy.dev).await?;
                self.host
                    .neighbours()
                    .del(crate::neighbour::message(idx, proxy.addr))
                    .execute()
                    .await
                    .map_err(nl_err)
            }
        }
    }

    async fn route_message(
        &self,
        ns: &NsName,
        r: &crate::op::RouteSpec,
    ) -> io::Result<netlink_packet_route::route::RouteMessage> {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(r.dst.addr(), r.dst.prefix_len())
            .map_err(inval)?
            .protocol(vznet_protocol());
        if let Some(via) = r.via {
            b = b.gateway(via).map_err(inval)?;
        } else {
            b = b.scope(RouteScope::Link);
        }
        if let Some(dev) = &r.dev {
            b = b.output_interface(self.ifindex(ns, dev).await?);
        }
        if let Some(m) = r.metric {
            b = b.priority(m);
        }
        if r.table != crate::op::MAIN_TABLE {
            b = b.table_id(r.table);
        }
        Ok(b.build())
    }
}

impl kernel::link::Netns for Engine {
    fn handle(&self, ns: &NsName) -> io::Result<Handle> {
        Engine::handle(self, ns)
    }

    async fn ifindex(&self, ns: &NsName, name: &str) -> io::Result<u32> {
        Engine::ifindex(self, ns, name).await
    }

    fn netns_fd(&self, ns: &str) -> Option<std::os::fd::RawFd> {
        self.file(ns).ok().map(|f| f.as_raw_fd())
    }

    fn forget(&self, ns: &NsName, name: &str) {
        Engine::forget(self, ns, name)
    }

    fn created(&self, ns: &NsName, name: &str) -> io::Result<()> {
        self.fault_point(FaultPoint::Created { ns, name })
    }
}

#[cfg(feature = "faults")]
use crate::fault::Point as FaultPoint;

/// Without the `faults` feature: the points exist, nothing listens.
#[cfg(not(feature = "faults"))]
#[derive(Debug, Clone, Copy)]
enum FaultPoint<'a> {
    Op(#[allow(dead_code)] &'a Op),
    Created {
        #[allow(dead_code)]
        ns: &'a NsName,
        #[allow(dead_code)]
        name: &'a str,
    },
}

/// Records in each deletion of a host link the sysctls it has that a new link
/// would not, so that undoing the deletion puts them back (the plan is pure;
/// this is its I/O). A link whose folder cannot be read is recorded without.
/// A global forwarding switch records every interface's value of its family,
/// which the kernel overwrites.
fn record_sysctls(plan: &mut Plan) {
    let mut defaults = None;
    for op in &mut plan.ops {
        if let Op::Sysctl {
            path, propagated, ..
        } = op
        {
            match sysctl::propagated_values(path) {
                Ok(values) => *propagated = values,
                Err(e) => {
                    tracing::warn!(sysctl = %path.display(), error = %e, "reading the interfaces' values a global switch overwrites")
                }
            }
        }
        if let Op::LinkDel { ns: None, link } = op {
            let defaults = match &defaults {
                Some(d) => d,
                None => defaults.insert(sysctl::link_defaults().unwrap_or_default()),
            };
            match sysctl::of_link(&link.name, defaults) {
                Ok(values) => {
                    tracing::debug!(link = %link.name, ?values, "sysctls to restore if undone");
                    link.sysctls = values
                }
                Err(e) => {
                    tracing::warn!(link = %link.name, error = %e, "reading the sysctls of a link to delete")
                }
            }
        }
    }
}

/// After undoing a write of the global forwarding switch `value` (which the
/// kernel copied to every interface of its family, and copies back now): each
/// interface gets the value it had before the write (`before`), unless it no
/// longer held the switch's value when the undo began (`now`): then something
/// else (another unit's op) set it since, and that value stays. An interface
/// gone since is skipped; one made since holds the switch's old value, as a new
/// link would have.
fn restore_propagated(
    value: &str,
    before: &BTreeMap<PathBuf, String>,
    now: &BTreeMap<PathBuf, String>,
) -> Vec<String> {
    let value = sysctl::normalise(value);
    let mut errors = Vec::new();
    for (path, old) in before {
        let Some(cur) = now.get(path) else { continue };
        let put = if *cur == value { old } else { cur };
        match sysctl::write(path, put) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(sysctl = %path.display(), error = %e, "rollback: restoring an interface's forwarding");
                errors.push(format!("`restore {} {put}`: {e}", path.display()));
            }
        }
    }
    errors
}

/// The VE namespaces an op talks to (its own, and a veth peer's).
fn op_namespaces(op: &Op) -> Vec<&str> {
    let mut out: Vec<&str> = op.ns().into_iter().collect();
    if let Op::LinkAdd { link, .. } | Op::LinkDel { link, .. } = op {
        if let Kind::Veth(Veth {
            peer: Some(VethPeer { ns: Some(p), .. }),
        }) = &link.kind
        {
            out.push(p);
        }
    }
    out
}

/// Splits a phase's ops into runs that touch at most WINDOW VE namespaces.
fn windows<'a>(ops: &[&'a Op]) -> Vec<Vec<&'a Op>> {
    let mut out: Vec<Vec<&Op>> = Vec::new();
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut cur: Vec<&Op> = Vec::new();
    for op in ops {
        let new: Vec<&str> = op_namespaces(op)
            .into_iter()
            .filter(|n| !seen.contains(n))
            .collect();
        if !cur.is_empty() && seen.len() + new.len() > WINDOW {
            out.push(std::mem::take(&mut cur));
            seen.clear();
        }
        seen.extend(op_namespaces(op));
        cur.push(op);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn inval<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// Loads nothing, touches nothing: the features `desired` needs that the kernel lacks.
pub fn missing_features(desired: &Desired) -> io::Result<Option<PlanError>> {
    let need = desired.features();
    if need.is_empty() {
        return Ok(None);
    }
    let have = crate::kernel::features::probe(&need)?;
    Ok(need
        .into_iter()
        .zip(have)
        .find(|(_, ok)| !ok)
        .map(|(f, _)| PlanError::NoKernelSupport {
            what: f.name,
            option: f.option,
        }))
}

/// Convenience: load nothing, just flatten.
pub fn desired(config: &Config) -> Desired {
    Desired::from_config(config)
}
