//! Checks that need more than one field: names, uniqueness, references, ranges.
//! They read the kernel only to see that named namespaces and sysctls exist.

use std::collections::BTreeMap;

mod link;

use super::{Config, ConfigError, KeyPath, SourceFile, SysctlValue};

/// The kernel's IFNAMSIZ - 1.
pub const IFNAME_MAX: usize = 15;

struct Checker<'a> {
    errors: &'a mut Vec<ConfigError>,
    /// Sysctl files already looked up: 1000 VEs name the same few keys.
    known_sysctls: BTreeMap<std::path::PathBuf, Result<(), String>>,
}

impl Checker<'_> {
    fn error(&mut self, source: &SourceFile, path: &KeyPath, message: String) {
        self.errors.push(ConfigError {
            location: source.locate(path),
            key: path.to_string(),
            message,
        });
    }

    fn ifname(&mut self, source: &SourceFile, path: &KeyPath, name: &str) {
        if let Err(why) = check_ifname(name) {
            self.error(source, path, why);
        }
    }

    fn sysctls(
        &mut self,
        source: &SourceFile,
        path: &KeyPath,
        map: &BTreeMap<String, SysctlValue>,
        per_interface: bool,
    ) {
        for (key, value) in map {
            let p = path.k(key);
            if let SysctlValue::Str(s) = value {
                if s.contains(['\n', '\0']) {
                    self.error(source, &p, "sysctl value must be one line".into());
                }
            }
            let file = if per_interface {
                interface_sysctl_path(key, "default")
            } else {
                global_sysctl_path(key)
            };
            let checked = file.and_then(|file| {
                self.known_sysctls
                    .entry(file.clone())
                    .or_insert_with(|| super::sysctl::check_file(&file))
                    .clone()
            });
            if let Err(why) = checked {
                self.error(source, &p, why);
            }
        }
    }
}

/// Why `name` cannot be a Linux interface name, if it cannot: the kernel's
/// rules (net/core/dev.c, dev_valid_name) and what it does with the name.
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("interface name is empty".into());
    }
    if name.len() > IFNAME_MAX {
        return Err(format!(
            "interface name {name:?} is {} bytes, the kernel allows at most {IFNAME_MAX}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("interface name {name:?} is not allowed"));
    }
    // isspace() in the kernel's lib/ctype.c: ASCII whitespace and 0xA0, a byte
    // that UTF-8 letters such as "à" contain.
    let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0);
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || space(b))
    {
        return Err(format!(
            "interface name {name:?} may not contain '/', ':' or spaces (the kernel also counts byte 0xA0 as a space)"
        ));
    }
    if name.contains('%') {
        return Err(format!(
            "interface name {name:?} contains '%': the kernel takes it as a template (eth%d) and picks another name"
        ));
    }
    if name == "all" || name == "default" {
        return Err(format!(
            "interface name {name:?} is reserved: /proc/sys/net/*/conf/{name} are the kernel's own settings"
        ));
    }
    Ok(())
}

pub use super::sysctl::{global_sysctl_path, interface_sysctl_path};

/// Where a name was first declared, for "also at" notes.
struct Declared<'a> {
    source: &'a SourceFile,
    path: KeyPath,
}

/// Port name -> (bridge, where it is declared).
type Ports<'a> = BTreeMap<String, (String, Declared<'a>)>;

fn add_port<'a>(
    c: &mut Checker,
    ports: &mut Ports<'a>,
    port: &str,
    bridge: &str,
    source: &'a SourceFile,
    path: KeyPath,
) {
    if let Some((other, at)) = ports.get(port) {
        let msg = if other == bridge {
            format!(
                "{port:?} is listed twice as a port of bridge {bridge:?} (also at {})",
                at.source.locate(&at.path)
            )
        } else {
            format!(
                "{port:?} cannot be a port of bridge {bridge:?}: it is already a port of bridge {other:?} (at {})",
                at.source.locate(&at.path)
            )
        };
        c.error(source, &path, msg);
    } else {
        ports.insert(
            port.to_string(),
            (bridge.to_string(), Declared { source, path }),
        );
    }
}

pub(super) fn validate(config: &Config, errors: &mut Vec<ConfigError>) {
    let mut c = Checker {
        errors,
        known_sysctls: BTreeMap::new(),
    };
    let hs = &config.host_source;
    let host = &config.host;
    // Every interface name vznet creates in the host netns, with where it is declared.
    let mut names: Vec<(String, &SourceFile, KeyPath)> = Vec::new();

    c.sysctls(hs, &KeyPath::key("sysctl"), &host.sysctl, false);

    let mut ports = link::check_host_links(&mut c, config, &mut names);
    let bridge_names: Vec<&str> = host.bridge.iter().map(|b| b.name.as_str()).collect();
    check_vrrp(&mut c, hs, host);
    check_virtual_servers(&mut c, config);
    for (i, route) in host.route.iter().enumerate() {
        let p = KeyPath::key("route").i(i);
        check_route(&mut c, hs, &p, route);
    }
    for (path, why) in super::routing::host_problems(host) {
        c.error(hs, &path, why);
    }
    let mut netns_users: BTreeMap<std::path::PathBuf, (u32, Declared)> = BTreeMap::new();
    for file in &config.ves {
        let ve = &file.ve;
        let s = &file.source;
        let stem = s.path().file_stem().and_then(|x| x.to_str()).unwrap_or("");
        if stem != ve.id.to_string() {
            c.error(
                s,
                &KeyPath::key("id"),
                format!("id {} does not match the file name {stem:?}.toml", ve.id),
            );
        }
        if let Some(ns) = &ve.netns {
            let path = super::netns_path(ns);
            if ns.is_empty() || (!ns.starts_with('/') && ns.contains('/')) {
                c.error(
                    s,
                    &KeyPath::key("netns"),
                    format!("invalid netns {ns:?}: a name under /run/netns or an absolute path"),
                );
            } else if !path.exists() {
                c.error(
                    s,
                    &KeyPath::key("netns"),
                    format!(
                        "network namespace {ns:?} does not exist ({} is missing)",
                        path.display()
                    ),
                );
            } else if let Some((other, at)) = netns_users.get(&path) {
                c.error(
                    s,
                    &KeyPath::key("netns"),
                    format!(
                        "network namespace {ns:?} is already VE {other}'s (at {})",
                        at.source.locate(&at.path)
                    ),
                );
            } else {
                netns_users.insert(
                    path,
                    (
                        ve.id,
                        Declared {
                            source: s,
                            path: KeyPath::key("netns"),
                        },
                    ),
                );
            }
        }
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
            for (key, mac) in [("mac", netif.mac), ("host_mac", netif.host_mac)] {
                if let Some(mac) = mac {
                    if mac.is_multicast() {
                        c.error(s, &p.k(key), format!("{mac} is a multicast address"));
                    }
                }
            }
            if let Some(bridge) = &netif.bridge {
                if !bridge_names.contains(&bridge.as_str()) {
                    c.error(
                        s,
                        &p.k("bridge"),
                        format!("no bridge {bridge:?} in {}", hs.path().display()),
                    );
                } else {
                    add_port(&mut c, &mut ports, &host_name, bridge, s, p.k("bridge"));
                }
            }
            let bridge = netif
                .bridge
                .as_ref()
                .and_then(|b| host.bridge.iter().find(|br| &br.name == b));
            link::check_port(&mut c, s, &p, &netif.port_options(), bridge);
            link::check_mtu(&mut c, s, &p.k("mtu"), netif.mtu);
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
            link::check_mtu(&mut c, s, &p.k("mtu"), venet.mtu);
            if inner.contains_key(VENET_IFNAME) {
                c.error(
                    s,
                    &p,
                    format!("{VENET_IFNAME:?} is the venet interface's name; rename the netif"),
                );
            }
        }
        check_ve_runtime(&mut c, s, ve);
    }

    // Names vznet creates in the host netns must be unique.
    let mut seen: BTreeMap<&str, (&SourceFile, &KeyPath)> = BTreeMap::new();
    for (name, source, path) in &names {
        if let Some((s0, p0)) = seen.get(name.as_str()) {
            c.error(
                source,
                path,
                format!(
                    "duplicate interface name {name:?} (also at {})",
                    s0.locate(p0)
                ),
            );
        } else {
            seen.insert(name, (source, path));
        }
    }
    link::check_slaves(&mut c, config, &ports);
}

/// The VRRP tables: the vrrp crate checks them and names the field; interface names
/// get the rule every link gets; and `accept_local`, which a non-owner IPv4 instance
/// sets on its interface, must not be pinned by the host config too (one owner).
fn check_vrrp(c: &mut Checker, s: &SourceFile, host: &super::HostConfig) {
    let settings = host.vrrp_settings();
    for e in settings.validate() {
        c.error(s, &super::vrrp_config::key_path(&e.path), e.message);
    }
    for (field, name) in settings.interface_names() {
        c.ifname(s, &super::vrrp_config::key_path(&field), name);
    }
    for (i, v) in settings.vrrp.iter().enumerate() {
        if v.is_owner() || v.use_vmac || v.family() != vrrp::AddressFamily::Ipv4 {
            continue;
        }
        let pinned = host
            .bridge
            .iter()
            .map(|b| (&b.name, &b.sysctl))
            .chain(host.bond.iter().map(|b| (&b.name, &b.sysctl)))
            .chain(host.vlan.iter().map(|b| (&b.name, &b.sysctl)))
            .find(|(name, sysctl)| {
                **name == v.interface
                    && sysctl
                        .keys()
                        .any(|k| k == "accept_local" || k == "ipv4.accept_local")
            });
        if pinned.is_some() {
            c.error(
                s,
                &KeyPath::key("vrrp").i(i).k("interface"),
                format!(
                    "VRRP sets net.ipv4.conf.{}.accept_local = 1 for this instance (to hear an address owner's adverts): remove accept_local from the interface's sysctl",
                    v.interface
                ),
            );
        }
    }
}

/// The runtime's keys of a VE file: cgroup limits and hooks.
fn check_ve_runtime(c: &mut Checker, s: &SourceFile, ve: &super::VeConfig) {
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
            if !r.ports.is_empty() && !matches!(r.proto, super::FwProto::Tcp | super::FwProto::Udp)
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
        if argv.iter().any(|a| a.contains('\0')) {
            c.error(s, &p, "hook arguments cannot contain NUL".into());
        }
    }
    for (p, message) in ve.runtime_problems() {
        c.error(s, &p, message);
    }
}

/// Why `gw` cannot be the default gateway `key` of `netif`. A link-local IPv6
/// gateway needs no address of the interface's: the kernel gives the VE end a
/// link-local one of its own.
fn check_gateway(netif: &super::Netif, key: &str, gw: std::net::IpAddr) -> Result<(), String> {
    if key == "gateway6" {
        if gw.is_ipv4() {
            return Err(format!("gateway6 {gw} is not an IPv6 address: use gateway"));
        }
        if netif.gateway.is_some_and(|g| g.is_ipv6()) {
            return Err("gateway is IPv6 already: one default gateway per family".into());
        }
    }
    let link_local =
        matches!(gw, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
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

/// The VE-side name of the venet link.
pub const VENET_IFNAME: &str = "venet0";

fn check_route(c: &mut Checker, s: &SourceFile, p: &KeyPath, route: &super::Route) {
    use super::RouteDest;
    if route.via.is_none() && route.dev.is_none() {
        c.error(s, &p.k("to"), "a route needs `via`, `dev` or both".into());
    }
    if let Some(dev) = &route.dev {
        c.ifname(s, &p.k("dev"), dev);
    }
    if let (RouteDest::Prefix(net), Some(via)) = (route.to, route.via) {
        if net.addr().is_ipv4() != via.is_ipv4() {
            c.error(
                s,
                &p.k("via"),
                format!("gateway {via} and destination {net} are of different families"),
            );
        }
    }
}

fn check_virtual_servers(c: &mut Checker, config: &Config) {
    let s = &config.host_source;
    for (path, message) in super::lb::validate::problems(config, s) {
        c.error(s, &path, message);
    }
}
