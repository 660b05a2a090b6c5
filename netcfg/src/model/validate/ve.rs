//! Checks of `ve/ID.toml` files: the id, the netns, the netifs and venet, the
//! default routes inside the VE, and the runtime's keys (hostname, cgroup
//! limits, firewall, hooks).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{add_port, check_ifname, link, netns, Checker, Declared, KeyPath, Ports, SourceFile};
use crate::model::{Config, Netif, VeConfig, VeFile};

/// The VE-side name of the venet link.
pub const VENET_IFNAME: &str = "venet0";

/// Every VE file; pushes the host-side names of their links to `names` and their
/// bridge ports to `ports`.
pub(super) fn check_ves<'a>(
    c: &mut Checker,
    config: &'a Config,
    scope: super::Scope,
    ports: &mut Ports<'a>,
    names: &mut Vec<(String, &'a SourceFile, KeyPath)>,
) {
    let host_netns = netns::own_netns();
    let mut netns_users: BTreeMap<netns::NetnsId, (u32, Declared)> = BTreeMap::new();
    for file in &config.ves {
        check_id(c, file);
        if let Some(ns) = &file.ve.netns {
            let s = &file.source;
            let p = KeyPath::key("netns");
            match netns::netns(ns, host_netns.as_ref()) {
                Err(netns::Refusal::Missing(_)) if scope == super::Scope::Agent => {}
                Err(why) => c.error(s, &p, why.to_string()),
                Ok(id) => {
                    if let Some((other, at)) = netns_users.get(&id) {
                        let why = format!(
                            "network namespace {ns:?} is already VE {other}'s (at {})",
                            at.source.locate(&at.path)
                        );
                        c.error(s, &p, why);
                    } else {
                        let at = Declared { source: s, path: p };
                        netns_users.insert(id, (file.ve.id, at));
                    }
                }
            }
        }
        check_links(c, config, file, ports, names);
        check_default_routes(c, &file.source, &file.ve);
        check_runtime(c, &file.source, &file.ve);
    }
}

/// The id: not 0, and the file's name.
fn check_id(c: &mut Checker, file: &VeFile) {
    let s = &file.source;
    let id = file.ve.id;
    if id == 0 {
        c.error(
            s,
            &KeyPath::key("id"),
            "VE id 0 is the host itself (OpenVZ's VE0): use 1 or more".into(),
        );
    }
    let stem = s.path().file_stem().and_then(|x| x.to_str()).unwrap_or("");
    if stem != id.to_string() {
        c.error(
            s,
            &KeyPath::key("id"),
            format!("id {id} does not match the file name {stem:?}.toml"),
        );
    }
}

/// The netifs and the venet link.
fn check_links<'a>(
    c: &mut Checker,
    config: &'a Config,
    file: &'a VeFile,
    ports: &mut Ports<'a>,
    names: &mut Vec<(String, &'a SourceFile, KeyPath)>,
) {
    let (s, ve, host) = (&file.source, &file.ve, &config.host);
    let mut inner: BTreeMap<&str, KeyPath> = BTreeMap::new();
    for (n, netif) in ve.netif.iter().enumerate() {
        let p = KeyPath::key("netif").i(n);
        c.ifname(s, &p.k("name"), &netif.name);
        if let Some(first) = inner.insert(&netif.name, p.k("name")) {
            c.error(
                s,
                &p.k("name"),
                format!(
                    "duplicate interface name {:?} in this VE (also at {})",
                    netif.name,
                    s.locate(&first)
                ),
            );
        }
        let host_name = ve.host_ifname(n);
        let host_path = if netif.host_name.is_some() {
            p.k("host_name")
        } else {
            p.k("name")
        };
        if let Err(why) = check_ifname(&host_name) {
            c.error(s, &host_path, format!("host-side {why}; set host_name"));
        }
        names.push((host_name.clone(), s, host_path));
        c.mac(s, &p.k("mac"), netif.mac);
        c.mac(s, &p.k("host_mac"), netif.host_mac);
        c.interface_addresses(s, &p.k("addresses"), &netif.name, &netif.addresses);
        if let Some(bridge) = &netif.bridge {
            if host.bridge.iter().any(|b| &b.name == bridge) {
                add_port(c, ports, &host_name, bridge, s, p.k("bridge"));
            } else {
                let why = format!(
                    "no bridge {bridge:?} in {}",
                    config.host_source.path().display()
                );
                c.error(s, &p.k("bridge"), why);
            }
        }
        let bridge = netif
            .bridge
            .as_ref()
            .and_then(|b| host.bridge.iter().find(|br| &br.name == b));
        link::check_port(c, s, &p, &netif.port_options(), bridge);
        link::check_mtu(c, s, &p.k("mtu"), netif.mtu);
        for (key, gw) in [("gateway", netif.gateway), ("gateway6", netif.gateway6)] {
            let Some(gw) = gw else { continue };
            if let Err(why) = check_gateway(netif, key, gw) {
                c.error(s, &p.k(key), why);
            }
        }
        c.sysctls(s, &p.k("sysctl"), &netif.sysctl, true);
    }
    if let Some(venet) = &ve.venet {
        let p = KeyPath::key("venet");
        if venet.addresses.is_empty() {
            c.error(
                s,
                &p.k("addresses"),
                "venet needs at least one address".into(),
            );
        }
        let nets: Vec<IpNet> = venet.addresses.iter().map(|a| IpNet::from(*a)).collect();
        c.interface_addresses(s, &p.k("addresses"), VENET_IFNAME, &nets);
        let host_name = ve.venet_host_ifname();
        let hp = if venet.host_name.is_some() {
            p.k("host_name")
        } else {
            p.clone()
        };
        if let Err(why) = check_ifname(&host_name) {
            c.error(s, &hp, format!("host-side {why}; set host_name"));
        }
        names.push((host_name, s, hp));
        link::check_mtu(c, s, &p.k("mtu"), venet.mtu);
        if inner.contains_key(VENET_IFNAME) {
            c.error(
                s,
                &p,
                format!("{VENET_IFNAME:?} is the venet interface's name; rename the netif"),
            );
        }
    }
}

/// Why `gw` cannot be the default gateway `key` of `netif`. A link-local IPv6
/// gateway needs no address of the interface's: the kernel gives the VE end a
/// link-local one of its own.
fn check_gateway(netif: &Netif, key: &str, gw: IpAddr) -> Result<(), String> {
    super::address::check_gateway_address(gw)?;
    if key == "gateway6" {
        if gw.is_ipv4() {
            return Err(format!("gateway6 {gw} is not an IPv6 address: use gateway"));
        }
        if netif.gateway.is_some_and(|g| g.is_ipv6()) {
            return Err("gateway is IPv6 already: one default gateway per family".into());
        }
    }
    let link_local = matches!(gw, IpAddr::V6(v6) if super::address::is_link_local6(v6));
    if !link_local
        && !netif
            .addresses
            .iter()
            .any(|a| a.addr().is_ipv4() == gw.is_ipv4())
    {
        return Err(format!(
            "gateway {gw} has no address of its family on this interface"
        ));
    }
    Ok(())
}

/// One default route per family inside the VE: each netif gateway is one, and
/// `[venet]` makes one for each family of its addresses (IPv4 `default dev
/// venet0`, IPv6 `default via fe80::1 dev venet0`). A second one is a route the
/// kernel refuses as existing.
fn check_default_routes(c: &mut Checker, s: &SourceFile, ve: &VeConfig) {
    let mut first: [Option<KeyPath>; 2] = [None, None];
    if let Some(venet) = &ve.venet {
        for (slot, v4) in first.iter_mut().zip([true, false]) {
            if venet.addresses.iter().any(|a| a.is_ipv4() == v4) {
                *slot = Some(KeyPath::key("venet").k("addresses"));
            }
        }
    }
    for (n, netif) in ve.netif.iter().enumerate() {
        for (key, gw) in [("gateway", netif.gateway), ("gateway6", netif.gateway6)] {
            let Some(gw) = gw else { continue };
            let p = KeyPath::key("netif").i(n).k(key);
            let slot = &mut first[usize::from(gw.is_ipv6())];
            match slot {
                None => *slot = Some(p),
                Some(at) => {
                    let family = if gw.is_ipv4() { "IPv4" } else { "IPv6" };
                    let by = if at.0.first() == Some(&super::Seg::Key("venet".into())) {
                        format!("[venet] routes {family} through {VENET_IFNAME}")
                    } else {
                        format!("{at} is one")
                    };
                    c.error(
                        s,
                        &p,
                        format!(
                            "the VE has an {family} default route already ({by}, at {}): one per family",
                            s.locate(at)
                        ),
                    );
                }
            }
        }
    }
}

/// The runtime's keys of a VE file: host name, cgroup limits, firewall and hooks.
fn check_runtime(c: &mut Checker, s: &SourceFile, ve: &VeConfig) {
    // Host name and resolver keys: one definition in the model, which `ve set`
    // uses too.
    for (p, message) in ve.runtime_problems() {
        c.error(s, &p, message);
    }
    if let Some(w) = ve.cpu_weight {
        if !(1..=10_000).contains(&w) {
            c.error(
                s,
                &KeyPath::key("cpu_weight"),
                format!("cpu_weight {w} is out of range 1..10000 (default 100)"),
            );
        }
    }
    if let Some(m) = ve.memory_limit {
        if m.0 < 1 << 20 {
            c.error(
                s,
                &KeyPath::key("memory_limit"),
                format!("memory_limit {} bytes is below 1M: no VE runs in that", m.0),
            );
        }
    }
    if let Some(fw) = &ve.firewall {
        for (i, r) in fw.allow.iter().enumerate() {
            let p = KeyPath::key("firewall").k("allow").i(i);
            if !r.ports.is_empty()
                && !matches!(
                    r.proto,
                    crate::model::FwProto::Tcp | crate::model::FwProto::Udp
                )
            {
                c.error(
                    s,
                    &p.k("ports"),
                    "ports need proto = \"tcp\" or \"udp\"".into(),
                );
            }
            if r.ports.contains(&0) {
                c.error(s, &p.k("ports"), "port 0 is not a port".into());
            }
        }
    }
    for (key, argv) in ve.hooks.each() {
        let p = KeyPath::key("hooks").k(key);
        match argv.first() {
            None => c.error(
                s,
                &p,
                "a hook needs a command: [\"/path/to/program\", \"arg\"...]".into(),
            ),
            Some(prog) if !prog.starts_with('/') => c.error(
                s,
                &p.i(0),
                format!(
                    "hook program {prog:?} must be an absolute path (no shell, no PATH search)"
                ),
            ),
            Some(_) => {}
        }
    }
}
