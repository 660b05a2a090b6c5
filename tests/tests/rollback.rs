//! A failure part-way through apply leaves the kernel exactly as before.

mod common;

use std::os::fd::AsFd;

use anyhow::{Context, Result};
use common::{snapshot, vznet, vznet_ok, ConfigDir};
use lab::{Host, Lab};

fn five_ves(lab: &Lab, cfg: &ConfigDir, bad_gateway_on: Option<usize>) -> Result<Vec<Host>> {
    cfg.host(
        r#"
[[bridge]]
name = "br0"
addresses = ["10.20.0.1/24"]
"#,
    )?;
    let mut ves = Vec::new();
    for n in 0..5 {
        let id = 300 + n as u32;
        let ve = lab.host(&format!("ve{id}"))?;
        // An off-link gateway: the kernel refuses the default route (ENETUNREACH).
        let gw = if bad_gateway_on == Some(n) {
            "10.99.0.1"
        } else {
            "10.20.0.1"
        };
        cfg.ve(
            id,
            &format!(
                "id = {id}\nnetns = \"{}\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"10.20.0.{}/24\", \"10.99.1.{}/32\"]\ngateway = \"{gw}\"\nsysctl = {{ proxy_arp = 1 }}\n",
                ve.name(),
                10 + n,
                10 + n
            ),
        )?;
        ves.push(ve);
    }
    Ok(ves)
}

fn snapshots(host: &Host, ves: &[Host]) -> Result<Vec<String>> {
    let mut out = vec![snapshot(host)?];
    for ve in ves {
        out.push(snapshot(ve)?);
    }
    Ok(out)
}

/// The state once the kernel's own follow-ups are done: a bridge whose first
/// port comes up gets its IPv6 link-local (and routes) a moment later, on a
/// loaded machine after the apply has returned. Two equal reads 300 ms apart.
fn settled(host: &Host, ves: &[Host]) -> Result<Vec<String>> {
    let mut last = snapshots(host, ves)?;
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = snapshots(host, ves)?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

#[test]
fn kernel_refusal_in_third_of_five_ves_rolls_everything_back() -> Result<()> {
    let lab = Lab::new("rollback_refusal")?;
    let host = lab.host("host")?;
    let cfg = ConfigDir::new()?;
    let ves = five_ves(&lab, &cfg, Some(2))?;
    let before = settled(&host, &ves)?;
    let out = vznet(&host, &cfg, &["apply"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("route default via 10.99.0.1"),
        "names the failing op: {err}"
    );
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(
        before,
        settled(&host, &ves)?,
        "kernel differs after rollback"
    );
    Ok(())
}

/// The 3rd VE's netns vanishes between validation and apply (the VE stopped).
#[test]
fn netns_missing_at_apply_rolls_everything_back() -> Result<()> {
    let lab = Lab::new("rollback_netns")?;
    let host = lab.host("host")?;
    let cfg = ConfigDir::new()?;
    let ves = five_ves(&lab, &cfg, None)?;
    let config = netcfg::model::Config::load(cfg.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let desired = netcfg::desired::Desired::from_config(&config);
    host.run(["true"])?;
    std::process::Command::new("ip")
        .args(["netns", "del", ves[2].name()])
        .status()?;
    let before = settled(&host, &[&ves[..2], &ves[3..]].concat())?;

    // Run the engine as vznet would, from a thread inside the host netns.
    let host_ns = std::fs::File::open(host.netns_path())?;
    let result = std::thread::spawn(move || -> Result<String> {
        nix::sched::setns(host_ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let engine = netcfg::apply::Engine::new(&desired)?;
            match engine.apply(&desired).await {
                Ok(r) => anyhow::bail!("apply succeeded with a missing netns: {:?}", r.ops),
                Err(e) => Ok(e.to_string()),
            }
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("engine thread panicked"))?
    .context("engine")?;
    assert!(result.contains("is not available"), "{result}");
    assert!(result.contains("rolled back"), "{result}");
    assert_eq!(before, settled(&host, &[&ves[..2], &ves[3..]].concat())?);
    Ok(())
}

#[test]
fn successful_apply_then_failing_change_keeps_previous_state() -> Result<()> {
    let lab = Lab::new("rollback_change")?;
    let host = lab.host("host")?;
    let cfg = ConfigDir::new()?;
    let ves = five_ves(&lab, &cfg, None)?;
    vznet_ok(&host, &cfg, &["apply"])?;
    let before = settled(&host, &ves)?;
    // Change two VEs: one fine, one refused by the kernel.
    let text = std::fs::read_to_string(cfg.path().join("ve/304.toml"))?;
    cfg.ve(304, &text.replace("10.20.0.14/24", "10.20.0.44/24"))?;
    let text = std::fs::read_to_string(cfg.path().join("ve/301.toml"))?;
    cfg.ve(
        301,
        &text.replace("gateway = \"10.20.0.1\"", "gateway = \"10.98.0.1\""),
    )?;
    let out = vznet(&host, &cfg, &["apply"])?;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(before, settled(&host, &ves)?);
    assert!(ves[4].ping("10.20.0.1"), "the old config still works");
    Ok(())
}
