//! The engine: observe the kernel, plan, apply in phases (ops of one phase run
//! concurrently over one netlink socket per netns), verify, roll back on failure.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures::future::join_all;
use netlink_packet_route::address::{AddressAttribute, AddressProtocol};
use netlink_packet_route::route::RouteScope;
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::desired::Desired;
use crate::kernel::link::nl_err;
use crate::kernel::state::{self, vznet_protocol, NsState, RTPROT_VZNET};
use crate::kernel::{self, netns, sysctl};
use crate::link::veth::{Veth, VethPeer};
use crate::link::Kind;
use crate::model::{netns_path, Config};
use crate::op::{NsName, Op};
use crate::plan::{self, Observed, Plan, PlanError};

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

/// The result of a successful apply.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// The ops that ran.
    pub ops: Vec<Op>,
    /// VEs not wired (no netns).
    pub unwired: Vec<u32>,
}

/// VE namespaces with an open netlink socket at any one time. Each socket's
/// connection keeps a 64 KiB read buffer: 1000 VEs at once would cost ~70 MB.
const WINDOW: usize = 128;

/// One run of vznet against the kernel: the namespaces the config names, a
/// netlink handle in the host netns and in a window of VE namespaces, and a
/// name -> ifindex cache.
#[derive(Debug)]
pub struct Engine {
    host: Handle,
    host_file: File,
    files: HashMap<String, File>,
    missing: Vec<(String, io::Error)>,
    open: RefCell<HashMap<String, Handle>>,
    index: RefCell<HashMap<(NsName, String), u32>>,
}

impl Engine {
    /// Opens the host netns's socket and every VE netns file of `desired`.
    /// Must run inside a tokio runtime.
    pub fn new(desired: &Desired) -> io::Result<Engine> {
        let host = netns::handle(netns::route_socket()?)?;
        // The caller's netns, for the reader threads to enter.
        let host_file = File::open("/proc/thread-self/ns/net")?;
        let mut names: Vec<String> = desired.ve_ends.iter().map(|e| e.ns.clone()).collect();
        names.extend(desired.routes.keys().flatten().cloned());
        names.sort();
        names.dedup();
        let mut files = HashMap::new();
        let mut missing = Vec::new();
        for name in names {
            match netns::open(&netns_path(&name)) {
                Ok(f) => {
                    files.insert(name, f);
                }
                Err(e) => missing.push((name, e)),
            }
        }
        Ok(Engine {
            host,
            host_file,
            files,
            missing,
            open: RefCell::new(HashMap::new()),
            index: RefCell::new(HashMap::new()),
        })
    }

    fn unavailable(&self, n: &str) -> io::Error {
        let why = self
            .missing
            .iter()
            .find(|(m, _)| m == n)
            .map_or_else(|| "not in the config".to_string(), |(_, e)| e.to_string());
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("network namespace {n} is not available: {why}"),
        )
    }

    /// Opens sockets in those of `names` that have none, on one helper thread.
    fn open_handles<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        let mut todo = Vec::new();
        let mut dups = Vec::new();
        {
            let open = self.open.borrow();
            for n in names {
                if open.contains_key(n) || todo.contains(&n) {
                    continue;
                }
                if let Some(f) = self.files.get(n) {
                    dups.push(f.try_clone()?);
                    todo.push(n);
                }
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
        if !self.files.contains_key(n) {
            return Err(self.unavailable(n));
        }
        self.open_handles([n.as_str()])?;
        self.open
            .borrow()
            .get(n)
            .cloned()
            .ok_or_else(|| self.unavailable(n))
    }

    /// Reads every netns and sysctl the config involves.
    pub async fn observe(&self, desired: &Desired) -> Result<Observed, ApplyError> {
        let t = std::time::Instant::now();
        // Plain threads with blocking sockets, one per core: far cheaper than an
        // async connection per namespace.
        // The host first; its dump is large, and the blocking reader reduces each
        // message as it arrives instead of queueing them all parsed.
        let files: Vec<(String, File)> = std::iter::once(("".to_string(), &self.host_file))
            .chain(self.files.iter().map(|(n, f)| (n.clone(), f)))
            .map(|(n, f)| Ok((n, f.try_clone()?)))
            .collect::<io::Result<_>>()
            .map_err(|e| ApplyError::Observe {
                ns: None,
                source: e,
            })?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Blocking here is fine: nothing else runs while vznet observes.
        let results = crate::kernel::dump::read_namespaces(&files, threads, desired.bridge_vlans);
        let mut ves = BTreeMap::new();
        let mut host = NsState::default();
        for (n, ((name, _), res)) in files.into_iter().zip(results).enumerate() {
            let st = res.map_err(|e| ApplyError::Observe {
                ns: (n > 0).then(|| name.clone()),
                source: e,
            })?;
            if n == 0 {
                host = st;
                continue;
            }
            ves.insert(name, st);
        }
        let mut sysctls = BTreeMap::new();
        for (path, _) in &desired.sysctls {
            let v = sysctl::read(path).map_err(|e| ApplyError::Observe {
                ns: None,
                source: e,
            })?;
            sysctls.insert(path.clone(), v);
        }
        let mut cache = self.index.borrow_mut();
        cache.clear();
        for l in &host.links {
            cache.insert((None, l.name.clone()), l.index);
        }
        for (n, st) in &ves {
            for l in &st.links {
                cache.insert((Some(n.clone()), l.name.clone()), l.index);
            }
        }
        tracing::debug!(
            namespaces = ves.len() + 1,
            elapsed_ms = t.elapsed().as_millis() as u64,
            "observed"
        );
        Ok(Observed { host, ves, sysctls })
    }

    /// Observes and plans.
    pub async fn plan(&self, desired: &Desired) -> Result<Plan, ApplyError> {
        let observed = self.observe(desired).await?;
        Ok(plan::plan(desired, &observed)?)
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
        let mut done: Vec<Op> = Vec::new();
        for (phase, ops) in plan.phases() {
            let t = std::time::Instant::now();
            let mut failure = None;
            for chunk in windows(&ops) {
                if let Err(e) = self.open_handles(chunk.iter().flat_map(|op| op_namespaces(op))) {
                    // The ops that need these sockets fail one by one and roll back.
                    tracing::warn!(error = %e, "opening netns sockets");
                }
                let results = join_all(chunk.iter().map(|op| self.run(op))).await;
                self.close_handles();
                for (op, res) in chunk.iter().zip(results) {
                    match res {
                        Ok(()) => done.push((*op).clone()),
                        Err(e) if failure.is_none() => failure = Some(((*op).clone(), e)),
                        Err(e) => {
                            tracing::warn!(%op, error = %e, "op failed after an earlier failure in the same phase")
                        }
                    }
                }
                if failure.is_some() {
                    break;
                }
            }
            tracing::debug!(
                ?phase,
                ops = ops.len(),
                elapsed_ms = t.elapsed().as_millis() as u64,
                "phase done"
            );
            if let Some((op, source)) = failure {
                tracing::error!(%op, error = %source, "apply failed; rolling back");
                let rollback_errors = self.rollback(done).await;
                return Err(ApplyError::Op {
                    op: Box::new(op),
                    source,
                    rollback_errors,
                });
            }
        }
        if !done.is_empty() {
            let t = std::time::Instant::now();
            let mut again = self.plan(desired).await?;
            again.ops.retain(|op| keep(op));
            tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "verified");
            if !again.is_empty() {
                let remaining = again
                    .ops
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                let rollback_errors = self.rollback(done).await;
                return Err(ApplyError::Verify {
                    remaining,
                    rollback_errors,
                });
            }
        }
        Ok(Report {
            ops: done,
            unwired: plan.unwired,
        })
    }

    async fn rollback(&self, done: Vec<Op>) -> Vec<String> {
        let mut errors = Vec::new();
        for op in done.iter().rev() {
            // A sysctl of a link that did not exist before goes with the link.
            if let Op::Sysctl { old: None, .. } = op {
                continue;
            }
            let inv = op.inverse();
            if let Err(e) = self.run(&inv).await {
                // Deleting a link also deleted what hung on it: not an error.
                if e.raw_os_error() == Some(libc::ENODEV) || e.kind() == io::ErrorKind::NotFound {
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
            Op::SetMtu { ns, name, mtu, .. } => kernel::link::set_mtu(self, ns, name, *mtu).await,
            Op::SetMaster {
                ns, name, master, ..
            } => kernel::link::set_master(self, ns, name, master.as_deref()).await,
            Op::SetUp { ns, name, up, .. } => kernel::link::set_up(self, ns, name, *up).await,
            Op::SetMac { ns, name, mac, .. } => kernel::link::set_mac(self, ns, name, *mac).await,
            Op::AddrAdd { ns, dev, addr } => {
                let idx = self.ifindex(ns, dev).await?;
                let h = self.handle(ns)?;
                let mut req = h.address().add(idx, addr.addr(), addr.prefix_len());
                // Marked as vznet's: on links it does not own (NICs) it
                // removes only addresses so marked.
                req.message_mut()
                    .attributes
                    .push(AddressAttribute::Protocol(AddressProtocol::from(
                        RTPROT_VZNET,
                    )));
                req.execute().await.map_err(nl_err)
            }
            Op::AddrDel { ns, dev, addr } => {
                let idx = self.ifindex(ns, dev).await?;
                let h = self.handle(ns)?;
                let mut req = h
                    .address()
                    .get()
                    .set_link_index_filter(idx)
                    .set_address_filter(addr.addr())
                    .set_prefix_length_filter(addr.prefix_len());
                let _ = req.message_mut();
                use futures::TryStreamExt;
                let msgs: Vec<_> = req.execute().try_collect().await.map_err(nl_err)?;
                for m in msgs {
                    h.address().del(m).execute().await.map_err(nl_err)?;
                }
                Ok(())
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
        self.files.get(ns).map(AsRawFd::as_raw_fd)
    }

    fn forget(&self, ns: &NsName, name: &str) {
        Engine::forget(self, ns, name)
    }
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
