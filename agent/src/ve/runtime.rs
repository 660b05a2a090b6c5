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

use super::cgroup::Group;
use super::overlay::{overlay_file, Overlay};
use super::{antispoof, etc, firewall, hook};

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

/// What `start` needs of one VE, checked before anything is made.
struct Prepared<'a> {
    who: hook::Subject,
    ve: &'a VeConfig,
    init: Vec<String>,
}

/// Starts VEs and wires their network with one apply; on any failure every VE
/// of the call is stopped again and nothing they made stays. `wire` applies
/// the config once their netns exist. Per VE, in order: pre-start hook (a
/// failure aborts the whole call before anything is made), cgroups and limits,
/// the init; then, for all at once, the wiring; then each post-start hook (a
/// failure is reported only). The inits start side by side. Returns each
/// VE's init pid.
pub fn start(
    config: &Config,
    state: &Path,
    ids: &[u32],
    wire: impl FnOnce() -> Result<()>,
) -> Result<Vec<(u32, u32)>> {
    let mut todo = Vec::new();
    for &id in ids {
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
        todo.push(Prepared {
            who: hook::Subject {
                id,
                root,
                hostname: ve.hostname.clone().unwrap_or_else(|| format!("ve{id}")),
                file: config.dir.join("ve").join(format!("{id}.toml")),
            },
            ve,
            init: ve.init.clone().unwrap_or_else(|| vec!["/sbin/init".into()]),
        });
    }
    for p in &todo {
        hook::run(
            "pre_start",
            p.ve.hooks.pre_start.as_ref(),
            &p.who.env("starting", None),
        )
        .with_context(|| format!("VE {} not started", p.who.id))?;
    }
    // The VE's own files before its init reads them.
    for p in &todo {
        etc::write(&p.who.root, &etc::Wanted::of(p.ve))
            .with_context(|| format!("VE {} not started", p.who.id))?;
    }
    std::fs::create_dir_all(state.join("run"))?;
    super::cgroup::settle_starter(state)?;
    let mut made: Vec<(u32, Group)> = Vec::new();
    let undo = |made: &[(u32, Group)]| {
        for (id, group) in made {
            let _ = stop_inits(state, &[*id], Duration::from_secs(5));
            let _ = group.remove(state, *id);
        }
    };
    let mut children = Vec::new();
    for p in &todo {
        // Live changes belong to one run.
        let _ = std::fs::remove_file(overlay_file(state, p.who.id));
        let spawned = Group::create(state, p.who.id, p.ve)
            .with_context(|| format!("VE {}'s cgroups", p.who.id))
            .and_then(|group| {
                made.push((p.who.id, group.clone()));
                spawn_init(
                    state,
                    p.who.id,
                    &p.who.root,
                    &p.who.hostname,
                    &p.init,
                    &group,
                )
            });
        match spawned {
            Ok(child) => children.push((p.who.id, child)),
            Err(e) => {
                undo(&made);
                return Err(e);
            }
        }
    }
    let mut pids = Vec::new();
    for (id, child) in children {
        match wait_running(state, id, child) {
            Ok(pid) => pids.push((id, pid)),
            Err(e) => {
                undo(&made);
                return Err(e);
            }
        }
    }
    if let Err(e) = wire() {
        undo(&made);
        let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
        return Err(e.context(format!("wiring VE {}; stopped again", list.join(", "))));
    }
    // Filters after wiring: the ports exist, and their MACs can be read.
    let filtered = (|| -> Result<()> {
        let mut spoof = Vec::new();
        for (p, (_, pid)) in todo.iter().zip(&pids) {
            firewall::apply_ve_firewall(p.ve, *pid)?;
            spoof.push((p.who.id, antispoof::ports(p.ve, *pid)?));
        }
        antispoof::set(&spoof)
    })();
    if let Err(e) = filtered {
        undo(&made);
        let _ = antispoof::sweep();
        return Err(e.context("VE(s) stopped again"));
    }
    for (p, (_, pid)) in todo.iter().zip(&pids) {
        if let Err(e) = hook::run(
            "post_start",
            p.ve.hooks.post_start.as_ref(),
            &p.who.env("running", Some(*pid)),
        ) {
            eprintln!("vznet: warning: VE {} runs, but {e:#}", p.who.id);
        }
    }
    Ok(pids)
}

/// Runs `vznet __ve-init` in new namespaces.
fn spawn_init(
    state: &Path,
    id: u32,
    root: &Path,
    hostname: &str,
    init: &[String],
    group: &Group,
) -> Result<std::process::Child> {
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
    cmd.spawn().with_context(|| format!("starting VE {id}"))
}

/// Waits for a spawned init's pid file.
fn wait_running(state: &Path, id: u32, mut child: std::process::Child) -> Result<u32> {
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

/// Stops VEs, each given with its file (for hooks) if readable: pre-stop
/// hooks, SIGTERM to every init, SIGKILL after `timeout`, their host links,
/// cgroups and live changes removed, post-stop hooks. Hook failures are
/// reported and never block a stop. VEs that are not running are an error
/// after the others have stopped.
pub fn stop(
    state: &Path,
    ves: &[(u32, Option<VeConfig>)],
    config_dir: &Path,
    timeout: Duration,
) -> Result<()> {
    struct Stopping {
        who: hook::Subject,
        pid: u32,
        hooks: netcfg::model::Hooks,
    }
    let mut errors = Vec::new();
    let mut todo = Vec::new();
    for (id, ve) in ves {
        let id = *id;
        let Some(pid) = running(state, id) else {
            let _ = std::fs::remove_file(pid_file(state, id));
            errors.push(format!("VE {id} is not running"));
            continue;
        };
        let v = ve.as_ref();
        todo.push(Stopping {
            who: hook::Subject {
                id,
                root: v.map_or_else(
                    || state.join("private").join(id.to_string()),
                    |v| root_of(v, state),
                ),
                hostname: v
                    .and_then(|v| v.hostname.clone())
                    .unwrap_or_else(|| format!("ve{id}")),
                file: config_dir.join("ve").join(format!("{id}.toml")),
            },
            pid,
            hooks: v.map(|v| v.hooks.clone()).unwrap_or_default(),
        });
    }
    for s in &todo {
        if let Err(e) = hook::run(
            "pre_stop",
            s.hooks.pre_stop.as_ref(),
            &s.who.env("stopping", Some(s.pid)),
        ) {
            eprintln!("vznet: warning: {e:#}; stopping VE {} anyway", s.who.id);
        }
    }
    let ids: Vec<u32> = todo.iter().map(|s| s.who.id).collect();
    if let Err(e) = stop_inits(state, &ids, timeout) {
        errors.push(format!("{e:#}"));
    }
    if let Err(e) = antispoof::sweep() {
        errors.push(format!("{e:#}"));
    }
    for s in &todo {
        if let Some(g) = Group::recorded(state, s.who.id) {
            if let Err(e) = g.remove(state, s.who.id) {
                errors.push(format!("VE {}: {e:#}", s.who.id));
            }
        }
        let _ = std::fs::remove_file(overlay_file(state, s.who.id));
        if let Err(e) = hook::run(
            "post_stop",
            s.hooks.post_stop.as_ref(),
            &s.who.env("stopped", None),
        ) {
            eprintln!("vznet: warning: VE {} stopped, but {e:#}", s.who.id);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

/// SIGTERM to the VEs' inits, SIGKILL after `timeout`. Their namespaces, and
/// the veth pairs and routes that hang on their netns, go with them.
fn stop_inits(state: &Path, ids: &[u32], timeout: Duration) -> Result<()> {
    let pids: Vec<(u32, u32)> = ids
        .iter()
        .filter_map(|&id| running(state, id).map(|p| (id, p)))
        .collect();
    for (_, pid) in &pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
    }
    let alive = || -> Vec<(u32, u32)> {
        pids.iter()
            .copied()
            .filter(|(id, _)| running(state, *id).is_some())
            .collect()
    };
    let deadline = Instant::now() + timeout;
    while !alive().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let left = alive();
    if !left.is_empty() {
        for (_, pid) in &left {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !alive().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let left = alive();
    ensure!(
        left.is_empty(),
        "VE(s) did not die: {}",
        left.iter()
            .map(|(id, pid)| format!("{id} (pid {pid})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for id in ids {
        let _ = std::fs::remove_file(pid_file(state, *id));
    }
    remove_host_ends(ids)
}

/// The kernel destroys a dead VE's netns (and with it the veth pairs) in a
/// worker, later; delete the host ends now so that stop is done when it
/// returns (netcfg owns the links and tells its own by their alias).
fn remove_host_ends(ids: &[u32]) -> Result<()> {
    netcfg::kernel::ve::delete_host_links(ids)?;
    Ok(())
}
