//! keepalived's checkers (`TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `MISC_CHECK`) into
//! vznet's health checks, with keepalived's defaults written out: `delay_loop`
//! (60 s) is the interval, `connect_timeout` (5 s) the timeout, `retry` (1; 0 for
//! MISC_CHECK) failures more than one take a backend out (fall = retry + 1, rise =
//! 1), `delay_before_retry` (1 s; 3 s for HTTP and SSL) is the retry interval. A
//! checker takes what it does not set from its real server, which takes it from
//! its virtual server.

use netcfg::model::lb::{StatusCodes, Url};
use netcfg::model::{CheckKind, HealthCheck};

use super::super::parser::Node;
use super::keywords::Scope;
use super::{command, value, Ctx};

/// Checker settings a virtual server or real server gives its checkers.
#[derive(Debug, Clone, Default)]
pub struct Inherited {
    /// `delay_loop`, µs.
    pub delay_loop_us: Option<u64>,
    /// `connect_timeout`, µs.
    pub connect_timeout_us: Option<u64>,
    /// `retry`.
    pub retry: Option<u64>,
    /// `delay_before_retry`, µs.
    pub delay_before_retry_us: Option<u64>,
    /// `virtualhost`.
    pub virtualhost: Option<String>,
    /// `alpha` of the real server.
    pub alpha: Option<bool>,
}

/// keepalived's defaults, where nothing sets them.
const DELAY_LOOP_US: u64 = 60_000_000;
const CONNECT_TIMEOUT_US: u64 = 5_000_000;

impl Inherited {
    /// Reads one of the keys a virtual or real server passes on; `false` if `node`
    /// is not one of them.
    pub(super) fn read(&mut self, ctx: &mut Ctx<'_>, node: &Node) -> bool {
        match node.keyword() {
            "delay_loop" => timer(ctx, node, &mut self.delay_loop_us),
            "connect_timeout" => timer(ctx, node, &mut self.connect_timeout_us),
            "delay_before_retry" => timer(ctx, node, &mut self.delay_before_retry_us),
            "retry" => match node
                .arg(1)
                .and_then(|v| value::unsigned(v, 0, u64::from(u32::MAX)))
            {
                Some(n) => self.retry = Some(n),
                None => ctx.invalid(node, "retry"),
            },
            "virtualhost" => match node.arg(1) {
                Some(v) => self.virtualhost = Some(v.to_string()),
                None => ctx.invalid(node, "virtualhost"),
            },
            _ => return false,
        }
        true
    }

    /// This level's settings over `outer`'s.
    pub fn over(&self, outer: &Inherited) -> Inherited {
        Inherited {
            delay_loop_us: self.delay_loop_us.or(outer.delay_loop_us),
            connect_timeout_us: self.connect_timeout_us.or(outer.connect_timeout_us),
            retry: self.retry.or(outer.retry),
            delay_before_retry_us: self.delay_before_retry_us.or(outer.delay_before_retry_us),
            virtualhost: self
                .virtualhost
                .clone()
                .or_else(|| outer.virtualhost.clone()),
            alpha: self.alpha.or(outer.alpha),
        }
    }
}

fn timer(ctx: &mut Ctx<'_>, node: &Node, slot: &mut Option<u64>) {
    match node.arg(1).and_then(value::seconds_us).filter(|us| *us > 0) {
        Some(us) => *slot = Some(us),
        None => ctx.invalid(node, "time"),
    }
}

/// µs to ms, rounding up (vznet's timers are whole milliseconds).
fn ms(ctx: &mut Ctx<'_>, node: &Node, us: u64) -> u64 {
    let ms = us.div_ceil(1000);
    if !us.is_multiple_of(1000) {
        ctx.changed(node, format!("{us} µs rounded up to {ms} ms"));
    }
    ms
}

/// Whether `keyword` names one of keepalived's checkers.
pub fn is_checker(keyword: &str) -> bool {
    matches!(
        keyword,
        "TCP_CHECK"
            | "HTTP_GET"
            | "SSL_GET"
            | "MISC_CHECK"
            | "PING_CHECK"
            | "UDP_CHECK"
            | "DNS_CHECK"
            | "SMTP_CHECK"
            | "FILE_CHECK"
            | "BFD_CHECK"
    )
}

/// One checker block of a real server, with what it inherits; `None` when it is
/// not carried (reported).
pub(super) fn checker(
    ctx: &mut Ctx<'_>,
    node: &Node,
    outer: &Inherited,
    vs_delay_loop_us: Option<u64>,
) -> Option<HealthCheck> {
    let kind = match node.keyword() {
        "TCP_CHECK" => CheckKind::Tcp,
        "HTTP_GET" => CheckKind::Http,
        "SSL_GET" => CheckKind::Https,
        "MISC_CHECK" => CheckKind::Command,
        _ => {
            let why = super::keywords::reason(Scope::RealServer, node.keyword())
                .unwrap_or("vznet has no such check");
            ctx.lost(node, format!("{why}: the backend is carried without it"));
            return None;
        }
    };
    let mut own = Inherited::default();
    let mut c: HealthCheck = toml::from_str("kind = \"tcp\"").expect("a valid check");
    c.kind = kind;
    let mut misc_timeout_us: Option<u64> = None;
    let mut alpha: Option<bool> = None;
    for k in node.children() {
        if own.read(ctx, k) {
            continue;
        }
        match k.keyword() {
            "nb_get_retry" if kind.is_http() => {
                let mut n = k.clone();
                n.words[0] = "retry".into();
                own.read(ctx, &n);
            }
            "connect_port" => match k.arg(1).and_then(|v| value::unsigned(v, 1, 65_535)) {
                Some(p) => c.port = u16::try_from(p).ok(),
                None => ctx.invalid(k, "port"),
            },
            "alpha" => alpha = Some(k.arg(1).and_then(value::switch).unwrap_or(true)),
            "url" if kind.is_http() => {
                if let Some(u) = url(ctx, k) {
                    c.urls.push(u);
                }
            }
            "misc_path" if kind == CheckKind::Command => match command::command_words(k) {
                Some((argv, extra)) => {
                    let hook = command::hook(argv);
                    if let Some(why) = hook.changed {
                        ctx.changed(k, why);
                    }
                    if !extra.is_empty() {
                        ctx.lost(
                            k,
                            format!(
                                "user {:?}: vznet runs command checks as vznetd's user",
                                extra.join(" ")
                            ),
                        );
                    }
                    c.command = Some(hook.argv);
                }
                None => ctx.invalid(k, "misc_path"),
            },
            "misc_timeout" if kind == CheckKind::Command => {
                match k.arg(1).and_then(|v| value::unsigned(v, 0, 4_294)) {
                    Some(s) if s > 0 => misc_timeout_us = Some(s * 1_000_000),
                    Some(_) => {}
                    None => ctx.invalid(k, "misc_timeout"),
                }
            }
            "enable_sni" if kind == CheckKind::Https => {}
            _ => ctx.unsupported(k, Scope::Checker),
        }
    }
    let eff = own.over(outer);
    let delay_loop = eff.delay_loop_us.unwrap_or(DELAY_LOOP_US);
    c.interval_ms = ms(ctx, node, delay_loop);
    let timeout = if kind == CheckKind::Command {
        // keepalived's misc_timeout defaults to the virtual server's delay_loop.
        misc_timeout_us.unwrap_or(vs_delay_loop_us.unwrap_or(DELAY_LOOP_US))
    } else {
        eff.connect_timeout_us.unwrap_or(CONNECT_TIMEOUT_US)
    };
    c.timeout_ms = ms(ctx, node, timeout);
    let default_retry = if kind == CheckKind::Command { 0 } else { 1 };
    let retry = eff.retry.unwrap_or(default_retry);
    c.fall = u32::try_from(retry + 1).unwrap_or(u32::MAX);
    c.rise = 1;
    let default_delay = if kind.is_http() { 3_000_000 } else { 1_000_000 };
    c.retry_interval_ms = Some(ms(
        ctx,
        node,
        eff.delay_before_retry_us.unwrap_or(default_delay),
    ));
    c.alpha = alpha.or(eff.alpha);
    if kind == CheckKind::Command && c.command.is_none() {
        ctx.no_effect(node, "no misc_path (keepalived drops the checker too)");
        return None;
    }
    if kind.is_http() {
        c.virtualhost = eff.virtualhost.clone();
        if c.urls.is_empty() {
            ctx.no_effect(node, "no url (keepalived drops the checker too)");
            return None;
        }
        if kind == CheckKind::Https {
            let sni = node.children().iter().any(|k| k.keyword() == "enable_sni");
            let host_named =
                c.virtualhost.is_some() || c.urls.iter().any(|u| u.virtualhost.is_some());
            if host_named && !sni {
                ctx.changed(node, "vznet sends the virtualhost as TLS SNI; keepalived sends SNI only with enable_sni");
            }
        }
    }
    Some(c)
}

/// `url { path P; digest D; status_code CODES; virtualhost H }`.
fn url(ctx: &mut Ctx<'_>, node: &Node) -> Option<Url> {
    let mut u = Url {
        path: String::new(),
        status: Vec::new(),
        digest: None,
        virtualhost: None,
    };
    for k in node.children() {
        match (k.keyword(), k.arg(1)) {
            ("path", Some(p)) => u.path = p.to_string(),
            ("digest", Some(d)) => u.digest = Some(d.to_ascii_lowercase()),
            ("virtualhost", Some(v)) => u.virtualhost = Some(v.to_string()),
            ("status_code", Some(_)) => {
                for code in &k.words[1..] {
                    match status(code) {
                        Some(s) => u.status.push(s),
                        None => ctx.attr(k, "status_code", format!("{code:?} is not a status or a range of 100..599 (keepalived ignores it too)")),
                    }
                }
            }
            ("path" | "digest" | "virtualhost" | "status_code", None) => {
                ctx.invalid(k, k.keyword())
            }
            _ => ctx.unsupported(k, Scope::Checker),
        }
    }
    if u.path.is_empty() {
        ctx.no_effect(node, "a url without a path (keepalived ignores it too)");
        return None;
    }
    Some(u)
}

fn status(code: &str) -> Option<StatusCodes> {
    let s = match code.split_once('-') {
        Some(_) => StatusCodes::Range(code.to_string()),
        None => StatusCodes::Code(u16::try_from(value::unsigned(code, 100, 599)?).ok()?),
    };
    s.bounds().map(|_| s)
}
