//! The balancer: the virtual servers' live state (backends, health, weights, the
//! committed slot tables) and the transactions that move the kernel from one
//! state to the next. Synchronous; the agent drives it from one task, the lab
//! benchmark drives it directly.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use netcfg::model::lb::ResolvedBackend;
use netcfg::model::{OnFailure, Scheduler, VirtualServer};
use nft::schema::batch::Batch;
use nft::Nft;
use serde::{Deserialize, Serialize};

use super::health::Target;
use super::maglev::{self, Member};
use super::ruleset::{self, BackendEntry, ServiceShape, BACKEND_BASE};

/// One virtual server with its backends resolved to addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// The config.
    pub config: VirtualServer,
    /// Its backends, in config order.
    pub backends: Vec<ResolvedBackend>,
}

#[derive(Debug, Clone)]
struct BackendState {
    entry: BackendEntry,
    weight: u32,
    target: Option<Target>,
    up: bool,
    /// When it last came up, for slow start (None: up since the start).
    up_since: Option<Instant>,
    transitions: u64,
}

#[derive(Debug)]
struct Service {
    shape: ServiceShape,
    spec: ServiceSpec,
    backends: Vec<BackendState>,
    sorry: Option<BackendEntry>,
    /// Committed: backend id per slot.
    table: Vec<Option<u32>>,
    /// Committed: ids in the reset set.
    resetting: Vec<u32>,
    /// Backends removed from the config whose map entries go at the next commit.
    gone: Vec<BackendEntry>,
    commits: u64,
}

/// What one commit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Slots rewritten.
    pub slots_changed: usize,
    /// Commands in the transaction.
    pub commands: usize,
}

/// `vznet status` for one backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendStatus {
    /// Address.
    pub address: IpAddr,
    /// Port.
    pub port: u16,
    /// `up` or `down`.
    pub state: String,
    /// Configured weight.
    pub weight: u32,
    /// Weight in use now (0 when down; ramping during slow start).
    pub effective_weight: u32,
    /// Slots it holds in the slot table.
    pub slots: usize,
    /// Up/down changes.
    pub transitions: u64,
    /// Health checks passed.
    #[serde(default)]
    pub checks_ok: u64,
    /// Health checks failed.
    #[serde(default)]
    pub checks_failed: u64,
    /// Why the last failed check failed.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// `vznet status` for one virtual server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    /// Name.
    pub name: String,
    /// VIP.
    pub vip: IpAddr,
    /// Port.
    pub port: u16,
    /// tcp or udp.
    pub protocol: String,
    /// Scheduler.
    pub scheduler: String,
    /// Slot table size.
    pub slots: usize,
    /// Whether new connections go to the sorry server (or nowhere).
    pub below_quorum: bool,
    /// Transactions committed for it.
    pub commits: u64,
    /// Its backends.
    pub backends: Vec<BackendStatus>,
}

/// The load balancer's state and its kernel table.
#[derive(Debug)]
pub struct Balancer {
    nft: Nft,
    services: Vec<Service>,
    next_id: u32,
    last_apply: Duration,
    /// A commit failed: the kernel may not match `services`; rebuild next time.
    dirty: bool,
}

/// Ids per table before a rebuild renumbers them.
const MAX_IDS: u32 = 0xffff;

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
        }
    }

    /// Makes the kernel serve `specs`. Backend health and slow-start carry over
    /// for backends that stay. A change of any virtual server's shape (VIP,
    /// port, protocol, scheduler, slot count) rebuilds the table in one
    /// transaction; anything else is element edits.
    pub fn sync(&mut self, specs: &[ServiceSpec], now: Instant) -> Result<Commit, nft::Error> {
        let shapes: Vec<ServiceShape> =
            specs.iter().enumerate().map(|(i, s)| shape(i, s)).collect();
        // Masquerade and the sorry server are set up at a rebuild, so a change
        // of either is one too.
        let same_shape = !self.dirty
            && self.services.len() == specs.len()
            && self
                .services
                .iter()
                .zip(&shapes)
                .zip(specs)
                .all(|((s, sh), spec)| {
                    s.shape == *sh
                        && s.spec.config.masquerade == spec.config.masquerade
                        && s.spec.config.sorry_server == spec.config.sorry_server
                });
        if same_shape && self.next_id + 2 * count_backends(specs) < MAX_IDS {
            let mut batch = Batch::new();
            let mut total = Commit::default();
            for (i, spec) in specs.iter().enumerate() {
                self.adopt_backends(i, spec, &mut batch, now);
                self.services[i].spec = spec.clone();
                total.slots_changed += self.restripe(i, &mut batch, now);
            }
            total.commands = self.commit(batch, specs.len())?;
            return Ok(total);
        }
        self.rebuild(specs, shapes, now)
    }

    fn rebuild(
        &mut self,
        specs: &[ServiceSpec],
        shapes: Vec<ServiceShape>,
        now: Instant,
    ) -> Result<Commit, nft::Error> {
        let old: BTreeMap<(String, IpAddr, u16), BackendState> = self
            .services
            .iter()
            .flat_map(|s| {
                let name = s.spec.config.display_name();
                s.backends
                    .iter()
                    .map(move |b| ((name.clone(), b.entry.address, b.entry.port), b.clone()))
            })
            .collect();
        let mut next_id = 0;
        let mut alloc = |address: IpAddr, port: u16| {
            next_id += 1;
            BackendEntry {
                id: BACKEND_BASE + next_id,
                address,
                port,
            }
        };
        let mut services = Vec::with_capacity(specs.len());
        for (spec, shape) in specs.iter().zip(shapes) {
            let name = spec.config.display_name();
            let backends = spec
                .backends
                .iter()
                .map(|b| {
                    let prev = old.get(&(name.clone(), b.address, b.port));
                    BackendState {
                        entry: alloc(b.address, b.port),
                        weight: b.weight,
                        target: spec
                            .config
                            .check
                            .as_ref()
                            .map(|c| Target::new(c, b.address, b.port)),
                        up: prev.is_none_or(|p| p.up),
                        up_since: prev.and_then(|p| p.up_since),
                        transitions: prev.map_or(0, |p| p.transitions),
                    }
                })
                .collect();
            let sorry = spec
                .config
                .sorry_server
                .as_ref()
                .map(|s| alloc(s.address, s.port.unwrap_or(spec.config.port)));
            services.push(Service {
                table: vec![None; shape.slots as usize],
                shape,
                spec: spec.clone(),
                backends,
                sorry,
                resetting: Vec::new(),
                gone: Vec::new(),
                commits: 0,
            });
        }
        self.next_id = next_id;
        let mut batch = Batch::new();
        ruleset::skeleton(
            &mut batch,
            &services.iter().map(|s| s.shape.clone()).collect::<Vec<_>>(),
        );
        for s in &services {
            let entries: Vec<BackendEntry> =
                s.backends.iter().map(|b| b.entry).chain(s.sorry).collect();
            ruleset::add_backends(&mut batch, &entries);
            if s.spec.config.masquerade {
                let ids: Vec<u32> = entries.iter().map(|e| e.id).collect();
                ruleset::mark_set_edit(&mut batch, "masquerade", true, &ids);
            }
        }
        self.services = services;
        let mut total = Commit::default();
        for i in 0..self.services.len() {
            total.slots_changed += self.restripe(i, &mut batch, now);
        }
        let n = self.services.len();
        total.commands = self.commit(batch, n)?;
        self.dirty = false;
        Ok(total)
    }

    /// Brings service `i`'s backend list in line with `spec`: new backends get
    /// ids and map entries, gone ones are removed after the slots stop naming
    /// them (the caller's restripe runs before the deletes take effect, since
    /// they are appended at commit).
    fn adopt_backends(
        &mut self,
        i: usize,
        spec: &ServiceSpec,
        batch: &mut Batch<'static>,
        _now: Instant,
    ) {
        let svc = &mut self.services[i];
        let mut kept = Vec::with_capacity(spec.backends.len());
        let mut added = Vec::new();
        for b in &spec.backends {
            let target = spec
                .config
                .check
                .as_ref()
                .map(|c| Target::new(c, b.address, b.port));
            match svc
                .backends
                .iter()
                .position(|x| x.entry.address == b.address && x.entry.port == b.port)
            {
                Some(pos) => {
                    let mut st = svc.backends.remove(pos);
                    st.weight = b.weight;
                    st.target = target;
                    kept.push(st);
                }
                None => {
                    self.next_id += 1;
                    let entry = BackendEntry {
                        id: BACKEND_BASE + self.next_id,
                        address: b.address,
                        port: b.port,
                    };
                    added.push(entry);
                    kept.push(BackendState {
                        entry,
                        weight: b.weight,
                        target,
                        up: true,
                        up_since: None,
                        transitions: 0,
                    });
                }
            }
        }
        let gone: Vec<BackendEntry> = svc.backends.drain(..).map(|b| b.entry).collect();
        svc.backends = kept;
        ruleset::add_backends(batch, &added);
        if spec.config.masquerade {
            let ids: Vec<u32> = added.iter().map(|e| e.id).collect();
            ruleset::mark_set_edit(batch, "masquerade", true, &ids);
        }
        if !gone.is_empty() {
            // Slots naming them are rewritten by restripe; entries go at the end.
            svc.pending_deletes(gone);
        }
    }

    /// Sets the health of every backend probed by `target`; returns the commit
    /// if anything changed.
    pub fn set_health(
        &mut self,
        target: &Target,
        up: bool,
        now: Instant,
    ) -> Result<Option<Commit>, nft::Error> {
        let mut touched = Vec::new();
        for (i, svc) in self.services.iter_mut().enumerate() {
            for b in &mut svc.backends {
                if b.target.as_ref() == Some(target) && b.up != up {
                    b.up = up;
                    b.up_since = up.then_some(now);
                    b.transitions += 1;
                    if !touched.contains(&i) {
                        touched.push(i);
                    }
                }
            }
        }
        if touched.is_empty() {
            return Ok(None);
        }
        let mut batch = Batch::new();
        let mut total = Commit::default();
        for &i in &touched {
            total.slots_changed += self.restripe(i, &mut batch, now);
        }
        total.commands = self.commit(batch, touched.len())?;
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
        if ramping.is_empty() {
            return Ok(None);
        }
        let mut batch = Batch::new();
        let mut total = Commit::default();
        for &i in &ramping {
            total.slots_changed += self.restripe(i, &mut batch, now);
        }
        total.commands = self.commit(batch, ramping.len())?;
        Ok((total.slots_changed > 0).then_some(total))
    }

    /// How long the kernel transaction of the last commit took (the rest of a
    /// commit is computing the slot table and building the document).
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
            .flat_map(|s| s.backends.iter().filter_map(|b| b.target.clone()))
            .collect();
        t.sort();
        t.dedup();
        t
    }

    /// Checks that the kernel still has the table with one rule per virtual
    /// server (someone may have flushed the ruleset) and that no commit failed;
    /// otherwise rebuilds it. Returns whether it rebuilt.
    pub fn repair(&mut self, now: Instant) -> Result<bool, nft::Error> {
        if self.services.is_empty() {
            return Ok(false);
        }
        if !self.dirty && self.rules_in_kernel().ok() == Some(self.services.len()) {
            return Ok(false);
        }
        let specs: Vec<ServiceSpec> = self.services.iter().map(|s| s.spec.clone()).collect();
        let shapes = specs.iter().enumerate().map(|(i, s)| shape(i, s)).collect();
        self.rebuild(&specs, shapes, now)?;
        Ok(true)
    }

    fn rules_in_kernel(&self) -> Result<usize, nft::Error> {
        let mut batch = Batch::new();
        batch.add_cmd(nft::schema::schema::NfCmd::List(ruleset::services_chain()));
        let v = self.nft.query(&batch.to_nftables())?;
        Ok(v["nftables"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|o| o.get("rule").is_some()).count()))
    }

    /// Removes vznet's table.
    pub fn clear(&mut self) -> Result<(), nft::Error> {
        let mut batch = Batch::new();
        ruleset::remove(&mut batch);
        self.nft.apply(&batch.to_nftables())?;
        self.services.clear();
        Ok(())
    }

    /// The health-check target of each backend of each service, in status order.
    pub fn backend_targets(&self) -> Vec<Vec<Option<Target>>> {
        self.services
            .iter()
            .map(|s| s.backends.iter().map(|b| b.target.clone()).collect())
            .collect()
    }

    /// Status of every virtual server.
    pub fn status(&self, now: Instant) -> Vec<ServiceStatus> {
        self.services
            .iter()
            .map(|s| {
                let mut slots: BTreeMap<u32, usize> = BTreeMap::new();
                for id in s.table.iter().flatten() {
                    *slots.entry(*id).or_default() += 1;
                }
                let below = s.below_quorum(now);
                ServiceStatus {
                    name: s.spec.config.display_name(),
                    vip: s.spec.config.vip,
                    port: s.spec.config.port,
                    protocol: s.spec.config.protocol.as_str().into(),
                    scheduler: scheduler_name(s.spec.config.scheduler).into(),
                    slots: s.table.len(),
                    below_quorum: below,
                    commits: s.commits,
                    backends: s
                        .backends
                        .iter()
                        .map(|b| BackendStatus {
                            address: b.entry.address,
                            port: b.entry.port,
                            state: if b.up { "up" } else { "down" }.into(),
                            weight: b.weight,
                            effective_weight: s.effective_weight(b, now),
                            slots: slots.get(&b.entry.id).copied().unwrap_or(0),
                            transitions: b.transitions,
                            checks_ok: 0,
                            checks_failed: 0,
                            last_error: None,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Recomputes service `i`'s slot table and appends the element edits.
    /// Returns how many slots changed.
    fn restripe(&mut self, i: usize, batch: &mut Batch<'static>, now: Instant) -> usize {
        let svc = &mut self.services[i];
        // Slow start ends once the ramp is over.
        let ramp = Duration::from_millis(svc.spec.config.slow_start_ms);
        for b in &mut svc.backends {
            if b.up_since
                .is_some_and(|t| now.saturating_duration_since(t) >= ramp)
            {
                b.up_since = None;
            }
        }
        let wanted: Vec<Option<u32>> = if svc.below_quorum(now) {
            vec![svc.sorry.map(|e| e.id); svc.table.len()]
        } else {
            let members: Vec<Member> = svc
                .backends
                .iter()
                .map(|b| Member {
                    address: b.entry.address,
                    port: b.entry.port,
                    weight: svc.effective_weight(b, now),
                })
                .collect();
            maglev::populate(&members, svc.table.len())
                .into_iter()
                .map(|m| m.map(|k| svc.backends[k].entry.id))
                .collect()
        };
        let changes: Vec<(u32, Option<u32>, Option<u32>)> = svc
            .table
            .iter()
            .zip(&wanted)
            .enumerate()
            .filter(|(_, (old, new))| old != new)
            .map(|(slot, (old, new))| (slot as u32, *old, *new))
            .collect();
        ruleset::set_slots(batch, svc.shape.index, &changes);
        svc.table = wanted;
        // Reset mode: down backends' connections get a TCP reset.
        let resetting: Vec<u32> = if svc.spec.config.on_backend_failure == OnFailure::Reset {
            svc.backends
                .iter()
                .filter(|b| !b.up)
                .map(|b| b.entry.id)
                .collect()
        } else {
            Vec::new()
        };
        let add: Vec<u32> = resetting
            .iter()
            .filter(|id| !svc.resetting.contains(id))
            .copied()
            .collect();
        let del: Vec<u32> = svc
            .resetting
            .iter()
            .filter(|id| !resetting.contains(id))
            .copied()
            .collect();
        ruleset::mark_set_edit(batch, "reset", true, &add);
        ruleset::mark_set_edit(batch, "reset", false, &del);
        svc.resetting = resetting;
        if !changes.is_empty() || !add.is_empty() || !del.is_empty() {
            svc.commits += 1;
        }
        // Entries of backends removed from the config go last, after no slot
        // names them any more.
        let gone = std::mem::take(&mut svc.gone);
        ruleset::delete_backends(batch, &gone);
        if svc.spec.config.masquerade {
            let ids: Vec<u32> = gone.iter().map(|e| e.id).collect();
            ruleset::mark_set_edit(batch, "masquerade", false, &ids);
        }
        changes.len()
    }

    fn commit(&mut self, batch: Batch<'static>, _services: usize) -> Result<usize, nft::Error> {
        let doc = batch.to_nftables();
        let n = doc.objects.len();
        if n > 0 {
            let t = Instant::now();
            if let Err(e) = self.nft.apply(&doc) {
                self.dirty = true;
                return Err(e);
            }
            self.last_apply = t.elapsed();
        }
        Ok(n)
    }
}

impl Service {
    fn effective_weight(&self, b: &BackendState, now: Instant) -> u32 {
        if !b.up {
            return 0;
        }
        let ramp = self.spec.config.slow_start_ms;
        match b.up_since {
            Some(t) if ramp > 0 => {
                let elapsed = now.saturating_duration_since(t).as_millis() as u64;
                if elapsed >= ramp {
                    b.weight
                } else {
                    ((u64::from(b.weight) * elapsed / ramp) as u32).max(1)
                }
            }
            _ => b.weight,
        }
    }

    fn below_quorum(&self, now: Instant) -> bool {
        let live: u32 = self
            .backends
            .iter()
            .map(|b| self.effective_weight(b, now))
            .sum();
        live < self.spec.config.quorum
    }

    fn pending_deletes(&mut self, gone: Vec<BackendEntry>) {
        self.gone.extend(gone);
    }
}

fn count_backends(specs: &[ServiceSpec]) -> u32 {
    specs.iter().map(|s| s.backends.len() as u32 + 1).sum()
}

fn shape(index: usize, spec: &ServiceSpec) -> ServiceShape {
    ServiceShape {
        index,
        vip: spec.config.vip,
        port: spec.config.port,
        protocol: spec.config.protocol,
        scheduler: spec.config.scheduler,
        seed: spec.config.hash_seed.unwrap_or(0),
        slots: maglev::slot_count(spec.backends.len()) as u32,
    }
}

/// The config spelling of a scheduler.
pub fn scheduler_name(s: Scheduler) -> &'static str {
    match s {
        Scheduler::WeightedRandom => "weighted-random",
        Scheduler::SourceHash => "source-hash",
        Scheduler::RoundRobin => "round-robin",
    }
}
