//! The balancer's scripts are accepted by the kernel for every shape: IPv4 and
//! IPv6, TCP and UDP, every scheduler, persistence, marks, members, direct
//! routing; a one-backend change edits only map elements (the rules keep their
//! handles); a reshape keeps the dynamic state of virtual servers that stay;
//! quorum follows keepalived's hysteresis; alpha backends start down.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use agent::lb::health::Target;
use agent::lb::{Balancer, Event, ServiceSpec};
use anyhow::{ensure, Context, Result};
use netcfg::model::lb::ResolvedBackend;
use netcfg::model::VirtualServer;

/// A spec from a `[[virtual_server]]` body (TOML) whose `backends` are
/// addresses: the balancer sees them resolved.
fn spec(toml_text: &str) -> Result<ServiceSpec> {
    let config: VirtualServer = toml::from_str(toml_text).context("virtual server TOML")?;
    let backends = config
        .backends
        .iter()
        .map(|b| ResolvedBackend {
            address: b.address.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: b.port.or(config.single_port()).unwrap_or(0),
            weight: b.weight,
            checks: config.checks_of(b).to_vec(),
            notify_up: b.notify_up.clone(),
            notify_down: b.notify_down.clone(),
        })
        .collect();
    Ok(ServiceSpec { config, backends })
}

const CHECK: &str = r#"check = { kind = "tcp", interval_ms = 1000, timeout_ms = 500 }"#;

fn rule_handles(host: &lab::Host, family: &str, table: &str) -> Result<Vec<u64>> {
    let v: serde_json::Value =
        serde_json::from_str(&host.run(["nft", "-j", "list", "table", family, table])?)?;
    Ok(v["nftables"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["rule"]["handle"].as_u64())
                .collect()
        })
        .unwrap_or_default())
}

fn every_shape() -> Result<Vec<ServiceSpec>> {
    [
        format!("vip = \"10.9.0.1\"\nport = 53\nmasquerade = true\n{CHECK}\nbackends = [ {{ address = \"10.9.1.1\", port = 5353 }}, {{ address = \"10.9.1.2\", port = 5353 }} ]"),
        "vip = \"10.9.0.1\"\nport = 53\nprotocol = \"udp\"\nscheduler = \"source-hash\"\nhash_seed = 7\nbackends = [ { address = \"10.9.1.1\" }, { address = \"10.9.1.2\" } ]".into(),
        "vip = \"fd00:9::1\"\nport = 53\nscheduler = \"round-robin\"\nbackends = [ { address = \"fd00:9::11\" }, { address = \"fd00:9::12\" } ]".into(),
        "vip = \"fd00:9::1\"\nport = 53\nprotocol = \"udp\"\nscheduler = \"wlc\"\nbackends = [ { address = \"fd00:9::11\" } ]".into(),
        "vip = \"10.9.0.2\"\nport = 80\nscheduler = \"lc\"\npersistence_timeout_ms = 30000\npersistence_granularity = 24\nbackends = [ { address = \"10.9.1.1\" }, { address = \"10.9.1.2\" } ]".into(),
        "fwmark = 7\nbackends = [ { address = \"10.9.1.1\" }, { address = \"10.9.1.2\" } ]".into(),
        "members = [ { vip = \"10.9.0.3\", port = 80 }, { vip = \"10.9.0.3\", port = 443 }, { fwmark = 8 } ]\nbackends = [ { address = \"10.9.1.1\" } ]".into(),
        "vip = \"10.9.0.4\"\nport = 80\nlb_kind = \"dr\"\npersistence_timeout_ms = 60000\nbackends = [ { address = \"10.9.1.1\" }, { address = \"10.9.1.2\" } ]".into(),
        "vip = \"fd00:9::4\"\nport = 53\nprotocol = \"udp\"\nlb_kind = \"dr\"\nbackends = [ { address = \"fd00:9::11\" } ]".into(),
    ]
    .iter()
    .map(|t| spec(t))
    .collect()
}

#[test]
fn every_shape_is_accepted_and_backend_changes_edit_only_elements() -> Result<()> {
    let lab = lab::Lab::new("lb_ruleset")?;
    let host = lab.host("h")?;
    let mut balancer = Balancer::new(nft::Nft::new(Some(&host.netns_path()))?);
    let specs = every_shape()?;
    balancer.sync(&specs, Instant::now())?;
    let nat = host.run(["nft", "list", "table", "inet", "vznet_lb"])?;
    for want in [
        "ip daddr 10.9.0.1 tcp dport 53 goto svc_",
        "ip daddr 10.9.0.1 udp dport 53 goto svc_",
        "ip6 daddr fd00:9::1 tcp dport 53 goto svc_",
        "ip6 daddr fd00:9::1 udp dport 53 goto svc_",
        "meta mark 0x00000007 meta nfproto ipv4 meta l4proto tcp goto svc_",
        "ip daddr 10.9.0.3 tcp dport 443 goto svc_",
        "meta mark 0x00000008",
        "jhash ip saddr mod 1021 seed 0x7",
        "numgen inc mod 1021",
        "numgen random mod 1021",
        "dnat ip to ct mark map @addr4:ct mark map @ports",
        "dnat ip6 to ct mark map @addr6:ct mark map @ports",
        // Marks and members keep the client's port.
        "dnat ip to ct mark map @addr4\n",
        "ct mark set ip saddr & 255.255.255.0 map @persist_",
        "update @persist_",
        "flags dynamic,timeout",
        "fd00:9::12",
    ] {
        ensure!(nat.contains(want), "{want:?} not in:\n{nat}");
    }
    for fam in ["ip", "ip6"] {
        let dr = host.run(["nft", "list", "table", fam, "vznet_lb_dr"])?;
        for want in [
            "notrack",
            "dup to meta mark map @addr",
            "update @flows_",
            "drop",
        ] {
            ensure!(dr.contains(want), "{want:?} not in {fam} table:\n{dr}");
        }
    }
    let handles = rule_handles(&host, "inet", "vznet_lb")?;
    let dr_handles = rule_handles(&host, "ip", "vznet_lb_dr")?;
    // A backend goes down and comes back; another is added; one is removed.
    let target = Target::new(
        specs[0].config.check.as_ref().context("check")?,
        false,
        "10.9.1.2".parse()?,
        5353,
    );
    let down = balancer.set_health(&BTreeMap::from([(target.clone(), false)]), Instant::now())?;
    ensure!(
        down.as_ref().is_some_and(|c| c.slots_changed > 400),
        "{down:?}"
    );
    balancer.set_health(&BTreeMap::from([(target, true)]), Instant::now())?;
    let mut more = specs.clone();
    more[0] = spec(&format!("vip = \"10.9.0.1\"\nport = 53\nmasquerade = true\n{CHECK}\nbackends = [ {{ address = \"10.9.1.1\", port = 5353 }}, {{ address = \"10.9.1.2\", port = 5353 }}, {{ address = \"10.9.1.3\", port = 5353 }} ]"))?;
    more[2] = spec("vip = \"fd00:9::1\"\nport = 53\nscheduler = \"round-robin\"\nbackends = [ { address = \"fd00:9::11\" } ]")?;
    more[7] = spec("vip = \"10.9.0.4\"\nport = 80\nlb_kind = \"dr\"\npersistence_timeout_ms = 60000\nbackends = [ { address = \"10.9.1.1\" }, { address = \"10.9.1.2\", weight = 3 } ]")?;
    balancer.sync(&more, Instant::now())?;
    ensure!(
        rule_handles(&host, "inet", "vznet_lb")? == handles
            && rule_handles(&host, "ip", "vznet_lb_dr")? == dr_handles,
        "backend changes must not touch the rules"
    );
    let nat = host.run(["nft", "list", "table", "inet", "vznet_lb"])?;
    ensure!(nat.contains("10.9.1.3"), "{nat}");
    ensure!(
        !nat.contains("fd00:9::12"),
        "removed backend still mapped:\n{nat}"
    );
    let status = balancer.status(Instant::now(), |_| None);
    ensure!(
        status[0].backends.iter().all(|b| b.slots >= 300),
        "{:?}",
        status[0].backends
    );
    // Someone flushes the ruleset: repair notices and rebuilds; a second repair
    // finds nothing to do.
    ensure!(
        !balancer.repair(Instant::now())?,
        "repair rebuilt intact tables"
    );
    host.run(["nft", "flush", "ruleset"])?;
    ensure!(
        balancer.repair(Instant::now())?,
        "repair missed a flushed ruleset"
    );
    ensure!(!balancer.repair(Instant::now())?);
    let nat = host.run(["nft", "list", "table", "inet", "vznet_lb"])?;
    ensure!(
        nat.contains("10.9.1.3") && nat.contains("ip6 daddr fd00:9::1 udp dport 53"),
        "{nat}"
    );
    balancer.clear()?;
    for (fam, table) in [
        ("inet", "vznet_lb"),
        ("ip", "vznet_lb_dr"),
        ("ip6", "vznet_lb_dr"),
    ] {
        ensure!(
            !host
                .exec(["nft", "list", "table", fam, table])?
                .status
                .success(),
            "{fam} {table} outlived clear()"
        );
    }
    Ok(())
}

#[test]
fn a_reshape_keeps_the_persistence_of_virtual_servers_that_stay() -> Result<()> {
    let lab = lab::Lab::new("lb_reshape")?;
    let host = lab.host("h")?;
    let mut balancer = Balancer::new(nft::Nft::new(Some(&host.netns_path()))?);
    let sticky = spec("vip = \"10.9.0.2\"\nport = 80\npersistence_timeout_ms = 600000\nbackends = [ { address = \"10.9.1.1\" }, { address = \"10.9.1.2\" } ]")?;
    balancer.sync(std::slice::from_ref(&sticky), Instant::now())?;
    let listing = host.run(["nft", "list", "table", "inet", "vznet_lb"])?;
    let map = listing
        .split_whitespace()
        .find(|w| w.starts_with("persist_"))
        .context("no persistence map")?
        .to_string();
    let mark = balancer.status(Instant::now(), |_| None)[0].backends[0].mark;
    host.run([
        "nft",
        "add",
        "element",
        "inet",
        "vznet_lb",
        &map,
        &format!("{{ 10.9.7.7 : {mark} }}"),
    ])?;
    // Another virtual server arrives: the rules are rewritten, the map stays.
    let other = spec("vip = \"10.9.0.9\"\nport = 81\nbackends = [ { address = \"10.9.1.9\" } ]")?;
    balancer.sync(&[other, sticky.clone()], Instant::now())?;
    let listing = host.run(["nft", "list", "map", "inet", "vznet_lb", &map])?;
    ensure!(listing.contains("10.9.7.7"), "entry lost:\n{listing}");
    ensure!(
        balancer.status(Instant::now(), |_| None)[1].backends[0].mark == mark,
        "a surviving backend must keep its id"
    );
    // The backend it names goes down: its clients are forgotten.
    let two = spec("vip = \"10.9.0.2\"\nport = 80\npersistence_timeout_ms = 600000\nbackends = [ { address = \"10.9.1.2\" } ]")?;
    let other = spec("vip = \"10.9.0.9\"\nport = 81\nbackends = [ { address = \"10.9.1.9\" } ]")?;
    balancer.sync(&[other, two], Instant::now())?;
    let listing = host.run(["nft", "list", "map", "inet", "vznet_lb", &map])?;
    ensure!(!listing.contains("10.9.7.7"), "entry kept:\n{listing}");
    balancer.clear()?;
    Ok(())
}

#[test]
fn quorum_follows_keepalived_hysteresis_and_alpha_starts_down() -> Result<()> {
    let lab = lab::Lab::new("lb_quorum")?;
    let host = lab.host("h")?;
    let mut balancer = Balancer::new(nft::Nft::new(Some(&host.netns_path()))?);
    let s = spec(&format!(
        "vip = \"10.9.0.1\"\nport = 80\nquorum = 2\nhysteresis = 1\nquorum_down = [\"/bin/true\"]\n{CHECK}\nbackends = [ {{ address = \"10.9.1.1\" }}, {{ address = \"10.9.1.2\" }}, {{ address = \"10.9.1.3\" }} ]"
    ))?;
    let now = Instant::now();
    let first = balancer.sync(std::slice::from_ref(&s), now)?;
    ensure!(first.events.is_empty(), "{:?}", first.events);
    let targets: Vec<Target> = s
        .backends
        .iter()
        .map(|b| Target::new(&b.checks[0], false, b.address, b.port))
        .collect();
    let mut set = |i: usize, up: bool| -> Result<Vec<Event>> {
        let c = balancer.set_health(&BTreeMap::from([(targets[i].clone(), up)]), now)?;
        Ok(c.map(|c| c.events).unwrap_or_default())
    };
    let quorum = |events: &[Event]| {
        events.iter().find_map(|e| match e {
            Event::Quorum { up, .. } => Some(*up),
            _ => None,
        })
    };
    // 3 live: up. Lost only below quorum - hysteresis = 1, i.e. at 0.
    ensure!(quorum(&set(0, false)?).is_none());
    ensure!(quorum(&set(1, false)?).is_none());
    let gone = set(2, false)?;
    ensure!(quorum(&gone) == Some(false), "{gone:?}");
    ensure!(
        gone.iter()
            .any(|e| matches!(e, Event::Quorum { hook: Some(h), .. } if h == &["/bin/true"])),
        "{gone:?}"
    );
    // Regained only at quorum + hysteresis = 3.
    ensure!(quorum(&set(0, true)?).is_none());
    ensure!(quorum(&set(1, true)?).is_none());
    ensure!(quorum(&set(2, true)?) == Some(true));
    // alpha: a new virtual server's backends start down until checked.
    let a = spec(&format!(
        "vip = \"10.9.0.5\"\nport = 80\nalpha = true\n{CHECK}\nbackends = [ {{ address = \"10.9.1.5\" }} ]"
    ))?;
    let started = balancer.sync(&[s, a], now)?;
    let st = balancer.status(now, |_| None);
    ensure!(
        st[1].backends[0].state == "down" && st[1].below_quorum,
        "{st:?}"
    );
    ensure!(
        quorum(&started.events) == Some(false),
        "starting below quorum is a quorum_down: {:?}",
        started.events
    );
    // omega: at shutdown, live backends go down and quorum is lost, in hooks.
    ensure!(
        balancer.shutdown_events(now).is_empty(),
        "no omega, no hooks"
    );
    let o = spec(&format!(
        "vip = \"10.9.0.6\"\nport = 80\nomega = true\nquorum_down = [\"/bin/true\"]\n{CHECK}\nbackends = [ {{ address = \"10.9.1.6\", notify_down = [\"/bin/true\"] }} ]"
    ))?;
    balancer.sync(&[o], now)?;
    let bye = balancer.shutdown_events(now);
    ensure!(
        bye.iter().any(|e| matches!(
            e,
            Event::Backend {
                up: false,
                hook: Some(_),
                ..
            }
        )) && quorum(&bye) == Some(false),
        "{bye:?}"
    );
    balancer.clear()?;
    Ok(())
}

#[test]
fn slow_start_ramps_a_returning_backend_up() -> Result<()> {
    let lab = lab::Lab::new("lb_slowstart")?;
    let host = lab.host("h")?;
    let mut balancer = Balancer::new(nft::Nft::new(Some(&host.netns_path()))?);
    let s = spec(&format!(
        "vip = \"10.9.0.1\"\nport = 53\nslow_start_ms = 10000\n{CHECK}\nbackends = [ {{ address = \"10.9.1.1\", weight = 100 }}, {{ address = \"10.9.1.2\", weight = 100 }} ]"
    ))?;
    let t0 = Instant::now();
    balancer.sync(std::slice::from_ref(&s), t0)?;
    let target = Target::new(&s.backends[1].checks[0], false, "10.9.1.2".parse()?, 53);
    balancer.set_health(&BTreeMap::from([(target.clone(), false)]), t0)?;
    balancer.set_health(&BTreeMap::from([(target, true)]), t0)?;
    let mut at = |secs: u64| {
        let now = t0 + Duration::from_secs(secs);
        let _ = balancer.tick(now);
        balancer.status(now, |_| None)[0].backends[1].clone()
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
