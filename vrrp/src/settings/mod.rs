//! What a user configures: the one definition of VRRP settings.
//!
//! vznet's `host.toml` holds them as `[[vrrp]]`, `[[vrrp_script]]` and
//! `[[vrrp_sync_group]]` tables, `vznet-vrrp --config` reads the same tables from a
//! file of their own, and `vznet-vrrp`'s flags fill in the same types. With the
//! `serde` feature they (de)serialize with exactly the keys and defaults the README
//! documents.
//!
//! [`Settings::validate`] is the only place VRRP settings are checked. Each problem
//! names the field it is about as a [`FieldPath`] from the top-level table
//! (`vrrp[0].virtual_ips[2].dev`), which netcfg turns into file:line:column. Interface
//! names are not checked here: [`Settings::interface_names`] lists the fields that hold
//! one, so the host config checks them with its own rule for every link.
//!
//! The protocol parameters a [`crate::Machine`] runs on are derived with
//! [`Instance::protocol_config`].

mod instance;
#[cfg(feature = "serde")]
mod serde_forms;
mod sync_group;
mod track;
mod validate;

use std::fmt;

pub use instance::{
    AddressScope, Instance, RouteKind, VirtualIp, VirtualRoute, VirtualRule, ROUTE_PROTOCOL,
};
pub use sync_group::SyncGroup;
pub use track::{
    ParamMatch, Script, ScriptCommand, TrackFile, TrackInterface, TrackProcess, TrackScript,
};

/// Every VRRP setting of one process (vznetd, or one `vznet-vrrp`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Settings {
    /// The virtual router instances.
    #[cfg_attr(feature = "serde", serde(default))]
    pub vrrp: Vec<Instance>,
    /// Checks that instances and sync groups track by name (`track_script`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub vrrp_script: Vec<Script>,
    /// Instances that change state together.
    #[cfg_attr(feature = "serde", serde(default))]
    pub vrrp_sync_group: Vec<SyncGroup>,
}

impl Settings {
    /// Every problem found, each naming its field. Empty: the settings can run.
    pub fn validate(&self) -> Vec<SettingsError> {
        validate::validate(self)
    }

    /// The fields that hold interface names, for the caller's interface-name rule.
    pub fn interface_names(&self) -> Vec<(FieldPath, &str)> {
        validate::interface_names(self)
    }

    /// The script called `name`.
    pub fn script(&self, name: &str) -> Option<&Script> {
        self.vrrp_script.iter().find(|s| s.name == name)
    }

    /// The sync group `instance` belongs to.
    pub fn sync_group_of(&self, instance: &str) -> Option<&SyncGroup> {
        self.vrrp_sync_group
            .iter()
            .find(|g| g.group.iter().any(|m| m == instance))
    }

    /// The instance called `name`.
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.vrrp.iter().find(|i| i.name == name)
    }
}

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A table key.
    Key(&'static str),
    /// An array index.
    Index(usize),
}

/// Where in the settings a field is: `vrrp[0].track_script[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// A path of one key.
    pub fn key(key: &'static str) -> FieldPath {
        FieldPath(vec![Segment::Key(key)])
    }

    /// This path, then `key`.
    pub fn k(&self, key: &'static str) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Segment::Key(key));
        p
    }

    /// This path, then `index`.
    pub fn i(&self, index: usize) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Segment::Index(index));
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if n == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// One problem in the settings: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SettingsError {
    pub path: FieldPath,
    pub message: String,
}

/// One object an instance tracks, its own or its sync group's, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked<'a> {
    Interface(&'a TrackInterface),
    /// A script with the weight and `reverse` in effect for this instance.
    Script {
        script: &'a Script,
        weight: i32,
        reverse: bool,
    },
    File(&'a TrackFile),
    Process(&'a TrackProcess),
}

impl Settings {
    /// What `instance` tracks: its own entries, then its sync group's. Scripts that do
    /// not exist are left out ([`Settings::validate`] reports them).
    pub fn tracked<'a>(&'a self, instance: &'a Instance) -> Vec<Tracked<'a>> {
        let group = self.sync_group_of(&instance.name);
        let mut out = Vec::new();
        let interfaces = instance
            .track
            .iter()
            .chain(group.into_iter().flat_map(|g| &g.track));
        out.extend(interfaces.map(Tracked::Interface));
        let scripts = instance
            .track_script
            .iter()
            .chain(group.into_iter().flat_map(|g| &g.track_script));
        for t in scripts {
            if let Some(script) = self.script(&t.script) {
                out.push(Tracked::Script {
                    script,
                    weight: t.weight.unwrap_or(script.weight),
                    reverse: t.reverse.unwrap_or(script.reverse),
                });
            }
        }
        let files = instance
            .track_file
            .iter()
            .chain(group.into_iter().flat_map(|g| &g.track_file));
        out.extend(files.map(Tracked::File));
        let processes = instance
            .track_process
            .iter()
            .chain(group.into_iter().flat_map(|g| &g.track_process));
        out.extend(processes.map(Tracked::Process));
        out
    }
}
