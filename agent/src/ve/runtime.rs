//! Start, stop, inspect and enter VEs.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use netcfg::model::{Config, VeConfig};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

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
/// netcfg wires (and keeps) it like any other.
pub fn overlay_running(config: &mut Config, state: &Path) {
    for file in &mut config.ves {
        if file.ve.netns.is_none() {
            if let Some(pid) = running(state, file.ve.id) {
                file.ve.netns = Some(format!("/proc/{pid}/ns/net"));
            }
        }
    }
}

fn ve(config: &Config, id: u32) -> Result<&VeConfig> {
    config.ve(id).with_context(|| {
        format!(
            "no VE {id}: {} is missing",
            config.dir.join("ve").join(format!("{id}.toml")).display()
        )
    })
}

/// Starts a VE and wires its network; on any failure the VE is stopped again.
/// `wire` applies the whole config (netcfg) once the VE's netns exists.
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
    let root = ve
        .root
        .clone()
        .unwrap_or_else(|| state.join("private").join(id.to_string()));
    ensure!(
        root.is_dir(),
        "VE {id} has no root at {} (vznet ve create {id} --template busybox)",
        root.display()
    );
    let init = ve.init.clone().unwrap_or_else(|| vec!["/sbin/init".into()]);
    let hostname = ve.hostname.clone().unwrap_or_else(|| format!("ve{id}"));
    std::fs::create_dir_all(state.join("run"))?;
    let pidfile = pid_file(state, id);
    let _ = std::fs::remove_file(&pidfile);
    let log = std::fs::File::create(state.join("run").join(format!("{id}.log")))?;
    let me = std::env::current_exe()?;
    let mut cmd = Command::new(me);
    cmd.arg("__ve-init")
        .arg(&root)
        .arg(&hostname)
        .arg(&pidfile)
        .args(&init);
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
        std::thread::sleep(Duration::from_millis(5));
    };
    // The starter must not leave a zombie behind; the VE lives on, reparented.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    if let Err(e) = wire() {
        let _ = stop(state, id, Duration::from_secs(5));
        return Err(e.context(format!("wiring VE {id}; the VE was stopped again")));
    }
    Ok(pid)
}

/// SIGTERM to the VE's init, SIGKILL after `timeout`. Its namespaces, and the
/// veth pairs and routes that hang on its netns, go with it.
pub fn stop(state: &Path, id: u32, timeout: Duration) -> Result<()> {
    let Some(pid) = running(state, id) else {
        let _ = std::fs::remove_file(pid_file(state, id));
        bail!("VE {id} is not running");
    };
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    while running(state, id).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if running(state, id).is_some() {
        let _ = kill(p, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while running(state, id).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
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
                nproc: pid.map_or(0, nproc),
                status: if pid.is_some() { "running" } else { "stopped" },
                ip_addr,
                hostname: ve.hostname.clone().unwrap_or_default(),
                pid,
            }
        })
        .collect()
}

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

/// Runs `argv` inside a running VE's namespaces (mount, UTS, IPC, network; its
/// children also in the VE's PID namespace) and returns its exit code.
pub fn exec(state: &Path, id: u32, argv: &[String]) -> Result<i32> {
    let pid = running(state, id).with_context(|| format!("VE {id} is not running"))?;
    let prog = argv.first().context("nothing to run")?;
    let open = |ns: &str| {
        std::fs::File::open(format!("/proc/{pid}/ns/{ns}"))
            .with_context(|| format!("VE {id}'s {ns} namespace"))
    };
    let (net, uts, ipc, pidns, mnt) = (
        open("net")?,
        open("uts")?,
        open("ipc")?,
        open("pid")?,
        open("mnt")?,
    );
    let mut cmd = Command::new(prog);
    cmd.args(&argv[1..]);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            use std::os::fd::AsFd;
            for (f, flag) in [
                (&net, CloneFlags::CLONE_NEWNET),
                (&uts, CloneFlags::CLONE_NEWUTS),
                (&ipc, CloneFlags::CLONE_NEWIPC),
                (&pidns, CloneFlags::CLONE_NEWPID),
                // Mount last: after it, /proc paths are the VE's.
                (&mnt, CloneFlags::CLONE_NEWNS),
            ] {
                setns(f.as_fd(), flag).map_err(std::io::Error::from)?;
            }
            nix::unistd::chdir("/").map_err(std::io::Error::from)
        });
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {prog} in VE {id}"))?;
    Ok(status.code().unwrap_or(128))
}
