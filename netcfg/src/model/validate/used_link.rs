//! Links `host.toml` uses but does not make: `[[ethernet]]` NICs, bridge ports,
//! bond slaves, the lower links of VLANs and macvlans, VXLAN devices, route and
//! neighbour devices. Each must exist in this host's netns (read from the kernel,
//! as `check` reads sysctls), and `lo` carries nothing: the kernel refuses it as
//! a port, a slave or a lower link. Otherwise apply fails after other changes
//! (exit 1 and a rollback).

use std::collections::BTreeSet;

use super::{Checker, KeyPath};
use crate::model::{BridgePort, Config};

/// How the config uses a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Nic,
    Port,
    Slave,
    Lower,
    Device,
}

impl Use {
    fn rule(self) -> &'static str {
        match self {
            Use::Nic => "[[ethernet]] configures a link that exists",
            Use::Port => "a bridge port vznet does not make must exist",
            Use::Slave => "a bond slave is an existing link or a [[dummy]]",
            Use::Lower => "a lower link must exist or be made here",
            Use::Device => "a device must exist or be made here",
        }
    }
}

/// Every link name `host.toml` uses, with where and how.
fn used_links(config: &Config) -> Vec<(KeyPath, &str, Use)> {
    let host = &config.host;
    let mut used: Vec<(KeyPath, &str, Use)> = Vec::new();
    for (i, nic) in host.ethernet.iter().enumerate() {
        used.push((KeyPath::key("ethernet").i(i).k("name"), &nic.name, Use::Nic));
    }
    for (i, br) in host.bridge.iter().enumerate() {
        for (j, port) in br.ports.iter().enumerate() {
            let p = KeyPath::key("bridge").i(i).k("ports").i(j);
            let p = match port {
                BridgePort::Name(_) => p,
                BridgePort::Options(_) => p.k("name"),
            };
            used.push((p, port.name(), Use::Port));
        }
    }
    for (i, bond) in host.bond.iter().enumerate() {
        for (j, slave) in bond.slaves.iter().enumerate() {
            let p = KeyPath::key("bond").i(i).k("slaves").i(j);
            used.push((p, slave, Use::Slave));
        }
    }
    for (i, v) in host.vlan.iter().enumerate() {
        used.push((KeyPath::key("vlan").i(i).k("link"), &v.link, Use::Lower));
    }
    for (i, m) in host.macvlan.iter().enumerate() {
        used.push((KeyPath::key("macvlan").i(i).k("link"), &m.link, Use::Lower));
    }
    for (i, v) in host.vxlan.iter().enumerate() {
        if let Some(dev) = &v.dev {
            used.push((KeyPath::key("vxlan").i(i).k("dev"), dev, Use::Device));
        }
    }
    for (i, r) in host.route.iter().enumerate() {
        if let Some(dev) = &r.dev {
            used.push((KeyPath::key("route").i(i).k("dev"), dev, Use::Device));
        }
    }
    for (i, dev) in host.venet.neighbour_devs.iter().enumerate() {
        let p = KeyPath::key("venet").k("neighbour_devs").i(i);
        used.push((p, dev, Use::Device));
    }
    used
}

/// `lo` as a bridge port, a bond slave or the lower link of a VLAN or macvlan.
pub(super) fn check_loopback(c: &mut Checker, config: &Config) {
    for (path, name, how) in used_links(config) {
        if name == "lo" && matches!(how, Use::Port | Use::Slave | Use::Lower) {
            let why = "the loopback link cannot be a bridge port, a bond slave or a lower link (the kernel refuses it)";
            c.error(&config.host_source, &path, why.into());
        }
    }
}

/// Every used link that the config does not make exists in the calling thread's
/// netns. `made` holds every name the config makes in the host netns (VE host
/// ends included).
pub(super) fn check_existing(c: &mut Checker, config: &Config, made: &BTreeSet<&str>) {
    for (path, name, how) in used_links(config) {
        let declared_nic = config.host.ethernet.iter().any(|e| e.name == name);
        let made_here = made.contains(name) && !declared_nic;
        // Names that are not interface names have their own error already.
        if made_here
            || super::check_ifname(name).is_err()
            || nix::net::if_::if_nametoindex(name).is_ok()
        {
            continue;
        }
        let why = format!(
            "no link {name:?} in this host's network namespace ({})",
            how.rule()
        );
        c.error(&config.host_source, &path, why);
    }
}
