//! What each agent publishes at `PREFIX/status/NAME` (JSON, under its lease) and
//! `vznet fleet status` reads: the config revision applied, errors, drift
//! repairs, VRRP instances and states, virtual servers with backend health, VEs.
//! Only state is in it, no clock, so an idle host writes nothing.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::status::{FleetStatus, Rejected, Status};

/// A host's status in etcd.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// Host name.
    pub host: String,
    /// Agent pid.
    pub pid: u32,
    /// The etcd revision of the config running.
    pub revision: i64,
    /// The latest revision rejected, with its errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Rejected>,
    /// Units that fail and are retried, and the last error.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Ops that repaired drift since the agent started.
    pub drift_repairs: u64,
    /// VRRP instances.
    #[serde(default)]
    pub vrrp: Vec<VrrpReport>,
    /// Virtual servers.
    #[serde(default)]
    pub virtual_servers: Vec<VirtualServerReport>,
    /// VEs of the config.
    #[serde(default)]
    pub ves: Vec<VeReport>,
}

/// One VRRP instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VrrpReport {
    /// Name.
    pub name: String,
    /// VRID.
    pub vrid: u8,
    /// Interface.
    pub interface: String,
    /// Initialize, Backup, Master, Fault, Failed.
    pub state: String,
    /// Effective priority.
    pub priority: u8,
}

/// One virtual server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VirtualServerReport {
    /// Name.
    pub name: String,
    /// `ADDR:PORT/PROTO`.
    pub service: String,
    /// `ADDR:PORT STATE` per backend.
    pub backends: Vec<String>,
}

/// One VE.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VeReport {
    /// Id (from its file name).
    pub id: u32,
    /// `running` (its init runs), `wired` (its netns is wired) or `unwired`.
    pub state: String,
}

impl HostReport {
    /// The report of an agent's status.
    pub fn of(status: &Status, fleet: &FleetStatus, ves: &[u32], state_dir: &Path) -> HostReport {
        let mut errors: Vec<String> = status
            .units
            .iter()
            .map(|u| format!("{}: {}", u.unit, u.error))
            .collect();
        if let Some(e) = &status.last_error {
            if !errors.iter().any(|x| x == e) {
                errors.push(e.clone());
            }
        }
        HostReport {
            host: fleet.host.clone(),
            pid: status.pid,
            revision: fleet.revision,
            rejected: fleet.rejected.clone(),
            errors,
            drift_repairs: status.drift_repairs,
            vrrp: status
                .vrrp
                .iter()
                .map(|v| VrrpReport {
                    name: v.name.clone(),
                    vrid: v.vrid,
                    interface: v.interface.clone(),
                    state: v.state.clone(),
                    priority: v.priority,
                })
                .collect(),
            virtual_servers: status
                .virtual_servers
                .iter()
                .map(|vs| VirtualServerReport {
                    name: vs.name.clone(),
                    service: format!(
                        "{}/{}",
                        std::net::SocketAddr::new(vs.vip, vs.port),
                        vs.protocol
                    ),
                    backends: vs
                        .backends
                        .iter()
                        .map(|b| {
                            format!(
                                "{} {}",
                                std::net::SocketAddr::new(b.address, b.port),
                                b.state
                            )
                        })
                        .collect(),
                })
                .collect(),
            ves: ves
                .iter()
                .map(|&id| VeReport {
                    id,
                    state: if status.unwired.contains(&id) {
                        "unwired"
                    } else if crate::ve::running(state_dir, id).is_some() {
                        "running"
                    } else {
                        "wired"
                    }
                    .into(),
                })
                .collect(),
        }
    }

    /// VRRP instances this host is Master of.
    pub fn masters(&self) -> Vec<&str> {
        self.vrrp
            .iter()
            .filter(|v| v.state == "Master")
            .map(|v| v.name.as_str())
            .collect()
    }
}

/// The VE ids of a config's files (`ve/ID.toml`).
pub fn ve_ids(files: &super::Files) -> Vec<u32> {
    files
        .keys()
        .filter_map(|rel| rel.strip_prefix("ve/")?.strip_suffix(".toml")?.parse().ok())
        .collect()
}
