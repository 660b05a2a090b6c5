//! The VRRP instances of `[[vrrp]]` (with `[[vrrp_script]]` and
//! `[[vrrp_sync_group]]`), run by the agent with the vrrp crate's runners. The
//! settings are the vrrp crate's own types, read from host.toml by netcfg: nothing is
//! converted here.
//!
//! Instances start and stop by unit (a sync group with its members, or one
//! instance). A reload gives a unit whose members' priorities alone changed the
//! new priorities as it runs (its state kept, as keepalived does), stops units
//! that went or changed otherwise (gracefully: priority 0) and starts new ones; a
//! unit that cannot start (an interface is not there yet) is retried at every
//! reconcile.

use std::collections::BTreeMap;

use vrrp::io::{Router, RunningUnit, Unit, UnitSettings};
use vrrp::settings::Settings;

pub use crate::status::VrrpStatus;

struct Running {
    settings: UnitSettings,
    unit: RunningUnit,
    /// Interface and VRID of each member, in the unit's order.
    members: Vec<(String, u8)>,
}

struct Failed {
    settings: UnitSettings,
    /// Name, interface, VRID, priority of each member.
    members: Vec<(String, String, u8, u8)>,
    error: String,
}

/// The agent's VRRP instances.
#[derive(Default)]
pub struct Instances {
    /// One socket per interface and family, one netlink connection, the tracking
    /// sources and the accept-mode filter for all instances; made with the first.
    router: Option<Router>,
    running: BTreeMap<Unit, Running>,
    failed: BTreeMap<Unit, Failed>,
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instances")
            .field("running", &self.running.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Instances {
    /// Makes the running units match `wanted`.
    pub async fn sync(&mut self, wanted: &Settings) {
        let units = Unit::all(wanted);
        // A new priority alone is taken by the running unit (state kept).
        for (unit, r) in self.running.iter_mut() {
            if !units.contains(unit) {
                continue;
            }
            let new = unit.settings(wanted);
            if r.settings == new {
                continue;
            }
            let Some(priorities) = r.settings.priority_changes(&new) else {
                continue;
            };
            let taken = r
                .unit
                .handles()
                .iter()
                .zip(&priorities)
                .all(|(h, p)| h.set_priority(*p));
            if taken {
                tracing::info!(?unit, ?priorities, "VRRP priority changed; state kept");
                r.settings = new;
            }
        }
        let stale: Vec<Unit> = self
            .running
            .iter()
            .filter(|(unit, r)| !units.contains(unit) || r.settings != unit.settings(wanted))
            .map(|(unit, _)| unit.clone())
            .collect();
        for unit in stale {
            if let Some(r) = self.running.remove(&unit) {
                tracing::info!(?unit, "stopping VRRP (priority 0)");
                r.unit.stop().await;
            }
        }
        self.failed.retain(|unit, _| units.contains(unit));
        for unit in units {
            if self.running.contains_key(&unit) {
                continue;
            }
            let settings = unit.settings(wanted);
            match self.start(wanted, &unit).await {
                Ok(r) => {
                    tracing::info!(?unit, "VRRP started");
                    self.failed.remove(&unit);
                    let members = settings
                        .instances()
                        .iter()
                        .map(|i| (i.interface.clone(), i.vrid))
                        .collect();
                    self.running.insert(
                        unit,
                        Running {
                            settings,
                            unit: r,
                            members,
                        },
                    );
                }
                Err(e) => {
                    if self.failed.get(&unit).is_none_or(|f| f.error != e) {
                        tracing::error!(?unit, error = %e, "VRRP cannot start; retrying at each reconcile");
                    }
                    let members = settings
                        .instances()
                        .iter()
                        .map(|i| (i.name.clone(), i.interface.clone(), i.vrid, i.priority))
                        .collect();
                    self.failed.insert(
                        unit,
                        Failed {
                            settings,
                            members,
                            error: e,
                        },
                    );
                }
            }
        }
    }

    async fn start(&mut self, settings: &Settings, unit: &Unit) -> Result<RunningUnit, String> {
        let router = match &self.router {
            Some(r) => r.clone(),
            None => {
                let r = Router::new().map_err(|e| e.to_string())?;
                self.router = Some(r.clone());
                r
            }
        };
        RunningUnit::start(&router, settings, unit)
            .await
            .map_err(|e| e.to_string())
    }

    /// True when an instance could not start (and is worth trying again).
    pub fn has_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Stops every instance gracefully (priority 0, VIPs removed).
    pub async fn shutdown(&mut self) {
        self.sync(&Settings::default()).await;
    }

    /// Status of every instance, running or failed.
    pub fn status(&self) -> Vec<VrrpStatus> {
        let mut out: Vec<VrrpStatus> = Vec::new();
        for r in self.running.values() {
            for (h, (interface, vrid)) in r.unit.handles().iter().zip(&r.members) {
                let s = h.status();
                out.push(VrrpStatus {
                    name: s.name.clone(),
                    interface: interface.clone(),
                    vrid: *vrid,
                    state: format!("{:?}", s.state),
                    priority: s.priority,
                    master: s.master_address,
                    adverts_sent: s.io.adverts_sent,
                    adverts_received: s.machine.adverts_received,
                    master_transitions: s.machine.master_transitions,
                    drops: s
                        .drops
                        .iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(r, n)| (r.name().to_string(), n))
                        .collect(),
                    tracked_down: s.tracked_down.clone(),
                    vmac_interface: s.vmac_interface.clone(),
                    sync_group: s.sync_group.clone(),
                    error: None,
                });
            }
        }
        for f in self.failed.values() {
            let group = f.settings.group_name().map(str::to_owned);
            for (name, interface, vrid, priority) in &f.members {
                out.push(VrrpStatus {
                    name: name.clone(),
                    interface: interface.clone(),
                    vrid: *vrid,
                    state: "Failed".into(),
                    priority: *priority,
                    sync_group: group.clone(),
                    error: Some(f.error.clone()),
                    ..VrrpStatus::default()
                });
            }
        }
        out
    }
}
