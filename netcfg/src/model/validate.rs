//! Checks that need more than one field: names, uniqueness, references, ranges,
//! addresses. They read the kernel only to see that named namespaces, links and
//! sysctls exist (`validate/netns.rs`, `validate/used_link.rs`, `sysctl.rs`).

use std::collections::{BTreeMap, BTreeSet};

mod address;
mod link;
mod netns;
mod text;
mod used_link;
mod ve;

pub use address::{check_gateway_address, check_interface_address, check_mac};
pub use ve::VENET_IFNAME;

use super::{Config, ConfigError, KeyPath, Seg, SourceFile, SysctlValue};

/// Whose kernel the checks may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The config is for this host: the links it uses but does not make must
    /// exist here.
    ThisHost,
    /// The config is for another host (`vznet fleet push`): this host's links
    /// say nothing about it.
    OtherHost,
    /// This host, read by vznetd: a VE whose network namespace is missing is a
    /// VE that is not running now. Its unit waits for the namespace (and says
    /// so in the status); refusing the whole folder instead would block every
    /// reload while one VE is down.
    Agent,
}

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

pub(super) fn validate(config: &Config, scope: Scope, errors: &mut Vec<ConfigError>) {
    let mut c = Checker {
        errors,
        known_sysctls: BTreeMap::new(),
    };
    for source in std::iter::once(&config.host_source).chain(config.ves.iter().map(|f| &f.source)) {
        text::check_nul_bytes(&mut c, source);
    }
    let hs = &config.host_source;
    let host = &config.host;
    // Every interface name vznet creates in the host netns, with where it is declared.
    let mut names: Vec<(String, &SourceFile, KeyPath)> = Vec::new();

    c.sysctls(hs, &KeyPath::key("sysctl"), &host.sysctl, false);

    let mut ports = link::check_host_links(&mut c, config, &mut names);
    check_vrrp(&mut c, hs, host);
    check_virtual_servers(&mut c, config);
    for (i, route) in host.route.iter().enumerate() {
        let p = KeyPath::key("route").i(i);
        check_route(&mut c, hs, &p, route);
    }
    for (path, why) in super::routing::host_problems(host) {
        c.error(hs, &path, why);
    }
    ve::check_ves(&mut c, config, scope, &mut ports, &mut names);

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
    used_link::check_loopback(&mut c, config);
    if scope != Scope::OtherHost {
        let made: BTreeSet<&str> = names.iter().map(|(n, _, _)| n.as_str()).collect();
        used_link::check_existing(&mut c, config, &made);
    }
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

fn check_route(c: &mut Checker, s: &SourceFile, p: &KeyPath, route: &super::Route) {
    use super::RouteDest;
    if route.via.is_none() && route.dev.is_none() {
        c.error(s, &p.k("to"), "a route needs `via`, `dev` or both".into());
    }
    if let Some(dev) = &route.dev {
        c.ifname(s, &p.k("dev"), dev);
    }
    c.gateway(s, &p.k("via"), route.via);
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
