//! The balancer: the virtual servers' live state and the transactions that move
//! the kernel from one state to the next. Synchronous and blocking (nftables
//! commits, conntrack dumps): the agent drives it from the load balancer's
//! engine thread, the lab benchmark drives it directly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use netcfg::model::lb::LbKind;
use nft::script::Script;
use nft::Nft;
use serde::{Deserialize, Serialize};

use super::conntrack::Conntrack;
use super::health::prober::ProbeStats;
use super::health::Target;
use super::leastconn::Counter;
use super::maglev;
use super::ruleset::{self, BackendEntry, IdSet, Persistence, ServiceShape, BACKEND_BASE};
use super::service::{BackendState, Service};
pub use super::service::{BackendStatus, Event, ServiceSpec, ServiceStatus};

/// What one commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Slots rewritten.
    pub slots_changed: usize,
    /// Commands in the transaction.
    pub commands: usize,
    /// State changes for hooks.
    #[serde(skip)]
    pub events: Vec<Event>,
}

/// The load balancer's state and its kernel tables.
#[derive(Debug)]
pub struct Balancer {
    nft: Nft,
    services: Vec<Service>,
    next_id: u32,
    last_apply: Duration,
    /// A commit failed: the kernel may not match `services`; rebuild next time.
    dirty: bool,
    /// Every probed target's verdict.
    verdicts: BTreeMap<Target, bool>,
    conntrack: Option<Conntrack>,
    counter: Counter,
    /// Persistence entries naming these ids go after the next commit.
    purges: Vec<(ServiceShape, Vec<u32>)>,
}

/// Ids per table before a rebuild renumbers them.
const MAX_IDS: u32 = 0xffff;

fn shape(spec: &ServiceSpec) -> ServiceShape {
    let c = &spec.config;
    ServiceShape {
        matchers: c.matchers(),
        ipv4: c.is_ipv4(),
        protocol: c.protocol,
        kind: c.lb_kind,
        scheduler: c.scheduler,
        seed: c.hash_seed.unwrap_or(0),
        slots: maglev::slot_count(spec.backends.len()) as u32,
        persistence: (c.persistence_timeout_ms > 0).then(|| Persistence {
            timeout: Duration::from_millis(c.persistence_timeout_ms),
            prefix: c
                .persistence_granularity
                .unwrap_or(if c.is_ipv4() { 32 } else { 128 }),
        }),
        keep_port: c.single_port().is_none() && spec.backends.iter().all(|b| b.port == 0),
        extras: (c.sorry_server.is_some(), c.masquerade),
    }
}

impl Balancer {
    /// A balancer that writes through `nft`. Nothing is touched until [`sync`].
    ///
    /// [`sync`]: Balancer::sync
    pub fn new(nft: Nft) -> Balancer {
        Balancer {
            nft,
            services: Vec::new(),
            next_id: 0,
            last_apply: Duration::ZERO,
            dirty: false,
            verdicts: BTreeMap::new(),
            conntrack: None,
            counter: Counter::default(),
            purges: Vec::new(),
        }
    }

    /// Makes the kernel serve `specs`. Backend health and slow start carry over
    /// for backends that stay. A change of any virtual server's shape (what it
    /// matches, protocol, kind, scheduler, slot count, persistence, sorry
    /// server, masquerade) rewrites the rules in one transaction, keeping the
    /// persistence and flow maps of virtual servers that stay; anything else is
    /// element edits.
    pub fn sync(&mut self, specs: &[ServiceSpec], now: Instant) -> Result<Commit, nft::Error> {
        if specs.is_empty() {
            self.clear()?;
            return Ok(Commit::default());
        }
        let shapes: Vec<ServiceShape> = specs.iter().map(shape).collect();
        let same_shape = !self.dirty
            && self.services.len() == specs.len()
            && self
                .services
                .iter()
                .zip(&shapes)
                .zip(specs)
                .all(|((s, sh), spec)| {
                    s.shape == *sh && s.spec.config.sorry_server == spec.config.sorry_server
                });
        if same_shape && self.next_id + 2 * count_backends(specs) < MAX_IDS {
            let mut script = Script::new();
            let mut total = Commit::default();
            for (i, spec) in specs.iter().enumerate() {
                self.adopt_backends(i, spec, &mut script, &mut total.events);
                self.services[i].spec = spec.clone();
                total.slots_changed += self.restripe(i, &mut script, now, &mut total.events);
            }
            total.commands = self.commit(script)?;
            return Ok(total);
        }
        self.reshape(specs, shapes, now)
    }

    fn reshape(
        &mut self,
        specs: &[ServiceSpec],
        shapes: Vec<ServiceShape>,
        now: Instant,
    ) -> Result<Commit, nft::Error> {
        let mut events = Vec::new();
        // Surviving backends keep their ids (persistence and flow maps name
        // them) unless ids run out.
        let renumber = self.next_id + 2 * count_backends(specs) >= MAX_IDS;
        let mut old: BTreeMap<(String, IpAddr, u16), BackendState> = BTreeMap::new();
        let mut removed_from: BTreeMap<u32, Event> = BTreeMap::new();
        let mut old_state: BTreeMap<String, (bool, Option<BackendEntry>)> = BTreeMap::new();
        let old_shapes: Vec<ServiceShape> = self.services.iter().map(|s| s.shape.clone()).collect();
        for s in self.services.drain(..) {
            let key = s.shape.key();
            old_state.insert(key.clone(), (s.quorum_up, s.sorry));
            for b in s.backends.iter().filter(|b| b.up) {
                let down = BackendState {
                    up: false,
                    ..b.clone()
                };
                removed_from.insert(b.entry.id, s.backend_event(&down));
            }
            for b in s.backends {
                old.insert((key.clone(), b.entry.address, b.entry.port), b);
            }
        }
        if renumber {
            self.next_id = 0;
        }
        let mut services = Vec::with_capacity(specs.len());
        for (spec, shape) in specs.iter().zip(shapes) {
            let key = shape.key();
            let backends = spec
                .backends
                .iter()
                .map(|b| {
                    let targets = spec.targets_of(b);
                    match old.remove(&(key.clone(), b.address, b.port)) {
                        Some(mut st) => {
                            if renumber {
                                st.entry.id = self.alloc();
                            }
                            st.reconfigure(b, targets);
                            st
                        }
                        None => {
                            let up = self.initial_health(&targets);
                            let entry = BackendEntry {
                                id: self.alloc(),
                                address: b.address,
                                port: b.port,
                            };
                            BackendState::new(entry, b, targets, up)
                        }
                    }
                })
                .collect();
            let previous = old_state.get(&key).copied();
            let sorry = spec.config.sorry_server.as_ref().map(|s| {
                let port = s.port.or(spec.config.single_port()).unwrap_or(0);
                match previous.and_then(|p| p.1) {
                    Some(e) if !renumber && e.address == s.address && e.port == port => e,
                    _ => BackendEntry {
                        id: self.alloc(),
                        address: s.address,
                        port,
                    },
                }
            });
            let mut svc = Service {
                table: vec![None; shape.slots as usize],
                shape,
                spec: spec.clone(),
                backends,
                sorry,
                resetting: Vec::new(),
                live: Vec::new(),
                gone: Vec::new(),
                commits: 0,
                quorum_up: true,
                arrivals: 0,
            };
            match previous {
                Some((quorum_up, _)) => svc.quorum_up = quorum_up,
                None => {
                    svc.quorum_up = svc.initial_quorum(now);
                    if !svc.quorum_up {
                        events.push(svc.quorum_event(svc.live_weight(now)));
                    }
                }
            }
            services.push(svc);
        }
        // Backends (or whole virtual servers) removed while up: keepalived
        // runs their notify_down.
        events.extend(
            old.values()
                .filter_map(|b| removed_from.remove(&b.entry.id)),
        );
        let mut script = Script::new();
        if self.dirty {
            ruleset::remove(&mut script);
        }
        let shapes: Vec<ServiceShape> = services.iter().map(|s| s.shape.clone()).collect();
        ruleset::reshape(
            &mut script,
            if self.dirty { &[] } else { &old_shapes },
            &shapes,
        );
        for s in &services {
            let entries: Vec<BackendEntry> =
                s.backends.iter().map(|b| b.entry).chain(s.sorry).collect();
            ruleset::add_backends(&mut script, &s.shape, &entries);
            if s.spec.config.masquerade {
                let ids: Vec<u32> = entries.iter().map(|e| e.id).collect();
                ruleset::mark_set_edit(&mut script, &s.shape, IdSet::Masquerade, true, &ids);
            }
        }
        self.services = services;
        self.retain_verdicts();
        let mut total = Commit::default();
        for i in 0..self.services.len() {
            total.slots_changed += self.restripe(i, &mut script, now, &mut events);
        }
        total.commands = self.commit(script)?;
        total.events = events;
        self.dirty = false;
        Ok(total)
    }

    fn alloc(&mut self) -> u32 {
        self.next_id += 1;
        BACKEND_BASE + self.next_id
    }

    /// A new backend's health: what its targets say (a target not probed yet
    /// starts up, or down under alpha).
    fn initial_health(&self, targets: &[Target]) -> bool {
        targets
            .iter()
            .all(|t| *self.verdicts.get(t).unwrap_or(&!t.starts_down()))
    }

    fn retain_verdicts(&mut self) {
        let wanted: BTreeSet<Target> = self.targets().into_iter().collect();
        self.verdicts.retain(|t, _| wanted.contains(t));
        for t in wanted {
            let start = !t.starts_down();
            self.verdicts.entry(t).or_insert(start);
        }
    }

    /// Brings service `i`'s backend list in line with `spec`: new backends get
    /// ids and map entries, gone ones are removed after the slots stop naming
    /// them.
    fn adopt_backends(
        &mut self,
        i: usize,
        spec: &ServiceSpec,
        script: &mut Script,
        events: &mut Vec<Event>,
    ) {
        let mut kept = Vec::with_capacity(spec.backends.len());
        let mut added = Vec::new();
        let mut old = std::mem::take(&mut self.services[i].backends);
        for b in &spec.backends {
            let targets = spec.targets_of(b);
            match old
                .iter()
                .position(|x| x.entry.address == b.address && x.entry.port == b.port)
            {
                Some(pos) => {
                    let mut st = old.remove(pos);
                    st.reconfigure(b, targets);
                    kept.push(st);
                }
                None => {
                    let up = self.initial_health(&targets);
                    let entry = BackendEntry {
                        id: self.alloc(),
                        address: b.address,
                        port: b.port,
                    };
                    added.push(entry);
                    kept.push(BackendState::new(entry, b, targets, up));
                }
            }
        }
        let svc = &mut self.services[i];
        for b in old.iter().filter(|b| b.up) {
            events.push(svc.backend_event(&BackendState {
                up: false,
                ..b.clone()
            }));
        }
        svc.backends = kept;
        ruleset::add_backends(script, &svc.shape, &added);
        if spec.config.masquerade {
            let ids: Vec<u32> = added.iter().map(|e| e.id).collect();
            ruleset::mark_set_edit(script, &svc.shape, IdSet::Masquerade, true, &ids);
        }
        svc.gone.extend(old.into_iter().map(|b| b.entry));
        self.retain_verdicts();
    }

    /// Sets the verdict of probed targets; every backend whose checks all
    /// pass is up. One commit for all of them; `None` if nothing changed.
    pub fn set_health(
        &mut self,
        changes: &BTreeMap<Target, bool>,
        now: Instant,
    ) -> Result<Option<Commit>, nft::Error> {
        for (t, up) in changes {
            if let Some(v) = self.verdicts.get_mut(t) {
                *v = *up;
            }
        }
        let mut events = Vec::new();
        let mut touched = Vec::new();
        for (i, svc) in self.services.iter_mut().enumerate() {
            let mut changed = Vec::new();
            for (k, b) in svc.backends.iter_mut().enumerate() {
                let up = b
                    .targets
                    .iter()
                    .all(|t| self.verdicts.get(t).copied().unwrap_or(true));
                if up != b.up {
                    b.up = up;
                    b.up_since = up.then_some(now);
                    b.transitions += 1;
                    changed.push(k);
                }
            }
            if !changed.is_empty() {
                touched.push(i);
                events.extend(changed.iter().map(|&k| svc.backend_event(&svc.backends[k])));
            }
        }
        if touched.is_empty() {
            return Ok(None);
        }
        let mut script = Script::new();
        let mut total = Commit::default();
        for &i in &touched {
            total.slots_changed += self.restripe(i, &mut script, now, &mut events);
        }
        total.commands = self.commit(script)?;
        total.events = events;
        Ok(Some(total))
    }

    /// Re-weighs backends in slow start; returns the commit if any slot moved.
    pub fn tick(&mut self, now: Instant) -> Result<Option<Commit>, nft::Error> {
        let ramping: Vec<usize> = (0..self.services.len())
            .filter(|&i| {
                self.services[i]
                    .backends
                    .iter()
                    .any(|b| b.up_since.is_some())
            })
            .collect();
        self.restripe_some(&ramping, now)
    }

    fn restripe_some(
        &mut self,
        which: &[usize],
        now: Instant,
    ) -> Result<Option<Commit>, nft::Error> {
        if which.is_empty() {
            return Ok(None);
        }
        let mut script = Script::new();
        let mut total = Commit::default();
        for &i in which {
            total.slots_changed += self.restripe(i, &mut script, now, &mut total.events);
        }
        total.commands = self.commit(script)?;
        Ok((total.slots_changed > 0 || !total.events.is_empty()).then_some(total))
    }

    /// Whether any virtual server schedules by least connection.
    pub fn counts_connections(&self) -> bool {
        self.services
            .iter()
            .any(|s| s.spec.config.scheduler.least_connection())
    }

    /// Counts the balanced connections in conntrack and re-deals the slots of
    /// lc and wlc virtual servers; returns the commit if any slot moved.
    pub fn sample_connections(&mut self, now: Instant) -> Result<Option<Commit>, std::io::Error> {
        if !self.counts_connections() {
            return Ok(None);
        }
        if self.conntrack.is_none() {
            self.conntrack = Some(Conntrack::open(self.nft.netns())?);
        }
        let Some(ct) = self.conntrack.as_mut() else {
            return Ok(None);
        };
        let entries = ct.dump(BACKEND_BASE, 0xffff_0000)?;
        self.deal_connections(&entries, now)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Re-deals the slots of lc and wlc virtual servers by these conntrack
    /// entries (`(mark, id, established)`); returns the commit if any slot
    /// moved. [`Balancer::sample_connections`] reads them from the kernel.
    pub fn deal_connections(
        &mut self,
        entries: &super::leastconn::Entries,
        now: Instant,
    ) -> Result<Option<Commit>, nft::Error> {
        let which: Vec<usize> = (0..self.services.len())
            .filter(|&i| self.services[i].spec.config.scheduler.least_connection())
            .collect();
        let (loads, arrivals) = self.counter.count(entries);
        let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
        for (mark, _, _) in entries {
            *counts.entry(*mark).or_insert(0) += 1;
        }
        for &i in &which {
            let svc = &mut self.services[i];
            svc.arrivals = 0;
            for b in &mut svc.backends {
                b.load = loads.get(&b.entry.id).copied().unwrap_or(0);
                b.connections = counts.get(&b.entry.id).copied().unwrap_or(0);
                svc.arrivals += arrivals.get(&b.entry.id).copied().unwrap_or(0);
            }
        }
        self.restripe_some(&which, now)
    }

    /// How long the kernel transaction of the last commit took (the rest of a
    /// commit is computing the slot table and building the script).
    pub fn last_apply(&self) -> Duration {
        self.last_apply
    }

    /// Whether any backend is still in slow start.
    pub fn ramping(&self) -> bool {
        self.services
            .iter()
            .any(|s| s.backends.iter().any(|b| b.up_since.is_some()))
    }

    /// Every distinct health-check target.
    pub fn targets(&self) -> Vec<Target> {
        let mut t: Vec<Target> = self
            .services
            .iter()
            .flat_map(|s| s.backends.iter().flat_map(|b| b.targets.iter().cloned()))
            .collect();
        t.sort();
        t.dedup();
        t
    }

    /// Checks that the kernel still has the tables with one dispatch rule per
    /// NAT matcher (someone may have flushed the ruleset) and that no commit
    /// failed; otherwise rebuilds them. Returns whether it rebuilt.
    pub fn repair(&mut self, now: Instant) -> Result<bool, nft::Error> {
        if self.services.is_empty() {
            return Ok(false);
        }
        let want = self
            .services
            .iter()
            .filter(|s| s.shape.kind == LbKind::Nat)
            .map(|s| s.shape.matchers.len())
            .sum::<usize>();
        let dr_intact =
            self.services.iter().all(|s| s.shape.kind == LbKind::Nat) || self.dr_rules_in_kernel();
        if !self.dirty && self.rules_in_kernel().ok() == Some(want) && dr_intact {
            return Ok(false);
        }
        self.dirty = true;
        let specs: Vec<ServiceSpec> = self.services.iter().map(|s| s.spec.clone()).collect();
        let shapes = specs.iter().map(shape).collect();
        self.reshape(&specs, shapes, now)?;
        Ok(true)
    }

    fn rules_in_kernel(&self) -> Result<usize, nft::Error> {
        let mut batch = nft::schema::batch::Batch::new();
        batch.add_cmd(nft::schema::schema::NfCmd::List(ruleset::services_chain()));
        let v = self.nft.query(&batch.to_nftables())?;
        Ok(v["nftables"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|o| o.get("rule").is_some()).count()))
    }

    /// Whether every direct-routing virtual server still has its chain (one
    /// query each: libnftables 1.0.6 mixes up families across list commands).
    fn dr_rules_in_kernel(&self) -> bool {
        self.services
            .iter()
            .filter_map(|s| ruleset::list_chain(&s.shape))
            .all(|list| {
                let mut batch = nft::schema::batch::Batch::new();
                batch.add_cmd(nft::schema::schema::NfCmd::List(list));
                self.nft.query(&batch.to_nftables()).is_ok()
            })
    }

    /// Removes vznet's tables.
    pub fn clear(&mut self) -> Result<(), nft::Error> {
        let mut script = Script::new();
        ruleset::remove(&mut script);
        self.nft.apply_script(&script)?;
        self.services.clear();
        self.verdicts.clear();
        self.dirty = false;
        Ok(())
    }

    /// What hooks hear at shutdown: for virtual servers with `omega`, every
    /// live backend goes down and quorum is lost.
    pub fn shutdown_events(&self, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        for s in self.services.iter().filter(|s| s.spec.config.omega) {
            for b in s.backends.iter().filter(|b| b.up) {
                out.push(s.backend_event(&BackendState {
                    up: false,
                    ..b.clone()
                }));
            }
            if s.quorum_up {
                let mut down = s.quorum_event(s.live_weight(now));
                if let Event::Quorum { up, hook, .. } = &mut down {
                    *up = false;
                    *hook = s.spec.config.quorum_down.clone();
                }
                out.push(down);
            }
        }
        out
    }

    /// Status of every virtual server; `probes` gives a target's counters.
    pub fn status(
        &self,
        now: Instant,
        probes: impl Fn(&Target) -> Option<ProbeStats>,
    ) -> Vec<ServiceStatus> {
        self.services
            .iter()
            .map(|s| {
                let mut slots: BTreeMap<u32, usize> = BTreeMap::new();
                for id in s.table.iter().flatten() {
                    *slots.entry(*id).or_default() += 1;
                }
                let (vip, port) = match s.shape.matchers.first() {
                    Some(netcfg::model::lb::Matcher::Address { vip, port }) => (*vip, *port),
                    _ => (IpAddr::from([0, 0, 0, 0]), 0),
                };
                ServiceStatus {
                    name: s.name(),
                    vip,
                    port,
                    protocol: s.spec.config.protocol.as_str().into(),
                    scheduler: s.spec.config.scheduler.as_str().into(),
                    lb_kind: match s.spec.config.lb_kind {
                        LbKind::Nat => "nat",
                        LbKind::Dr => "dr",
                    }
                    .into(),
                    persistence_timeout_ms: s.spec.config.persistence_timeout_ms,
                    slots: s.table.len(),
                    below_quorum: !s.quorum_up,
                    commits: s.commits,
                    backends: s
                        .backends
                        .iter()
                        .map(|b| {
                            let stats: Vec<ProbeStats> =
                                b.targets.iter().filter_map(&probes).collect();
                            BackendStatus {
                                address: b.entry.address,
                                port: b.entry.port,
                                mark: b.entry.id,
                                state: if b.up { "up" } else { "down" }.into(),
                                weight: b.weight,
                                effective_weight: s.effective_weight(b, now),
                                slots: slots.get(&b.entry.id).copied().unwrap_or(0),
                                transitions: b.transitions,
                                checks_ok: stats.iter().map(|p| p.ok).sum(),
                                checks_failed: stats.iter().map(|p| p.failed).sum(),
                                last_error: stats.iter().find_map(|p| p.last_error.clone()),
                                connections: b.connections,
                                probe_late_last_us: stats
                                    .iter()
                                    .map(|p| p.late_last_us)
                                    .max()
                                    .unwrap_or(0),
                                probe_late_max_us: stats
                                    .iter()
                                    .map(|p| p.late_max_us)
                                    .max()
                                    .unwrap_or(0),
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Recomputes service `i`'s slot table and id sets and appends the element
    /// edits. Returns how many slots changed.
    fn restripe(
        &mut self,
        i: usize,
        script: &mut Script,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> usize {
        let svc = &mut self.services[i];
        svc.end_ramps(now);
        events.extend(svc.update_quorum(now));
        let wanted = svc.wanted_table(now);
        let changes: Vec<(u32, Option<u32>, Option<u32>)> = svc
            .table
            .iter()
            .zip(&wanted)
            .enumerate()
            .filter(|(_, (old, new))| old != new)
            .map(|(slot, (old, new))| (slot as u32, *old, *new))
            .collect();
        ruleset::set_slots(script, &svc.shape, &changes);
        svc.table = wanted;
        // Persistence honours only backends that hold slots now.
        let live: BTreeSet<u32> = svc.table.iter().flatten().copied().collect();
        let live: Vec<u32> = live.into_iter().collect();
        let left = edit_set(script, &svc.shape, IdSet::Live, &svc.live, &live);
        svc.live = live;
        if svc.shape.persistence.is_some() && !left.is_empty() {
            self.purges.push((svc.shape.clone(), left.clone()));
        }
        let mut resets_changed = false;
        if svc.shape.kind == LbKind::Nat {
            let resetting = svc.wanted_resets();
            resets_changed = resetting != svc.resetting;
            edit_set(script, &svc.shape, IdSet::Reset, &svc.resetting, &resetting);
            svc.resetting = resetting;
        }
        if !changes.is_empty() || !left.is_empty() || resets_changed {
            svc.commits += 1;
        }
        // Entries of backends removed from the config go last, after no slot
        // names them any more.
        let gone = std::mem::take(&mut svc.gone);
        ruleset::delete_backends(script, &svc.shape, &gone);
        if svc.spec.config.masquerade {
            let ids: Vec<u32> = gone.iter().map(|e| e.id).collect();
            ruleset::mark_set_edit(script, &svc.shape, IdSet::Masquerade, false, &ids);
        }
        changes.len()
    }

    fn commit(&mut self, script: Script) -> Result<usize, nft::Error> {
        let n = script.len();
        if n > 0 {
            let t = Instant::now();
            if let Err(e) = self.nft.apply_script(&script) {
                self.dirty = true;
                self.purges.clear();
                return Err(e);
            }
            self.last_apply = t.elapsed();
        }
        for (shape, ids) in std::mem::take(&mut self.purges) {
            if let Err(e) = self.purge_persistence(&shape, &ids) {
                tracing::warn!(error = %e, "could not forget persistence entries of a backend that left");
            }
        }
        Ok(n)
    }

    /// Deletes the persistence entries that send clients to `ids`. (The packet
    /// path cannot replace a map entry's value, and an entry naming a backend
    /// that left is skipped anyway: this only tidies up.)
    fn purge_persistence(&self, shape: &ServiceShape, ids: &[u32]) -> Result<(), nft::Error> {
        let Some(list) = ruleset::list_persistence(shape) else {
            return Ok(());
        };
        let mut batch = nft::schema::batch::Batch::new();
        batch.add_cmd(nft::schema::schema::NfCmd::List(list));
        let v = self.nft.query(&batch.to_nftables())?;
        let keys = persistence_keys(&v, ids);
        if keys.is_empty() {
            return Ok(());
        }
        let mut script = Script::new();
        ruleset::forget_clients(&mut script, shape, &keys);
        // An entry may expire between the listing and the delete, which
        // fails the whole delete: the next purge catches the rest.
        self.nft.apply_script(&script)
    }
}

/// Edits a mark set from `old` to `new`; returns the ids that left.
fn edit_set(
    script: &mut Script,
    shape: &ServiceShape,
    set: IdSet,
    old: &[u32],
    new: &[u32],
) -> Vec<u32> {
    let add: Vec<u32> = new.iter().filter(|id| !old.contains(id)).copied().collect();
    let del: Vec<u32> = old.iter().filter(|id| !new.contains(id)).copied().collect();
    ruleset::mark_set_edit(script, shape, set, true, &add);
    ruleset::mark_set_edit(script, shape, set, false, &del);
    del
}

/// Keys of a listed persistence map whose value is one of `ids`.
fn persistence_keys(listing: &serde_json::Value, ids: &[u32]) -> Vec<IpAddr> {
    let Some(objects) = listing["nftables"].as_array() else {
        return Vec::new();
    };
    objects
        .iter()
        .filter_map(|o| o["map"]["elem"].as_array())
        .flatten()
        .filter_map(|e| {
            let pair = e.as_array()?;
            let value = pair.get(1)?.as_u64()?;
            if !ids.contains(&(value as u32)) {
                return None;
            }
            let key = pair.first()?;
            let text = key.as_str().or_else(|| key["elem"]["val"].as_str())?;
            text.parse().ok()
        })
        .collect()
}

fn count_backends(specs: &[ServiceSpec]) -> u32 {
    specs.iter().map(|s| s.backends.len() as u32 + 1).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_keys_are_read_from_a_listing() {
        let v = serde_json::json!({"nftables": [
            {"metainfo": {}},
            {"map": {"name": "persist_x", "elem": [
                [{"elem": {"val": "10.0.0.2", "timeout": 30, "expires": 29}}, 0x7a5f0001u32],
                [{"elem": {"val": "10.0.0.3", "timeout": 30, "expires": 29}}, 0x7a5f0002u32],
                ["10.0.0.4", 0x7a5f0001u32]
            ]}}
        ]});
        let keys = persistence_keys(&v, &[0x7a5f_0001]);
        assert_eq!(
            keys,
            vec![IpAddr::from([10, 0, 0, 2]), IpAddr::from([10, 0, 0, 4])]
        );
    }
}
