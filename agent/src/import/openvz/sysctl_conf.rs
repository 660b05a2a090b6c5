//! /etc/sysctl.conf and /etc/sysctl.d/*.conf: `net.*` keys go to host.toml,
//! per-interface ones (`net.ipv4.conf.br104.proxy_arp`) into that interface's
//! own `sysctl` map when the network files declare it; other keys stay with
//! the host's sysctl files and are reported.

use netcfg::model::SysctlValue;

use super::netdef::{At, HostNet, IfKind, Iface};
use super::source::Root;
use crate::import::report::{Kind, Report};

/// Reads the files systemd-sysctl reads from /etc, in its order.
pub fn read(root: &Root, net: &mut HostNet, report: &mut Report) {
    let mut files: Vec<String> = root
        .list("etc/sysctl.d")
        .into_iter()
        .filter(|n| n.ends_with(".conf"))
        .map(|n| format!("etc/sysctl.d/{n}"))
        .collect();
    files.push("etc/sysctl.conf".into());
    for rel in files {
        let Some((text, file)) = root.read(&rel, report) else {
            continue;
        };
        for (n, raw) in text.lines().enumerate() {
            let line = u32::try_from(n + 1).unwrap_or(u32::MAX);
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                continue;
            }
            let at = At {
                file: file.clone(),
                line,
            };
            match t.split_once('=') {
                Some((k, v)) => {
                    let key = k.trim().trim_start_matches('-');
                    setting(key, v.trim(), at, net, report);
                }
                None => report.add(&file, line, t, Kind::NotCarried, "not KEY = VALUE"),
            }
        }
    }
}

/// The key's segments: dots separate, unless the key uses slashes (then dots
/// are part of names, as in `net/ipv4/conf/bond0.136/forwarding`); in the dotted
/// form a `/` stands for a dot in a name (`net.ipv4.conf.bond0/136.forwarding`).
fn segments(key: &str) -> Vec<String> {
    if key.contains('/') && !key.contains('.') {
        key.split('/').map(String::from).collect()
    } else {
        key.split('.').map(|s| s.replace('/', ".")).collect()
    }
}

fn value(v: &str) -> SysctlValue {
    v.parse::<i64>()
        .map(SysctlValue::Int)
        .unwrap_or_else(|_| SysctlValue::Str(v.to_string()))
}

fn setting(key: &str, v: &str, at: At, net: &mut HostNet, report: &mut Report) {
    let seg = segments(key);
    if seg.first().map(String::as_str) != Some("net") {
        report.add(
            &at.file,
            at.line,
            key,
            Kind::NotCarried,
            "not a network key: it stays in the host's sysctl files",
        );
        return;
    }
    // net.{ipv4,ipv6}.{conf,neigh}.IF.KEY
    if seg.len() == 5
        && matches!(seg[2].as_str(), "conf" | "neigh")
        && !matches!(seg[3].as_str(), "all" | "default")
    {
        let prefix = match (seg[1].as_str(), seg[2].as_str()) {
            ("ipv4", "conf") => "",
            ("ipv6", "conf") => "ipv6.",
            ("ipv4", "neigh") => "neigh.",
            ("ipv6", "neigh") => "ipv6.neigh.",
            _ => {
                global(key, &seg, v, at, net);
                return;
            }
        };
        let ifname = seg[3].clone();
        let local = format!("{prefix}{}", seg[4]);
        if net.iface_mut(&ifname).is_none() {
            // A NIC only sysctl.conf names: vznet sets it as an [[ethernet]].
            if ifname.starts_with("veth") || ifname.starts_with("venet") {
                report.add(
                    &at.file,
                    at.line,
                    key,
                    Kind::NotCarried,
                    format!("{ifname} is a VE's link: set it in the VE's netif sysctl map"),
                );
                return;
            }
            net.ifaces
                .push(Iface::new(&ifname, IfKind::Ethernet, at.clone()));
        }
        if let Some(i) = net.iface_mut(&ifname) {
            i.sysctl.insert(local, value(v));
        }
        return;
    }
    global(key, &seg, v, at, net);
}

fn global(key: &str, seg: &[String], v: &str, at: At, net: &mut HostNet) {
    // Dotted when no segment has a dot, as people write it.
    let name = if seg.iter().any(|s| s.contains('.')) {
        seg.join("/")
    } else {
        key.replace('/', ".")
    };
    net.sysctl.insert(name, (value(v), at));
}
