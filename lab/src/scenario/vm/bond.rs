//! Bonds in the VM: every mode builds and carries traffic (the mode changing in
//! place from one to the next), and an 802.3ad bond negotiates LACP with a
//! partner bond and survives the loss of a slave.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lab::{Host, Lab};
use netcfg::model::BondMode;

use super::{check, engine, parse_ping};
use crate::scenario::vznet_ok;

fn bond_toml(mode: BondMode, slaves: [&str; 2], address: &str, extra: &str) -> String {
    format!(
        "[[bond]]\nname = \"bond0\"\nmode = \"{}\"\nslaves = [\"{}\", \"{}\"]\naddresses = [\"{address}\"]\n{extra}",
        mode.as_str(),
        slaves[0],
        slaves[1]
    )
}

fn sysfs(host: &Host, what: &str) -> Result<String> {
    Ok(host
        .run(["cat", &format!("/sys/class/net/bond0/bonding/{what}")])?
        .trim()
        .to_string())
}

/// A host's bond0 over eth0 and eth1 to a switch, a peer on the switch; each
/// mode in turn. From the second mode on, the mode changes in place: the plan
/// shows exactly that change (vznet takes the bond down, releases its slaves,
/// sets the mode and enslaves them again).
pub(in crate::scenario) fn bond_modes() -> Result<()> {
    let lab = Lab::new("vm_modes")?;
    let host = lab.host("host")?;
    let sw = lab.switch("sw")?;
    let peer = lab.host("peer")?;
    lab.link(&host, "eth0", &sw, "s0")?;
    lab.link(&host, "eth1", &sw, "s1")?;
    lab.link(&peer, "p0", &sw, "s2")?;
    peer.add_address("p0", "10.60.0.1/24")?;
    let cfg = tempfile::tempdir()?;
    let mut failures = Vec::new();
    let mut previous: Option<BondMode> = None;
    for mode in BondMode::ALL {
        std::fs::write(
            cfg.path().join("host.toml"),
            bond_toml(mode, ["eth0", "eth1"], "10.60.0.2/24", ""),
        )?;
        let ran = engine(&host, cfg.path(), "apply")?;
        if let Some(prev) = previous {
            let want = format!("~ bond bond0 mode {} -> {}", prev.as_str(), mode.as_str());
            check(
                ran.lines().collect::<Vec<_>>() == [want.as_str(), "1 changes"],
                &format!("exactly: {want} ({})", ran.trim().replace('\n', "; ")),
                &mut failures,
            );
        }
        let both = host.run([
            "cat",
            "/sys/class/net/bond0/bonding/mode",
            "/sys/class/net/bond0/bonding/slaves",
        ])?;
        let mut lines = both.lines();
        let now = lines.next().unwrap_or_default();
        let slaves = lines.next().unwrap_or_default();
        check(
            now.starts_with(mode.as_str()) && slaves.split_whitespace().count() == 2,
            &format!("bond0 mode {now}, slaves {slaves}"),
            &mut failures,
        );
        check(
            host.ping("10.60.0.1"),
            &format!("{}: host -> peer through the bond", mode.as_str()),
            &mut failures,
        );
        previous = Some(mode);
    }
    // The mode changed by hand (as the kernel allows it: down, slaves out).
    host.run([
        "sh",
        "-c",
        "ip link set bond0 down && ip link set eth0 nomaster && ip link set eth1 nomaster && ip link set bond0 type bond mode broadcast && ip link set eth0 master bond0 && ip link set eth1 master bond0 && ip link set bond0 up",
    ])?;
    let plan = vznet_ok(host.name(), &["plan"], cfg.path())?;
    check(
        plan.lines().next() == Some("~ bond bond0 mode broadcast -> balance-alb"),
        &format!(
            "a mode changed by hand is found ({})",
            plan.trim().replace('\n', "; ")
        ),
        &mut failures,
    );
    vznet_ok(host.name(), &["apply"], cfg.path())?;
    check(
        sysfs(&host, "mode")?.starts_with("balance-alb") && host.ping("10.60.0.1"),
        "and put back",
        &mut failures,
    );
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}

/// The 802.3ad partner MAC and port count of `host`'s bond0, from
/// /proc/net/bonding (per netns).
fn lacp_state(host: &Host) -> Result<(String, u32)> {
    let text = host.run(["cat", "/proc/net/bonding/bond0"])?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let partner = field("Partner Mac Address:").unwrap_or_default();
    let ports = field("Number of ports:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((partner, ports))
}

fn apply(host: &Host, dir: &Path) -> Result<String> {
    vznet_ok(host.name(), &["apply"], dir)
}

/// Two hosts joined by two links, each with an 802.3ad bond (lacp_rate fast)
/// made by vznet: LACP negotiates (each sees the other as partner, both ports
/// in the aggregator); pings at 50 ms go on while one link goes down.
pub(in crate::scenario) fn lacp() -> Result<()> {
    let lab = Lab::new("vm_lacp")?;
    let a = lab.host("a")?;
    let b = lab.host("b")?;
    lab.link(&a, "eth0", &b, "eth0")?;
    lab.link(&a, "eth1", &b, "eth1")?;
    let (ca, cb) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let fast = "lacp_rate = \"fast\"\nxmit_hash_policy = \"layer3+4\"\n";
    std::fs::write(
        ca.path().join("host.toml"),
        bond_toml(BondMode::Lacp, ["eth0", "eth1"], "10.61.0.1/24", fast),
    )?;
    std::fs::write(
        cb.path().join("host.toml"),
        bond_toml(BondMode::Lacp, ["eth0", "eth1"], "10.61.0.2/24", fast),
    )?;
    apply(&a, ca.path())?;
    apply(&b, cb.path())?;
    let mut failures = Vec::new();
    let a_mac = a.link("bond0")?.mac.unwrap_or_default();
    let negotiated = lab::wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
        lacp_state(&b).is_ok_and(|(partner, ports)| partner == a_mac && ports == 2)
            && lacp_state(&a).is_ok_and(|(_, ports)| ports == 2)
    });
    let (partner, ports) = lacp_state(&b)?;
    check(
        negotiated,
        &format!("LACP negotiated: b's partner {partner} (a's bond {a_mac}), {ports} ports in the aggregator"),
        &mut failures,
    );
    // Ports negotiated are not yet distributing: allow the state machine its
    // seconds (emulation stretches them).
    check(
        lab::wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            a.ping("10.61.0.2")
        }),
        "a -> b over the aggregate",
        &mut failures,
    );
    // Under software emulation the bond's state machines run late: wait for
    // a steady path (three answers in a row) before taking a port away.
    // Not a check: the claim is about traffic across the loss, below.
    let _ = lab::wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        (0..3).all(|_| a.ping("10.61.0.2"))
    });
    let pinger = a.spawn(["ping", "-i", "0.05", "-c", "200", "-W", "1", "10.61.0.2"])?;
    std::thread::sleep(Duration::from_millis(2000));
    a.run(["ip", "link", "set", "eth0", "down"])?;
    let status = pinger.wait_timeout(Duration::from_secs(90))?;
    ensure!(status.is_some(), "ping did not finish");
    let (sent, received) = parse_ping(&pinger.stdout()?).context("reading ping's summary")?;
    println!(
        "  802.3ad slave loss: {} of {sent} pings lost at a 50 ms interval",
        sent - received
    );
    let after = lab::wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
        lacp_state(&a).is_ok_and(|(_, ports)| ports == 1)
    });
    check(after, "a's aggregator has one port left", &mut failures);
    // The loss figure depends on emulation speed; what must hold is that
    // traffic flows over the remaining port, during the run and after it.
    check(
        received > 0,
        &format!("pings answered across the slave loss ({received} of {sent})"),
        &mut failures,
    );
    check(
        lab::wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
            a.ping("10.61.0.2")
        }),
        "a -> b over the remaining port",
        &mut failures,
    );
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}
