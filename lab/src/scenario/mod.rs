//! Scenarios the `lab` binary runs.

pub mod apply_agent;
pub mod bench;
pub mod demo;
pub mod drift;
pub mod fleet_bench;
pub mod fleet_demo;
pub mod lb_bench;
pub mod soak;
pub mod ve_bench;
pub mod vm;
pub mod vm_ve;
pub mod vrrp_agent;
pub mod vrrp_bench;

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result};

/// Runs this binary as `vznet ARGS` inside netns `ns`.
pub fn vznet(ns: &str, args: &[&str], config_dir: &Path) -> Result<Output> {
    let me = std::env::current_exe().context("finding the lab binary")?;
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(me)
        .arg("vznet")
        .args(args)
        .arg("--config-dir")
        .arg(config_dir)
        .output()
        .context("running vznet")
}

/// Like [`vznet`] but fails unless it exits 0; returns stdout.
pub fn vznet_ok(ns: &str, args: &[&str], config_dir: &Path) -> Result<String> {
    let out = vznet(ns, args, config_dir)?;
    anyhow::ensure!(
        out.status.success(),
        "vznet {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts this binary as `vznetd` in `host` for the config folder `dir` (state
/// and control socket inside it) and waits until its socket answers.
pub fn spawn_vznetd(host: &lab::Host, dir: &Path) -> Result<lab::Process> {
    let socket = dir.join("vznetd.sock");
    let me = std::env::current_exe().context("finding the lab binary")?;
    let agent = host.spawn([
        me.display().to_string(),
        "vznetd".into(),
        "--config-dir".into(),
        dir.display().to_string(),
        "--state-dir".into(),
        dir.join("state").display().to_string(),
        "--socket".into(),
        socket.display().to_string(),
    ])?;
    anyhow::ensure!(
        lab::wait_until(
            std::time::Duration::from_secs(20),
            std::time::Duration::from_millis(20),
            || std::os::unix::net::UnixStream::connect(&socket).is_ok()
        ),
        "vznetd did not start: {}",
        agent.stderr().unwrap_or_default()
    );
    Ok(agent)
}

/// The status of the vznetd answering on `socket`.
pub fn status_of(socket: &Path) -> Result<agent::status::Status> {
    agent::control::status(socket, std::time::Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("{e}"))
}
