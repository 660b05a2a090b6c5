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
mod ip_literal;
#[cfg(feature = "serde")]
mod serde_forms;
mod sync_group;
mod track;
mod validate;

use std::fmt;

pub use instance::{
    AddressScope, Instance, RouteKind, VirtualIp, VirtualRoute, VirtualRule, ROUTE_PROTOCOL,
};
pub use ip_literal::{parse_address, parse_network, parse_prefix};
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

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::*;

    const FULL: &str = r#"
[[vrrp]]
name = "VI_1"
interface = "eth0"
vrid = 51
version = 2
advert_interval_ms = 1000
virtual_ips = ["192.0.2.100/24", "192.0.2.101", { address = "192.0.2.102/24", dev = "eth1", label = "eth1:v", scope = "link", brd = "192.0.2.255" }]
virtual_ips_excluded = ["fd00::1/64"]
virtual_routes = [{ to = "10.1.0.0/16", via = "192.0.2.254", table = 100 }, { to = "10.2.0.0/16", type = "blackhole" }]
virtual_rules = [{ from = "10.1.0.0/16", table = 100 }]
accept = false
checksum = "without-pseudo-header"
track = ["eth1", { interface = "eth2", weight = -60, reverse = true }]
track_script = ["chk", { script = "chk2", weight = 10 }]
track_file = [{ file = "/run/prio", weight = -2 }]
track_process = [{ process = "haproxy", quorum = 2 }]
notify_stop = ["/bin/true"]

[[vrrp_script]]
name = "chk"
script = "pidof haproxy"

[[vrrp_script]]
name = "chk2"
script = ["/usr/bin/check", "--fast"]
rise = 2

[[vrrp_sync_group]]
name = "G"
group = ["VI_1"]
tracking_weight = true
"#;

    #[test]
    fn every_form_parses_and_round_trips() {
        let s: Settings = toml::from_str(FULL).expect("parses");
        let v = &s.vrrp[0];
        assert_eq!(v.version, crate::Version::V2);
        assert_eq!(
            v.virtual_ips[1].address.prefix_len(),
            32,
            "bare: host prefix"
        );
        assert_eq!(v.virtual_ips[2].dev.as_deref(), Some("eth1"));
        assert_eq!(v.virtual_ips[2].scope, Some(AddressScope::Link));
        assert_eq!(v.virtual_routes[1].kind, RouteKind::Blackhole);
        assert_eq!(v.accept, Some(false));
        assert_eq!(v.track[1].weight, -60);
        assert!(v.track[1].reverse);
        assert_eq!(v.track_script[1].weight, Some(10));
        assert_eq!(v.track_file[0].weight, -2);
        assert_eq!(v.track_process[0].quorum, 2);
        assert_eq!(
            s.vrrp_script[0].script,
            ScriptCommand::Shell("pidof haproxy".into())
        );
        assert_eq!(s.vrrp_script[1].script.argv(), ["/usr/bin/check", "--fast"]);
        assert_eq!(s.validate(), vec![]);
        let again: Settings =
            toml::from_str(&toml::to_string(&s).expect("serializes")).expect("parses again");
        assert_eq!(again, s);
    }

    #[test]
    fn wrong_values_say_what_was_expected() {
        let err = |text: &str| match toml::from_str::<Settings>(text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        let base = "[[vrrp]]\nname = \"a\"\ninterface = \"e\"\nvrid = 1\n";
        assert!(err(&format!("{base}virtual_ips = [\"10.0.0.1/40\"]"))
            .contains("prefix length \"40\" is not a number in 0..=32"));
        assert!(err(&format!("{base}virtual_ips = [\"10.0.0.010/24\"]")).contains("leading zero"));
        assert!(err(&format!("{base}virtual_ips = [7]")).contains("an address"));
        assert!(err(&format!("{base}virtual_ips = []\nversion = 4")).contains("use 2"));
        assert!(err(&format!("{base}virtual_ips = []\nbogus = 1")).contains("bogus"));
        assert!(err(&format!(
            "{base}virtual_ips = [{{ address = \"10.0.0.1\", dev = 3 }}]"
        ))
        .contains("dev"));
    }
}
