//! Checks that need more than one field: names, uniqueness, references, ranges.
//! They read the kernel only to see that named namespaces and sysctls exist.

use std::collections::BTreeMap;
use std::path::Path;

mod link;

use super::{Config, ConfigError, KeyPath, SourceFile, SysctlValue};

/// The kernel's IFNAMSIZ - 1.
pub const IFNAME_MAX: usize = 15;

struct Checker<'a> {
    errors: &'a mut Vec<ConfigError>,
    /// Sysctl files already looked up: 1000 VEs name the same few keys.
    known_sysctls: BTreeMap<std::path::PathBuf, bool>,
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
            let probe = if per_interface {
                interface_sysctl_path(key, "default")
            } else {
                Some(global_sysctl_path(key))
            };
            match probe {
                Some(file) if *self.known_sysctls.entry(file.clone()).or_insert_with(|| file.exists()) => {}
                Some(_) if per_interface => self.error(
                    source,
                    &p,
                    format!("unknown per-interface sysctl {key:?} (not in /proc/sys/net/ipv4/conf/default)"),
                ),
                _ => self.error(source, &p, format!("unknown sysctl {key:?} (not under /proc/sys)")),
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

/// `/proc/sys/...` for a dotted global key; slashes are accepted too.
pub fn global_sysctl_path(key: &str) -> std::path::PathBuf {
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    Path::new("/proc/sys").join(rel.trim_start_matches('/'))
}

/// `/proc/sys/net/ipv4/conf/IF/KEY`; `ipv6.KEY` selects the IPv6 tree. `None` for
/// keys that try to leave the interface's folder.
pub fn interface_sysctl_path(key: &str, ifname: &str) -> Option<std::path::PathBuf> {
    let (family, leaf) = match key.strip_prefix("ipv6.") {
        Some(rest) => ("ipv6", rest),
        None => ("ipv4", key.strip_prefix("ipv4.").unwrap_or(key)),
    };
    if leaf.is_empty() || leaf.contains(['/', '.']) {
        return None;
    }
    Some(
        Path::new("/proc/sys/net")
            .join(family)
            .join("conf")
            .join(ifname)
            .join(leaf),
    )
}

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
    let mut vrrp_names: BTreeMap<&str, KeyPath> = BTreeMap::new();
    let mut vrrp_ids: BTreeMap<(&str, u8, bool), KeyPath> = BTreeMap::new();
    for (i, v) in host.vrrp.iter().enumerate() {
        let p = KeyPath::key("vrrp").i(i);
        check_vrrp(&mut c, hs, &p, v);
        if let Some(first) = vrrp_names.insert(&v.name, p.k("name")) {
            c.error(
                hs,
                &p.k("name"),
                format!(
                    "duplicate VRRP instance name {:?} (also at {})",
                    v.name,
                    hs.locate(&first)
                ),
            );
        }
        let v4 = v.virtual_ips.first().is_none_or(|a| a.addr().is_ipv4());
        if let Some(first) = vrrp_ids.insert((&v.interface, v.vrid, v4), p.k("vrid")) {
            c.error(
                hs,
                &p.k("vrid"),
                format!(
                    "VRID {} is already used on {} for this address family (at {})",
                    v.vrid,
                    v.interface,
                    hs.locate(&first)
                ),
            );
        }
    }
    check_virtual_servers(&mut c, config);
    for (i, route) in host.route.iter().enumerate() {
        let p = KeyPath::key("route").i(i);
        check_route(&mut c, hs, &p, route);
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
            if let Some(gw) = netif.gateway {
                if !netif
                    .addresses
                    .iter()
                    .any(|a| a.addr().is_ipv4() == gw.is_ipv4())
                {
                    c.error(
                        s,
                        &p.k("gateway"),
                        format!("gateway {gw} has no address of its family on this interface"),
                    );
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

fn check_vrrp(c: &mut Checker, s: &SourceFile, p: &KeyPath, v: &super::Vrrp) {
    if v.name.is_empty() {
        c.error(s, &p.k("name"), "instance name is empty".into());
    }
    c.ifname(s, &p.k("interface"), &v.interface);
    if v.vrid == 0 {
        c.error(s, &p.k("vrid"), "VRID 0 is reserved: use 1..255".into());
    }
    if v.priority == 0 {
        c.error(
            s,
            &p.k("priority"),
            "priority 0 is reserved for a master that stops: use 1..255".into(),
        );
    }
    match v.version {
        2 => {
            if !v.advert_interval_ms.is_multiple_of(1000)
                || !(1000..=255_000).contains(&v.advert_interval_ms)
            {
                c.error(
                    s,
                    &p.k("advert_interval_ms"),
                    format!(
                        "VRRPv2 intervals are whole seconds, 1..255 s; {} ms is not",
                        v.advert_interval_ms
                    ),
                );
            }
            if v.virtual_ips.iter().any(|a| a.addr().is_ipv6()) {
                c.error(
                    s,
                    &p.k("virtual_ips"),
                    "VRRPv2 is IPv4 only: use version = 3 for IPv6".into(),
                );
            }
        }
        3 => {
            if !v.advert_interval_ms.is_multiple_of(10)
                || !(10..=40_950).contains(&v.advert_interval_ms)
            {
                c.error(
                    s,
                    &p.k("advert_interval_ms"),
                    format!(
                        "VRRPv3 intervals are centiseconds, 10..40950 ms; {} ms is not",
                        v.advert_interval_ms
                    ),
                );
            }
            if v.password.is_some() {
                c.error(
                    s,
                    &p.k("password"),
                    "VRRPv3 has no authentication (RFC 5798 9): remove password".into(),
                );
            }
        }
        other => c.error(
            s,
            &p.k("version"),
            format!("VRRP version {other}: use 2 or 3"),
        ),
    }
    if v.virtual_ips.is_empty() {
        c.error(
            s,
            &p.k("virtual_ips"),
            "at least one virtual IP is needed".into(),
        );
    } else if v
        .virtual_ips
        .iter()
        .any(|a| a.addr().is_ipv4() != v.virtual_ips[0].addr().is_ipv4())
    {
        c.error(
            s,
            &p.k("virtual_ips"),
            "one instance's virtual IPs must be all IPv4 or all IPv6".into(),
        );
    }
    if v.virtual_ips.len() > 255 {
        c.error(
            s,
            &p.k("virtual_ips"),
            "at most 255 virtual IPs fit in an advert".into(),
        );
    }
    if v.password.as_ref().is_some_and(|pw| pw.len() > 8) {
        c.error(
            s,
            &p.k("password"),
            "a VRRPv2 password is at most 8 bytes".into(),
        );
    }
    for (j, t) in v.track.iter().enumerate() {
        let tp = p.k("track").i(j);
        c.ifname(s, &tp, t.interface());
        if !(-254..=254).contains(&t.weight()) {
            c.error(
                s,
                &tp,
                format!("track weight {} is out of range: use -254..254", t.weight()),
            );
        }
    }
    for (key, argv) in [
        ("notify_master", &v.notify_master),
        ("notify_backup", &v.notify_backup),
        ("notify_fault", &v.notify_fault),
        ("notify", &v.notify),
    ] {
        if let Some(program) = argv.first() {
            if !program.starts_with('/') {
                c.error(
                    s,
                    &p.k(key),
                    format!(
                        "{program:?}: the program must be an absolute path (hooks run as argv, without a shell or PATH)"
                    ),
                );
            }
        }
        if argv.iter().any(|a| a.contains('\0')) {
            c.error(s, &p.k(key), "an argument contains a NUL byte".into());
        }
    }
    if !(1..=3_600_000).contains(&v.notify_timeout_ms) {
        c.error(
            s,
            &p.k("notify_timeout_ms"),
            format!(
                "notify timeout {} ms is out of range: use 1..3600000",
                v.notify_timeout_ms
            ),
        );
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
    let mut seen: BTreeMap<(std::net::IpAddr, u16, super::LbProtocol), KeyPath> = BTreeMap::new();
    for (i, vs) in config.host.virtual_server.iter().enumerate() {
        let p = KeyPath::key("virtual_server").i(i);
        if vs.port == 0 {
            c.error(s, &p.k("port"), "port 0 is not a service port".into());
        }
        if let Some(first) = seen.insert((vs.vip, vs.port, vs.protocol), p.k("vip")) {
            c.error(
                s,
                &p.k("vip"),
                format!(
                    "{} is already a virtual server (at {})",
                    vs.display_name(),
                    s.locate(&first)
                ),
            );
        }
        if vs.scheduler == super::Scheduler::SourceHash && vs.hash_seed.is_none() {
            c.error(
                s,
                &p.k("scheduler"),
                "source-hash needs an explicit hash_seed, shared by every host that may hold the VIP"
                    .into(),
            );
        }
        if vs.quorum == 0 {
            c.error(s, &p.k("quorum"), "quorum must be at least 1".into());
        }
        if vs.on_backend_failure == super::OnFailure::Reset && vs.protocol != super::LbProtocol::Tcp
        {
            c.error(
                s,
                &p.k("on_backend_failure"),
                "reset sends TCP resets: it needs protocol = \"tcp\"".into(),
            );
        }
        if vs.backends.is_empty() {
            c.error(
                s,
                &p.k("backends"),
                "a virtual server needs at least one backend".into(),
            );
        }
        for (j, b) in vs.backends.iter().enumerate() {
            let bp = p.k("backends").i(j);
            if !(1..=super::lb::MAX_WEIGHT).contains(&b.weight) {
                c.error(
                    s,
                    &bp.k("weight"),
                    format!(
                        "weight {} is out of range 1..={}",
                        b.weight,
                        super::lb::MAX_WEIGHT
                    ),
                );
            }
            if b.port == Some(0) {
                c.error(s, &bp.k("port"), "port 0 is not a service port".into());
            }
            match (b.ve, b.address) {
                (Some(_), Some(_)) | (None, None) => c.error(
                    s,
                    &bp,
                    "give exactly one of ve = ID or address = \"IP\"".into(),
                ),
                (None, Some(a)) if a.is_ipv4() != vs.vip.is_ipv4() => c.error(
                    s,
                    &bp.k("address"),
                    format!("{a} is not of the VIP's address family ({})", vs.vip),
                ),
                (Some(id), None) => {
                    if let Err(why) = super::lb::ve_address(config, id, vs.vip.is_ipv4()) {
                        c.error(s, &bp.k("ve"), why);
                    }
                }
                _ => {}
            }
        }
        if let Some(sorry) = &vs.sorry_server {
            if sorry.address.is_ipv4() != vs.vip.is_ipv4() {
                c.error(
                    s,
                    &p.k("sorry_server").k("address"),
                    format!("{} is not of the VIP's address family", sorry.address),
                );
            }
        }
        if let Some(check) = &vs.check {
            let cp = p.k("check");
            if check.interval_ms == 0 {
                c.error(
                    s,
                    &cp.k("interval_ms"),
                    "interval_ms must be above 0".into(),
                );
            }
            if check.timeout_ms == 0 {
                c.error(s, &cp.k("timeout_ms"), "timeout_ms must be above 0".into());
            }
            if check.fall == 0 {
                c.error(s, &cp.k("fall"), "fall must be at least 1".into());
            }
            if check.rise == 0 {
                c.error(s, &cp.k("rise"), "rise must be at least 1".into());
            }
            match check.kind {
                super::CheckKind::Command => match &check.command {
                    Some(argv) if !argv.is_empty() && !argv[0].is_empty() => {}
                    _ => c.error(
                        s,
                        &cp.k("command"),
                        "kind = \"command\" needs command = [\"/path/to/program\", ...]".into(),
                    ),
                },
                _ if check.command.is_some() => c.error(
                    s,
                    &cp.k("command"),
                    "command is only used with kind = \"command\"".into(),
                ),
                _ => {}
            }
            if let Some(path) = &check.path {
                if check.kind != super::CheckKind::Http {
                    c.error(
                        s,
                        &cp.k("path"),
                        "path is only used with kind = \"http\"".into(),
                    );
                } else if !path.starts_with('/')
                    || path.chars().any(|ch| ch.is_control() || ch == ' ')
                {
                    c.error(
                        s,
                        &cp.k("path"),
                        format!("{path:?} is not an HTTP path (starts with /, no spaces or control characters)"),
                    );
                }
            }
        }
    }
}
