//! Running programs inside a running VE: `exec` and `enter`.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};

use super::cgroup::Group;
use super::runtime::running;

/// Namespace and cgroup files of a running VE, opened before forking (only
/// async-signal-safe calls may run between fork and exec).
struct Joined {
    net: File,
    uts: File,
    ipc: File,
    mnt: File,
    cgroups: Vec<File>,
}

/// A command that runs in all of the VE's namespaces and cgroups: its process
/// is forked straight into the VE's PID namespace.
fn command(state: &Path, id: u32, argv: &[String]) -> Result<Command> {
    let pid = running(state, id).with_context(|| format!("VE {id} is not running"))?;
    let prog = argv.first().context("nothing to run")?;
    let open = |ns: &str| {
        File::open(format!("/proc/{pid}/ns/{ns}"))
            .with_context(|| format!("VE {id}'s {ns} namespace"))
    };
    // A PID namespace applies to the children of the thread that joins it:
    // join it here, so that the forked command is the VE's.
    let pidns = open("pid")?;
    setns(pidns.as_fd(), CloneFlags::CLONE_NEWPID).context("joining the VE's PID namespace")?;
    let cgroups = Group::recorded(state, id)
        .map(|g| g.procs_files())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .with_context(|| format!("VE {id}'s cgroup {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let j = Joined {
        net: open("net")?,
        uts: open("uts")?,
        ipc: open("ipc")?,
        mnt: open("mnt")?,
        cgroups,
    };
    let mut cmd = Command::new(prog);
    cmd.args(&argv[1..]);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for f in &j.cgroups {
                // "0" is the writer itself (v1 and v2).
                if libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (f, flag) in [
                (&j.net, CloneFlags::CLONE_NEWNET),
                (&j.uts, CloneFlags::CLONE_NEWUTS),
                (&j.ipc, CloneFlags::CLONE_NEWIPC),
                // Mount last: after it, paths are the VE's.
                (&j.mnt, CloneFlags::CLONE_NEWNS),
            ] {
                setns(f.as_fd(), flag).map_err(std::io::Error::from)?;
            }
            nix::unistd::chdir("/").map_err(std::io::Error::from)
        });
    }
    Ok(cmd)
}

/// Runs `argv` inside a running VE (all its namespaces and cgroups) and returns
/// its exit code.
pub fn exec(state: &Path, id: u32, argv: &[String]) -> Result<i32> {
    let mut cmd = command(state, id, argv)?;
    let status = cmd
        .status()
        .with_context(|| format!("running {} in VE {id}", argv[0]))?;
    Ok(status.code().unwrap_or(128))
}

/// An interactive shell in a running VE, like `vzctl enter`: `shell` (default
/// `/bin/sh`, looked up in the VE's root) with a clean environment.
pub fn enter(state: &Path, id: u32, root: &Path, shell: Option<&str>) -> Result<i32> {
    let shell = shell.unwrap_or("/bin/sh");
    let inside = root.join(shell.trim_start_matches('/'));
    anyhow::ensure!(
        shell.starts_with('/') && (inside.exists() || inside.is_symlink()),
        "VE {id} has no {shell} (looked for {})",
        inside.display()
    );
    let mut cmd = command(state, id, &[shell.to_string()])?;
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env(
            "TERM",
            std::env::var("TERM").unwrap_or_else(|_| "linux".into()),
        )
        .env("VEID", id.to_string());
    eprintln!("entering VE {id} (exit the shell to leave)");
    let status = cmd
        .status()
        .with_context(|| format!("running {shell} in VE {id}"))?;
    eprintln!("left VE {id}");
    Ok(status.code().unwrap_or(128))
}
