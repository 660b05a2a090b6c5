//! `vznet apply` through vznetd, end to end (the `vznet` process's whole life, as a
//! user runs it): a no-op apply and a one-VE change, with the agent wiring the
//! namespaces `bench apply` built.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

/// The figures.
#[derive(Debug)]
pub struct AgentFigures {
    /// No-op apply, median of 5.
    pub noop: Duration,
    /// One VE's address changed (its route comes down and back up: 4 ops), median of 5.
    pub one_ve: Duration,
    /// The agent's RSS after the changes, KiB.
    pub agent_rss_kib: u64,
}

/// Starts vznetd in `host_ns` on the config in `dir` (already applied), measures,
/// stops it.
pub fn measure(host_ns: &str, dir: &Path, first_ve: u32, first_addr: &str) -> Result<AgentFigures> {
    let state = tempfile::tempdir()?;
    let socket = state.path().join("vznetd.sock");
    let me = std::env::current_exe()?;
    let ns = std::fs::File::open(format!("/run/netns/{host_ns}"))?;
    let log = tempfile::NamedTempFile::new()?;
    let mut agent = in_netns(Command::new(&me), &ns)?
        .args(["vznetd", "--config-dir"])
        .arg(dir)
        .arg("--state-dir")
        .arg(state.path().join("state"))
        .arg("--socket")
        .arg(&socket)
        .stderr(log.reopen()?)
        .spawn()?;
    let _stop = KillOnDrop(agent.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if let Some(status) = agent.try_wait()? {
            anyhow::bail!(
                "vznetd exited ({status}): {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
        ensure!(Instant::now() < deadline, "vznetd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let apply = |expect: &str| -> Result<Duration> {
        let t = Instant::now();
        let out = in_netns(Command::new(&me), &ns)?
            .args(["vznet", "apply", "--config-dir"])
            .arg(dir)
            .arg("--socket")
            .arg(&socket)
            .output()?;
        let d = t.elapsed();
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && text.lines().last() == Some(expect),
            "vznet apply through vznetd: expected {expect:?}, got {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(d)
    };
    let mut noops = Vec::new();
    for _ in 0..5 {
        noops.push(apply("0 changes (via vznetd)")?);
    }
    let file = dir.join(format!("ve/{first_ve}.toml"));
    let original = std::fs::read_to_string(&file)?;
    let other = original.replace(first_addr, "10.200.200.2");
    ensure!(other != original, "{first_addr} not in {}", file.display());
    let mut changes = Vec::new();
    for n in 0..5 {
        std::fs::write(&file, if n % 2 == 0 { &other } else { &original })?;
        changes.push(apply("4 changes (via vznetd)")?);
    }
    if changes.len() % 2 == 1 {
        std::fs::write(&file, &original)?;
        apply("4 changes (via vznetd)")?;
    }
    let agent_rss_kib = std::fs::read_to_string(format!("/proc/{}/status", agent.id()))?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("agent RSS")?;
    noops.sort();
    changes.sort();
    Ok(AgentFigures {
        noop: noops[2],
        one_ve: changes[2],
        agent_rss_kib,
    })
}

/// Runs the command inside the netns `ns` (entered just before exec: no `ip netns
/// exec`, whose remount of /sys would be timed too).
fn in_netns(mut cmd: Command, ns: &std::fs::File) -> Result<Command> {
    let ns = ns.try_clone()?;
    // SAFETY: setns is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    Ok(cmd)
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0 as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}
