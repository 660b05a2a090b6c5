//! `[[vrrp_sync_group]]`: instances that are Master together or not at all.

use super::track::{TrackFile, TrackInterface, TrackProcess, TrackScript};

/// A sync group (keepalived's `vrrp_sync_group`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct SyncGroup {
    /// The group's name, in logs and its notify hooks.
    pub name: String,
    /// The member instances, by name; an instance is in one group at most.
    pub group: Vec<String>,
    /// Tracked by every member (weights allowed).
    #[cfg_attr(feature = "serde", serde(default))]
    pub track: Vec<TrackInterface>,
    /// Tracked by every member.
    #[cfg_attr(feature = "serde", serde(default))]
    pub track_script: Vec<TrackScript>,
    /// Tracked by every member.
    #[cfg_attr(feature = "serde", serde(default))]
    pub track_file: Vec<TrackFile>,
    /// Tracked by every member.
    #[cfg_attr(feature = "serde", serde(default))]
    pub track_process: Vec<TrackProcess>,
    /// Allow weighted tracking on the members themselves (keepalived's
    /// `sync_group_tracking_weight`): members whose priorities drift apart may never
    /// agree to be Master.
    #[cfg_attr(feature = "serde", serde(default))]
    pub tracking_weight: bool,
    /// Run when the group becomes Master.
    #[cfg_attr(feature = "serde", serde(default))]
    pub notify_master: Vec<String>,
    /// Run when the group becomes Backup.
    #[cfg_attr(feature = "serde", serde(default))]
    pub notify_backup: Vec<String>,
    /// Run when the group enters Fault.
    #[cfg_attr(feature = "serde", serde(default))]
    pub notify_fault: Vec<String>,
    /// Run when the group stops.
    #[cfg_attr(feature = "serde", serde(default))]
    pub notify_stop: Vec<String>,
    /// Run on every group state change, with `GROUP NAME STATE 0` appended.
    #[cfg_attr(feature = "serde", serde(default))]
    pub notify: Vec<String>,
    /// A hook still running after this long is killed.
    #[cfg_attr(feature = "serde", serde(default = "default_notify_timeout"))]
    pub notify_timeout_ms: u64,
}

fn default_notify_timeout() -> u64 {
    10_000
}

impl SyncGroup {
    /// A group of `members` with no tracking and no hooks.
    pub fn new(name: impl Into<String>, members: Vec<String>) -> SyncGroup {
        SyncGroup {
            name: name.into(),
            group: members,
            track: Vec::new(),
            track_script: Vec::new(),
            track_file: Vec::new(),
            track_process: Vec::new(),
            tracking_weight: false,
            notify_master: Vec::new(),
            notify_backup: Vec::new(),
            notify_fault: Vec::new(),
            notify_stop: Vec::new(),
            notify: Vec::new(),
            notify_timeout_ms: default_notify_timeout(),
        }
    }
}
