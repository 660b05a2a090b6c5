//! `lab demo --fleet`: three hosts run from a three-member etcd cluster. Push,
//! status, a VE moved between hosts while a client pings it through the VRRP
//! gateway, and an etcd member killed.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use lab::fleet::{gateway_toml, longest_loss, routed_ve, Fleet, Tools};
use lab::{wait_until, Lab};

use super::demo::{check, indent, step};

/// Runs the fleet demo; fails if any check fails.
pub fn run() -> Result<()> {
    let lab = Lab::new("demo_fleet")?;
    let me = std::env::current_exe()?.display().to_string();
    let tools = Tools {
        vznetd: vec![me.clone(), "vznetd".into()],
        vznet: vec![me, "vznet".into()],
    };
    let mut failures = Vec::new();

    step("an etcd cluster (3 members) and 3 hosts, each in its own namespace");
    let mut f = Fleet::new(&lab, 3, 3, tools)?;
    println!("  etcd endpoints {}", f.etcd.endpoints());
    let ve = lab.host("ve300")?;
    println!("  VE 300: netns {} (routed, 10.90.0.5)", ve.name());
    for i in 0..3 {
        f.start_agent(i, &[])?;
        println!(
            "  {}: vznetd --etcd ... --host {} (netns {})",
            f.hosts[i].name,
            f.hosts[i].name,
            f.hosts[i].host.name()
        );
    }

    step("vznet fleet push: each host's folder, validated, one transaction per host");
    let mut revisions = Vec::new();
    for i in 0..3 {
        let ves = if i == 0 {
            vec![(300, routed_ve(300, ve.name(), "10.90.0.5"))]
        } else {
            Vec::new()
        };
        let dir = f.folder(
            &format!("h{i}"),
            &gateway_toml(&f.hosts[i].data_addr, 300, ""),
            &ves,
        )?;
        if i == 0 {
            println!(
                "  h0/host.toml:\n{}",
                indent(&std::fs::read_to_string(dir.join("host.toml"))?)
            );
            println!(
                "  h0/ve/300.toml:\n{}",
                indent(&std::fs::read_to_string(dir.join("ve/300.toml"))?)
            );
        }
        let r = f.push(i, &dir)?;
        println!(
            "  vznet fleet push {} --host {}: revision {r}",
            dir.display(),
            f.hosts[i].name
        );
        revisions.push(r);
    }
    for (i, r) in revisions.iter().enumerate() {
        f.wait_applied(i, *r, Duration::from_secs(20))?;
    }
    let master = |i: usize| {
        f.status()
            .is_ok_and(|s| s[&f.hosts[i].name]["report"]["vrrp"][0]["state"] == "Master")
    };
    wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        master(0)
    });

    step("vznet fleet status");
    print!("{}", indent(&f.fleet_ok(&["status"])?));
    check(
        master(0),
        "h0, which holds VE 300, is the VRRP Master",
        &mut failures,
    );

    step("a client routes 10.90.0.0/24 via the VIP 10.80.0.100 and pings VE 300");
    f.client
        .ip(["route", "add", "10.90.0.0/24", "via", "10.80.0.100"])?;
    check(
        f.client.ping("10.90.0.5"),
        "client reaches VE 300 through h0",
        &mut failures,
    );

    step("vznet fleet move 300 --from h0 --to h1, while the client pings every 10 ms");
    let sent = 400u64;
    let ping = f.client.spawn([
        "ping",
        "-n",
        "-i",
        "0.01",
        "-W",
        "1",
        "-c",
        &sent.to_string(),
        "10.90.0.5",
    ])?;
    std::thread::sleep(Duration::from_millis(800));
    let t = Instant::now();
    let out = f.fleet_ok(&["move", "300", "--from", "h0", "--to", "h1", "--wait", "20"])?;
    print!("{}", indent(&out));
    println!("  both hosts applied it in {} ms", t.elapsed().as_millis());
    ping.wait_timeout(Duration::from_secs(30))?;
    let lost = longest_loss(&ping.stdout()?, sent);
    println!("  longest run of lost pings: {lost} ({} ms)", lost * 10);
    check(
        lost * 10 <= 1000,
        "outage of at most 1 s during the move",
        &mut failures,
    );
    wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        master(1)
    });
    print!("{}", indent(&f.fleet_ok(&["status"])?));
    check(
        master(1),
        "h1 now holds VE 300 and is the Master",
        &mut failures,
    );
    check(
        f.client.ping("10.90.0.5"),
        "client reaches VE 300 through h1",
        &mut failures,
    );

    step("etcd member m0 killed: the other two carry on");
    f.etcd.kill(0)?;
    let dir = f.folder(
        "h2b",
        &gateway_toml(
            &f.hosts[2].data_addr,
            300,
            "\n[[route]]\nto = \"10.70.0.0/24\"\nvia = \"10.80.0.254\"\n",
        ),
        &[],
    )?;
    let out = f.fleet_ok(&[
        "push",
        &dir.display().to_string(),
        "--host",
        "h2",
        "--wait",
        "20",
    ])?;
    print!("{}", indent(&out));
    let routed = f.hosts[2]
        .host
        .ip(["route", "show", "10.70.0.0/24"])
        .is_ok_and(|r| r.contains("10.80.0.254"));
    check(
        routed,
        "h2 applied a change pushed with one member down",
        &mut failures,
    );
    print!("{}", indent(&f.fleet_ok(&["status"])?));

    step("cleanup (etcd data, namespaces)");
    drop(f);
    ensure!(
        failures.is_empty(),
        "failed checks: {}",
        failures.join("; ")
    );
    println!("\nfleet demo: all checks passed");
    Ok(())
}
