//! The soak's invariants, each read from the kernel or an agent, never from what
//! the churn believes it did.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::world::{self, World, FIRST_VE, VENET_VE};

/// What `vznet plan --json` prints.
#[derive(Debug, serde::Deserialize)]
pub struct Plan {
    /// The ops, as vznet prints them.
    pub ops: Vec<serde_json::Value>,
}

impl Plan {
    /// True when the kernel matches the config.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The ops, one string each.
    pub fn describe(&self) -> String {
        let ops: Vec<String> = self.ops.iter().map(ToString::to_string).collect();
        ops.join("; ")
    }
}

/// `vznet plan --direct --json` in the host: the plan of vznet itself
/// against the kernel (not the agent's view), as users run it.
///
/// vznet refuses a config that names a netns that does not exist, which vznetd
/// takes as a VE not running: the plan runs on a copy of the config where the VEs
/// in `gone` have no `netns` line, what a stopped VE's file says.
pub fn plan(world: &World, gone: &BTreeSet<u32>) -> Result<Plan> {
    let me = std::env::current_exe().context("finding the lab binary")?;
    let copy = tempfile::tempdir()?;
    let cfg = copy.path();
    std::fs::create_dir(cfg.join("ve"))?;
    std::fs::copy(world.config_dir().join("host.toml"), cfg.join("host.toml"))?;
    for entry in std::fs::read_dir(world.config_dir().join("ve"))? {
        let entry = entry?;
        let name = entry.file_name();
        let text = std::fs::read_to_string(entry.path())?;
        let id: Option<u32> = name
            .to_str()
            .and_then(|n| n.strip_suffix(".toml")?.parse().ok());
        let text = if id.is_some_and(|id| gone.contains(&id)) {
            let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("netns =")).collect();
            kept.join("\n") + "\n"
        } else {
            text
        };
        std::fs::write(cfg.join("ve").join(name), text)?;
    }
    // Through `ip netns exec`, as the agent was started: a lab host is a machine
    // with its own /etc/machine-id, from which bridges' MACs derive.
    let out = Command::new("ip")
        .args(["netns", "exec", world.host.name()])
        .arg(me)
        .args(["vznet", "plan", "--direct", "--json", "--config-dir"])
        .arg(cfg)
        .arg("--state-dir")
        .arg(world.state_dir())
        .arg("--socket")
        .arg(world.socket())
        .output()
        .context("running vznet plan")?;
    anyhow::ensure!(
        out.status.success(),
        "vznet plan failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("parsing vznet plan --json")
}

/// Plans until the kernel matches the config or `limit` passes (counted from
/// `since`, the end of the churn). Ok(time) when a plan came back empty, with the
/// time its answer was in; Err(the last plan's ops) otherwise.
pub fn converge(
    world: &World,
    gone: &BTreeSet<u32>,
    since: Instant,
    limit: Duration,
) -> Result<Result<Duration, String>> {
    loop {
        // vznet refuses to plan while the agent is half-way through making a link
        // (made, not yet marked as vznet's): that too is "not yet".
        let p = plan(world, gone);
        let at = since.elapsed();
        if p.as_ref().is_ok_and(Plan::is_empty) {
            return Ok(Ok(at));
        }
        if at >= limit {
            let differs = match p {
                Ok(p) => p.describe(),
                Err(e) => format!("{e:#}"),
            };
            return Ok(Err(format!(
                "kernel still differs from the config {} ms after the churn stopped: {differs}",
                at.as_millis()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// "No VE without its links": every VE whose netns exists has its interface
/// inside, with its address, and its host end on the bridge (or, routed, its
/// venet link); a VE whose netns is gone has no host end left.
pub fn ve_links(world: &World, gone: &BTreeSet<u32>, moved: bool) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    let host_links = world.host.links()?;
    let host_end = |name: &str| host_links.iter().find(|l| l.name == name);
    for (i, ve) in world.ves.iter().enumerate() {
        let i = i as u32;
        let id = FIRST_VE + i;
        let name = format!("veth{id}.0");
        if gone.contains(&id) {
            if host_end(&name).is_some() {
                bad.push(format!(
                    "VE {id} has no netns but its host end {name} is there"
                ));
            }
            continue;
        }
        match host_end(&name) {
            Some(l) if l.master.as_deref() == Some("br0") => {}
            Some(l) => bad.push(format!(
                "VE {id}: {name} is not on br0 (master {:?})",
                l.master
            )),
            None => bad.push(format!("VE {id}: host end {name} missing")),
        }
        let want = world::ve_address(i, moved && i == world.moving_ve());
        let has = ve
            .addresses("eth0")
            .map(|a| a.iter().any(|a| a.addr.to_string() == want))
            .unwrap_or(false);
        if !has {
            bad.push(format!("VE {id}: eth0 inside lacks {want}"));
        }
    }
    let venet = format!("venet{VENET_VE}");
    if host_end(&venet).is_none() {
        bad.push(format!("routed VE {VENET_VE}: host end {venet} missing"));
    }
    if world.venet.link("venet0").is_err() {
        bad.push(format!("routed VE {VENET_VE}: venet0 inside missing"));
    }
    Ok(bad)
}

/// vznetd's resident memory, KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    crate::scenario::drift::rss_kib(pid)
}

/// The state of the VRRP instance in the agent at `socket` ("Master", ...), or
/// None when no agent answers there.
pub fn vrrp_state(socket: &std::path::Path) -> Option<String> {
    let status = agent::control::status(socket, Duration::from_secs(5)).ok()?;
    status.vrrp.first().map(|v| v.state.clone())
}
