//! Sysctls through /proc/sys (netlink devconf drops zero values, see KERNEL-NOTES).
//! Files resolve in the netns of the thread that opens them: vznet only writes the
//! host netns's, from its own threads.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The folders that hold a link's own sysctls, below /proc/sys/net.
const LINK_TREES: [&str; 4] = ["ipv4/conf", "ipv6/conf", "ipv4/neigh", "ipv6/neigh"];

/// The value of a sysctl file, whitespace-normalised; `None` if it does not exist.
pub fn read(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(normalise(&s))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a sysctl.
pub fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value.as_bytes())
}

/// Tabs and runs of spaces become one space, so `"4096\t87380"` equals `"4096 87380"`.
pub fn normalise(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a new link's sysctls are: the `default` folders' values, keyed
/// `ipv4/conf/KEY`. Outside the first netns the neighbour `default` folders
/// hold only the table's own keys; a new link's per-link neighbour values are
/// the table's, which `lo` (never tuned by vznet) shows.
pub fn link_defaults() -> io::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for tree in LINK_TREES {
        for folder in ["default", "lo"] {
            if folder == "lo" && !tree.ends_with("neigh") {
                continue;
            }
            let dir = Path::new("/proc/sys/net").join(tree).join(folder);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries.flatten() {
                let key = format!("{tree}/{}", entry.file_name().to_string_lossy());
                if out.contains_key(&key) {
                    continue;
                }
                if let Ok(Some(v)) = read(&entry.path()) {
                    out.insert(key, v);
                }
            }
        }
    }
    Ok(out)
}

/// The writable sysctls of link `name` (host netns) whose values differ from
/// `defaults` ([`link_defaults`]): what deleting the link loses and making it
/// again must put back. Files that cannot be read (IPv6 `stable_secret`
/// unset) are left out.
pub fn of_link(
    name: &str,
    defaults: &BTreeMap<String, String>,
) -> io::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for tree in LINK_TREES {
        let dir = Path::new("/proc/sys/net").join(tree).join(name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // IPv6 off, or no neighbour table for this link.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let writable = entry
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o200 != 0);
            if !writable {
                continue;
            }
            let key = format!("{tree}/{}", entry.file_name().to_string_lossy());
            let (Ok(Some(have)), Some(fresh)) = (read(&entry.path()), defaults.get(&key)) else {
                continue;
            };
            if &have != fresh {
                out.insert(key, have);
            }
        }
    }
    Ok(out)
}

/// Writes sysctls recorded by [`of_link`] back to link `name`.
pub fn restore_link(name: &str, values: &BTreeMap<String, String>) -> io::Result<()> {
    for (key, value) in values {
        let path = link_path(name, key)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, key.clone()))?;
        write(&path, value)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// `/proc/sys/net/ipv4/conf/NAME/KEY` for `ipv4/conf/KEY`.
fn link_path(name: &str, key: &str) -> Option<PathBuf> {
    let tree = LINK_TREES.iter().find(|t| {
        key.strip_prefix(*t)
            .is_some_and(|rest| rest.starts_with('/') && !rest[1..].contains('/'))
    })?;
    let file = &key[tree.len() + 1..];
    Some(Path::new("/proc/sys/net").join(tree).join(name).join(file))
}

#[cfg(test)]
mod tests {
    #[test]
    fn recorded_keys_map_back_to_the_links_files() {
        assert_eq!(
            super::link_path("veth1.0", "ipv4/conf/proxy_arp"),
            Some("/proc/sys/net/ipv4/conf/veth1.0/proxy_arp".into())
        );
        assert_eq!(
            super::link_path("br0", "ipv6/neigh/proxy_delay"),
            Some("/proc/sys/net/ipv6/neigh/br0/proxy_delay".into())
        );
        assert_eq!(super::link_path("br0", "ipv4/route/flush"), None);
        assert_eq!(super::link_path("br0", "ipv4/conf/../x/y"), None);
    }
}

/// The `forwarding` folder (`/proc/sys/net/ipv4/conf`, `/proc/sys/net/ipv6/conf`)
/// whose every file a write to `path` also sets: the kernel copies the global
/// IPv4 forwarding switch (`net.ipv4.ip_forward`, `net.ipv4.conf.all.forwarding`)
/// and the IPv6 one (`net.ipv6.conf.all.forwarding`) to `default` and to every
/// interface. `None` for every other file.
pub fn propagates_to(path: &Path) -> Option<&'static Path> {
    let rel = path.strip_prefix("/proc/sys/net").ok()?;
    if rel == Path::new("ipv4/ip_forward") || rel == Path::new("ipv4/conf/all/forwarding") {
        Some(Path::new("/proc/sys/net/ipv4/conf"))
    } else if rel == Path::new("ipv6/conf/all/forwarding") {
        Some(Path::new("/proc/sys/net/ipv6/conf"))
    } else {
        None
    }
}

/// The files a write to `path` overwrites ([`propagates_to`]) with their values
/// now: every interface's `forwarding` and `default`'s (not `all`'s, which is
/// `path` itself or its alias). Empty for a file that does not propagate.
pub fn propagated_values(path: &Path) -> io::Result<BTreeMap<PathBuf, String>> {
    let mut out = BTreeMap::new();
    let Some(conf) = propagates_to(path) else {
        return Ok(out);
    };
    for entry in std::fs::read_dir(conf)? {
        let entry = entry?;
        if entry.file_name() == "all" {
            continue;
        }
        let file = entry.path().join("forwarding");
        // A link that goes while this reads has no file to restore.
        if let Ok(Some(v)) = read(&file) {
            out.insert(file, v);
        }
    }
    Ok(out)
}

/// The per-interface (or `default`) `forwarding` file that a write to `global`
/// overwrites, if `path` is one ([`propagates_to`]).
pub fn overwritten_by(global: &Path, path: &Path) -> bool {
    propagates_to(global).is_some_and(|conf| {
        path.strip_prefix(conf).is_ok_and(|rest| {
            let mut parts = rest.iter();
            matches!(
                (parts.next(), parts.next(), parts.next()),
                (Some(iface), Some(key), None) if iface != "all" && key == "forwarding"
            )
        })
    })
}

#[cfg(test)]
mod propagation_tests {
    use super::*;

    #[test]
    fn the_global_forwarding_switches_overwrite_every_interface_of_their_family() {
        let v4 = Path::new("/proc/sys/net/ipv4/ip_forward");
        let v4_all = Path::new("/proc/sys/net/ipv4/conf/all/forwarding");
        let v6 = Path::new("/proc/sys/net/ipv6/conf/all/forwarding");
        for g in [v4, v4_all] {
            assert!(overwritten_by(
                g,
                Path::new("/proc/sys/net/ipv4/conf/veth1.0/forwarding")
            ));
            assert!(overwritten_by(
                g,
                Path::new("/proc/sys/net/ipv4/conf/default/forwarding")
            ));
            assert!(!overwritten_by(
                g,
                Path::new("/proc/sys/net/ipv6/conf/veth1.0/forwarding")
            ));
            assert!(!overwritten_by(
                g,
                Path::new("/proc/sys/net/ipv4/conf/veth1.0/proxy_arp")
            ));
            assert!(!overwritten_by(
                g,
                Path::new("/proc/sys/net/ipv4/conf/all/forwarding")
            ));
        }
        assert!(overwritten_by(
            v6,
            Path::new("/proc/sys/net/ipv6/conf/br0/forwarding")
        ));
        assert!(!overwritten_by(
            v6,
            Path::new("/proc/sys/net/ipv4/conf/br0/forwarding")
        ));
        // Neither default's nor an interface's own switch reaches the others.
        for p in [
            "/proc/sys/net/ipv4/conf/default/forwarding",
            "/proc/sys/net/ipv6/conf/default/forwarding",
            "/proc/sys/net/ipv4/conf/br0/forwarding",
            "/proc/sys/net/ipv6/conf/all/proxy_ndp",
        ] {
            assert_eq!(propagates_to(Path::new(p)), None, "{p}");
        }
    }
}
