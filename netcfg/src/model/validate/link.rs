//! Checks of the links `host.toml` declares and of bridge-port options: names,
//! ranges, the options each bond mode takes, what may be stacked on or
//! enslaved to what. Each one refuses what the kernel would refuse (or would
//! take and silently change), so that a bad value is a located config error
//! rather than a failed, rolled-back apply.

use std::collections::BTreeMap;

use super::{add_port, Checker, KeyPath, Ports, SourceFile};
use crate::link::bond::ModeOption;
use crate::model::{Bridge, Config, PortOptions};

/// The smallest MTU an Ethernet-like device takes (ETH_MIN_MTU).
pub const MIN_MTU: u32 = 68;
/// The largest any device takes (ETH_MAX_MTU; devices may take less).
pub const MAX_MTU: u32 = 65535;
/// ARP targets a bond keeps (BOND_MAX_ARP_TARGETS).
const MAX_ARP_TARGETS: usize = 16;

pub(super) fn check_mtu(c: &mut Checker, s: &SourceFile, p: &KeyPath, mtu: Option<u32>) {
    if let Some(m) = mtu.filter(|m| !(MIN_MTU..=MAX_MTU).contains(m)) {
        c.error(
            s,
            p,
            format!("mtu {m} is out of range {MIN_MTU}..{MAX_MTU}"),
        );
    }
}

fn check_vid(c: &mut Checker, s: &SourceFile, p: &KeyPath, vid: u16) {
    if !(1..=4094).contains(&vid) {
        c.error(s, p, format!("VLAN id {vid} is out of range 1..4094"));
    }
}

/// Options of a port of `bridge` (`None`: the link joins no bridge).
pub(super) fn check_port(
    c: &mut Checker,
    s: &SourceFile,
    p: &KeyPath,
    o: &PortOptions,
    bridge: Option<&Bridge>,
) {
    let set = [
        ("pvid", o.pvid.is_some()),
        ("vlans", !o.vlans.is_empty()),
        ("isolated", o.isolated.is_some()),
        ("hairpin", o.hairpin.is_some()),
        ("learning", o.learning.is_some()),
    ];
    let Some(bridge) = bridge else {
        for (key, _) in set.iter().filter(|(_, on)| *on) {
            c.error(
                s,
                &p.k(key),
                format!("{key} is a bridge port option: set bridge"),
            );
        }
        return;
    };
    if !bridge.vlan_filtering {
        for key in ["pvid", "vlans"] {
            if set.iter().any(|(k, on)| *k == key && *on) {
                c.error(
                    s,
                    &p.k(key),
                    format!(
                        "{key} needs vlan_filtering = true on bridge {:?}",
                        bridge.name
                    ),
                );
            }
        }
    }
    if let Some(pvid) = o.pvid.filter(|v| *v != 0) {
        check_vid(c, s, &p.k("pvid"), pvid);
    }
    let mut seen = Vec::new();
    for (j, &vid) in o.vlans.iter().enumerate() {
        let vp = p.k("vlans").i(j);
        check_vid(c, s, &vp, vid);
        if seen.contains(&vid) {
            c.error(s, &vp, format!("VLAN {vid} is listed twice"));
        } else if o.pvid == Some(vid) {
            c.error(
                s,
                &vp,
                format!("VLAN {vid} is the port's pvid (untagged); list it in one place"),
            );
        }
        seen.push(vid);
    }
}

/// Every `[[bond]]`, `[[vlan]]`, `[[macvlan]]`, `[[vxlan]]`, `[[dummy]]`,
/// `[[bridge]]` and `[[ethernet]]`; pushes the names to `names` and returns the
/// bridges' ports.
pub(super) fn check_host_links<'a>(
    c: &mut Checker,
    config: &'a Config,
    names: &mut Vec<(String, &'a SourceFile, KeyPath)>,
) -> Ports<'a> {
    let hs = &config.host_source;
    let host = &config.host;
    for (i, bond) in host.bond.iter().enumerate() {
        let p = KeyPath::key("bond").i(i);
        c.ifname(hs, &p.k("name"), &bond.name);
        names.push((bond.name.clone(), hs, p.k("name")));
        for (j, s) in bond.slaves.iter().enumerate() {
            c.ifname(hs, &p.k("slaves").i(j), s);
        }
        check_bond(c, hs, &p, bond);
        c.sysctls(hs, &p.k("sysctl"), &bond.sysctl, true);
        c.interface_addresses(hs, &p.k("addresses"), &bond.name, &bond.addresses);
    }
    for (i, vlan) in host.vlan.iter().enumerate() {
        let p = KeyPath::key("vlan").i(i);
        c.ifname(hs, &p.k("name"), &vlan.name);
        c.ifname(hs, &p.k("link"), &vlan.link);
        names.push((vlan.name.clone(), hs, p.k("name")));
        check_vid(c, hs, &p.k("id"), vlan.id);
        if vlan.link == vlan.name {
            c.error(hs, &p.k("link"), "a VLAN cannot ride on itself".into());
        }
        check_mtu(c, hs, &p.k("mtu"), vlan.mtu);
        check_upper_mtu(c, config, &p, vlan.mtu, &vlan.link);
        c.sysctls(hs, &p.k("sysctl"), &vlan.sysctl, true);
        c.interface_addresses(hs, &p.k("addresses"), &vlan.name, &vlan.addresses);
    }
    for (i, mv) in host.macvlan.iter().enumerate() {
        let p = KeyPath::key("macvlan").i(i);
        c.ifname(hs, &p.k("name"), &mv.name);
        c.ifname(hs, &p.k("link"), &mv.link);
        names.push((mv.name.clone(), hs, p.k("name")));
        if mv.link == mv.name {
            c.error(hs, &p.k("link"), "a macvlan cannot ride on itself".into());
        }
        c.mac(hs, &p.k("mac"), mv.mac);
        check_mtu(c, hs, &p.k("mtu"), mv.mtu);
        check_upper_mtu(c, config, &p, mv.mtu, &mv.link);
        c.sysctls(hs, &p.k("sysctl"), &mv.sysctl, true);
        c.interface_addresses(hs, &p.k("addresses"), &mv.name, &mv.addresses);
    }
    for (i, vx) in host.vxlan.iter().enumerate() {
        let p = KeyPath::key("vxlan").i(i);
        c.ifname(hs, &p.k("name"), &vx.name);
        names.push((vx.name.clone(), hs, p.k("name")));
        check_vxlan(c, hs, &p, vx);
        c.sysctls(hs, &p.k("sysctl"), &vx.sysctl, true);
        c.interface_addresses(hs, &p.k("addresses"), &vx.name, &vx.addresses);
    }
    for (i, d) in host.dummy.iter().enumerate() {
        let p = KeyPath::key("dummy").i(i);
        c.ifname(hs, &p.k("name"), &d.name);
        names.push((d.name.clone(), hs, p.k("name")));
        c.mac(hs, &p.k("mac"), d.mac);
        check_mtu(c, hs, &p.k("mtu"), d.mtu);
        c.sysctls(hs, &p.k("sysctl"), &d.sysctl, true);
        c.interface_addresses(hs, &p.k("addresses"), &d.name, &d.addresses);
    }
    let mut ports = Ports::new();
    for (i, br) in host.bridge.iter().enumerate() {
        let p = KeyPath::key("bridge").i(i);
        c.ifname(hs, &p.k("name"), &br.name);
        names.push((br.name.clone(), hs, p.k("name")));
        check_bridge(c, hs, &p, br);
        for (j, port) in br.ports.iter().enumerate() {
            let pp = p.k("ports").i(j);
            let name_path = match port {
                crate::model::BridgePort::Name(_) => pp.clone(),
                crate::model::BridgePort::Options(_) => pp.k("name"),
            };
            c.ifname(hs, &name_path, port.name());
            if port.name() == br.name {
                c.error(hs, &name_path, "a bridge cannot be its own port".into());
            } else if host.bridge.iter().any(|b| b.name == port.name()) {
                c.error(
                    hs,
                    &name_path,
                    format!(
                        "{:?} is a bridge: the kernel refuses a bridge as a port",
                        port.name()
                    ),
                );
            }
            check_port(c, hs, &pp, &port.options(), Some(br));
            add_port(c, &mut ports, port.name(), &br.name, hs, name_path);
        }
        c.mac(hs, &p.k("mac"), br.mac);
        check_mtu(c, hs, &p.k("mtu"), br.mtu);
        c.sysctls(hs, &p.k("sysctl"), &br.sysctl, true);
        c.interface_addresses(hs, &p.k("addresses"), &br.name, &br.addresses);
    }
    for (i, nic) in host.ethernet.iter().enumerate() {
        let p = KeyPath::key("ethernet").i(i);
        c.ifname(hs, &p.k("name"), &nic.name);
        names.push((nic.name.clone(), hs, p.k("name")));
        check_mtu(c, hs, &p.k("mtu"), nic.mtu);
        let member =
            host.bond.iter().any(|b| b.slaves.contains(&nic.name)) || ports.contains_key(&nic.name);
        let lower = host.vlan.iter().any(|v| v.link == nic.name)
            || host.macvlan.iter().any(|m| m.link == nic.name);
        if !nic.up && (member || lower) {
            c.error(
                hs,
                &p.k("up"),
                "a bridge port, bond slave or VLAN/macvlan lower link must be up".into(),
            );
        }
        c.sysctls(hs, &p.k("sysctl"), &nic.sysctl, true);
        c.interface_addresses(hs, &p.k("addresses"), &nic.name, &nic.addresses);
    }
    ports
}

/// A VLAN's or macvlan's MTU cannot exceed its lower link's (when both are
/// declared).
fn check_upper_mtu(c: &mut Checker, config: &Config, p: &KeyPath, mtu: Option<u32>, lower: &str) {
    let Some(mtu) = mtu else { return };
    let host = &config.host;
    let lower_mtu = host
        .bond
        .iter()
        .find(|b| b.name == lower)
        .and_then(|b| b.mtu)
        .or_else(|| {
            host.vlan
                .iter()
                .find(|v| v.name == lower)
                .and_then(|v| v.mtu)
        })
        .or_else(|| {
            host.bridge
                .iter()
                .find(|b| b.name == lower)
                .and_then(|b| b.mtu)
        })
        .or_else(|| {
            host.dummy
                .iter()
                .find(|d| d.name == lower)
                .and_then(|d| d.mtu)
        })
        .or_else(|| {
            host.ethernet
                .iter()
                .find(|e| e.name == lower)
                .and_then(|e| e.mtu)
        });
    if let Some(max) = lower_mtu.filter(|max| mtu > *max) {
        c.error(
            &config.host_source,
            &p.k("mtu"),
            format!("mtu {mtu} is above the mtu of its lower link {lower:?} ({max})"),
        );
    }
}

fn check_bond(c: &mut Checker, s: &SourceFile, p: &KeyPath, b: &crate::model::Bond) {
    check_mtu(c, s, &p.k("mtu"), b.mtu);
    let modes = |o: ModeOption| {
        o.modes()
            .iter()
            .map(|m| format!("{:?}", m.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let options = [
        ("lacp_rate", b.lacp_rate.is_some(), ModeOption::Lacp),
        ("ad_select", b.ad_select.is_some(), ModeOption::Lacp),
        (
            "xmit_hash_policy",
            b.xmit_hash_policy.is_some(),
            ModeOption::XmitHash,
        ),
        ("primary", b.primary.is_some(), ModeOption::Primary),
        (
            "arp_interval_ms",
            b.arp_interval_ms.is_some_and(|a| a > 0),
            ModeOption::Arp,
        ),
    ];
    for (key, set, option) in options {
        if set && !option.applies(b.mode) {
            c.error(
                s,
                &p.k(key),
                format!(
                    "{key} is used in mode {} only, not {:?}",
                    modes(option),
                    b.mode.as_str()
                ),
            );
        }
    }
    if let Some(primary) = &b.primary {
        if !b.slaves.contains(primary) {
            c.error(
                s,
                &p.k("primary"),
                format!("primary {primary:?} is not one of the slaves"),
            );
        }
    }
    let arp = b.arp_interval_ms.unwrap_or(0);
    let miimon = b.miimon_ms.unwrap_or(if arp > 0 {
        0
    } else {
        crate::link::bond::DEFAULT_MIIMON_MS
    });
    if arp > 0 && miimon > 0 {
        c.error(
            s,
            &p.k("miimon_ms"),
            "ARP and MII monitoring exclude each other: the kernel turns miimon off for arp_interval_ms; set miimon_ms = 0".into(),
        );
    }
    if arp > 0 && b.arp_ip_targets.is_empty() {
        c.error(
            s,
            &p.k("arp_interval_ms"),
            "ARP monitoring needs arp_ip_targets".into(),
        );
    }
    if arp == 0 && !b.arp_ip_targets.is_empty() {
        c.error(
            s,
            &p.k("arp_ip_targets"),
            "arp_ip_targets are only used with arp_interval_ms".into(),
        );
    }
    if b.arp_ip_targets.len() > MAX_ARP_TARGETS {
        c.error(
            s,
            &p.k("arp_ip_targets"),
            format!("a bond takes at most {MAX_ARP_TARGETS} ARP targets"),
        );
    }
    for (j, t) in b.arp_ip_targets.iter().enumerate() {
        if t.is_unspecified() || t.is_broadcast() || t.is_multicast() {
            c.error(
                s,
                &p.k("arp_ip_targets").i(j),
                format!("{t} cannot be an ARP target"),
            );
        }
    }
    // The kernel keeps the delays in units of miimon (rounding down) and
    // refuses them while miimon is 0.
    for (key, delay) in [
        ("updelay_ms", b.updelay_ms),
        ("downdelay_ms", b.downdelay_ms),
    ] {
        let Some(d) = delay else { continue };
        if miimon == 0 {
            c.error(
                s,
                &p.k(key),
                format!("{key} needs MII monitoring (miimon_ms above 0)"),
            );
        } else if !d.is_multiple_of(miimon) {
            c.error(
                s,
                &p.k(key),
                format!("{key} {d} is not a multiple of miimon_ms {miimon}"),
            );
        }
    }
}

fn check_bridge(c: &mut Checker, s: &SourceFile, p: &KeyPath, b: &Bridge) {
    // br_set_{forward_delay,hello_time,max_age} (net/bridge/br_stp.c ranges;
    // the forward delay range only binds with STP on, vznet checks it always).
    for (key, value, lo, hi) in [
        ("forward_delay_s", b.forward_delay_s, 2, 30),
        ("hello_time_s", b.hello_time_s, 1, 10),
        ("max_age_s", b.max_age_s, 6, 40),
    ] {
        if let Some(v) = value.filter(|v| !(lo..=hi).contains(v)) {
            c.error(
                s,
                &p.k(key),
                format!("{key} {v} is out of range {lo}..{hi}"),
            );
        }
    }
    if let Some(pvid) = b.default_pvid {
        if !b.vlan_filtering {
            c.error(
                s,
                &p.k("default_pvid"),
                "default_pvid needs vlan_filtering = true".into(),
            );
        } else if pvid != 0 {
            check_vid(c, s, &p.k("default_pvid"), pvid);
        }
    }
}

fn check_vxlan(c: &mut Checker, s: &SourceFile, p: &KeyPath, v: &crate::model::Vxlan) {
    if v.id > 0x00ff_ffff {
        c.error(
            s,
            &p.k("id"),
            format!("VNI {} is out of range 0..16777215", v.id),
        );
    }
    if let Some(dev) = &v.dev {
        c.ifname(s, &p.k("dev"), dev);
    }
    if v.port == Some(0) {
        c.error(s, &p.k("port"), "port 0 is not a UDP port".into());
    }
    if let Some(r) = v.remote.filter(|r| r.is_unspecified()) {
        c.error(s, &p.k("remote"), format!("{r} is not a remote endpoint"));
    }
    if let Some(l) = v.local.filter(|l| l.is_multicast() || l.is_unspecified()) {
        c.error(s, &p.k("local"), format!("{l} cannot be a local address"));
    }
    if let (Some(r), Some(l)) = (v.remote, v.local) {
        if r.is_ipv4() != l.is_ipv4() {
            c.error(
                s,
                &p.k("local"),
                format!("local {l} and remote {r} are of different families"),
            );
        }
    }
    if v.remote.is_some_and(|r| r.is_multicast()) && v.dev.is_none() {
        c.error(
            s,
            &p.k("dev"),
            "a multicast remote needs dev (the link to join the group on)".into(),
        );
    }
    c.mac(s, &p.k("mac"), v.mac);
    check_mtu(c, s, &p.k("mtu"), v.mtu);
}

/// A slave is in one bond only and not a bridge port; it is an existing link,
/// a `[[dummy]]` or an `[[ethernet]]` (the kernel enslaves no bridge, bond or
/// VLAN vznet makes); a declared NIC slave's MTU is its bond's.
pub(super) fn check_slaves(c: &mut Checker, config: &Config, ports: &Ports) {
    let hs = &config.host_source;
    let host = &config.host;
    let mut slaves: BTreeMap<&str, KeyPath> = BTreeMap::new();
    for (i, bond) in host.bond.iter().enumerate() {
        for (j, s) in bond.slaves.iter().enumerate() {
            let p = KeyPath::key("bond").i(i).k("slaves").i(j);
            if let Some(first) = slaves.insert(s, p.clone()) {
                c.error(
                    hs,
                    &p,
                    format!("{s:?} is already a slave (at {})", hs.locate(&first)),
                );
            }
            if let Some((bridge, _)) = ports.get(s.as_str()) {
                c.error(
                    hs,
                    &p,
                    format!("{s:?} is a bond slave and a port of bridge {bridge:?}"),
                );
            }
            let made = |n: &str| {
                host.bond.iter().any(|x| x.name == n)
                    || host.bridge.iter().any(|x| x.name == n)
                    || host.vlan.iter().any(|x| x.name == n)
                    || host.macvlan.iter().any(|x| x.name == n)
                    || host.vxlan.iter().any(|x| x.name == n)
            };
            if made(s) {
                c.error(
                    hs,
                    &p,
                    format!("{s:?} is a link vznet makes: a bond slave is an existing link or a [[dummy]]"),
                );
            }
            let nic_mtu = host
                .ethernet
                .iter()
                .find(|e| &e.name == s)
                .and_then(|e| e.mtu);
            if let (Some(nic), Some(bond_mtu)) = (nic_mtu, bond.mtu) {
                if nic != bond_mtu {
                    c.error(
                        hs,
                        &p,
                        format!("{s:?} has mtu {nic} but a bond gives its slaves its own mtu ({bond_mtu})"),
                    );
                }
            }
        }
    }
}
