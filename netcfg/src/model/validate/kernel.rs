//! What `check` reads from this host's kernel besides sysctl files: that each
//! netns a VE file names is a network namespace and not the one vznet runs in,
//! and that the links `host.toml` uses but does not make exist. Each of these
//! would otherwise fail apply after other changes (exit 1 and a rollback).

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use super::{Checker, KeyPath};
use crate::model::{netns_path, Config};

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

/// The identity of the network namespace `ns` (a name under /run/netns or an
/// absolute path), or why it cannot be a VE's.
pub(super) fn netns(ns: &str, host: Option<&NetnsId>) -> Result<NetnsId, String> {
    if ns.is_empty() || (!ns.starts_with('/') && ns.contains('/')) || ns.contains('\0') {
        return Err(format!(
            "invalid netns {ns:?}: a name under /run/netns or an absolute path"
        ));
    }
    let path = netns_path(ns);
    // statfs first: it opens nothing, so a FIFO or a device there is never opened.
    let fs = match nix::sys::statfs::statfs(&path) {
        Ok(fs) => fs,
        Err(nix::errno::Errno::ENOENT) => {
            return Err(format!(
                "network namespace {ns:?} does not exist ({} is missing)",
                path.display()
            ))
        }
        Err(e) => return Err(format!("cannot read {}: {}", path.display(), e.desc())),
    };
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(format!(
            "{} is not a namespace (nothing is mounted on it: a stale name? `ip netns add` mounts one)",
            path.display()
        ));
    }
    let file =
        std::fs::File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: an ioctl without an argument on a file we hold open.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind != libc::CLONE_NEWNET {
        return Err(format!(
            "{} is a namespace of another kind, not a network namespace",
            path.display()
        ));
    }
    let m = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let id = NetnsId {
        dev: m.dev(),
        ino: m.ino(),
    };
    if host == Some(&id) {
        return Err(format!(
            "{} is the host's own network namespace (the one vznet runs in): a VE needs its own",
            path.display()
        ));
    }
    Ok(id)
}

/// Whether a link of this name exists in the calling thread's netns.
fn link_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// Links `host.toml` names that vznet does not make: `[[ethernet]]` NICs, bridge
/// ports, bond slaves, the lower links of VLANs and macvlans, VXLAN devices,
/// route devices and neighbour devices. `made` holds every name the config makes
/// in the host netns (VE host ends included).
pub(super) fn check_existing_links(c: &mut Checker, config: &Config, made: &BTreeSet<&str>) {
    let hs = &config.host_source;
    let host = &config.host;
    let mut wanted: Vec<(KeyPath, &str, &str)> = Vec::new();
    for (i, nic) in host.ethernet.iter().enumerate() {
        let p = KeyPath::key("ethernet").i(i).k("name");
        wanted.push((p, &nic.name, "[[ethernet]] configures a link that exists"));
    }
    for (i, br) in host.bridge.iter().enumerate() {
        for (j, port) in br.ports.iter().enumerate() {
            let p = KeyPath::key("bridge").i(i).k("ports").i(j);
            let p = match port {
                crate::model::BridgePort::Name(_) => p,
                crate::model::BridgePort::Options(_) => p.k("name"),
            };
            wanted.push((
                p,
                port.name(),
                "a bridge port vznet does not make must exist",
            ));
        }
    }
    for (i, bond) in host.bond.iter().enumerate() {
        for (j, slave) in bond.slaves.iter().enumerate() {
            let p = KeyPath::key("bond").i(i).k("slaves").i(j);
            wanted.push((p, slave, "a bond slave is an existing link or a [[dummy]]"));
        }
    }
    for (i, v) in host.vlan.iter().enumerate() {
        let p = KeyPath::key("vlan").i(i).k("link");
        wanted.push((p, &v.link, "a VLAN's lower link must exist or be made here"));
    }
    for (i, m) in host.macvlan.iter().enumerate() {
        let p = KeyPath::key("macvlan").i(i).k("link");
        wanted.push((
            p,
            &m.link,
            "a macvlan's lower link must exist or be made here",
        ));
    }
    for (i, v) in host.vxlan.iter().enumerate() {
        if let Some(dev) = &v.dev {
            let p = KeyPath::key("vxlan").i(i).k("dev");
            wanted.push((p, dev, "a VXLAN's dev must exist or be made here"));
        }
    }
    for (i, r) in host.route.iter().enumerate() {
        if let Some(dev) = &r.dev {
            let p = KeyPath::key("route").i(i).k("dev");
            wanted.push((p, dev, "a route's dev must exist or be made here"));
        }
    }
    for (i, dev) in host.venet.neighbour_devs.iter().enumerate() {
        let p = KeyPath::key("venet").k("neighbour_devs").i(i);
        wanted.push((p, dev, "a neighbour device must exist or be made here"));
    }
    for (path, name, rule) in wanted {
        let declared_nic = host.ethernet.iter().any(|e| e.name == name);
        let made_here = made.contains(name) && !declared_nic;
        // Names that are not interface names have their own error already.
        if made_here || super::check_ifname(name).is_err() || link_exists(name) {
            continue;
        }
        let why = format!("no link {name:?} in this host's network namespace ({rule})");
        c.error(hs, &path, why);
    }
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
        let e = netns("/proc/thread-self/ns/net", own.as_ref()).expect_err("own netns");
        assert!(e.contains("host's own network namespace"), "{e}");
        let e = netns("/proc/thread-self/ns/uts", own.as_ref()).expect_err("uts");
        assert!(e.contains("another kind"), "{e}");
        let e = netns("/etc/hostname", own.as_ref()).expect_err("a file");
        assert!(e.contains("is not a namespace"), "{e}");
        let e = netns("vznet-validate-no-such-ns", own.as_ref()).expect_err("missing");
        assert!(e.contains("does not exist"), "{e}");
        for bad in ["", "a/b", "a\0b"] {
            let e = netns(bad, own.as_ref()).expect_err(bad);
            assert!(e.contains("invalid netns"), "{e}");
        }
    }
}
