//! Debian's /etc/network/interfaces as ifupdown reads it: `iface NAME inet|inet6
//! METHOD` stanzas and their options, `auto`/`allow-*` lines, `source` and
//! `source-directory`; the bonding (`bond-*`), VLAN (`vlan-raw-device`, or the
//! `NAME.ID` spelling) and bridge (`bridge_ports`, `bridge_stp`...) options of
//! ifenslave, vlan and bridge-utils.

use std::path::{Path, PathBuf};

use super::netdef::{address, At, BondOption, HostNet, IfKind, Iface};
use super::source::Root;
use crate::import::report::{Kind, Report};

const FILE: &str = "etc/network/interfaces";

/// An option line of a stanza.
#[derive(Debug, Clone)]
struct Opt {
    key: String,
    value: String,
    at: At,
}

/// One `iface` stanza.
#[derive(Debug)]
struct Stanza {
    name: String,
    family: String,
    method: String,
    at: At,
    options: Vec<Opt>,
}

/// Reads /etc/network/interfaces (and what it sources) into `net`.
pub fn read(root: &Root, net: &mut HostNet, report: &mut Report) {
    let mut stanzas = Vec::new();
    let mut seen = Vec::new();
    file(root, FILE, &mut stanzas, &mut seen, report);
    // A name may have an inet and an inet6 stanza: one interface.
    for s in stanzas {
        if s.name == "lo" {
            continue;
        }
        iface(s, net, report);
    }
}

fn file(
    root: &Root,
    rel: &str,
    stanzas: &mut Vec<Stanza>,
    seen: &mut Vec<PathBuf>,
    report: &mut Report,
) {
    let shown = root.shown(rel);
    if seen.contains(&shown) {
        return;
    }
    seen.push(shown);
    let Some((text, path)) = root.read(rel, report) else {
        return;
    };
    let mut current: Option<Stanza> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = u32::try_from(n + 1).unwrap_or(u32::MAX);
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let at = At {
            file: path.clone(),
            line,
        };
        let (key, value) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let value = value.trim().to_string();
        match key {
            "iface" => {
                stanzas.extend(current.take());
                let w: Vec<&str> = value.split_whitespace().collect();
                current = Some(Stanza {
                    name: w.first().copied().unwrap_or_default().to_string(),
                    family: w.get(1).copied().unwrap_or("inet").to_string(),
                    method: w.get(2).copied().unwrap_or("manual").to_string(),
                    at,
                    options: Vec::new(),
                });
            }
            "auto" | "mapping" | "rename" | "no-auto-down" | "no-scripts" => {
                stanzas.extend(current.take());
                if key != "auto" {
                    report.add(
                        &path,
                        line,
                        key,
                        Kind::NotCarried,
                        "not an ifupdown feature vznet has",
                    );
                }
            }
            k if k.starts_with("allow-") => {
                stanzas.extend(current.take());
            }
            "source" | "source-directory" => {
                stanzas.extend(current.take());
                for rel in sourced(root, rel, key, &value) {
                    file(root, &rel, stanzas, seen, report);
                }
            }
            _ => match current.as_mut() {
                Some(s) => s.options.push(Opt {
                    key: key.replace('_', "-"),
                    value,
                    at,
                }),
                None => report.add(
                    &path,
                    line,
                    key,
                    Kind::NotCarried,
                    "outside any iface stanza",
                ),
            },
        }
    }
    stanzas.extend(current);
}

/// The files a `source` glob or `source-directory` names (relative to the root).
fn sourced(root: &Root, from: &str, key: &str, value: &str) -> Vec<String> {
    let base = Path::new(from).parent().unwrap_or(Path::new(""));
    let target = value.trim_start_matches('/');
    let target = if value.starts_with('/') {
        PathBuf::from(target)
    } else {
        base.join(target)
    };
    let target = target.to_string_lossy().to_string();
    let (dir, pattern) = if key == "source-directory" {
        (target, "*".to_string())
    } else {
        match target.rsplit_once('/') {
            Some((d, p)) => (d.to_string(), p.to_string()),
            None => (String::new(), target),
        }
    };
    if !pattern.contains('*') {
        return vec![format!("{dir}/{pattern}")];
    }
    let (prefix, suffix) = pattern.split_once('*').unwrap_or((&pattern, ""));
    root.list(&dir)
        .into_iter()
        // run-parts' names for source-directory: letters, digits, _ and -.
        .filter(|n| {
            key != "source-directory"
                || n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .filter(|n| {
            n.starts_with(prefix) && n.ends_with(suffix) && n.len() >= prefix.len() + suffix.len()
        })
        .map(|n| format!("{dir}/{n}"))
        .collect()
}

fn iface(s: Stanza, net: &mut HostNet, report: &mut Report) {
    let has = |k: &str| s.options.iter().any(|o| o.key == k);
    let kind = if has("bridge-ports") {
        IfKind::Bridge
    } else if has("bond-slaves") || has("bond-mode") {
        IfKind::Bond
    } else if let Some(o) = s.options.iter().find(|o| o.key == "vlan-raw-device") {
        match s
            .name
            .rsplit_once('.')
            .map(|(_, id)| id)
            .or(s.name.strip_prefix("vlan"))
            .and_then(|id| id.parse().ok())
        {
            Some(id) => IfKind::Vlan {
                link: o.value.clone(),
                id,
            },
            None => {
                report.add(
                    &s.at.file,
                    s.at.line,
                    s.name.clone(),
                    Kind::NotCarried,
                    "no VLAN id in its name",
                );
                return;
            }
        }
    } else if let Some((link, Ok(id))) = s.name.rsplit_once('.').map(|(l, id)| (l, id.parse())) {
        IfKind::Vlan {
            link: link.to_string(),
            id,
        }
    } else {
        IfKind::Ethernet
    };
    if net.iface_mut(&s.name).is_none() {
        net.ifaces
            .push(Iface::new(&s.name, kind.clone(), s.at.clone()));
    }
    match s.method.as_str() {
        "static" | "manual" => {}
        m => report.add(
            &s.at.file,
            s.at.line,
            format!("iface {} {} {m}", s.name, s.family),
            Kind::NotCarried,
            "vznet configures static addresses only",
        ),
    }
    let mut gateway = None;
    let netmask = s
        .options
        .iter()
        .find(|o| o.key == "netmask")
        .map(|o| o.value.clone());
    let mut addresses = Vec::new();
    let mut i = Iface::new(&s.name, kind, s.at.clone());
    for o in &s.options {
        let lost = |report: &mut Report, why: &str| {
            report.add(
                &o.at.file,
                o.at.line,
                o.key.clone(),
                Kind::NotCarried,
                why.to_string(),
            )
        };
        match o.key.as_str() {
            "address" => {
                let prefix = (s.family == "inet6"
                    && netmask.as_deref().is_some_and(|m| !m.contains(':')))
                .then(|| netmask.clone())
                .flatten();
                let mask = if prefix.is_some() {
                    None
                } else {
                    netmask.as_deref()
                };
                match address(&o.value, prefix.as_deref(), mask) {
                    Ok(a) => addresses.push(a),
                    Err(why) => lost(report, &why),
                }
            }
            "netmask" => {}
            "bond-master" => i.master = Some(o.value.clone()),
            "gateway" => match o.value.parse() {
                Ok(ip) => gateway = Some((ip, o.at.clone())),
                Err(_) => lost(report, "not an IP address"),
            },
            "mtu" => match o.value.parse() {
                Ok(m) => i.mtu = Some(m),
                Err(_) => lost(report, "not a number"),
            },
            "bond-slaves" => {
                if o.value != "none" {
                    i.slaves = o.value.split_whitespace().map(String::from).collect();
                }
            }
            "bridge-ports" => {
                if o.value != "none" {
                    i.ports = o.value.split_whitespace().map(String::from).collect();
                }
            }
            "vlan-raw-device" => {}
            "bridge-stp" => i.stp = Some(matches!(o.value.as_str(), "on" | "yes" | "1")),
            "bridge-fd" | "bridge-hello" | "bridge-maxage" | "bridge-bridgeprio" => {
                let key = match o.key.as_str() {
                    "bridge-fd" => "forward_delay_s",
                    "bridge-hello" => "hello_time_s",
                    "bridge-maxage" => "max_age_s",
                    _ => "priority",
                };
                match o.value.parse::<f64>() {
                    Ok(v) if v.fract() == 0.0 && v >= 0.0 => {
                        i.bridge_numbers
                            .push((key, v as u32, o.key.clone(), o.at.clone()))
                    }
                    _ => lost(report, "not a whole number"),
                }
            }
            "bridge-maxwait" | "bridge-waitport" => report.add(
                &o.at.file,
                o.at.line,
                o.key.clone(),
                Kind::NoEffect,
                "how long ifup waits for ports; vznet does not wait",
            ),
            "hwaddress" if matches!(i.kind, IfKind::Bridge) => {
                let mac = o.value.trim_start_matches("ether ").trim();
                match mac.parse() {
                    Ok(m) => i.mac = Some((m, o.at.clone())),
                    Err(_) => lost(report, "not a MAC address"),
                }
            }
            k if k.starts_with("bond-") => i.bond_options.push(BondOption {
                key: k["bond-".len()..].replace('-', "_"),
                value: o.value.clone(),
                at: o.at.clone(),
            }),
            "dns-nameservers" | "dns-search" | "dns-domain" => {
                lost(report, "the host's resolv.conf is not vznet's")
            }
            "up" | "down" | "pre-up" | "post-up" | "pre-down" | "post-down" => lost(
                report,
                "a command ifupdown runs: vznet runs none (write its effect as config)",
            ),
            _ => lost(report, "vznet has no equivalent"),
        }
    }
    if let Some((ip, at)) = gateway {
        net.add_gateway(ip, Some(s.name.clone()), at, "gateway", report);
    }
    let Some(target) = net.iface_mut(&s.name) else {
        return;
    };
    target.addresses.extend(addresses);
    target.mtu = i.mtu.or(target.mtu);
    target.master = i.master.or(target.master.take());
    target.slaves.extend(i.slaves);
    target.ports.extend(i.ports);
    target.stp = i.stp.or(target.stp);
    target.bridge_numbers.extend(i.bridge_numbers);
    target.bond_options.extend(i.bond_options);
    if i.mac.is_some() {
        target.mac = i.mac;
    }
}
