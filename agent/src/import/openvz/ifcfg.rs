//! RHEL's network files as initscripts read them: /etc/sysconfig/network and
//! /etc/sysconfig/network-scripts/ifcfg-* (one interface each).

use std::collections::BTreeMap;
use std::path::Path;

use super::netdef::{address, At, BondOption, HostNet, IfKind, Iface};
use super::shell::{self, Assignment};
use super::source::Root;
use crate::import::report::{Kind, Report};

const SCRIPTS: &str = "etc/sysconfig/network-scripts";

/// Keys initscripts use only to find or describe the device, or that say what
/// vznet does anyway.
const NO_EFFECT: &[(&str, &str)] = &[
    ("NAME", "a label for NetworkManager"),
    ("UUID", "a NetworkManager identifier"),
    ("USERCTL", "vznet's links are changed by root only"),
    ("NM_CONTROLLED", "vznet's links are not NetworkManager's"),
    (
        "HWADDR",
        "initscripts use it to find the NIC; vznet names NICs by name",
    ),
    ("ONBOOT", "vznet brings up every link it declares"),
    ("BOOTPROTO", "static and none are what vznet does"),
    ("SLAVE", "MASTER says which bond"),
    ("VLAN", "the DEVICE name says which VLAN"),
    ("TYPE", "the other keys say what it is"),
    ("DEFROUTE", "the default route goes where GATEWAY is set"),
    (
        "IPV6INIT",
        "IPv6 addresses are carried where IPV6ADDR sets them",
    ),
    ("NOZEROCONF", "vznet adds no 169.254.0.0/16 route"),
    (
        "NETWORKING",
        "vznet applies the host's network when it runs",
    ),
    ("NETWORKING_IPV6", "IPv6 is on wherever addresses are set"),
    ("PEERDNS", "no DHCP"),
    (
        "IPV6_AUTOCONF",
        "vznet leaves accept_ra to the kernel and sysctls",
    ),
];

/// Reads /etc/sysconfig/network and every ifcfg-* file into `net`.
pub fn read(root: &Root, net: &mut HostNet, report: &mut Report) {
    let mut names = root.list(SCRIPTS);
    names.retain(|n| n.starts_with("ifcfg-") && !ignored(n));
    for name in names {
        let rel = format!("{SCRIPTS}/{name}");
        let Some((text, file)) = root.read(&rel, report) else {
            continue;
        };
        let parsed = shell::parse(&text, &BTreeMap::new());
        let default = name.trim_start_matches("ifcfg-");
        interface(&file, &parsed, default, net, report);
    }
    for name in root.list(SCRIPTS) {
        if (name.starts_with("route-") || name.starts_with("route6-") || name.starts_with("rule-"))
            && !ignored(&name)
        {
            let path = root.shown(&format!("{SCRIPTS}/{name}"));
            report.add(
                &path,
                1,
                name.clone(),
                Kind::NotCarried,
                "static routes and rules of an interface are not imported: write [[route]] / [[rule]] tables",
            );
        }
    }
    if let Some((text, file)) = root.read("etc/sysconfig/network", report) {
        let parsed = shell::parse(&text, &BTreeMap::new());
        global(&file, &parsed, net, report);
    }
}

/// initscripts skip backups and package leftovers.
fn ignored(name: &str) -> bool {
    [".bak", "~", ".orig", ".rpmnew", ".rpmsave", ".old"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn at(file: &Path, a: &Assignment) -> At {
    At {
        file: file.to_path_buf(),
        line: a.line,
    }
}

fn other_lines(file: &Path, parsed: &shell::Parsed, report: &mut Report) {
    for (line, text) in &parsed.other {
        report.add(
            file,
            *line,
            text.clone(),
            Kind::NotCarried,
            "not a KEY=value assignment",
        );
    }
}

/// /etc/sysconfig/network: the default gateway and host-wide switches.
fn global(file: &Path, parsed: &shell::Parsed, net: &mut HostNet, report: &mut Report) {
    other_lines(file, parsed, report);
    let dev = parsed.get("GATEWAYDEV").map(|a| a.value.clone());
    for a in &parsed.assignments {
        match a.key.as_str() {
            "GATEWAY" | "IPV6_DEFAULTGW" => {
                let gw = a.value.split('%').next().unwrap_or_default();
                match gw.parse() {
                    Ok(ip) => net.add_gateway(ip, dev.clone(), at(file, a), &a.key, report),
                    Err(_) => report.add(
                        file,
                        a.line,
                        a.key.clone(),
                        Kind::NotCarried,
                        format!("{:?} is not an IP address", a.value),
                    ),
                }
            }
            "GATEWAYDEV" => {}
            "HOSTNAME" => report.add(
                file,
                a.line,
                "HOSTNAME",
                Kind::NotCarried,
                "the host's own name is not vznet's (hostnamectl)",
            ),
            key => no_effect_or_lost(file, a, key, report),
        }
    }
}

fn no_effect_or_lost(file: &Path, a: &Assignment, key: &str, report: &mut Report) {
    match NO_EFFECT.iter().find(|(k, _)| *k == key) {
        Some((_, why)) => report.add(file, a.line, key, Kind::NoEffect, *why),
        None => report.add(
            file,
            a.line,
            key,
            Kind::NotCarried,
            "vznet has no equivalent",
        ),
    }
}

/// What the file declares: TYPE, or the keys that only one kind has.
fn kind(parsed: &shell::Parsed, device: &str) -> Result<IfKind, String> {
    let ty = parsed
        .get("TYPE")
        .map(|a| a.value.to_ascii_lowercase())
        .unwrap_or_default();
    let yes = |k: &str| {
        parsed
            .get(k)
            .is_some_and(|a| a.value.eq_ignore_ascii_case("yes"))
    };
    if ty == "bridge" {
        return Ok(IfKind::Bridge);
    }
    if ty == "bond"
        || ty == "bonding"
        || parsed.get("BONDING_OPTS").is_some()
        || yes("BONDING_MASTER")
    {
        return Ok(IfKind::Bond);
    }
    if yes("VLAN") || ty == "vlan" {
        let physdev = parsed.get("PHYSDEV").map(|a| a.value.clone());
        let (link, id) = match device.rsplit_once('.') {
            Some((l, id)) => (physdev.unwrap_or_else(|| l.to_string()), id.to_string()),
            None => match device.strip_prefix("vlan") {
                Some(id) => (physdev.ok_or("vlanN without PHYSDEV")?, id.to_string()),
                None => return Err(format!("VLAN {device} has no .ID in its name")),
            },
        };
        let id = id
            .parse::<u16>()
            .map_err(|_| format!("VLAN id {id:?} is not a number"))?;
        return Ok(IfKind::Vlan { link, id });
    }
    if ty.is_empty() || ty == "ethernet" {
        return Ok(IfKind::Ethernet);
    }
    Err(format!("TYPE={ty} is not imported"))
}

/// One ifcfg file.
fn interface(
    file: &Path,
    parsed: &shell::Parsed,
    default: &str,
    net: &mut HostNet,
    report: &mut Report,
) {
    other_lines(file, parsed, report);
    let device = parsed
        .get("DEVICE")
        .map(|a| a.value.clone())
        .unwrap_or_else(|| default.to_string());
    if device == "lo" {
        return;
    }
    let decl = At {
        file: file.to_path_buf(),
        line: parsed
            .get("DEVICE")
            .or_else(|| parsed.assignments.first())
            .map_or(1, |a| a.line),
    };
    let kind = match kind(parsed, &device) {
        Ok(k) => k,
        Err(why) => {
            report.add(file, decl.line, device, Kind::NotCarried, why);
            return;
        }
    };
    let mut iface = Iface::new(&device, kind, decl);
    let value = |k: &str| parsed.get(k).map(|a| a.value.as_str());
    let mut gateway = None;
    for a in &parsed.assignments {
        let key = a.key.as_str();
        match key {
            "DEVICE" | "PHYSDEV" | "PREFIX" | "NETMASK" => {}
            k if k.starts_with("PREFIX") || k.starts_with("NETMASK") => {}
            k if k.starts_with("IPADDR") && k != "IPADDR_START" => {
                let n = &k["IPADDR".len()..];
                let prefix = value(&format!("PREFIX{n}"));
                let mask = value(&format!("NETMASK{n}"));
                match address(&a.value, prefix, mask) {
                    Ok(net) => iface.addresses.push(net),
                    Err(why) => report.add(file, a.line, key, Kind::NotCarried, why),
                }
            }
            "IPV6ADDR" | "IPV6ADDR_SECONDARIES" => {
                for word in a.value.split_whitespace() {
                    match word.parse() {
                        Ok(net) => iface.addresses.push(net),
                        Err(_) => report.add(
                            file,
                            a.line,
                            key,
                            Kind::NotCarried,
                            format!("{word:?} is not an address/prefix"),
                        ),
                    }
                }
            }
            "GATEWAY" | "IPV6_DEFAULTGW" => {
                let gw = a.value.split('%').next().unwrap_or_default();
                match gw.parse() {
                    Ok(ip) => gateway = Some((ip, at(file, a), key)),
                    Err(_) => report.add(
                        file,
                        a.line,
                        key,
                        Kind::NotCarried,
                        format!("{:?} is not an IP address", a.value),
                    ),
                }
            }
            "MTU" => match a.value.parse() {
                Ok(m) => iface.mtu = Some(m),
                Err(_) => report.add(file, a.line, key, Kind::NotCarried, "not a number"),
            },
            "MASTER" => iface.master = Some(a.value.clone()),
            "BRIDGE" => iface.bridge = Some(a.value.clone()),
            "BONDING_OPTS" => {
                for word in a.value.split_whitespace() {
                    let (k, v) = word.split_once('=').unwrap_or((word, ""));
                    iface.bond_options.push(BondOption {
                        key: k.to_string(),
                        value: v.to_string(),
                        at: at(file, a),
                    });
                }
            }
            "STP" if iface.kind == IfKind::Bridge => {
                iface.stp = Some(matches!(
                    a.value.to_ascii_lowercase().as_str(),
                    "on" | "yes"
                ))
            }
            "DELAY" if iface.kind == IfKind::Bridge => match a.value.parse() {
                Ok(d) => {
                    iface
                        .bridge_numbers
                        .push(("forward_delay_s", d, a.key.clone(), at(file, a)))
                }
                Err(_) => report.add(file, a.line, key, Kind::NotCarried, "not a number"),
            },
            "MACADDR" if iface.kind == IfKind::Bridge => match a.value.parse() {
                Ok(m) => iface.mac = Some((m, at(file, a))),
                Err(_) => report.add(file, a.line, key, Kind::NotCarried, "not a MAC address"),
            },
            "BOOTPROTO" if !matches!(a.value.as_str(), "none" | "static" | "") => report.add(
                file,
                a.line,
                format!("BOOTPROTO={}", a.value),
                Kind::NotCarried,
                "vznet configures static addresses only",
            ),
            "ONBOOT" if a.value.eq_ignore_ascii_case("no") => report.add(
                file,
                a.line,
                "ONBOOT=no",
                Kind::NotCarried,
                "vznet brings up every link it declares",
            ),
            "DNS1" | "DNS2" | "DNS3" | "DOMAIN" => report.add(
                file,
                a.line,
                key,
                Kind::NotCarried,
                "the host's resolv.conf is not vznet's",
            ),
            _ => no_effect_or_lost(file, a, key, report),
        }
    }
    if let Some((ip, at, key)) = gateway {
        net.add_gateway(ip, Some(device.clone()), at, key, report);
    }
    net.ifaces.push(iface);
}
