//! The balancer's documents are accepted by the kernel for every shape: IPv4
//! and IPv6, TCP and UDP, each scheduler; and a one-backend change edits only
//! map elements (the rules keep their handles).

use std::net::IpAddr;
use std::time::Instant;

use agent::lb::health::Target;
use agent::lb::{Balancer, ServiceSpec};
use anyhow::{ensure, Result};
use netcfg::model::lb::ResolvedBackend;
use netcfg::model::{CheckKind, HealthCheck, LbProtocol, Scheduler, VirtualServer};

fn check() -> HealthCheck {
    HealthCheck {
        kind: CheckKind::Tcp,
        interval_ms: 1000,
        timeout_ms: 500,
        fall: 3,
        rise: 2,
        path: None,
        expect_status: None,
        command: None,
        port: None,
    }
}

fn spec(
    vip: &str,
    protocol: LbProtocol,
    scheduler: Scheduler,
    backends: &[&str],
) -> Result<ServiceSpec> {
    Ok(ServiceSpec {
        config: VirtualServer {
            name: None,
            vip: vip.parse()?,
            port: 53,
            protocol,
            scheduler,
            hash_seed: Some(7),
            check: Some(check()),
            backends: Vec::new(),
            sorry_server: None,
            quorum: 1,
            on_backend_failure: Default::default(),
            slow_start_ms: 0,
            masquerade: true,
        },
        backends: backends
            .iter()
            .map(|a| {
                Ok(ResolvedBackend {
                    address: a.parse()?,
                    port: 5353,
                    weight: 1,
                })
            })
            .collect::<Result<_>>()?,
    })
}

fn rule_handles(host: &lab::Host) -> Result<Vec<u64>> {
    let v: serde_json::Value =
        serde_json::from_str(&host.run(["nft", "-j", "list", "table", "inet", "vznet_lb"])?)?;
    Ok(v["nftables"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["rule"]["handle"].as_u64())
                .collect()
        })
        .unwrap_or_default())
}

#[test]
fn every_shape_is_accepted_and_backend_changes_edit_only_elements() -> Result<()> {
    let lab = lab::Lab::new("lb_ruleset")?;
    let host = lab.host("h")?;
    let mut balancer = Balancer::new(nft::Nft::new(Some(&host.netns_path()))?);
    let specs = vec![
        spec(
            "10.9.0.1",
            LbProtocol::Tcp,
            Scheduler::WeightedRandom,
            &["10.9.1.1", "10.9.1.2"],
        )?,
        spec(
            "10.9.0.1",
            LbProtocol::Udp,
            Scheduler::SourceHash,
            &["10.9.1.1", "10.9.1.2"],
        )?,
        spec(
            "fd00:9::1",
            LbProtocol::Tcp,
            Scheduler::RoundRobin,
            &["fd00:9::11", "fd00:9::12"],
        )?,
        spec(
            "fd00:9::1",
            LbProtocol::Udp,
            Scheduler::SourceHash,
            &["fd00:9::11"],
        )?,
    ];
    balancer.sync(&specs, Instant::now())?;
    let listing = host.run(["nft", "list", "table", "inet", "vznet_lb"])?;
    for want in [
        "ip daddr 10.9.0.1 tcp dport 53",
        "ip daddr 10.9.0.1 udp dport 53",
        "ip6 daddr fd00:9::1 tcp dport 53",
        "ip6 daddr fd00:9::1 udp dport 53",
        "jhash ip saddr mod 1021 seed 0x7",
        "jhash ip6 saddr mod 1021 seed 0x7",
        "numgen inc mod 1021",
        "numgen random mod 1021",
        "dnat ip to ct mark map @addr4",
        "dnat ip6 to ct mark map @addr6",
        "fd00:9::12",
    ] {
        ensure!(listing.contains(want), "{want:?} not in:\n{listing}");
    }
    let handles = rule_handles(&host)?;
    // A backend goes down and comes back; another is added; one is removed.
    let target = Target::new(&check(), "10.9.1.2".parse::<IpAddr>()?, 5353);
    let down = balancer.set_health(&target, false, Instant::now())?;
    ensure!(down.is_some_and(|c| c.slots_changed > 400), "{down:?}");
    balancer.set_health(&target, true, Instant::now())?;
    let mut more = specs.clone();
    more[0] = spec(
        "10.9.0.1",
        LbProtocol::Tcp,
        Scheduler::WeightedRandom,
        &["10.9.1.1", "10.9.1.2", "10.9.1.3"],
    )?;
    more[2] = spec(
        "fd00:9::1",
        LbProtocol::Tcp,
        Scheduler::RoundRobin,
        &["fd00:9::11"],
    )?;
    balancer.sync(&more, Instant::now())?;
    ensure!(
        rule_handles(&host)? == handles,
        "backend changes must not touch the rules"
    );
    let listing = host.run(["nft", "list", "table", "inet", "vznet_lb"])?;
    ensure!(listing.contains("10.9.1.3"), "{listing}");
    ensure!(
        !listing.contains("fd00:9::12"),
        "removed backend still mapped:\n{listing}"
    );
    let status = balancer.status(Instant::now());
    ensure!(
        status[0].backends.iter().all(|b| b.slots >= 300),
        "{:?}",
        status[0].backends
    );
    // Someone flushes the ruleset: repair notices and rebuilds; a second repair
    // finds nothing to do.
    ensure!(
        !balancer.repair(Instant::now())?,
        "repair rebuilt an intact table"
    );
    host.run(["nft", "flush", "ruleset"])?;
    ensure!(
        balancer.repair(Instant::now())?,
        "repair missed a flushed ruleset"
    );
    ensure!(!balancer.repair(Instant::now())?);
    let listing = host.run(["nft", "list", "table", "inet", "vznet_lb"])?;
    ensure!(
        listing.contains("10.9.1.3") && listing.contains("ip6 daddr fd00:9::1 udp dport 53"),
        "{listing}"
    );
    balancer.clear()?;
    ensure!(
        !host
            .exec(["nft", "list", "table", "inet", "vznet_lb"])?
            .status
            .success(),
        "the table outlived clear()"
    );
    Ok(())
}

#[test]
fn slow_start_ramps_a_returning_backend_up() -> Result<()> {
    let lab = lab::Lab::new("lb_slowstart")?;
    let host = lab.host("h")?;
    let mut balancer = Balancer::new(nft::Nft::new(Some(&host.netns_path()))?);
    let mut s = spec(
        "10.9.0.1",
        LbProtocol::Tcp,
        Scheduler::WeightedRandom,
        &["10.9.1.1", "10.9.1.2"],
    )?;
    s.config.slow_start_ms = 10_000;
    for b in &mut s.backends {
        b.weight = 100;
    }
    let t0 = Instant::now();
    balancer.sync(&[s], t0)?;
    let target = Target::new(&check(), "10.9.1.2".parse::<IpAddr>()?, 5353);
    balancer.set_health(&target, false, t0)?;
    balancer.set_health(&target, true, t0)?;
    let mut at = |secs: u64| {
        let now = t0 + std::time::Duration::from_secs(secs);
        let _ = balancer.tick(now);
        balancer.status(now)[0].backends[1].clone()
    };
    let early = at(1);
    let mid = at(5);
    let done = at(11);
    ensure!(
        early.effective_weight == 10 && mid.effective_weight == 50,
        "{early:?} {mid:?}"
    );
    ensure!(
        early.slots < mid.slots && mid.slots < done.slots,
        "{early:?} {mid:?} {done:?}"
    );
    ensure!(
        done.effective_weight == 100 && !balancer.ramping(),
        "{done:?}"
    );
    Ok(())
}
