//! The network namespaces VE files name: each must be a network namespace, not
//! the one vznet runs in (the host's), and no two VEs may share one. Read from
//! the kernel, as `ip netns identify` does: otherwise apply fails after other
//! changes (exit 1 and a rollback), or wires a VE's links into the host.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use crate::model::netns_path;

/// A namespace's identity: the device and inode of its nsfs file, as
/// `ip netns identify` compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct NetnsId {
    dev: u64,
    ino: u64,
}

/// The netns of the calling thread (links and netlink sockets are looked up there).
pub(super) fn own_netns() -> Option<NetnsId> {
    let m = std::fs::metadata("/proc/thread-self/ns/net").ok()?;
    Some(NetnsId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// `ioctl(NS_GET_NSTYPE)` (linux/nsfs.h: `_IO(0xb7, 0x3)`): the namespace's
/// CLONE_NEW* type.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Why a netns cannot be a VE's.
#[derive(Debug)]
pub(super) enum Refusal {
    /// Nothing at the path: the VE is not running (vznetd waits for it).
    Missing(String),
    /// Something that can never be a VE's namespace.
    Invalid(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Missing(why) | Refusal::Invalid(why) => f.write_str(why),
        }
    }
}

/// The identity of the network namespace `ns` (a name under /run/netns or an
/// absolute path), or why it cannot be a VE's.
pub(super) fn netns(ns: &str, host: Option<&NetnsId>) -> Result<NetnsId, Refusal> {
    if ns.is_empty() || (!ns.starts_with('/') && ns.contains('/')) || ns.contains('\0') {
        return Err(Refusal::Invalid(format!(
            "invalid netns {ns:?}: a name under /run/netns or an absolute path"
        )));
    }
    let path = netns_path(ns);
    // statfs first: it opens nothing, so a FIFO or a device there is never opened.
    let fs = match nix::sys::statfs::statfs(&path) {
        Ok(fs) => fs,
        Err(nix::errno::Errno::ENOENT) => {
            return Err(Refusal::Missing(format!(
                "network namespace {ns:?} does not exist ({} is missing)",
                path.display()
            )))
        }
        Err(e) => {
            return Err(Refusal::Invalid(format!(
                "cannot read {}: {}",
                path.display(),
                e.desc()
            )))
        }
    };
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(Refusal::Invalid(format!(
            "{} is not a namespace file (`ip netns add NAME` mounts one on /run/netns/NAME; /proc/PID/ns/net is a process's)",
            path.display()
        )));
    }
    let file = std::fs::File::open(&path)
        .map_err(|e| Refusal::Invalid(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: an ioctl without an argument on a file we hold open.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind != libc::CLONE_NEWNET {
        return Err(Refusal::Invalid(format!(
            "{} is a namespace of another kind, not a network namespace",
            path.display()
        )));
    }
    let m = file
        .metadata()
        .map_err(|e| Refusal::Invalid(format!("cannot read {}: {e}", path.display())))?;
    let id = NetnsId {
        dev: m.dev(),
        ino: m.ino(),
    };
    if host == Some(&id) {
        return Err(Refusal::Invalid(format!(
            "{} is the host's own network namespace (the one vznet runs in): a VE needs its own",
            path.display()
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_netns(path: &str) -> bool {
        nix::sys::statfs::statfs(path)
            .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
    }

    #[test]
    fn the_callers_own_namespace_and_files_that_are_not_namespaces_are_refused() {
        let own = own_netns();
        assert!(own.is_some());
        assert!(is_netns("/proc/thread-self/ns/net"));
        let e = netns("/proc/thread-self/ns/net", own.as_ref())
            .expect_err("own netns")
            .to_string();
        assert!(e.contains("host's own network namespace"), "{e}");
        let e = netns("/proc/thread-self/ns/uts", own.as_ref())
            .expect_err("uts")
            .to_string();
        assert!(e.contains("another kind"), "{e}");
        let e = netns("/etc/hostname", own.as_ref())
            .expect_err("a file")
            .to_string();
        assert!(e.contains("is not a namespace file"), "{e}");
        let e = netns("vznet-validate-no-such-ns", own.as_ref()).expect_err("missing");
        // Only a missing one may wait for its VE (vznetd's scope).
        assert!(
            matches!(&e, Refusal::Missing(w) if w.contains("does not exist")),
            "{e}"
        );
        for bad in ["", "a/b", "a\0b"] {
            let e = netns(bad, own.as_ref()).expect_err(bad).to_string();
            assert!(e.contains("invalid netns"), "{e}");
        }
    }
}
