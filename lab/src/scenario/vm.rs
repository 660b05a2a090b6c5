//! The VM tier: bonding, 802.1Q and dummy links need a kernel that has them. `lab
//! vm run` boots Debian's `linux-image-amd64` under qemu (software emulation) with
//! the host's filesystem shared (virtme-ng), loads the modules inside, and runs
//! `lab vm guest`, which plays the scenarios and exits non-zero if any fails.

mod attrs;
mod bond;
mod seed;
mod vlan;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Subcommand;

mod console;

/// VM tier commands.
#[derive(Debug, Subcommand)]
pub enum Vm {
    /// Boot a kernel with bonding/8021q/dummy and run scenarios in it (one boot).
    Run {
        /// Scenarios (default: all): seed-host, bond-failover, idempotence-rollback,
        /// bond-modes, lacp, vlan-bridge, qinq, link-attributes, ve-cgroup-v2.
        scenarios: Vec<String>,
        /// Kernel image (default: the newest /boot/vmlinuz-*).
        #[arg(long)]
        kernel: Option<PathBuf>,
    },
    /// Inside the VM: load modules and run scenarios.
    #[command(hide = true)]
    Guest {
        /// Scenarios to run.
        scenarios: Vec<String>,
    },
}

/// A scenario: it prints its checks and fails if any failed.
type Scenario = fn() -> Result<()>;

/// Every scenario, in the order one boot runs them.
const SCENARIOS: &[(&str, Scenario)] = &[
    ("seed-host", seed::seed_host),
    ("bond-failover", seed::bond_failover),
    ("idempotence-rollback", seed::idempotence_rollback),
    ("bond-modes", bond::bond_modes),
    ("lacp", bond::lacp),
    ("vlan-bridge", vlan::vlan_bridge),
    ("qinq", vlan::qinq),
    ("link-attributes", attrs::link_attributes),
    ("ve-cgroup-v2", super::vm_ve::ve_cgroup_v2),
];

fn names() -> Vec<&'static str> {
    SCENARIOS.iter().map(|(n, _)| *n).collect()
}

/// Runs a VM tier command.
pub fn run(cmd: Vm) -> Result<()> {
    match cmd {
        Vm::Run { scenarios, kernel } => boot(&scenarios, kernel),
        Vm::Guest { scenarios } => guest(&scenarios),
    }
}

fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

fn newest_kernel() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
        .context("reading /boot")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    found.pop().context(
        "no kernel in /boot: install one with `apt-get install -y linux-image-amd64` (it does not replace the running kernel)",
    )
}

fn boot(scenarios: &[String], kernel: Option<PathBuf>) -> Result<()> {
    for s in scenarios {
        ensure!(
            names().contains(&s.as_str()),
            "unknown scenario {s:?}; known: {}",
            names().join(", ")
        );
    }
    let vng = which("vng")
        .context("virtme-ng is not installed: `pip install virtme-ng` (gives `vng`)")?;
    which("qemu-system-x86_64")
        .context("qemu is not installed: `apt-get install -y qemu-system-x86`")?;
    let kernel = match kernel {
        Some(k) => k,
        None => newest_kernel()?,
    };
    let me = std::env::current_exe().context("finding the lab binary")?;
    let mut exec = format!("{} vm guest", me.display());
    for s in scenarios {
        exec.push(' ');
        exec.push_str(s);
    }
    println!(
        "vm: booting {} under qemu (software emulation; about a minute)",
        kernel.display()
    );
    let t = Instant::now();
    // KVM guests hang on this kind of machine (LAB-VM.md): always emulate.
    let mut cmd = Command::new(vng);
    cmd.args(["--disable-kvm", "--memory", "2G", "--cpus", "2", "-r"])
        .arg(&kernel)
        .args(["--exec", &exec]);
    let run = console::run(cmd, GUEST_UP).context("running vng")?;
    ensure!(
        run.guest_started,
        "the VM did not start: vng exited with {} before the guest ran anything{}",
        run.status,
        console::tail_for_error(&run.stderr_tail)
    );
    println!("vm: done in {:.0} s", t.elapsed().as_secs_f64());
    ensure!(
        run.status.success(),
        "scenarios failed inside the VM ({})",
        run.status
    );
    Ok(())
}

/// The guest's first line: until it appears, a failure is vng's or qemu's.
const GUEST_UP: &str = "vm: guest up";

fn guest(scenarios: &[String]) -> Result<()> {
    println!("{GUEST_UP}");
    // Loading bonding makes bond0 by itself unless max_bonds=0.
    for m in [
        &["bonding", "max_bonds=0"][..],
        &["8021q"],
        &["dummy", "numdummies=0"],
        &["veth"],
        &["bridge"],
    ] {
        let st = Command::new("modprobe")
            .args(m)
            .status()
            .context("modprobe")?;
        ensure!(st.success(), "modprobe {} failed", m.join(" "));
    }
    println!(
        "vm: kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim()
    );
    let list: Vec<&str> = if scenarios.is_empty() {
        names()
    } else {
        scenarios.iter().map(String::as_str).collect()
    };
    let (mut passed, mut failed) = (0, 0);
    for s in list {
        println!("\n=== vm scenario {s}");
        let t = Instant::now();
        let res = match SCENARIOS.iter().find(|(n, _)| *n == s) {
            Some((_, scenario)) => scenario(),
            None => Err(anyhow::anyhow!("unknown scenario {s}")),
        };
        match res {
            Ok(()) => {
                passed += 1;
                println!(
                    "=== vm scenario {s}: ok ({:.1} s)",
                    t.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                failed += 1;
                println!("=== vm scenario {s}: FAILED: {e:#}");
            }
        }
    }
    println!("\nvm: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} scenario(s) failed");
    }
    Ok(())
}

/// Prints a check's outcome and records a failure.
pub(super) fn check(ok: bool, what: &str, failures: &mut Vec<String>) {
    println!("  [{}] {what}", if ok { " ok " } else { "FAIL" });
    if !ok {
        failures.push(what.to_string());
    }
}

/// A switch whose bridge filters VLANs, with `trunks` carrying VLANs 136 and
/// 137 tagged (each joined to `(host, its link name, the switch port)`).
pub(super) fn vlan_switch(
    lab: &lab::Lab,
    trunks: &[(&lab::Host, &str, &str)],
) -> Result<lab::Switch> {
    let sw = lab.switch("sw")?;
    sw.host().run([
        "ip",
        "link",
        "set",
        "br0",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ])?;
    for (host, ifname, port) in trunks {
        lab.link(*host, ifname, &sw, port)?;
        for vid in ["136", "137"] {
            sw.host()
                .run(["bridge", "vlan", "add", "dev", port, "vid", vid])?;
        }
    }
    Ok(sw)
}

/// True when one ping to `addr` goes unanswered for a second (a negative
/// check: `Host::ping` tries three times).
pub(super) fn unanswered(host: &lab::Host, addr: &str) -> bool {
    host.exec(["ping", "-n", "-q", "-c", "1", "-W", "1", addr])
        .is_ok_and(|out| !out.status.success())
}

/// Sent and received counts from ping's summary.
pub(super) fn parse_ping(out: &str) -> Option<(u64, u64)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|x| !x.is_empty());
    Some((nums.next()?.parse().ok()?, nums.next()?.parse().ok()?))
}

/// What `vznet plan` or `vznet apply` prints (the ops, then "N changes"), run
/// by this process's engine on a thread in `host`'s netns. Under emulation
/// starting `ip netns exec lab vznet` costs about 1.4 s, most of a step of the
/// attribute scenarios; the CLI around the engine is tested by the netns tests.
pub(super) fn engine(host: &lab::Host, dir: &std::path::Path, command: &str) -> Result<String> {
    use std::os::fd::AsFd;

    use netcfg::apply::Engine;
    use netcfg::desired::Desired;
    use netcfg::model::Config;

    let ns = std::fs::File::open(host.netns_path())?;
    let dir = dir.to_path_buf();
    let command = command.to_string();
    std::thread::spawn(move || -> Result<String> {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        let config = Config::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        let desired = Desired::from_config(&config);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let engine = Engine::new(&desired)?;
            let ops = match command.as_str() {
                "plan" => engine.plan(&desired).await?.ops,
                "apply" => engine.apply(&desired).await?.ops,
                other => bail!("no such engine command {other:?}"),
            };
            let mut out = String::new();
            for op in &ops {
                out.push_str(&format!("{op}\n"));
            }
            out.push_str(&format!("{} changes\n", ops.len()));
            Ok(out)
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("engine thread panicked"))?
}
