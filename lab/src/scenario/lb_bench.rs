//! `lab bench lb`: the load balancer's three numbers, in one run.
//!
//! 1. Commit latency of a one-backend change (a backend goes down or comes
//!    back: its slots are rewritten in one nftables transaction) with 10, 100
//!    and 1000 backends, driving the balancer directly in a lab namespace,
//!    side by side for a plain virtual server, one with client persistence
//!    (its live set and persistence purge ride along) and one scheduled by
//!    wlc; and what a wlc re-deal after a connection sample costs (skewed
//!    loads move slots every 100 ms while connections change).
//! 2. New connections per second from a client through the VIP (DNAT by vznetd's
//!    rules) against straight to the same backend through the same host
//!    (routed, no DNAT), alternating A/B runs.
//! 3. Health reaction time: vznetd checking every 200 ms with fall 3; a
//!    backend's server is killed and the time until the agent reports it down
//!    (and its slots are gone) is measured.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::control;
use agent::lb::health::Target;
use agent::lb::leastconn::Entries;
use agent::lb::{Balancer, ServiceSpec};
use anyhow::{ensure, Context, Result};
use lab::{wait_until, Host, Lab};
use netcfg::model::lb::ResolvedBackend;
use netcfg::model::VirtualServer;
use std::collections::BTreeMap;

/// Options of `lab bench lb`.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// One-backend changes timed per backend count.
    pub commits: usize,
    /// Seconds per connection-rate run (four runs: VIP, direct, VIP, direct).
    pub rate_seconds: u64,
    /// Health reaction trials.
    pub health_trials: usize,
}

/// Runs the benchmark.
pub fn run(opts: Options) -> Result<()> {
    println!("bench lb: nftables load balancer (Maglev slot table, element-only commits)\n");
    let commit_rows = commit_latency(opts.commits)?;
    let (vip_rate, direct_rate) = connection_rate(opts.rate_seconds)?;
    let reaction = health_reaction(opts.health_trials)?;

    println!(
        "{:<48}{:>14}{:>14}{:>14}",
        "commit latency, median / p99 ms", "10 backends", "100", "1000"
    );
    for kind in Kind::ALL {
        let cells: Vec<String> = commit_rows
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| format!("{:.2} / {:.2}", r.median, r.p99))
            .collect();
        println!(
            "{:<48}{:>14}{:>14}{:>14}",
            kind.label(),
            cells.first().map_or("-", String::as_str),
            cells.get(1).map_or("-", String::as_str),
            cells.get(2).map_or("-", String::as_str)
        );
    }
    let at_1000 = |k: Kind| {
        commit_rows
            .iter()
            .find(|r| r.kind == k && r.backends == 1000)
            .map_or(f64::NAN, |r| r.median)
    };
    let plain = at_1000(Kind::Plain);
    println!(
        "{:<48}{:>14.2}{:>14.2}{:>14.2}",
        "ratio to plain at 1000 backends (persist, wlc, re-deal)",
        at_1000(Kind::Persistent) / plain,
        at_1000(Kind::Wlc) / plain,
        at_1000(Kind::WlcRedeal) / plain
    );
    println!();
    println!(
        "{:<48}{:>12.0}",
        "new connections/s straight to the backend", direct_rate
    );
    println!(
        "{:<48}{:>12.0}",
        "new connections/s through the VIP", vip_rate
    );
    let ratio = vip_rate / direct_rate;
    println!("{:<48}{:>12.3}", "ratio VIP / direct", ratio);
    println!();
    let med = pct(&reaction, 0.5);
    let p99 = pct(&reaction, 0.99);
    println!(
        "{:<48}{:>12.0}{:>12.0}",
        format!(
            "health reaction, 200 ms x fall 3 ({} trials)",
            reaction.len()
        ),
        med,
        p99
    );
    println!();
    let p99_1000 = commit_rows
        .iter()
        .filter(|r| r.backends == 1000)
        .map(|r| r.p99)
        .fold(0.0, f64::max);
    for (ok, what) in [
        (
            p99_1000 < 5.0,
            "every commit p99 under 5 ms at 1000 backends",
        ),
        (
            ratio >= 0.9,
            "connections/s through the VIP within 10% of direct",
        ),
        (p99 < 1000.0, "health reaction p99 under 1 s"),
    ] {
        println!("  [{}] {what}", if ok { "met" } else { "MISSED" });
    }
    Ok(())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// What a commit row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Persistent,
    Wlc,
    WlcRedeal,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Plain, Kind::Persistent, Kind::Wlc, Kind::WlcRedeal];

    fn label(self) -> &'static str {
        match self {
            Kind::Plain => "one-backend change, weighted-random",
            Kind::Persistent => "one-backend change, persistence 60 s",
            Kind::Wlc => "one-backend change, wlc",
            Kind::WlcRedeal => "wlc re-deal after a connection sample",
        }
    }

    /// The `[[virtual_server]]` keys that make this kind.
    fn keys(self) -> serde_json::Value {
        match self {
            Kind::Plain => serde_json::json!({}),
            Kind::Persistent => serde_json::json!({ "persistence_timeout_ms": 60_000 }),
            Kind::Wlc | Kind::WlcRedeal => serde_json::json!({ "scheduler": "wlc" }),
        }
    }
}

/// One row cell of the commit table.
#[derive(Debug, Clone, Copy)]
struct CommitRow {
    kind: Kind,
    backends: usize,
    median: f64,
    p99: f64,
}

/// A virtual server of `kind` on 10.80.255.10K:80 with `n` backends checked by
/// TCP on a port of its own (so a health change touches only it).
fn commit_spec(kind: Kind, n: usize) -> Result<ServiceSpec> {
    let k = Kind::ALL.iter().position(|x| *x == kind).unwrap_or(0);
    let mut vs = serde_json::json!({
        "vip": format!("10.80.255.{}", 100 + k),
        "port": 80,
        "check": { "kind": "tcp", "interval_ms": 200, "timeout_ms": 100, "port": 1000 + k },
        "backends": [],
    });
    if let (Some(o), Some(extra)) = (vs.as_object_mut(), kind.keys().as_object()) {
        o.extend(extra.clone());
    }
    let config: VirtualServer = serde_json::from_value(vs)?;
    let check = config.check.clone().context("check")?;
    let backends = (0..n)
        .map(|i| ResolvedBackend {
            address: std::net::Ipv4Addr::new(10, 80, (i / 250) as u8, (i % 250 + 1) as u8).into(),
            port: 80,
            weight: 1,
            checks: vec![check.clone()],
            notify_up: None,
            notify_down: None,
        })
        .collect();
    Ok(ServiceSpec { config, backends })
}

/// A [`CommitRow`] per kind and backend count. The four kinds are four
/// virtual servers of one balancer, changed in turns, so they share the
/// machine's moment.
fn commit_latency(commits: usize) -> Result<Vec<CommitRow>> {
    let lab = Lab::new("bench_lb_commit")?;
    let host = lab.host("h")?;
    let nft = nft::Nft::new(Some(&host.netns_path()))?;
    let mut balancer = Balancer::new(nft);
    let mut rows = Vec::new();
    for n in [10usize, 100, 1000] {
        let specs = Kind::ALL
            .iter()
            .map(|&k| commit_spec(k, n))
            .collect::<Result<Vec<_>>>()?;
        let t = Instant::now();
        balancer.sync(&specs, Instant::now())?;
        let initial = t.elapsed().as_secs_f64() * 1000.0;
        balancer.deal_connections(&Entries::new(), Instant::now())?;
        let redeal = Kind::ALL
            .iter()
            .position(|k| *k == Kind::WlcRedeal)
            .unwrap_or(0);
        let marks: Vec<u32> = balancer.status(Instant::now(), |_| None)[redeal]
            .backends
            .iter()
            .map(|b| b.mark)
            .collect();
        let mut lat: Vec<Vec<f64>> = vec![Vec::with_capacity(commits * 2); Kind::ALL.len()];
        let mut nft_lat = lat.clone();
        for k in 0..commits {
            let pick = k * 7919 % n;
            for (i, kind) in Kind::ALL.iter().enumerate() {
                let b = &specs[i].backends[pick];
                let target = Target::new(&b.checks[0], false, b.address, b.port);
                for up in [false, true] {
                    let t = Instant::now();
                    let c = if *kind == Kind::WlcRedeal {
                        // Backend `pick` holds many connections, the rest one:
                        // its slots go to the others, and come back.
                        let entries = synthetic_entries(&marks, pick, !up, k);
                        balancer.deal_connections(&entries, Instant::now())?
                    } else {
                        balancer
                            .set_health(&BTreeMap::from([(target.clone(), up)]), Instant::now())?
                    };
                    lat[i].push(t.elapsed().as_secs_f64() * 1000.0);
                    nft_lat[i].push(balancer.last_apply().as_secs_f64() * 1000.0);
                    ensure!(
                        c.is_some_and(|c| c.slots_changed > 0),
                        "no slot moved ({kind:?})"
                    );
                }
            }
        }
        eprintln!("  {n} backends x 4 virtual servers: initial load {initial:.1} ms");
        for (i, kind) in Kind::ALL.iter().enumerate() {
            lat[i].sort_by(f64::total_cmp);
            nft_lat[i].sort_by(f64::total_cmp);
            eprintln!(
                "  {n} backends, {}: nftables transaction alone median {:.3} ms p99 {:.3} ms",
                kind.label(),
                pct(&nft_lat[i], 0.5),
                pct(&nft_lat[i], 0.99)
            );
            rows.push(CommitRow {
                kind: *kind,
                backends: n,
                median: pct(&lat[i], 0.5),
                p99: pct(&lat[i], 0.99),
            });
        }
    }
    balancer.clear()?;
    Ok(rows)
}

/// Conntrack entries with backend `hot` loaded (when `loaded`) and every
/// backend holding one established connection; ids fresh per round so the
/// arrivals count stays small.
fn synthetic_entries(marks: &[u32], hot: usize, loaded: bool, round: usize) -> Entries {
    let mut out = Entries::new();
    let base = (round as u32) << 20;
    for (i, &m) in marks.iter().enumerate() {
        let conns = if loaded && i == hot { 50 } else { 1 };
        for c in 0..conns {
            out.push((m, base + (i as u32) * 64 + c, true));
        }
    }
    out
}

/// An LB host running vznetd (`lab vznetd`), a client, and backends; the VIP is
/// 10.81.0.100:80.
struct Site {
    _lab: Lab,
    lb: Host,
    client: Host,
    backends: Vec<(Host, Option<lab::Process>)>,
    _agent: lab::Process,
    cfg: tempfile::TempDir,
}

impl Site {
    fn new(name: &str, backends: usize, check: &str) -> Result<Site> {
        let lab = Lab::new(name)?;
        let lb = lab.host("lb")?;
        let client = lab.host("c")?;
        lab.link(&client, "eth0", &lb, "eth0")?;
        client.add_address("eth0", "10.81.0.9/24")?;
        client.ip(["route", "add", "10.81.1.0/24", "via", "10.81.0.1"])?;
        let vsw = lab.switch("v")?;
        let cfg = tempfile::tempdir()?;
        std::fs::create_dir(cfg.path().join("ve"))?;
        let mut list = String::new();
        let mut hosts = Vec::new();
        for i in 1..=backends {
            let b = lab.host(&format!("b{i}"))?;
            lab.link(&b, "eth0", &vsw, &format!("p{i}"))?;
            b.add_address("eth0", format!("10.81.1.{}/24", 10 + i))?;
            b.ip(["route", "add", "default", "via", "10.81.1.1"])?;
            list.push_str(&format!("{{ address = \"10.81.1.{}\" }}, ", 10 + i));
            hosts.push((b, None));
        }
        lab.link(&lb, "eth1", &vsw, "plb")?;
        std::fs::write(
            cfg.path().join("host.toml"),
            format!(
                r#"[sysctl]
"net.ipv4.ip_forward" = 1

[[bridge]]
name = "brc"
ports = ["eth0"]
addresses = ["10.81.0.1/24", "10.81.0.100/32"]

[[bridge]]
name = "brv"
ports = ["eth1"]
addresses = ["10.81.1.1/24"]

[[virtual_server]]
vip = "10.81.0.100"
port = 80
{check}
backends = [ {list} ]
"#
            ),
        )?;
        let agent = super::spawn_vznetd(&lb, cfg.path())?;
        // Many short connections from one client: reuse TIME_WAIT ports.
        client.run(["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])?;
        client.run(["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"])?;
        let mut site = Site {
            _lab: lab,
            lb,
            client,
            backends: hosts,
            _agent: agent,
            cfg,
        };
        for i in 0..backends {
            site.start_backend(i)?;
        }
        Ok(site)
    }

    fn start_backend(&mut self, i: usize) -> Result<()> {
        let me = std::env::current_exe()?;
        let (host, proc_) = &mut self.backends[i];
        *proc_ = Some(host.spawn([
            me.display().to_string(),
            "backend".into(),
            format!("b{}", i + 1),
            "0.0.0.0:80".into(),
        ])?);
        Ok(())
    }

    fn kill_backend(&mut self, i: usize) -> Result<()> {
        if let Some(p) = self.backends[i].1.take() {
            p.kill()?;
        }
        Ok(())
    }

    fn socket(&self) -> std::path::PathBuf {
        self.cfg.path().join("vznetd.sock")
    }

    /// Backend states of virtual server 0.
    fn states(&self) -> Result<Vec<String>> {
        let status = control::status(&self.socket(), Duration::from_secs(5))?;
        Ok(status
            .virtual_servers
            .first()
            .map(|vs| vs.backends.iter().map(|b| b.state.clone()).collect())
            .unwrap_or_default())
    }

    fn wait_answer(&self, addr: SocketAddr) -> Result<()> {
        let ns = self.client.netns_path();
        ensure!(
            wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
                lab::in_netns(&ns, move || lab::ask_name(addr, Duration::from_secs(1))).is_ok()
            }),
            "{addr} never answered"
        );
        Ok(())
    }
}

/// Connections/s from 2 client threads for `secs` seconds.
fn rate(netns: &Path, addr: SocketAddr, secs: u64) -> Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let (count, errors, stop) = (count.clone(), errors.clone(), stop.clone());
        let ns = netns.to_path_buf();
        threads.push(std::thread::spawn(move || {
            lab::in_netns(&ns, move || {
                while !stop.load(Ordering::Relaxed) {
                    match lab::ask_name(addr, Duration::from_secs(2)) {
                        Ok(_) => count.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
                Ok(())
            })
        }));
    }
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for th in threads {
        th.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    let n = count.load(Ordering::Relaxed) as f64;
    let e = errors.load(Ordering::Relaxed);
    ensure!(e == 0, "{e} failed connections to {addr}");
    Ok(n / t.elapsed().as_secs_f64())
}

/// (through the VIP, straight) connections/s, each the mean of two runs.
fn connection_rate(secs: u64) -> Result<(f64, f64)> {
    let site = Site::new("bench_lb_rate", 1, "")?;
    let vip: SocketAddr = "10.81.0.100:80".parse()?;
    let direct: SocketAddr = "10.81.1.11:80".parse()?;
    site.wait_answer(vip)?;
    site.wait_answer(direct)?;
    let ns = site.client.netns_path();
    let (mut v, mut d) = (0.0, 0.0);
    for _ in 0..2 {
        v += rate(&ns, vip, secs)?;
        d += rate(&ns, direct, secs)?;
    }
    Ok((v / 2.0, d / 2.0))
}

/// Milliseconds from killing a backend's server to vznetd reporting it down,
/// sorted.
fn health_reaction(trials: usize) -> Result<Vec<f64>> {
    let mut site = Site::new(
        "bench_lb_health",
        2,
        r#"check = { kind = "tcp", interval_ms = 200, timeout_ms = 100, fall = 3, rise = 2 }"#,
    )?;
    site.wait_answer("10.81.0.100:80".parse()?)?;
    let mut out = Vec::with_capacity(trials);
    for _ in 0..trials {
        ensure!(
            wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                site.states().is_ok_and(|s| s.iter().all(|s| s == "up"))
            }),
            "backends not up before a trial"
        );
        // Land the kill at a random point of the check interval.
        std::thread::sleep(Duration::from_millis(
            (u64::from(std::process::id()) * 31 + out.len() as u64 * 97) % 200,
        ));
        let t = Instant::now();
        site.kill_backend(1)?;
        ensure!(
            wait_until(Duration::from_secs(5), Duration::from_millis(2), || {
                site.states()
                    .is_ok_and(|s| s.get(1).is_some_and(|s| s == "down"))
            }),
            "backend never went down"
        );
        out.push(t.elapsed().as_secs_f64() * 1000.0);
        site.start_backend(1)?;
    }
    out.sort_by(f64::total_cmp);
    let _ = &site.lb;
    Ok(out)
}
