//! The load balancer's health checks run on a thread of their own: with a
//! 50 ms interval they keep their schedule (within 20 ms) while the runtime
//! that calls the load balancer (the agent's) is blocked and heavy nftables
//! commits (16381-slot tables rewritten) run one after another.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use agent::lb::{LoadBalancer, ServiceSpec};
use anyhow::{ensure, Context, Result};
use netcfg::model::lb::ResolvedBackend;
use netcfg::model::VirtualServer;

const CHECKED: usize = 20;
const LATE_LIMIT_US: u64 = 20_000;

/// Listeners on 127.0.0.1 inside `netns`, accepting and closing, for as long
/// as the test runs.
fn listeners(netns: &std::path::Path, n: usize) -> Result<Vec<u16>> {
    let ns = std::fs::File::open(netns)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || -> Result<()> {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        let mut ports = Vec::new();
        for _ in 0..n {
            let l = TcpListener::bind("127.0.0.1:0")?;
            ports.push(l.local_addr()?.port());
            std::thread::spawn(move || {
                for conn in l.incoming() {
                    drop(conn);
                }
            });
        }
        tx.send(ports)?;
        Ok(())
    });
    rx.recv_timeout(Duration::from_secs(5))
        .context("listeners never started")
}

fn vs(json: serde_json::Value) -> Result<VirtualServer> {
    Ok(serde_json::from_value(json)?)
}

/// A checked virtual server on loopback, and a large unchecked one whose
/// weights change with `round` (every sync rewrites thousands of slots).
fn specs(ports: &[u16], round: usize) -> Result<Vec<ServiceSpec>> {
    let checked = vs(serde_json::json!({
        "vip": "10.9.0.1", "port": 80,
        "check": { "kind": "tcp", "interval_ms": 50, "timeout_ms": 40, "fall": 3, "rise": 1 },
        "backends": [],
    }))?;
    let check = checked.check.clone().context("check")?;
    let big = vs(serde_json::json!({ "vip": "10.9.0.2", "port": 80, "backends": [] }))?;
    Ok(vec![
        ServiceSpec {
            backends: ports
                .iter()
                .map(|&port| ResolvedBackend {
                    address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    port,
                    weight: 1,
                    checks: vec![check.clone()],
                    notify_up: None,
                    notify_down: None,
                })
                .collect(),
            config: checked,
        },
        ServiceSpec {
            backends: (0..1000)
                .map(|i| ResolvedBackend {
                    address: Ipv4Addr::new(10, 90, (i / 250) as u8, (i % 250 + 1) as u8).into(),
                    port: 80,
                    weight: 1 + ((i + round * 7) % 5) as u32,
                    checks: Vec::new(),
                    notify_up: None,
                    notify_down: None,
                })
                .collect(),
            config: big,
        },
    ])
}

#[test]
fn probes_keep_their_schedule_while_the_callers_runtime_blocks_and_commits_churn() -> Result<()> {
    let lab = lab::Lab::new("lb_threads")?;
    let host = lab.host("h")?;
    let ns = host.netns_path();
    let ports = listeners(&ns, CHECKED)?;
    // The agent's runtime: one thread, blocked on purpose below.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, rounds, took) = rt.block_on(async {
        let lb = LoadBalancer::spawn_in(Some(&ns)).map_err(anyhow::Error::msg)?;
        lb.sync(specs(&ports, 0)?)
            .await
            .map_err(anyhow::Error::msg)?;
        let started = Instant::now();
        let mut rounds = 0;
        while started.elapsed() < Duration::from_secs(3) {
            rounds += 1;
            lb.sync(specs(&ports, rounds)?)
                .await
                .map_err(anyhow::Error::msg)?;
            // The caller's runtime does something blocking (a netlink dump of
            // many namespaces, say): nothing of the load balancer may wait.
            std::thread::sleep(Duration::from_millis(150));
        }
        let took = started.elapsed();
        Ok::<_, anyhow::Error>((lb.status().await, rounds, took))
    })?;
    let checked = &status[0];
    let probes: u64 = checked
        .backends
        .iter()
        .map(|b| b.checks_ok + b.checks_failed)
        .sum();
    let worst = checked
        .backends
        .iter()
        .map(|b| b.probe_late_max_us)
        .max()
        .unwrap_or(u64::MAX);
    eprintln!(
        "{rounds} syncs of 1000 backends in {took:?} with the caller blocked 150 ms each; \
         {probes} probes, worst lateness {worst} us"
    );
    // 20 targets every 50 ms over 3 s: about 1200 probes; a stalled prober
    // would show far fewer.
    let expected = CHECKED as u64 * took.as_millis() as u64 / 50;
    ensure!(
        probes * 10 >= expected * 8,
        "{probes} probes, expected about {expected}: the prober stalled"
    );
    ensure!(
        checked
            .backends
            .iter()
            .all(|b| b.state == "up" && b.checks_failed == 0),
        "loopback probes failed: {:?}",
        checked.backends
    );
    ensure!(
        worst <= LATE_LIMIT_US,
        "a probe started {worst} us late (limit {LATE_LIMIT_US} us)"
    );
    Ok(())
}
