//! Sysctl keys of the config and the /proc/sys files they name.
//!
//! A key is config input that becomes a path vznet writes as root, so it must
//! name a file under /proc/sys and nothing else: no `..`, no absolute path, no
//! empty segment, and once resolved (symlinks followed) still under /proc/sys.

use std::path::{Component, Path, PathBuf};

use super::SysctlValue;

/// Where every sysctl lives.
pub const PROC_SYS: &str = "/proc/sys";

/// `/proc/sys/...` for a global key: dotted (`net.ipv4.ip_forward`) or with
/// slashes (`net/ipv4/conf/eth0.100/forwarding`, for names with dots in them).
/// Refuses keys that would leave /proc/sys by their spelling.
pub fn global_sysctl_path(key: &str) -> Result<PathBuf, String> {
    let separator = if key.contains('/') { '/' } else { '.' };
    if key.starts_with('/') {
        return Err(format!(
            "sysctl key {key:?} is an absolute path: write it relative to /proc/sys (net.ipv4.ip_forward)"
        ));
    }
    let mut path = PathBuf::from(PROC_SYS);
    for segment in key.split(separator) {
        check_segment(key, segment)?;
        path.push(segment);
    }
    Ok(path)
}

fn check_segment(key: &str, segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err(format!("sysctl key {key:?} has an empty segment"));
    }
    if segment == "." || segment == ".." {
        return Err(format!(
            "sysctl key {key:?} contains {segment:?}: keys name files under /proc/sys"
        ));
    }
    if segment.chars().any(|c| c.is_control()) {
        return Err(format!("sysctl key {key:?} contains a control character"));
    }
    Ok(())
}

/// The per-interface file for `key` on `ifname`:
/// `KEY` or `ipv4.KEY` -> net/ipv4/conf/IF/KEY, `ipv6.KEY` -> net/ipv6/conf/IF/KEY,
/// `neigh.KEY` -> net/ipv4/neigh/IF/KEY, `ipv6.neigh.KEY` -> net/ipv6/neigh/IF/KEY.
pub fn interface_sysctl_path(key: &str, ifname: &str) -> Result<PathBuf, String> {
    let (family, rest) = match key.strip_prefix("ipv6.") {
        Some(rest) => ("ipv6", rest),
        None => ("ipv4", key.strip_prefix("ipv4.").unwrap_or(key)),
    };
    let (tree, leaf) = match rest.strip_prefix("neigh.") {
        Some(leaf) => ("neigh", leaf),
        None => ("conf", rest),
    };
    if leaf.is_empty() || leaf.contains(['/', '.']) || leaf.chars().any(|c| c.is_control()) {
        return Err(format!(
            "per-interface sysctl key {key:?} must be KEY, ipv6.KEY, neigh.KEY or ipv6.neigh.KEY (one file name, no '/' or '.')"
        ));
    }
    if ifname.is_empty() || ifname == "." || ifname == ".." || ifname.contains('/') {
        return Err(format!("{ifname:?} is not an interface name"));
    }
    Ok(Path::new(PROC_SYS)
        .join("net")
        .join(family)
        .join(tree)
        .join(ifname)
        .join(leaf))
}

/// Why the file at `path` (from one of the functions above) cannot be set, if it
/// cannot: it must exist, resolve under /proc/sys and be a file.
pub fn check_file(path: &Path) -> Result<(), String> {
    let shown = path.strip_prefix(PROC_SYS).unwrap_or(path).display();
    let real = path
        .canonicalize()
        .map_err(|_| format!("unknown sysctl (no /proc/sys/{shown})"))?;
    // Belt and braces: the spelling was checked, but a symlink may still lead out.
    if !real.starts_with(PROC_SYS) || real.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "/proc/sys/{shown} resolves to {}, outside /proc/sys",
            real.display()
        ));
    }
    if !real.is_file() {
        return Err(format!("/proc/sys/{shown} is a folder, not a sysctl"));
    }
    Ok(())
}

/// Sysctls vznet sets along with a per-interface map: where the map turns proxy
/// ARP on, the reply delay goes to 0 unless the map sets it. Linux holds back
/// proxied ARP replies to broadcast requests for a random time up to
/// `neigh.IF.proxy_delay` (0.8 s by default), so a routed VE's first packet
/// would wait up to a second for each proxied hop.
pub fn implied_by(map: &std::collections::BTreeMap<String, SysctlValue>) -> Vec<(String, String)> {
    let on = |k: &str| {
        map.get(k)
            .is_some_and(|v| !matches!(v, SysctlValue::Int(0)) && v.to_string().trim() != "0")
    };
    let mut out = Vec::new();
    if (on("proxy_arp") || on("ipv4.proxy_arp"))
        && !map.contains_key("neigh.proxy_delay")
        && !map.contains_key("ipv4.neigh.proxy_delay")
    {
        out.push(("neigh.proxy_delay".to_string(), "0".to_string()));
    }
    if on("ipv6.proxy_ndp") && !map.contains_key("ipv6.neigh.proxy_delay") {
        out.push(("ipv6.neigh.proxy_delay".to_string(), "0".to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_keys_stay_under_proc_sys() {
        assert_eq!(
            global_sysctl_path("net.ipv4.ip_forward"),
            Ok(PathBuf::from("/proc/sys/net/ipv4/ip_forward"))
        );
        assert_eq!(
            global_sysctl_path("net/ipv4/conf/eth0.100/forwarding"),
            Ok(PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding"))
        );
        for bad in [
            "../../etc/hostname",
            "net/../../../etc/hostname",
            "/etc/hostname",
            "net..ipv4",
            "net.ipv4.",
            "",
            "net//ipv4",
            "net/./ipv4/ip_forward",
            "net.ipv4.ip_forward\n",
        ] {
            assert!(global_sysctl_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn interface_keys_name_one_file_in_the_interface_folder() {
        let p = |k: &str| interface_sysctl_path(k, "br0").map(|p| p.display().to_string());
        assert_eq!(
            p("proxy_arp"),
            Ok("/proc/sys/net/ipv4/conf/br0/proxy_arp".into())
        );
        assert_eq!(
            p("ipv6.forwarding"),
            Ok("/proc/sys/net/ipv6/conf/br0/forwarding".into())
        );
        assert_eq!(
            p("neigh.proxy_delay"),
            Ok("/proc/sys/net/ipv4/neigh/br0/proxy_delay".into())
        );
        assert_eq!(
            p("ipv6.neigh.proxy_delay"),
            Ok("/proc/sys/net/ipv6/neigh/br0/proxy_delay".into())
        );
        for bad in ["../x", "ipv6.", "neigh.", "a/b", "ipv6.neigh.a.b", ".."] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
        assert!(interface_sysctl_path("forwarding", "..").is_err());
    }

    #[test]
    fn files_must_exist_be_files_and_resolve_under_proc_sys() {
        assert!(check_file(Path::new("/proc/sys/net/ipv4/ip_forward")).is_ok());
        let e = check_file(Path::new("/proc/sys/net/ipv4")).expect_err("folder");
        assert!(e.contains("is a folder"), "{e}");
        let e = check_file(Path::new("/proc/sys/net/no_such")).expect_err("missing");
        assert!(e.contains("unknown sysctl"), "{e}");
        // A path that climbs out (were the spelling check bypassed) is refused.
        let e = check_file(Path::new("/proc/sys/../../etc/hostname")).expect_err("escape");
        assert!(e.contains("outside /proc/sys"), "{e}");
    }

    #[test]
    fn proxy_arp_brings_a_zero_proxy_delay_unless_set() {
        let map = |pairs: &[(&str, SysctlValue)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert_eq!(
            implied_by(&map(&[("proxy_arp", SysctlValue::Int(1))])),
            [("neigh.proxy_delay".to_string(), "0".to_string())]
        );
        assert!(implied_by(&map(&[("proxy_arp", SysctlValue::Int(0))])).is_empty());
        assert!(implied_by(&map(&[
            ("proxy_arp", SysctlValue::Int(1)),
            ("neigh.proxy_delay", SysctlValue::Int(5))
        ]))
        .is_empty());
        assert_eq!(
            implied_by(&map(&[("ipv6.proxy_ndp", SysctlValue::Str("1".into()))])),
            [("ipv6.neigh.proxy_delay".to_string(), "0".to_string())]
        );
    }
}
