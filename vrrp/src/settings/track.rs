//! What an instance (or a sync group) tracks: interfaces, `[[vrrp_script]]` checks,
//! numbers in files, running processes. The arithmetic is in [`crate::track`].

use std::path::PathBuf;

/// A tracked interface: `"eth1"`, or `{ interface = "eth1", weight = -60 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInterface {
    pub interface: String,
    /// 0: down is a fault. Otherwise keepalived's rule: a positive weight is added
    /// while up, a negative one while down.
    pub weight: i32,
    /// Swap up and down in that rule (and, with weight 0, fault while up).
    pub reverse: bool,
}

impl TrackInterface {
    /// `interface` down is a fault.
    pub fn new(interface: impl Into<String>) -> TrackInterface {
        TrackInterface {
            interface: interface.into(),
            weight: 0,
            reverse: false,
        }
    }
}

/// A tracked `[[vrrp_script]]`: `"chk_web"`, or `{ script = "chk_web", weight = -20 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    /// The `[[vrrp_script]]` name.
    pub script: String,
    /// Default: the script's `weight`.
    pub weight: Option<i32>,
    /// Default: the script's `reverse`.
    pub reverse: Option<bool>,
}

impl TrackScript {
    /// Track `script` with its own weight.
    pub fn new(script: impl Into<String>) -> TrackScript {
        TrackScript {
            script: script.into(),
            weight: None,
            reverse: None,
        }
    }
}

/// A file holding a number: `{ file = "/run/vrrp/prio", weight = 1 }`.
///
/// keepalived's `track_file`: with weight 0 a non-zero number is a fault; otherwise
/// number x weight is added to the priority, and -254 or below is a fault.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct TrackFile {
    /// The file (read whenever it is written, moved or removed; missing: 0).
    pub file: PathBuf,
    /// Multiplier, -254..=254 (keepalived's default 1).
    #[cfg_attr(feature = "serde", serde(default = "one"))]
    pub weight: i32,
    /// Negate the product (with weight 0: zero is the fault).
    #[cfg_attr(feature = "serde", serde(default))]
    pub reverse: bool,
    /// Write this number into the file at start if it does not exist.
    #[cfg_attr(feature = "serde", serde(default))]
    pub init_value: Option<i64>,
    /// With `init_value`: write it even if the file exists.
    #[cfg_attr(feature = "serde", serde(default))]
    pub init_overwrite: bool,
}

fn one() -> i32 {
    1
}

impl TrackFile {
    /// `file` with keepalived's default weight 1.
    pub fn new(file: impl Into<PathBuf>) -> TrackFile {
        TrackFile {
            file: file.into(),
            weight: one(),
            reverse: false,
            init_value: None,
            init_overwrite: false,
        }
    }
}

/// Running processes: `{ process = "haproxy", weight = -50 }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct TrackProcess {
    /// The process name (`/proc/PID/comm`, at most 15 bytes), or with `full_command`
    /// or `args` the first word of its command line.
    pub process: String,
    /// Arguments that must follow (matched per `param_match`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub args: Vec<String>,
    /// How `args` match; default exact when `args` are given.
    #[cfg_attr(feature = "serde", serde(default))]
    pub param_match: Option<ParamMatch>,
    /// Match the command line's first word instead of the process name.
    #[cfg_attr(feature = "serde", serde(default))]
    pub full_command: bool,
    /// 0 (keepalived's default): no quorum is a fault; otherwise a positive weight is
    /// added with quorum, a negative one without.
    #[cfg_attr(feature = "serde", serde(default))]
    pub weight: i32,
    /// Swap the two cases.
    #[cfg_attr(feature = "serde", serde(default))]
    pub reverse: bool,
    /// Matching processes needed.
    #[cfg_attr(feature = "serde", serde(default = "one_u32"))]
    pub quorum: u32,
    /// More than this many is no quorum either; default: no limit.
    #[cfg_attr(feature = "serde", serde(default))]
    pub quorum_max: Option<u32>,
    /// Quorum must hold this long before it counts (a fork then exec).
    #[cfg_attr(feature = "serde", serde(default))]
    pub fork_delay_ms: u64,
    /// Quorum must be lost this long before it counts (a restart).
    #[cfg_attr(feature = "serde", serde(default))]
    pub terminate_delay_ms: u64,
}

fn one_u32() -> u32 {
    1
}

impl TrackProcess {
    /// Processes named `process`, unweighted, quorum 1.
    pub fn new(process: impl Into<String>) -> TrackProcess {
        TrackProcess {
            process: process.into(),
            args: Vec::new(),
            param_match: None,
            full_command: false,
            weight: 0,
            reverse: false,
            quorum: one_u32(),
            quorum_max: None,
            fork_delay_ms: 0,
            terminate_delay_ms: 0,
        }
    }

    /// How the arguments are matched; `None`: they are not looked at.
    pub fn effective_param_match(&self) -> Option<ParamMatch> {
        match self.param_match {
            Some(m) => Some(m),
            None if self.args.is_empty() => None,
            None => Some(ParamMatch::Exact),
        }
    }

    /// Whether the command line is read (else the process name).
    pub fn uses_command_line(&self) -> bool {
        self.full_command || self.effective_param_match().is_some()
    }
}

/// How a tracked process's arguments must match `args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ParamMatch {
    /// Exactly these arguments.
    Exact,
    /// These arguments first; more may follow.
    Partial,
    /// As partial, and the last one may be longer (a prefix).
    Initial,
}

/// A `[[vrrp_script]]`: a check run periodically, never blocking the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Script {
    /// The name instances track it by.
    pub name: String,
    /// `["/usr/bin/check", "arg"]` (argv, no shell) or `"pidof haproxy"` (`/bin/sh -c`).
    pub script: ScriptCommand,
    /// Time between runs.
    #[cfg_attr(feature = "serde", serde(default = "default_script_interval"))]
    pub interval_ms: u64,
    /// A run still going after this long is killed and counts as failed; default: the
    /// interval.
    #[cfg_attr(feature = "serde", serde(default))]
    pub timeout_ms: Option<u64>,
    /// -253..=253; 0: failure is a fault. Otherwise a positive weight is added while it
    /// succeeds, a negative one while it fails.
    #[cfg_attr(feature = "serde", serde(default))]
    pub weight: i32,
    /// Swap success and failure in that rule.
    #[cfg_attr(feature = "serde", serde(default))]
    pub reverse: bool,
    /// Successes in a row that make a failed script succeed.
    #[cfg_attr(feature = "serde", serde(default = "one_u32"))]
    pub rise: u32,
    /// Failures in a row that make a succeeding script fail.
    #[cfg_attr(feature = "serde", serde(default = "one_u32"))]
    pub fall: u32,
    /// Run as this user (default: the daemon's).
    #[cfg_attr(feature = "serde", serde(default))]
    pub user: Option<String>,
    /// Run with this group (default: the user's).
    #[cfg_attr(feature = "serde", serde(default))]
    pub group: Option<String>,
    /// Start as failed instead of waiting for the first result.
    #[cfg_attr(feature = "serde", serde(default))]
    pub init_fail: bool,
}

fn default_script_interval() -> u64 {
    1000
}

impl Script {
    /// A script with every default.
    pub fn new(name: impl Into<String>, script: ScriptCommand) -> Script {
        Script {
            name: name.into(),
            script,
            interval_ms: default_script_interval(),
            timeout_ms: None,
            weight: 0,
            reverse: false,
            rise: 1,
            fall: 1,
            user: None,
            group: None,
            init_fail: false,
        }
    }

    /// The timeout in effect (keepalived: the interval when unset).
    pub fn effective_timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(self.interval_ms)
    }
}

/// What a script runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScriptCommand {
    /// A program and its arguments, run directly.
    Argv(Vec<String>),
    /// A shell line, run by `/bin/sh -c`.
    Shell(String),
}

impl ScriptCommand {
    /// The argv to run.
    pub fn argv(&self) -> Vec<String> {
        match self {
            ScriptCommand::Argv(a) => a.clone(),
            ScriptCommand::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        }
    }
}
