//! A fleet driven from etcd: real etcd members and vznetd hosts, each in its own
//! lab namespace (`lab::fleet`). Propagation, rejection of an invalid config,
//! concurrent pushes, etcd down at start and during operation, compaction, a
//! VE moved between hosts while a client pings it, a dead member of three, and a
//! host cut off from etcd that keeps its VRRP.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{VZNET, VZNETD};
use lab::fleet::{gateway_toml, host_toml, longest_loss, routed_ve, Fleet, Tools};
use lab::{wait_until, Lab};

fn fleet(lab: &Lab, members: usize, hosts: usize) -> Result<Fleet> {
    Fleet::new(
        lab,
        members,
        hosts,
        Tools {
            vznetd: vec![VZNETD.into()],
            vznet: vec![VZNET.into()],
        },
    )
}

fn has_address(host: &lab::Host, dev: &str, addr: &str) -> bool {
    host.addresses(dev)
        .is_ok_and(|a| a.iter().any(|x| x.addr.to_string() == addr))
}

fn agent_status(f: &Fleet, i: usize) -> Result<serde_json::Value> {
    let out = f.vznet(i, &["status", "--json"])?;
    ensure!(
        out.status.success(),
        "vznet status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn pushes_propagate_invalid_configs_are_rejected_and_concurrent_pushes_conflict() -> Result<()> {
    let lab = Lab::new("fleet_push")?;
    let mut f = fleet(&lab, 1, 1)?;
    f.start_agent(0, &[])?;
    let h = f.hosts[0].host.clone();

    // Propagation: pushed, applied, reported in etcd and by the agent.
    let dir = f.folder("good", &host_toml("10.80.0.1", ""), &[])?;
    let rev = f.push(0, &dir)?;
    f.wait_applied(0, rev, Duration::from_secs(20))?;
    ensure!(has_address(&h, "br0", "10.80.0.1"), "br0 not configured");
    let s = agent_status(&f, 0)?;
    ensure!(s["fleet"]["revision"].as_i64() == Some(rev), "{s}");

    // The CLI validates first: nothing written, the file and line named.
    let bad = f.folder(
        "bad",
        &host_toml("10.80.0.1", ""),
        &[(7, "id = 7\nbogus = 1\n".into())],
    )?;
    let before = f.etcd.revision()?;
    let out = f.fleet(&["push", &bad.display().to_string(), "--host", "h0"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2), "exit {:?}: {err}", out.status);
    ensure!(err.contains("ve/7.toml:2:1: bogus"), "{err}");
    ensure!(
        f.etcd.revision()? == before,
        "an invalid push wrote to etcd"
    );

    // Written behind the CLI's back: the agent rejects it, says where, keeps
    // running the last good config.
    f.etcd.ctl(
        0,
        &["put", "/vznet/v1/hosts/h0/ve/7.toml", "id = 7\nbogus = 1\n"],
    )?;
    let mut last = serde_json::Value::Null;
    ensure!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            last = f.status().map(|s| s["h0"].clone()).unwrap_or_default();
            last["state"] == "rejected"
        }),
        "not rejected: {last}"
    );
    let error = last["report"]["rejected"]["error"].as_str().unwrap_or("");
    ensure!(
        error.contains("etcd:/vznet/v1/hosts/h0/ve/7.toml:2:1: bogus"),
        "{last}"
    );
    ensure!(last["report"]["revision"].as_i64() == Some(rev), "{last}");
    let s = agent_status(&f, 0)?;
    ensure!(
        s["config_error"]
            .as_str()
            .unwrap_or("")
            .contains("ve/7.toml:2:1"),
        "{s}"
    );
    ensure!(
        has_address(&h, "br0", "10.80.0.1"),
        "the running config was dropped"
    );

    // A good push (which deletes the bad file) clears it. The folder's base
    // revision (left by its first push) predates the bad write: pushing it as
    // it is would be refused, so this admin drops the base on purpose.
    let refused = f.fleet(&["push", &dir.display().to_string(), "--host", "h0"])?;
    ensure!(refused.status.code() == Some(3), "{refused:?}");
    std::fs::remove_file(dir.join(".fleet-revision"))?;
    let rev = f.push(0, &dir)?;
    f.wait_applied(0, rev, Duration::from_secs(20))?;
    ensure!(f.status()?["h0"]["state"] == "ok", "{}", f.status()?["h0"]);

    // Two admins edit the same revision and push at once: one wins, the other
    // is refused with the key that changed, and nothing of it is written.
    let a = f.folder("a", "", &[])?;
    let b = f.folder("b", "", &[])?;
    for d in [&a, &b] {
        std::fs::remove_dir_all(d)?;
        f.fleet_ok(&["get", "--host", "h0", "--out", &d.display().to_string()])?;
    }
    std::fs::write(
        a.join("host.toml"),
        host_toml(
            "10.80.0.1",
            "\n[[route]]\nto = \"10.60.0.0/24\"\nvia = \"10.80.0.254\"\n",
        ),
    )?;
    std::fs::write(
        b.join("host.toml"),
        host_toml(
            "10.80.0.1",
            "\n[[route]]\nto = \"10.61.0.0/24\"\nvia = \"10.80.0.254\"\n",
        ),
    )?;
    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let ts: Vec<_> = [&a, &b]
            .map(|d| {
                let f = &f;
                s.spawn(move || f.fleet(&["push", &d.display().to_string(), "--host", "h0"]))
            })
            .into_iter()
            .collect();
        ts.into_iter()
            .map(|t| t.join().expect("push thread").expect("push ran"))
            .collect()
    });
    let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
    ensure!(
        codes.contains(&Some(0)) && codes.contains(&Some(3)),
        "exits {codes:?}: {outs:?}"
    );
    let loser = outs
        .iter()
        .find(|o| o.status.code() == Some(3))
        .context("a loser")?;
    let why = String::from_utf8_lossy(&loser.stderr);
    ensure!(
        why.contains("host.toml: changed at revision"),
        "not told why: {why}"
    );
    Ok(())
}

#[test]
fn etcd_down_at_start_and_during_operation_and_compaction_keep_the_last_good_config() -> Result<()>
{
    let lab = Lab::new("fleet_outage")?;
    let mut f = fleet(&lab, 1, 1)?;
    let h = f.hosts[0].host.clone();
    f.start_agent(0, &["--interval", "2s"])?;
    let dir = f.folder("c1", &host_toml("10.80.0.1", ""), &[])?;
    let rev = f.push(0, &dir)?;
    f.wait_applied(0, rev, Duration::from_secs(20))?;

    // Down at start: the cached config comes up without etcd.
    f.stop_agent(0)?;
    f.etcd.kill(0)?;
    h.ip(["link", "del", "br0"])?;
    f.start_agent(0, &["--interval", "2s"])?;
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            has_address(&h, "br0", "10.80.0.1")
        }),
        "the cached config was not applied"
    );
    let s = agent_status(&f, 0)?;
    ensure!(s["fleet"]["revision"].as_i64() == Some(rev), "{s}");
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            agent_status(&f, 0).is_ok_and(|s| s["fleet"]["etcd_error"].is_string())
        }),
        "etcd's absence not reported"
    );

    // Down during operation: drift is still repaired.
    h.ip(["addr", "del", "10.80.0.1/24", "dev", "br0"])?;
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            has_address(&h, "br0", "10.80.0.1")
        }),
        "drift not repaired while etcd is down"
    );

    // Back: the agent resyncs and takes new changes.
    f.etcd.restart(0)?;
    let dir = f.folder(
        "c2",
        &host_toml("10.80.0.1", "").replace("/24\"]", "/24\", \"10.80.1.1/24\"]"),
        &[],
    )?;
    let rev = f.push(0, &dir)?;
    f.wait_applied(0, rev, Duration::from_secs(30))?;
    ensure!(
        has_address(&h, "br0", "10.80.1.1"),
        "change after etcd's return not applied"
    );

    // Cut off while two changes land and etcd compacts them away: on its
    // return the agent cannot watch from where it was and reads everything.
    let reads_before = agent_status(&f, 0)?["fleet"]["full_reads"]
        .as_u64()
        .unwrap_or(0);
    f.partition(0)?;
    // Let the lease renewal notice the cut (renewals every third of 10 s).
    ensure!(
        wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            agent_status(&f, 0).is_ok_and(|s| s["fleet"]["etcd_error"].is_string())
        }),
        "the cut is never noticed"
    );
    let dir = f.folder(
        "c3",
        &host_toml("10.80.0.1", "").replace("/24\"]", "/24\", \"10.80.2.1/24\"]"),
        &[],
    )?;
    f.push(0, &dir)?;
    let dir = f.folder(
        "c4",
        &host_toml("10.80.0.1", "").replace("/24\"]", "/24\", \"10.80.3.1/24\"]"),
        &[],
    )?;
    let rev = f.push(0, &dir)?;
    f.etcd.ctl(0, &["compact", &rev.to_string()])?;
    f.heal(0)?;
    f.wait_applied(0, rev, Duration::from_secs(30))?;
    ensure!(
        has_address(&h, "br0", "10.80.3.1"),
        "latest change not applied"
    );
    ensure!(!has_address(&h, "br0", "10.80.1.1"), "old address kept");
    let reads = agent_status(&f, 0)?["fleet"]["full_reads"]
        .as_u64()
        .unwrap_or(0);
    ensure!(
        reads > reads_before,
        "no full read after compaction ({reads})"
    );
    Ok(())
}

#[test]
fn a_moved_ve_stays_reachable_a_dead_member_and_a_cut_host_change_nothing() -> Result<()> {
    let lab = Lab::new("fleet_move")?;
    let mut f = fleet(&lab, 3, 2)?;
    let ve = lab.host("ve300")?;
    let ve_file = routed_ve(300, ve.name(), "10.90.0.5");
    for i in 0..2 {
        f.start_agent(i, &[])?;
    }
    let d0 = f.folder("h0", &gateway_toml("10.80.0.1", 300, ""), &[(300, ve_file)])?;
    let d1 = f.folder("h1", &gateway_toml("10.80.0.2", 300, ""), &[])?;
    let r0 = f.push(0, &d0)?;
    let r1 = f.push(1, &d1)?;
    f.wait_applied(0, r0, Duration::from_secs(20))?;
    f.wait_applied(1, r1, Duration::from_secs(20))?;
    f.client
        .ip(["route", "add", "10.90.0.0/24", "via", "10.80.0.100"])?;
    let master = |i: usize| {
        f.status()
            .is_ok_and(|s| s[&f.hosts[i].name]["report"]["vrrp"][0]["state"] == "Master")
    };
    ensure!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            master(0)
        }),
        "h0 never Master: {:?}",
        f.status()
    );
    ensure!(f.client.ping("10.90.0.5"), "VE not reachable through h0");

    // The move, while the client pings every 10 ms.
    let sent = 500;
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
    std::thread::sleep(Duration::from_millis(1000));
    f.fleet_ok(&["move", "300", "--from", "h0", "--to", "h1", "--wait", "20"])?;
    ensure!(
        ping.wait_timeout(Duration::from_secs(30))?.is_some(),
        "ping did not end"
    );
    let out = ping.stdout()?;
    let lost = longest_loss(&out, sent);
    eprintln!("VE move: longest outage {} ms", lost * 10);
    if std::env::var_os("FLEET_LOGS").is_some() {
        for i in 0..2 {
            eprintln!(
                "--- h{i}:\n{}",
                f.hosts[i]
                    .agent
                    .as_ref()
                    .and_then(|p| p.stderr().ok())
                    .unwrap_or_default()
            );
        }
    }
    let logs = |i: usize| {
        f.hosts[i]
            .agent
            .as_ref()
            .and_then(|p| p.stderr().ok())
            .unwrap_or_default()
    };
    ensure!(
        lost <= 100,
        "outage of {} ms during the move\n--- h0:\n{}\n--- h1:\n{}",
        lost * 10,
        logs(0),
        logs(1)
    );
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            master(1)
        }),
        "h1 not Master after the move"
    );
    let s = f.status()?;
    ensure!(
        s["h0"]["report"]["ves"]
            .as_array()
            .is_some_and(|v| v.is_empty()),
        "{s:?}"
    );
    ensure!(s["h1"]["report"]["ves"][0]["id"] == 300, "{s:?}");
    ensure!(
        f.hosts[0].host.link("venet300").is_err(),
        "h0 still wires VE 300"
    );

    // One member of three killed: pushes and status go on.
    f.etcd.kill(0)?;
    let d1 = f.folder(
        "h1b",
        &gateway_toml("10.80.0.2", 300, "")
            .replace("10.80.0.2/24\"", "10.80.0.2/24\", \"10.80.5.2/24\""),
        &[(300, std::fs::read_to_string(d0.join("ve/300.toml"))?)],
    )?;
    let got = d1.with_file_name("h1-got");
    let out = f.fleet_ok(&["get", "--host", "h1", "--out", &got.display().to_string()])?;
    ensure!(out.contains("h1:"), "{out}");
    let rev = f.push(1, &d1)?;
    f.wait_applied(1, rev, Duration::from_secs(20))?;
    ensure!(
        has_address(&f.hosts[1].host, "br0", "10.80.5.2"),
        "change not applied"
    );

    // A host cut off from etcd keeps its VRRP: still Master, still forwarding.
    f.partition(1)?;
    std::thread::sleep(Duration::from_secs(3));
    let addrs = f.hosts[1].host.addresses("br0")?;
    ensure!(
        addrs.iter().any(|a| a.addr.to_string() == "10.80.0.100"),
        "h1 lost the VIP while cut off from etcd"
    );
    ensure!(
        f.client.ping("10.90.0.5"),
        "VE unreachable while its host is cut off"
    );
    f.heal(1)?;
    Ok(())
}
