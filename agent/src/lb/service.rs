//! One virtual server's live state: its backends (health, weights, slow
//! start, connection counts), its quorum state, and what its slot table should
//! hold. Pure: [`Service::wanted_table`] and friends decide, the balancer
//! commits.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use netcfg::model::lb::ResolvedBackend;
use netcfg::model::{OnFailure, VirtualServer};
use serde::{Deserialize, Serialize};

use super::health::Target;
use super::leastconn::{self, Load};
use super::maglev::{self, Member};
use super::ruleset::{BackendEntry, ServiceShape};

/// One virtual server with its backends resolved to addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// The config.
    pub config: VirtualServer,
    /// Its backends, in config order.
    pub backends: Vec<ResolvedBackend>,
}

impl ServiceSpec {
    /// The targets probing backend `b`.
    pub fn targets_of(&self, b: &ResolvedBackend) -> Vec<Target> {
        let mut t: Vec<Target> = b
            .checks
            .iter()
            .map(|c| Target::new(c, self.config.alpha, b.address, b.port))
            .collect();
        t.sort();
        t.dedup();
        t
    }
}

/// Something hooks are told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A backend came up or went down (keepalived's `notify_up`/`notify_down`).
    Backend {
        /// Virtual server name.
        service: String,
        /// Backend address.
        address: IpAddr,
        /// Backend port.
        port: u16,
        /// Its new state.
        up: bool,
        /// The hook to run, if any.
        hook: Option<Vec<String>>,
        /// Its time limit.
        timeout: Duration,
    },
    /// A virtual server gained or lost quorum (`quorum_up`/`quorum_down`).
    Quorum {
        /// Virtual server name.
        service: String,
        /// Its new state.
        up: bool,
        /// Live weight now.
        live_weight: u32,
        /// The hook to run, if any.
        hook: Option<Vec<String>>,
        /// Its time limit.
        timeout: Duration,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct BackendState {
    pub entry: BackendEntry,
    pub weight: u32,
    pub targets: Vec<Target>,
    pub up: bool,
    /// When it last came up, for slow start (None: ramp over).
    pub up_since: Option<Instant>,
    pub transitions: u64,
    /// Conntrack load (IPVS's overhead) and entries, least-connection only.
    pub load: u64,
    pub connections: u64,
    pub notify_up: Option<Vec<String>>,
    pub notify_down: Option<Vec<String>>,
}

impl BackendState {
    pub fn new(entry: BackendEntry, b: &ResolvedBackend, targets: Vec<Target>, up: bool) -> Self {
        BackendState {
            entry,
            weight: b.weight,
            targets,
            up,
            up_since: None,
            transitions: 0,
            load: 0,
            connections: 0,
            notify_up: b.notify_up.clone(),
            notify_down: b.notify_down.clone(),
        }
    }

    /// Takes the config of `b` (weight, checks, hooks), keeping live state.
    pub fn reconfigure(&mut self, b: &ResolvedBackend, targets: Vec<Target>) {
        self.weight = b.weight;
        self.targets = targets;
        self.notify_up = b.notify_up.clone();
        self.notify_down = b.notify_down.clone();
    }
}

#[derive(Debug)]
pub(crate) struct Service {
    pub shape: ServiceShape,
    pub spec: ServiceSpec,
    pub backends: Vec<BackendState>,
    pub sorry: Option<BackendEntry>,
    /// Committed: backend id per slot.
    pub table: Vec<Option<u32>>,
    /// Committed: ids in the reset set.
    pub resetting: Vec<u32>,
    /// Committed: ids in the live set (those holding slots).
    pub live: Vec<u32>,
    /// Backends removed from the config whose map entries go at the next commit.
    pub gone: Vec<BackendEntry>,
    pub commits: u64,
    pub quorum_up: bool,
    /// New connections in the last sampling interval (least connection).
    pub arrivals: u64,
}

impl Service {
    pub fn name(&self) -> String {
        self.spec.config.display_name()
    }

    pub fn notify_timeout(&self) -> Duration {
        Duration::from_millis(self.spec.config.notify_timeout_ms)
    }

    pub fn effective_weight(&self, b: &BackendState, now: Instant) -> u32 {
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

    pub fn live_weight(&self, now: Instant) -> u32 {
        self.backends
            .iter()
            .map(|b| self.effective_weight(b, now))
            .sum()
    }

    /// The quorum state for a virtual server seen for the first time
    /// (keepalived: live weight at least quorum + hysteresis).
    pub fn initial_quorum(&self, now: Instant) -> bool {
        let c = &self.spec.config;
        self.live_weight(now) >= c.quorum.saturating_add(c.hysteresis)
    }

    /// Moves the quorum state by keepalived's rule: lost below quorum -
    /// hysteresis (or at no live weight at all), regained at quorum +
    /// hysteresis. Returns the event when it changed.
    pub fn update_quorum(&mut self, now: Instant) -> Option<Event> {
        let c = &self.spec.config;
        let live = self.live_weight(now);
        let up = if self.quorum_up {
            !(live == 0 || live < c.quorum.saturating_sub(c.hysteresis))
        } else {
            live >= c.quorum.saturating_add(c.hysteresis)
        };
        if up == self.quorum_up {
            return None;
        }
        self.quorum_up = up;
        Some(self.quorum_event(live))
    }

    pub fn quorum_event(&self, live_weight: u32) -> Event {
        let c = &self.spec.config;
        Event::Quorum {
            service: self.name(),
            up: self.quorum_up,
            live_weight,
            hook: if self.quorum_up {
                c.quorum_up.clone()
            } else {
                c.quorum_down.clone()
            },
            timeout: self.notify_timeout(),
        }
    }

    pub fn backend_event(&self, b: &BackendState) -> Event {
        Event::Backend {
            service: self.name(),
            address: b.entry.address,
            port: b.entry.port,
            up: b.up,
            hook: if b.up {
                b.notify_up.clone()
            } else {
                b.notify_down.clone()
            },
            timeout: self.notify_timeout(),
        }
    }

    /// Ends slow start for backends whose ramp is over.
    pub fn end_ramps(&mut self, now: Instant) {
        let ramp = Duration::from_millis(self.spec.config.slow_start_ms);
        for b in &mut self.backends {
            if b.up_since
                .is_some_and(|t| now.saturating_duration_since(t) >= ramp)
            {
                b.up_since = None;
            }
        }
    }

    /// The slot weight of each backend: its effective weight, or for lc and
    /// wlc its share of the next connections.
    fn slot_weights(&self, now: Instant) -> Vec<u32> {
        let weights: Vec<u32> = self
            .backends
            .iter()
            .map(|b| self.effective_weight(b, now))
            .collect();
        if !self.spec.config.scheduler.least_connection() {
            return weights;
        }
        let weighted =
            self.spec.config.scheduler == netcfg::model::Scheduler::WeightedLeastConnection;
        let loads: Vec<Load> = self
            .backends
            .iter()
            .zip(&weights)
            .map(|(b, &w)| Load {
                weight: if weighted { w } else { u32::from(w > 0) },
                load: b.load,
            })
            .collect();
        leastconn::shares(&loads, self.arrivals)
    }

    /// What the slot table should hold now: the sorry server while quorum is
    /// lost (if there is one; else the live backends keep serving, as
    /// keepalived), otherwise the Maglev table of the slot weights.
    pub fn wanted_table(&self, now: Instant) -> Vec<Option<u32>> {
        if !self.quorum_up {
            if let Some(sorry) = self.sorry {
                return vec![Some(sorry.id); self.table.len()];
            }
        }
        let members: Vec<Member> = self
            .backends
            .iter()
            .zip(self.slot_weights(now))
            .map(|(b, weight)| Member {
                address: b.entry.address,
                port: b.entry.port,
                weight,
            })
            .collect();
        maglev::populate(&members, self.table.len())
            .into_iter()
            .map(|m| m.map(|k| self.backends[k].entry.id))
            .collect()
    }

    /// Ids whose connections get reset (NAT, reset mode, down backends).
    pub fn wanted_resets(&self) -> Vec<u32> {
        if self.spec.config.on_backend_failure != OnFailure::Reset {
            return Vec::new();
        }
        self.backends
            .iter()
            .filter(|b| !b.up)
            .map(|b| b.entry.id)
            .collect()
    }
}

/// `vznet status` for one backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendStatus {
    /// Address.
    pub address: IpAddr,
    /// Port (0: the client's).
    pub port: u16,
    /// Its id: the conntrack mark of its connections (`conntrack -L -m N`).
    #[serde(default)]
    pub mark: u32,
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
    /// Health checks passed (all its checks).
    #[serde(default)]
    pub checks_ok: u64,
    /// Health checks failed.
    #[serde(default)]
    pub checks_failed: u64,
    /// Why the last failed check failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Conntrack entries of its connections (lc and wlc only).
    #[serde(default)]
    pub connections: u64,
    /// How late its last probe started against its schedule, µs.
    #[serde(default)]
    pub probe_late_last_us: u64,
    /// The most any of its probes was late, µs.
    #[serde(default)]
    pub probe_late_max_us: u64,
}

/// `vznet status` for one virtual server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    /// Name.
    pub name: String,
    /// VIP (the first member's, unspecified for marks).
    pub vip: IpAddr,
    /// Port (0 for marks).
    pub port: u16,
    /// tcp or udp.
    pub protocol: String,
    /// Scheduler.
    pub scheduler: String,
    /// `nat` or `dr`.
    #[serde(default)]
    pub lb_kind: String,
    /// Client persistence, ms (0: off).
    #[serde(default)]
    pub persistence_timeout_ms: u64,
    /// Slot table size.
    pub slots: usize,
    /// Whether quorum is lost (new connections to the sorry server, if any).
    pub below_quorum: bool,
    /// Transactions committed for it.
    pub commits: u64,
    /// Its backends.
    pub backends: Vec<BackendStatus>,
}
