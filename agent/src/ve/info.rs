//! What `vznet ve list` and `vznet ve status` report about VEs.

use std::path::{Path, PathBuf};

use netcfg::model::{Config, VeConfig};
use serde::Serialize;

use super::cgroup::Group;
use super::runtime::{root_of, running};

/// A line of `vznet ve list`: every column it can show.
#[derive(Debug, Clone, Serialize)]
pub struct VeInfo {
    /// VE id.
    pub veid: u32,
    /// Processes in the VE (its cgroup, else its PID namespace).
    pub nproc: usize,
    /// `running` or `stopped`.
    pub status: &'static str,
    /// Its configured addresses (netifs', then venet).
    pub ip_addr: Vec<String>,
    /// Host name ("" when the file sets none).
    pub hostname: String,
    /// Host pid of its init.
    pub pid: Option<u32>,
    /// Started at boot.
    pub onboot: bool,
    /// Boot order (higher first).
    pub boot_order: Option<u32>,
    /// cgroup CPU weight.
    pub cpu_weight: Option<u32>,
    /// Memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// Root folder.
    pub root: PathBuf,
    /// Name servers for its resolv.conf.
    pub nameservers: Vec<String>,
    /// Search domains for its resolv.conf.
    pub search: Vec<String>,
}

impl VeInfo {
    /// One VE's line.
    pub fn of(ve: &VeConfig, state: &Path) -> VeInfo {
        let pid = running(state, ve.id);
        let mut ip_addr: Vec<String> = ve
            .netif
            .iter()
            .flat_map(|n| n.addresses.iter().map(|a| a.addr().to_string()))
            .collect();
        if let Some(v) = &ve.venet {
            ip_addr.extend(v.addresses.iter().map(ToString::to_string));
        }
        VeInfo {
            veid: ve.id,
            nproc: pid.map_or(0, |p| {
                Group::recorded(state, ve.id)
                    .and_then(|g| g.nproc())
                    .unwrap_or_else(|| nproc(p))
            }),
            status: if pid.is_some() { "running" } else { "stopped" },
            ip_addr,
            hostname: ve.hostname.clone().unwrap_or_default(),
            pid,
            onboot: ve.onboot,
            boot_order: ve.boot_order,
            cpu_weight: ve.cpu_weight,
            memory_limit: ve.memory_limit.map(|m| m.0),
            root: root_of(ve, state),
            nameservers: ve.nameservers.iter().map(ToString::to_string).collect(),
            search: ve.search.clone(),
        }
    }
}

/// Every VE of the config with its state.
pub fn list(config: &Config, state: &Path) -> Vec<VeInfo> {
    config
        .ves
        .iter()
        .map(|f| VeInfo::of(&f.ve, state))
        .collect()
}

/// What `vznet ve status` says of one VE, as vzctl does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Presence {
    /// VE id.
    pub veid: u32,
    /// Its file or its root exists.
    pub exists: bool,
    /// Its root is mounted (in vznet: in its own mount namespace, while it runs).
    pub mounted: bool,
    /// Its init runs.
    pub running: bool,
    /// Its init's host pid.
    pub pid: Option<u32>,
}

/// The state of VE `id` (its file may be missing or broken: `ve` is what
/// could be read of it).
pub fn presence(id: u32, ve: Option<&VeConfig>, config_dir: &Path, state: &Path) -> Presence {
    let pid = running(state, id);
    let root = ve.map_or_else(
        || state.join("private").join(id.to_string()),
        |v| root_of(v, state),
    );
    let file = config_dir.join("ve").join(format!("{id}.toml"));
    Presence {
        veid: id,
        exists: file.exists() || root.is_dir(),
        mounted: pid.is_some(),
        running: pid.is_some(),
        pid,
    }
}

/// Processes in the VE's PID namespace, for a VE without a recorded cgroup.
fn nproc(pid: u32) -> usize {
    let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) else {
        return 0;
    };
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .filter(|e| std::fs::read_link(e.path().join("ns/pid")).is_ok_and(|l| l == ns))
                .count()
        })
        .unwrap_or(0)
}
