//! Named network namespaces, made with `ip netns` (fine in a test harness; the product uses
//! netlink). iproute2 takes a lock on `/run/netns` while setting up its shared mount, so
//! parallel `ip netns add` from many test processes is safe.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::command::{self, ip};

/// Where `ip netns` mounts named namespaces.
pub(crate) const RUN_NETNS: &str = "/run/netns";

/// The bind mount that keeps namespace `name` alive.
pub(crate) fn path(name: &str) -> PathBuf {
    Path::new(RUN_NETNS).join(name)
}

/// Whether namespace `name` exists.
pub(crate) fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Where `ip netns exec` finds files to bind over `/etc` for namespace `name`.
fn etc_dir(name: &str) -> PathBuf {
    Path::new("/etc/netns").join(name)
}

/// Creates namespace `name`, with its own `/etc/machine-id` for everything run
/// in it through `ip netns exec`: each lab host is a machine, so what a host
/// derives from its identity (vznet's bridge MACs) differs between hosts.
pub(crate) fn add(name: &str) -> Result<()> {
    ip(["netns", "add", name])?;
    let dir = etc_dir(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let uuid =
        std::fs::read_to_string("/proc/sys/kernel/random/uuid").context("reading a random uuid")?;
    let id: String = uuid.trim().chars().filter(|c| *c != '-').collect();
    std::fs::write(dir.join("machine-id"), format!("{id}\n"))
        .with_context(|| format!("writing {}/machine-id", dir.display()))
}

/// Names of every namespace in `/run/netns`.
pub(crate) fn list() -> Vec<String> {
    crate::marker::entries(RUN_NETNS).collect()
}

/// Kills every process inside namespace `name`, then deletes it; a missing namespace is fine.
///
/// `ip netns del` only unmounts the name: a process left inside would keep the namespace,
/// and its interfaces, alive, so the processes go first.
pub(crate) fn delete(name: &str) -> Result<()> {
    match std::fs::remove_dir_all(etc_dir(name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", etc_dir(name).display()))
        }
        _ => {}
    }
    if !exists(name) {
        return Ok(());
    }
    kill_members(name)?;
    match ip(["netns", "del", name]) {
        Err(e) if command::is_not_found(&e) => Ok(()),
        other => other.map(drop),
    }
}

fn kill_members(name: &str) -> Result<()> {
    let pids = match ip(["netns", "pids", name]) {
        Err(e) if command::is_not_found(&e) => return Ok(()),
        other => other?,
    };
    let me = std::process::id();
    for word in pids.split_whitespace() {
        let pid: i32 = word
            .parse()
            .with_context(|| format!("`ip netns pids {name}` printed {word:?}"))?;
        if u32::try_from(pid).ok() == Some(me) {
            continue;
        }
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot kill pid {pid} in netns {name}"))
            }
        }
    }
    Ok(())
}
