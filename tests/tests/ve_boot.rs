//! Boot and shutdown: a simulated reboot (vznetd stopped, every VE's init
//! killed, so their network namespaces and links die as at a power cut), then
//! what the boot runs (vznetd, then `vznet ve start --onboot`, as the
//! vznet-ves unit does): the onboot VEs run and are wired, in boot order, the
//! others do not; `ve stop --all` stops in the reverse order.

mod common;
mod ve_harness;

use std::time::Duration;

use anyhow::{Context, Result};
use lab::Lab;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ve_harness::runtime;

/// A hook line that appends `$VE_HOOK $VEID` to `log`.
fn hook(log: &std::path::Path) -> String {
    format!(
        "[\"/bin/sh\", \"-c\", \"echo $VE_HOOK $VEID >> {}\"]",
        log.display()
    )
}

#[test]
fn a_reboot_brings_back_the_onboot_ves_wired_in_boot_order_and_no_others() -> Result<()> {
    let lab = Lab::new("ve_boot")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    let log = rt.state.path().join("hooks.log");
    // id, onboot, boot_order: 903 first (20), then 901 and 902 side by side
    // (10), then 904 (unset); 905 is not onboot.
    let ves: [(u32, bool, Option<u32>); 5] = [
        (901, true, Some(10)),
        (902, true, Some(10)),
        (903, true, Some(20)),
        (904, true, None),
        (905, false, Some(99)),
    ];
    for (id, onboot, order) in ves {
        let n = id - 900;
        let order = order.map_or_else(String::new, |o| format!("boot_order = {o}\n"));
        rt.create(
            id,
            &format!(
                "onboot = {onboot}\n{order}\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\n\
                 addresses = [\"10.60.0.{}/24\"]\n\n[hooks]\npre_start = {h}\npost_start = {h}\n\
                 pre_stop = {h}\n",
                100 + n,
                h = hook(&log)
            ),
        )?;
    }
    let agent = common::spawn_vznetd(&host, &rt.cfg, rt.state.path(), &rt.socket(), &[])?;
    // Before the "reboot": every VE runs (905 too, started by hand).
    rt.ok(&["ve", "start", "901", "902", "903", "904", "905"])?;
    for (id, _, _) in ves {
        assert!(host.ping(format!("10.60.0.{}", 100 + id - 900)), "VE {id}");
    }

    // The power cut: the agent goes, every VE's init dies, and with it its
    // PID namespace (every process in it), its netns and the veth pairs.
    agent.kill()?;
    let pids = rt.ok(&["ve", "list", "-H", "-o", "pid"])?;
    for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    }
    anyhow::ensure!(
        lab::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            host.links()
                .is_ok_and(|l| !l.iter().any(|l| l.name.starts_with("veth90")))
        }),
        "the VEs' host ends outlived their netns"
    );
    assert_eq!(
        rt.ok(&["ve", "list", "-H", "-o", "veid"])?.trim(),
        "",
        "no VE runs after the power cut"
    );
    // A reboot empties the host's neighbour cache too (the VEs come back
    // with new random MACs).
    host.ip(["neigh", "flush", "all"])?;
    std::fs::write(&log, "")?;

    // The boot: vznetd, then what vznet-ves.service runs.
    let agent = common::spawn_vznetd(&host, &rt.cfg, rt.state.path(), &rt.socket(), &[])?;
    let out = rt.ok(&["ve", "start", "--onboot"])?;
    for id in [901, 902, 903, 904] {
        assert!(out.contains(&format!("VE {id} started")), "{out}");
        assert!(
            host.ping(format!("10.60.0.{}", 100 + id - 900)),
            "VE {id}: {out}"
        );
    }
    assert!(!out.contains("VE 905"), "{out}");
    let (code, _, _) = rt.run(&["ve", "status", "905"])?;
    assert_eq!(code, 3, "905 is not onboot: it stays down");
    // Group by group: each wired (post_start) before the next begins.
    assert_eq!(
        std::fs::read_to_string(&log)?,
        "pre-start 903\npost-start 903\n\
         pre-start 901\npre-start 902\npost-start 901\npost-start 902\n\
         pre-start 904\npost-start 904\n"
    );
    // Wired through the agent, which took nothing for a stray.
    let status: serde_json::Value = serde_json::from_str(&rt.ok(&["status", "--json"])?)?;
    assert!(status["last_error"].is_null(), "{status}");
    assert_eq!(status["unwired"], serde_json::json!([905]), "{status}");
    // A second run has nothing to do.
    assert_eq!(
        rt.ok(&["ve", "start", "--onboot"])?.trim(),
        "no onboot VE to start"
    );

    // Shutdown: the reverse order, one group after the other.
    std::fs::write(&log, "")?;
    let out = rt.ok(&["ve", "stop", "--all", "--timeout", "5"])?;
    assert_eq!(
        std::fs::read_to_string(&log)?,
        "pre-stop 904\npre-stop 901\npre-stop 902\npre-stop 903\n",
        "{out}"
    );
    assert_eq!(rt.ok(&["ve", "list", "-H", "-o", "veid"])?.trim(), "");
    let links: Vec<String> = host.links()?.into_iter().map(|l| l.name).collect();
    assert!(!links.iter().any(|l| l.starts_with("veth90")), "{links:?}");
    drop(agent);
    Ok(())
}

#[test]
fn one_broken_onboot_ve_keeps_no_other_down() -> Result<()> {
    let lab = Lab::new("ve_boot_broken")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    for id in [911, 912, 913] {
        rt.create(
            id,
            &format!(
                "onboot = true\nboot_order = 1\n\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\n\
                 addresses = [\"10.60.0.{}/24\"]\n",
                id - 800
            ),
        )?;
    }
    // 912's pre_start hook fails: the group's start fails, and the group is
    // retried one VE at a time.
    let file = rt.cfg.path().join("ve/912.toml");
    let text = std::fs::read_to_string(&file)? + "\n[hooks]\npre_start = [\"/bin/false\"]\n";
    std::fs::write(&file, text)?;
    let (code, out, err) = rt.run(&["ve", "start", "--onboot", "--json"])?;
    assert_eq!(code, 1, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).context("json")?;
    assert_eq!(json["ok"], false);
    assert_eq!(json["failed"][0]["veid"], 912, "{json}");
    let started: Vec<u64> = json["started"]
        .as_array()
        .context("started")?
        .iter()
        .filter_map(|v| v["veid"].as_u64())
        .collect();
    assert_eq!(started, [911, 913], "{json}");
    assert!(host.ping("10.60.0.111") && host.ping("10.60.0.113"));
    Ok(())
}
