//! A keepalived.conf imported with `vznet import keepalived` and run by vznetd,
//! against keepalived 2.2.7 running the original file on the peer. One file serves
//! both routers: `@r1` / `@r2` lines and `${_INSTANCE}` pick each one's priority and
//! health flag (`--config-id r1` for the import, `keepalived -i r2`). Nothing in the
//! file names a VRRP version: both must speak keepalived's default, VRRPv2, which the
//! import writes out. Two instances in a sync group on two links; a tracked script
//! of the group.
//!
//! One Master per virtual router at all times; the VIPs move to keepalived when the
//! script fails and when one member's link goes down (the other member follows),
//! and back when it recovers; a stopped vznetd hands both over, a restarted one
//! takes them back.

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::{spawn_vznetd, ConfigDir, VZNET};
use lab::{wait_until, Host, Lab, Process};

const CONF: &str = r#"! Both routers' keepalived.conf: r1's lines for the vznet host, r2's for keepalived.
global_defs {
    vrrp_garp_master_delay 1
}

vrrp_script chk {
    script "/usr/bin/test -e FLAGS/${_INSTANCE}.up"
    interval 1
}

vrrp_sync_group G {
    group {
        VI_1
        VI_2
    }
    track_script {
        chk
    }
}

vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
@r1 priority 150
@r2 priority 100
    advert_int 1
    virtual_ipaddress {
        10.71.0.100/24
    }
}

vrrp_instance VI_2 {
    interface eth1
    virtual_router_id 52
@r1 priority 150
@r2 priority 100
    advert_int 1
    virtual_ipaddress {
        10.72.0.100/24
    }
}
"#;

const VIPS: [(&str, &str); 2] = [("eth0", "10.71.0.100"), ("eth1", "10.72.0.100")];
const SETTLE: Duration = Duration::from_secs(15);

fn holds(host: &Host, ifname: &str, vip: &str) -> bool {
    host.addresses(ifname)
        .is_ok_and(|a| a.iter().any(|x| x.addr.to_string() == vip))
}

/// How many of the two VIPs each router holds.
fn counts(r1: &Host, r2: &Host) -> (usize, usize) {
    let n = |h: &Host| VIPS.iter().filter(|(i, v)| holds(h, i, v)).count();
    (n(r1), n(r2))
}

#[test]
fn an_imported_config_runs_against_keepalived_with_the_original() -> Result<()> {
    lab::keepalived_path()?;
    let lab = Lab::new("import_ka")?;
    let sw0 = lab.switch("sw0")?;
    let sw1 = lab.switch("sw1")?;
    let r1 = lab.host("r1")?;
    let r2 = lab.host("r2")?;
    for (h, n) in [(&r1, 1), (&r2, 2)] {
        lab.link(h, "eth0", &sw0, &format!("a{n}"))?;
        lab.link(h, "eth1", &sw1, &format!("b{n}"))?;
        h.add_address("eth0", format!("10.71.0.{n}/24"))?;
        h.add_address("eth1", format!("10.72.0.{n}/24"))?;
    }
    let scratch = tempfile::tempdir()?;
    let flags = scratch.path().join("flags");
    std::fs::create_dir(&flags)?;
    let text = CONF.replace("FLAGS", &flags.display().to_string());
    let conf = scratch.path().join("keepalived.conf");
    std::fs::write(&conf, &text)?;
    for id in ["r1", "r2"] {
        std::fs::write(flags.join(format!("{id}.up")), "")?;
    }

    // The import, as a user runs it.
    let cfg = ConfigDir::new()?;
    let out = std::process::Command::new(VZNET)
        .args([
            "import",
            "keepalived",
            "--config-id",
            "r1",
            "--strict",
            "--out",
        ])
        .arg(cfg.path())
        .arg(&conf)
        .output()?;
    ensure!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host_toml = std::fs::read_to_string(cfg.path().join("host.toml"))?;
    ensure!(host_toml.contains("version = 2"), "{host_toml}");
    ensure!(host_toml.contains("priority = 150"), "{host_toml}");

    // The same text on the peer, read by keepalived with config id r2.
    let ka = lab::spawn_keepalived_with(
        &r2,
        &scratch.path().join("keepalived"),
        &text,
        &["--config-id=r2"],
    )?;
    let state = scratch.path().join("state");
    let socket = scratch.path().join("vznetd.sock");
    let mut vznetd = spawn_vznetd(&r1, &cfg, &state, &socket, &["--interval", "1s"])?;
    let logs = |p: &Process| {
        format!(
            "vznetd:\n{}\nkeepalived:\n{}{}",
            p.stderr().unwrap_or_default(),
            ka.stdout().unwrap_or_default(),
            ka.stderr().unwrap_or_default()
        )
    };
    let settled = |want: (usize, usize)| {
        wait_until(SETTLE, Duration::from_millis(100), || {
            counts(&r1, &r2) == want
        })
    };

    // One Master: vznetd (150) holds both VIPs, and no VIP is ever on both.
    ensure!(
        settled((2, 0)),
        "vznetd never Master: {:?}\n{}",
        counts(&r1, &r2),
        logs(&vznetd)
    );
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        for (i, v) in VIPS {
            ensure!(
                !(holds(&r1, i, v) && holds(&r2, i, v)),
                "{v} on both routers"
            );
        }
    }

    // The group's script fails on r1: both VIPs go to keepalived.
    std::fs::remove_file(flags.join("r1.up"))?;
    ensure!(
        settled((0, 2)),
        "script failure moved {:?}\n{}",
        counts(&r1, &r2),
        logs(&vznetd)
    );
    std::fs::write(flags.join("r1.up"), "")?;
    ensure!(
        settled((2, 0)),
        "no preempt back: {:?}\n{}",
        counts(&r1, &r2),
        logs(&vznetd)
    );

    // One member's link goes down: the other member follows it to keepalived.
    r1.ip(["link", "set", "eth1", "down"])?;
    ensure!(
        settled((0, 2)),
        "sync group split: {:?}\n{}",
        counts(&r1, &r2),
        logs(&vznetd)
    );
    r1.ip(["link", "set", "eth1", "up"])?;
    ensure!(
        settled((2, 0)),
        "no return: {:?}\n{}",
        counts(&r1, &r2),
        logs(&vznetd)
    );

    // vznetd stops (priority 0): keepalived takes both at once; started again, vznetd
    // (150) preempts both back.
    vznetd.terminate(Duration::from_secs(10))?;
    ensure!(
        settled((0, 2)),
        "no handover at stop: {:?}\n{}",
        counts(&r1, &r2),
        logs(&vznetd)
    );
    vznetd = spawn_vznetd(&r1, &cfg, &state, &socket, &["--interval", "1s"])?;
    ensure!(
        settled((2, 0)),
        "no preempt after restart: {:?}\n{}",
        counts(&r1, &r2),
        logs(&vznetd)
    );
    ensure!(
        ka.is_running()?,
        "keepalived exited: {}",
        ka.stdout().unwrap_or_default()
    );
    Ok(())
}
