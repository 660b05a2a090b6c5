//! Start, stop and list VEs.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use netcfg::model::{Config, ConfigErrors, VeConfig};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use super::cgroup::Group;
use super::change::{overlay_file, Overlay};
use super::hook;

fn pid_file(state: &Path, id: u32) -> PathBuf {
    state.join("run").join(format!("{id}.pid"))
}

/// The start time (clock ticks since boot) of a pid, to tell a reused pid apart.
pub(super) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// The host pid of a running VE's PID 1.
pub fn running(state: &Path, id: u32) -> Option<u32> {
    let text = std::fs::read_to_string(pid_file(state, id)).ok()?;
    let mut it = text.split_whitespace();
    let pid: u32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    (start_time(pid) == Some(start)).then_some(pid)
}

/// Points every running VE without a `netns` at its init's netns, so that
/// netcfg wires (and keeps) it like any other, and merges the live changes of
/// `vznet ve set` (without `--save`) into it. The merged config is validated
/// again: a file edited since into conflict with a live change is an error.
pub fn overlay_running(config: &mut Config, state: &Path) -> Result<(), ConfigErrors> {
    let mut merged = false;
    let mut errors = Vec::new();
    for file in &mut config.ves {
        if file.ve.netns.is_some() {
            continue;
        }
        let Some(pid) = running(state, file.ve.id) else {
            continue;
        };
        file.ve.netns = Some(format!("/proc/{pid}/ns/net"));
        match Overlay::read(state, file.ve.id, pid) {
            Ok(Some(o)) => {
                for c in &o.change {
                    c.apply(&mut file.ve);
                }
                merged = true;
            }
            Ok(None) => {}
            Err(e) => errors.push(netcfg::model::ConfigError {
                location: netcfg::model::Location {
                    file: overlay_file(state, file.ve.id),
                    line: 1,
                    column: 1,
                },
                key: String::new(),
                message: format!("{e:#}"),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    if merged {
        config.validate().map_err(|ConfigErrors(es)| {
            ConfigErrors(
                es.into_iter()
                    .map(|mut e| {
                        e.message += " (with the live changes of `vznet ve set` merged in)";
                        e
                    })
                    .collect(),
            )
        })?;
    }
    Ok(())
}

/// The VE's file, read on its own and unvalidated: enough to find its hooks
/// and root when the rest of the config is broken (a VE must always stop).
pub fn ve_file(config_dir: &Path, id: u32) -> Option<VeConfig> {
    let text = std::fs::read_to_string(config_dir.join("ve").join(format!("{id}.toml"))).ok()?;
    toml::from_str(&text).ok()
}

/// The VE's root folder.
pub fn root_of(ve: &VeConfig, state: &Path) -> PathBuf {
    ve.root
        .clone()
        .unwrap_or_else(|| state.join("private").join(ve.id.to_string()))
}

fn ve(config: &Config, id: u32) -> Result<&VeConfig> {
    config.ve(id).with_context(|| {
        format!(
            "no VE {id}: {} is missing",
            config.dir.join("ve").join(format!("{id}.toml")).display()
        )
    })
}

/// Starts a VE and wires its network; on any failure the VE is stopped again
/// and nothing it made stays. `wire` applies the config once the VE's netns
/// exists. Order: pre-start hook (its failure aborts), cgroups and limits,
/// the init, wiring, post-start hook (its failure is reported only).
pub fn start(
    config: &Config,
    state: &Path,
    id: u32,
    wire: impl FnOnce() -> Result<()>,
) -> Result<u32> {
    let ve = ve(config, id)?;
    if let Some(pid) = running(state, id) {
        bail!("VE {id} is already running (pid {pid})");
    }
    ensure!(
        ve.netns.is_none(),
        "VE {id} names an existing netns ({}); vznet ve start runs VEs that have their own",
        ve.netns.as_deref().unwrap_or("")
    );
    let root = root_of(ve, state);
    ensure!(
        root.is_dir(),
        "VE {id} has no root at {} (vznet ve create {id} --template busybox)",
        root.display()
    );
    let init = ve.init.clone().unwrap_or_else(|| vec!["/sbin/init".into()]);
    let hostname = ve.hostname.clone().unwrap_or_else(|| format!("ve{id}"));
    let file = config.dir.join("ve").join(format!("{id}.toml"));
    let env = |state_name, pid| hook::Env {
        id,
        state: state_name,
        root: &root,
        hostname: &hostname,
        config: &file,
        pid,
    };
    hook::run(
        "pre_start",
        ve.hooks.pre_start.as_ref(),
        &env("starting", None),
    )
    .with_context(|| format!("VE {id} not started"))?;
    std::fs::create_dir_all(state.join("run"))?;
    // Live changes belong to one run.
    let _ = std::fs::remove_file(overlay_file(state, id));
    let group = Group::create(state, id, ve).with_context(|| format!("VE {id}'s cgroups"))?;
    let pid = match spawn_init(state, id, &root, &hostname, &init, &group) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = group.remove(state, id);
            return Err(e);
        }
    };
    if let Err(e) = wire() {
        let _ = stop_init(state, id, Duration::from_secs(5));
        let _ = group.remove(state, id);
        return Err(e.context(format!("wiring VE {id}; the VE was stopped again")));
    }
    if let Err(e) = hook::run(
        "post_start",
        ve.hooks.post_start.as_ref(),
        &env("running", Some(pid)),
    ) {
        eprintln!("vznet: warning: VE {id} runs, but {e:#}");
    }
    Ok(pid)
}

/// Runs `vznet __ve-init` in new namespaces and waits for its pid file.
fn spawn_init(
    state: &Path,
    id: u32,
    root: &Path,
    hostname: &str,
    init: &[String],
    group: &Group,
) -> Result<u32> {
    let pidfile = pid_file(state, id);
    let _ = std::fs::remove_file(&pidfile);
    let log = std::fs::File::create(state.join("run").join(format!("{id}.log")))?;
    let me = std::env::current_exe()?;
    let procs: Vec<String> = group
        .procs_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut cmd = Command::new(me);
    cmd.arg("__ve-init")
        .arg(root)
        .arg(hostname)
        .arg(&pidfile)
        .args(init)
        .env(super::init::CGROUP_ENV, procs.join("\n"));
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            unshare(
                CloneFlags::CLONE_NEWNS
                    | CloneFlags::CLONE_NEWUTS
                    | CloneFlags::CLONE_NEWIPC
                    | CloneFlags::CLONE_NEWNET
                    | CloneFlags::CLONE_NEWPID,
            )
            .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("starting the VE")?;
    // Generous: on a loaded host the init's exec and pivot_root can take a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        if let Some(pid) = running(state, id) {
            break pid;
        }
        if let Some(st) = child.try_wait()? {
            bail!(
                "VE {id} exited at once ({st}); see {}",
                state.join("run").join(format!("{id}.log")).display()
            );
        }
        ensure!(
            Instant::now() < deadline,
            "VE {id} did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    // The starter must not leave a zombie behind; the VE lives on, reparented.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(pid)
}

/// Stops a VE: pre-stop hook, SIGTERM to its init, SIGKILL after `timeout`,
/// its host links, cgroups and live changes removed, post-stop hook. Hook
/// failures are reported, never block the stop. `ve` is its file (for hooks),
/// if readable.
pub fn stop(
    state: &Path,
    id: u32,
    ve: Option<&VeConfig>,
    config_dir: &Path,
    timeout: Duration,
) -> Result<()> {
    let Some(pid) = running(state, id) else {
        let _ = std::fs::remove_file(pid_file(state, id));
        bail!("VE {id} is not running");
    };
    let root = ve.map_or_else(
        || state.join("private").join(id.to_string()),
        |v| root_of(v, state),
    );
    let hostname = ve
        .and_then(|v| v.hostname.clone())
        .unwrap_or_else(|| format!("ve{id}"));
    let file = config_dir.join("ve").join(format!("{id}.toml"));
    let env = |state_name, pid| hook::Env {
        id,
        state: state_name,
        root: &root,
        hostname: &hostname,
        config: &file,
        pid,
    };
    let hooks = ve.map(|v| v.hooks.clone()).unwrap_or_default();
    if let Err(e) = hook::run(
        "pre_stop",
        hooks.pre_stop.as_ref(),
        &env("stopping", Some(pid)),
    ) {
        eprintln!("vznet: warning: {e:#}; stopping VE {id} anyway");
    }
    stop_init(state, id, timeout)?;
    let mut result = Ok(());
    if let Some(g) = Group::recorded(state, id) {
        result = g.remove(state, id);
    }
    let _ = std::fs::remove_file(overlay_file(state, id));
    if let Err(e) = hook::run("post_stop", hooks.post_stop.as_ref(), &env("stopped", None)) {
        eprintln!("vznet: warning: VE {id} stopped, but {e:#}");
    }
    result
}

/// SIGTERM to the VE's init, SIGKILL after `timeout`. Its namespaces, and the
/// veth pairs and routes that hang on its netns, go with it.
fn stop_init(state: &Path, id: u32, timeout: Duration) -> Result<()> {
    let Some(pid) = running(state, id) else {
        let _ = std::fs::remove_file(pid_file(state, id));
        return remove_host_ends(id);
    };
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    while running(state, id).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if running(state, id).is_some() {
        let _ = kill(p, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while running(state, id).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    ensure!(
        running(state, id).is_none(),
        "VE {id} (pid {pid}) did not die"
    );
    let _ = std::fs::remove_file(pid_file(state, id));
    remove_host_ends(id)
}

/// The kernel destroys a dead VE's netns (and with it the veth pairs) in a
/// worker, later; delete the host ends now so that stop is done when it returns.
/// Deleting one end of a veth deletes the pair, and routes on it go with it.
fn remove_host_ends(id: u32) -> Result<()> {
    let marker = format!("{}ve{id}:", netcfg::kernel::state::ALIAS_PREFIX);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let h = netcfg::kernel::netns::handle(netcfg::kernel::netns::route_socket()?)?;
        let links = netcfg::kernel::state::read_links(&h).await?;
        for l in links
            .iter()
            .filter(|l| l.alias.as_deref().is_some_and(|a| a.starts_with(&marker)))
        {
            match h.link().del(l.index).execute().await {
                Ok(()) => {}
                // Already gone with the netns.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
                Err(e) => return Err(anyhow::anyhow!("deleting {}: {e}", l.name)),
            }
        }
        Ok(())
    })
}

/// A line of `vznet ve list`.
#[derive(Debug, Clone, Serialize)]
pub struct VeInfo {
    /// VE id.
    pub veid: u32,
    /// Processes in its PID namespace.
    pub nproc: usize,
    /// `running` or `stopped`.
    pub status: &'static str,
    /// Its configured addresses.
    pub ip_addr: Vec<String>,
    /// Host name.
    pub hostname: String,
    /// Host pid of its init.
    pub pid: Option<u32>,
}

/// Every VE of the config with its state.
pub fn list(config: &Config, state: &Path) -> Vec<VeInfo> {
    config
        .ves
        .iter()
        .map(|f| {
            let ve = &f.ve;
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
            }
        })
        .collect()
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
