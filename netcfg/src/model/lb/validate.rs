//! Checks of `[[virtual_server]]` that need more than one field.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{
    Backend, CheckKind, HealthCheck, LbKind, LbProtocol, Matcher, OnFailure, Scheduler,
    VirtualServer, MAX_WEIGHT,
};
use crate::model::{Config, KeyPath, SourceFile};

/// One problem: where, and what.
pub type Problem = (KeyPath, String);

/// Every problem of the config's virtual servers (`source` is host.toml, for
/// "already at" notes).
pub fn problems(config: &Config, source: &SourceFile) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<(Matcher, LbProtocol), KeyPath> = BTreeMap::new();
    for (i, vs) in config.host.virtual_server.iter().enumerate() {
        let p = KeyPath::key("virtual_server").i(i);
        addressing(&mut out, &p, vs);
        for (m, at) in vs.matchers().into_iter().zip(matcher_paths(&p, vs)) {
            if let Some(first) = seen.insert((m, vs.protocol), at.clone()) {
                out.push((
                    at,
                    format!(
                        "{} is already served by a virtual server (at {})",
                        matcher_name(m, vs.protocol),
                        source.locate(&first)
                    ),
                ));
            }
        }
        service(&mut out, &p, vs);
        for (j, b) in vs.backends.iter().enumerate() {
            backend(&mut out, config, vs, &p.k("backends").i(j), b);
        }
        if let Some(check) = &vs.check {
            let needs_port = vs
                .backends
                .iter()
                .any(|b| b.checks.is_empty() && backend_port(vs, b) == 0);
            health_check(&mut out, &p.k("check"), check, needs_port);
        }
    }
    out
}

fn matcher_name(m: Matcher, proto: LbProtocol) -> String {
    match m {
        Matcher::Address { vip, port } => {
            format!(
                "{}/{}",
                std::net::SocketAddr::new(vip, port),
                proto.as_str()
            )
        }
        Matcher::Mark(mark) => format!("fwmark {mark}/{}", proto.as_str()),
    }
}

/// The key of each matcher, in `matchers()` order.
fn matcher_paths(p: &KeyPath, vs: &VirtualServer) -> Vec<KeyPath> {
    let mut out = Vec::new();
    if vs.vip.is_some() {
        out.push(p.k("vip"));
    } else if vs.fwmark.is_some() {
        out.push(p.k("fwmark"));
    }
    for (j, m) in vs.members.iter().enumerate() {
        if m.vip.is_some() || m.fwmark.is_some() {
            out.push(p.k("members").i(j));
        }
    }
    out
}

fn addressing(out: &mut Vec<Problem>, p: &KeyPath, vs: &VirtualServer) {
    let ways = usize::from(vs.vip.is_some())
        + usize::from(vs.fwmark.is_some())
        + usize::from(!vs.members.is_empty());
    if ways != 1 {
        out.push((
            p.clone(),
            "give exactly one of vip = \"IP\" (with port), fwmark = N, or members = [...]".into(),
        ));
    }
    address_pair(out, p, vs.vip, vs.port, vs.fwmark);
    let mut families = Vec::new();
    for (j, m) in vs.members.iter().enumerate() {
        let mp = p.k("members").i(j);
        if usize::from(m.vip.is_some()) + usize::from(m.fwmark.is_some()) != 1 {
            out.push((
                mp.clone(),
                "give vip = \"IP\" with port, or fwmark = N".into(),
            ));
        }
        address_pair(out, &mp, m.vip, m.port, m.fwmark);
        families.extend(m.vip.map(|a| (a.is_ipv4(), mp.k("vip"))));
    }
    if let Some((v4, _)) = families.first().cloned() {
        for (fam, at) in families {
            if fam != v4 {
                out.push((
                    at,
                    "all members of a virtual server must be of one address family".into(),
                ));
            }
        }
    }
}

fn address_pair(
    out: &mut Vec<Problem>,
    p: &KeyPath,
    vip: Option<IpAddr>,
    port: Option<u16>,
    mark: Option<u32>,
) {
    match (vip, port) {
        (Some(_), None) => out.push((p.k("vip"), "vip needs port = N".into())),
        (None, Some(_)) => out.push((p.k("port"), "port is only used with vip".into())),
        (_, Some(0)) => out.push((p.k("port"), "port 0 is not a service port".into())),
        _ => {}
    }
    if mark == Some(0) {
        out.push((p.k("fwmark"), "fwmark 0 marks nothing".into()));
    }
}

fn service(out: &mut Vec<Problem>, p: &KeyPath, vs: &VirtualServer) {
    if vs.scheduler == Scheduler::SourceHash && vs.hash_seed.is_none() {
        out.push((
            p.k("scheduler"),
            "source-hash needs an explicit hash_seed, shared by every host that may hold the VIP"
                .into(),
        ));
    }
    if vs.quorum == 0 {
        out.push((p.k("quorum"), "quorum must be at least 1".into()));
    }
    if vs.on_backend_failure == OnFailure::Reset && vs.protocol != LbProtocol::Tcp {
        out.push((
            p.k("on_backend_failure"),
            "reset sends TCP resets: it needs protocol = \"tcp\"".into(),
        ));
    }
    if vs.lb_kind == LbKind::Dr {
        direct_routing(out, p, vs);
    }
    if let Some(bits) = vs.persistence_granularity {
        let max = if vs.is_ipv4() { 32 } else { 128 };
        if vs.persistence_timeout_ms == 0 {
            out.push((
                p.k("persistence_granularity"),
                "persistence_granularity needs persistence_timeout_ms".into(),
            ));
        } else if !(1..=max).contains(&bits) {
            out.push((
                p.k("persistence_granularity"),
                format!("{bits} is not a prefix length of 1..={max}"),
            ));
        }
    }
    if vs.persistence_timeout_ms > 0 && vs.persistence_timeout_ms < 1000 {
        out.push((
            p.k("persistence_timeout_ms"),
            "persistence_timeout_ms below 1000 is not supported (nftables set timeouts)".into(),
        ));
    }
    if vs.backends.is_empty() {
        out.push((
            p.k("backends"),
            "a virtual server needs at least one backend".into(),
        ));
    }
    if let Some(sorry) = &vs.sorry_server {
        if sorry.address.is_ipv4() != vs.is_ipv4() {
            out.push((
                p.k("sorry_server").k("address"),
                format!(
                    "{} is not of the virtual server's address family",
                    sorry.address
                ),
            ));
        }
    }
    for (key, argv) in [
        ("quorum_up", &vs.quorum_up),
        ("quorum_down", &vs.quorum_down),
    ] {
        hook(out, &p.k(key), argv.as_deref());
    }
    if !(1..=3_600_000).contains(&vs.notify_timeout_ms) {
        out.push((
            p.k("notify_timeout_ms"),
            format!(
                "notify timeout {} ms is out of range: use 1..3600000",
                vs.notify_timeout_ms
            ),
        ));
    }
    // With marks or several members, backends keep the client's port unless
    // every one names its own: one DNAT rule serves them all.
    if vs.single_port().is_none() {
        let with_port = vs.backends.iter().filter(|b| b.port.is_some()).count();
        if with_port != 0 && with_port != vs.backends.len() {
            out.push((
                p.k("backends"),
                "with fwmark or members, give every backend a port or none (none: the client's port is kept)".into(),
            ));
        }
    }
}

fn direct_routing(out: &mut Vec<Problem>, p: &KeyPath, vs: &VirtualServer) {
    let at = p.k("lb_kind");
    if vs.masquerade {
        out.push((
            at.clone(),
            "direct routing cannot masquerade: backends answer clients directly".into(),
        ));
    }
    if vs.on_backend_failure == OnFailure::Reset {
        out.push((
            at.clone(),
            "direct routing keeps no connection state to reset: use on_backend_failure = \"drain\""
                .into(),
        ));
    }
    if vs.scheduler.least_connection() {
        out.push((at.clone(), "lc and wlc count connections in conntrack, which direct routing bypasses: use lb_kind = \"nat\"".into()));
    }
    if vs.matchers().iter().any(|m| matches!(m, Matcher::Mark(_))) {
        out.push((
            at.clone(),
            "direct routing matches before the mangle hook sets marks: give addresses, not fwmark"
                .into(),
        ));
    }
    for (j, b) in vs.backends.iter().enumerate() {
        if b.port.is_some_and(|port| Some(port) != vs.single_port()) {
            out.push((
                p.k("backends").i(j).k("port"),
                "direct routing cannot change the port: backends serve the virtual server's port"
                    .into(),
            ));
        }
    }
}

fn hook(out: &mut Vec<Problem>, p: &KeyPath, argv: Option<&[String]>) {
    let Some(argv) = argv else { return };
    match argv.first() {
        None => out.push((p.clone(), "a hook needs [\"/path/to/program\", ...]".into())),
        Some(program) if !program.starts_with('/') => out.push((
            p.clone(),
            format!("{program:?}: the program must be an absolute path (hooks run as argv, without a shell or PATH)"),
        )),
        _ => {}
    }
    if argv.iter().any(|a| a.contains('\0')) {
        out.push((p.clone(), "an argument contains a NUL byte".into()));
    }
}

/// The backend's port, 0 when it keeps the client's.
fn backend_port(vs: &VirtualServer, b: &Backend) -> u16 {
    b.port.or(vs.single_port()).unwrap_or(0)
}

fn backend(out: &mut Vec<Problem>, config: &Config, vs: &VirtualServer, p: &KeyPath, b: &Backend) {
    if !(1..=MAX_WEIGHT).contains(&b.weight) {
        out.push((
            p.k("weight"),
            format!("weight {} is out of range 1..={MAX_WEIGHT}", b.weight),
        ));
    }
    if b.port == Some(0) {
        out.push((p.k("port"), "port 0 is not a service port".into()));
    }
    let v4 = vs.is_ipv4();
    match (b.ve, b.address) {
        (Some(_), Some(_)) | (None, None) => out.push((
            p.clone(),
            "give exactly one of ve = ID or address = \"IP\"".into(),
        )),
        (None, Some(a)) if a.is_ipv4() != v4 => out.push((
            p.k("address"),
            format!("{a} is not of the virtual server's address family"),
        )),
        (Some(id), None) => {
            if let Err(why) = super::ve_address(config, id, v4) {
                out.push((p.k("ve"), why));
            }
        }
        _ => {}
    }
    for (key, argv) in [("notify_up", &b.notify_up), ("notify_down", &b.notify_down)] {
        hook(out, &p.k(key), argv.as_deref());
    }
    let needs_port = backend_port(vs, b) == 0;
    for (k, check) in b.checks.iter().enumerate() {
        health_check(out, &p.k("checks").i(k), check, needs_port);
    }
}

fn health_check(out: &mut Vec<Problem>, p: &KeyPath, check: &HealthCheck, needs_port: bool) {
    for (key, v) in [
        ("interval_ms", Some(check.interval_ms)),
        ("timeout_ms", Some(check.timeout_ms)),
        ("retry_interval_ms", check.retry_interval_ms),
    ] {
        if v == Some(0) {
            out.push((p.k(key), format!("{key} must be above 0")));
        }
    }
    if check.fall == 0 {
        out.push((p.k("fall"), "fall must be at least 1".into()));
    }
    if check.rise == 0 {
        out.push((p.k("rise"), "rise must be at least 1".into()));
    }
    if check.port == Some(0) {
        out.push((p.k("port"), "port 0 cannot be checked".into()));
    }
    if needs_port && check.port.is_none() && check.kind != CheckKind::Command {
        out.push((
            p.k("port"),
            "the backend keeps the client's port (fwmark or members): give the check a port".into(),
        ));
    }
    match check.kind {
        CheckKind::Command => match &check.command {
            Some(argv) if !argv.is_empty() && !argv[0].is_empty() => {}
            _ => out.push((
                p.k("command"),
                "kind = \"command\" needs command = [\"/path/to/program\", ...]".into(),
            )),
        },
        _ if check.command.is_some() => out.push((
            p.k("command"),
            "command is only used with kind = \"command\"".into(),
        )),
        _ => {}
    }
    let http_only: [(&str, bool); 4] = [
        ("path", check.path.is_some()),
        ("expect_status", check.expect_status.is_some()),
        ("urls", !check.urls.is_empty()),
        ("virtualhost", check.virtualhost.is_some()),
    ];
    for (key, set) in http_only {
        if set && !check.kind.is_http() {
            out.push((
                p.k(key),
                format!("{key} is only used with kind = \"http\" or \"https\""),
            ));
        }
    }
    let tls_only: [(&str, bool); 3] = [
        ("tls_verify", check.tls_verify),
        ("tls_ca", check.tls_ca.is_some()),
        ("tls_server_name", check.tls_server_name.is_some()),
    ];
    for (key, set) in tls_only {
        if set && check.kind != CheckKind::Https {
            out.push((
                p.k(key),
                format!("{key} is only used with kind = \"https\""),
            ));
        }
    }
    if let Some(ca) = &check.tls_ca {
        if !ca.is_file() {
            out.push((
                p.k("tls_ca"),
                format!("{} is not a readable file", ca.display()),
            ));
        }
    }
    if let Some(path) = &check.path {
        http_path(out, &p.k("path"), path);
    }
    if let Some(status) = check.expect_status {
        if !(100..=599).contains(&status) {
            out.push((
                p.k("expect_status"),
                format!("{status} is not an HTTP status (100..=599)"),
            ));
        }
    }
    for (u, url) in check.urls.iter().enumerate() {
        let up = p.k("urls").i(u);
        http_path(out, &up.k("path"), &url.path);
        for (k, codes) in url.status.iter().enumerate() {
            if codes.bounds().is_none() {
                out.push((
                    up.k("status").i(k),
                    "a status is a code or \"LOW-HIGH\" within 100..=599".into(),
                ));
            }
        }
        if let Some(d) = &url.digest {
            if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push((
                    up.k("digest"),
                    format!("{d:?} is not an MD5 digest (32 hex digits, as genhash prints)"),
                ));
            }
        }
        if let Some(v) = &url.virtualhost {
            host_name(out, &up.k("virtualhost"), v);
        }
    }
    if let Some(v) = &check.virtualhost {
        host_name(out, &p.k("virtualhost"), v);
    }
    if let Some(v) = &check.tls_server_name {
        host_name(out, &p.k("tls_server_name"), v);
    }
}

fn http_path(out: &mut Vec<Problem>, p: &KeyPath, path: &str) {
    if !path.starts_with('/') || path.chars().any(|ch| ch.is_control() || ch == ' ') {
        out.push((
            p.clone(),
            format!(
                "{path:?} is not an HTTP path (starts with /, no spaces or control characters)"
            ),
        ));
    }
}

fn host_name(out: &mut Vec<Problem>, p: &KeyPath, name: &str) {
    if name.is_empty() || name.chars().any(|ch| ch.is_control() || ch == ' ') {
        out.push((
            p.clone(),
            format!("{name:?} is not a host name (no spaces or control characters)"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Config;

    /// The errors of a host.toml holding `body`, one per line.
    fn errors(body: &str) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("host.toml"), body).expect("write");
        match Config::load(dir.path()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parity_keys_are_checked_with_their_location() {
        let text = errors(
            r#"[[virtual_server]]
vip = "10.0.0.1"
port = 80
lb_kind = "dr"
masquerade = true
scheduler = "wlc"
persistence_granularity = 24
hysteresis = 1
quorum_up = ["relative/script"]
check = { kind = "https", urls = [ { path = "/", status = ["299-200"], digest = "xyz" } ], tls_ca = "/no/such/ca.pem" }
backends = [ { address = "10.0.1.1", port = 81, checks = [ { kind = "tcp", tls_verify = true } ] } ]

[[virtual_server]]
fwmark = 7
members = [ { vip = "10.0.0.2", port = 80 } ]
backends = [ { address = "10.0.1.1", port = 80 }, { address = "10.0.1.2" } ]

[[virtual_server]]
fwmark = 9
check = { kind = "tcp" }
backends = [ { address = "10.0.1.1" } ]
"#,
        );
        for want in [
            "host.toml:4:1: virtual_server[0].lb_kind: direct routing cannot masquerade",
            "virtual_server[0].lb_kind: lc and wlc count connections in conntrack",
            "virtual_server[0].backends[0].port: direct routing cannot change the port",
            "host.toml:7:1: virtual_server[0].persistence_granularity: persistence_granularity needs persistence_timeout_ms",
            "virtual_server[0].quorum_up: \"relative/script\": the program must be an absolute path",
            "virtual_server[0].check.urls[0].status[0]: a status is a code",
            "virtual_server[0].check.urls[0].digest: \"xyz\" is not an MD5 digest",
            "virtual_server[0].check.tls_ca: /no/such/ca.pem is not a readable file",
            "virtual_server[0].backends[0].checks[0].tls_verify: tls_verify is only used with kind = \"https\"",
            "virtual_server[1]: give exactly one of vip",
            "virtual_server[1].backends: with fwmark or members, give every backend a port or none",
            "virtual_server[2].check.port: the backend keeps the client's port",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        assert_eq!(
            errors("[[virtual_server]]\nvip = \"10.0.0.1\"\nport = 80\nbackends = [ { address = \"10.0.1.1\" } ]\n"),
            ""
        );
    }
}
