//! What `vznet status` shows: vznetd's counters and the state of its units, VRRP
//! instances and virtual servers. Shared by both ends of the control protocol.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use netcfg::unit::Unit;
use serde::{Deserialize, Serialize};

/// The agent's state and counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// Agent pid.
    pub pid: u32,
    /// Config folder (canonical).
    pub config_dir: PathBuf,
    /// Inode of the agent's network namespace (clients compare it with theirs).
    pub netns_inode: u64,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Reconciles that changed something.
    pub applies: u64,
    /// Reconciles run (each a plan against the agent's view of the kernel).
    pub reconciles: u64,
    /// Full reads of every namespace (at start, periodically, after lost events).
    #[serde(default)]
    pub full_reads: u64,
    /// Ops that repaired drift (changes not made through vznet).
    pub drift_repairs: u64,
    /// Duration of the last reconcile.
    pub last_reconcile_ms: u64,
    /// Last error, if the last reconcile failed as a whole (units that fail alone
    /// are in `units`).
    pub last_error: Option<String>,
    /// Why the config on disk was rejected, while the agent keeps running the
    /// previous one; cleared by the next valid load.
    pub config_error: Option<String>,
    /// VEs with network config but no netns.
    pub unwired: Vec<u32>,
    /// Kernel events seen.
    pub events: u64,
    /// Units that could not be repaired and are retried with backoff.
    #[serde(default)]
    pub units: Vec<UnitStatus>,
    /// VRRP instances.
    #[serde(default)]
    pub vrrp: Vec<VrrpStatus>,
    /// Virtual servers and their backends.
    #[serde(default)]
    pub virtual_servers: Vec<crate::lb::ServiceStatus>,
    /// The fleet side, when the config comes from etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// A unit of reconciliation that is failing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnitStatus {
    /// Which.
    pub unit: Unit,
    /// Failed attempts in a row.
    pub failures: u32,
    /// Seconds since it started failing.
    pub failing_for_s: u64,
    /// When it is tried again, in ms from now (0: at the next reconcile).
    pub retry_in_ms: u64,
    /// The last error.
    pub error: String,
}

/// What `vznet status` shows of one VRRP instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VrrpStatus {
    /// Instance name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// VRID.
    pub vrid: u8,
    /// Initialize, Backup, Master, Fault; or `Failed` when it could not start.
    pub state: String,
    /// Effective priority.
    pub priority: u8,
    /// The current master's address.
    pub master: Option<IpAddr>,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Adverts received.
    pub adverts_received: u64,
    /// Transitions to master.
    pub master_transitions: u64,
    /// Dropped adverts by reason (non-zero only).
    pub drops: BTreeMap<String, u64>,
    /// Tracked objects that fail (interfaces, `script NAME`, `file PATH`,
    /// `process NAME`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracked_down: Vec<String>,
    /// The virtual MAC interface (`use_vmac`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmac_interface: Option<String>,
    /// The sync group the instance belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_group: Option<String>,
    /// Why it is not running.
    pub error: Option<String>,
}

/// The inode of the calling thread's netns.
pub fn netns_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino())
}

/// The fleet side of an agent run from etcd (`vznetd --etcd`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FleetStatus {
    /// This host's name in the fleet.
    pub host: String,
    /// The endpoint the watch runs on, while connected.
    pub endpoint: Option<String>,
    /// Why etcd cannot be reached now (the agent keeps running its last good
    /// config and retries with backoff).
    pub etcd_error: Option<String>,
    /// Times the watch was set up again after a failure.
    pub reconnects: u64,
    /// Full reads of the host's keys (at start, after a compaction).
    pub full_reads: u64,
    /// The etcd revision of the config running now (0: none from etcd yet).
    pub revision: i64,
    /// The latest revision of the host's keys seen.
    pub seen_revision: i64,
    /// The last revision rejected, while it is the latest.
    pub rejected: Option<Rejected>,
    /// The VEs of the config running (ids from their file names).
    #[serde(default)]
    pub ves: Vec<u32>,
    /// Keys under the host's prefix that are not config files (ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_keys: Vec<String>,
}

/// A config revision from etcd that did not validate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Rejected {
    /// Its revision.
    pub revision: i64,
    /// Every error, located (`etcd:PREFIX/hosts/NAME/FILE:LINE:COL: key: ...`).
    pub error: String,
}
