//! `lab bench ve --count N`: create N VEs from the busybox template, each with a
//! veth on one bridge (address and default route inside), then time starting
//! and wiring them all with one `vznet ve start`, one more VE started alone,
//! and stopping them all; then the boot: all N marked onboot, vznetd started
//! and `vznet ve start --onboot` run through it (what the vznet-ves unit runs),
//! timed from vznetd's start until every VE runs and is wired, and the
//! shutdown's `vznet ve stop --all`. Prints per-VE and total times, vznet's
//! peak RSS, and whether the goal (100 VEs started and wired in under 5 s) is
//! met.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use lab::Lab;

/// Stops the benchmark's VEs even when it fails half-way (they live in
/// namespaces of their own, outside the lab's).
struct Running<'a> {
    host: &'a str,
    cfg: &'a Path,
    state: &'a Path,
    ids: Vec<u32>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let ids: Vec<String> = self.ids.iter().map(ToString::to_string).collect();
        if ids.is_empty() {
            return;
        }
        let mut args = vec!["ve", "stop", "--timeout", "2"];
        args.extend(ids.iter().map(String::as_str));
        let _ = vznet(self.host, self.cfg, self.state, &args);
        let _ = vznet(
            self.host,
            self.cfg,
            self.state,
            &["ve", "stop", "--all", "--timeout", "2"],
        );
    }
}

/// Runs `lab vznet ARGS` in `host`; returns wall time, exit success, output and
/// the child's peak RSS in KiB.
fn vznet(host: &str, cfg: &Path, state: &Path, args: &[&str]) -> Result<Timed> {
    let me = std::env::current_exe()?;
    // Output to a file: a pipe nobody reads could fill up and block the child.
    let out = tempfile::NamedTempFile::new()?;
    let t = Instant::now();
    let child = Command::new("ip")
        .args(["netns", "exec", host])
        .arg(&me)
        .arg("vznet")
        .arg("--config-dir")
        .arg(cfg)
        .arg("--state-dir")
        .arg(state)
        .arg("--socket")
        .arg(socket(state))
        .args(args)
        .stdout(out.reopen()?)
        .stderr(out.reopen()?)
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills; wait4 reaps our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = t.elapsed();
    ensure!(r == pid, "wait4: {}", std::io::Error::last_os_error());
    Ok(Timed {
        elapsed,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        output: std::fs::read_to_string(out.path())?,
        rss_kib: usage.ru_maxrss,
    })
}

/// vznetd's socket in the boot phase; before it, nothing answers there and
/// vznet wires directly.
fn socket(state: &Path) -> PathBuf {
    state.join("vznetd.sock")
}

/// vznetd for the boot phase, stopped (SIGTERM) when dropped.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// Starts vznetd in `host` and waits until its socket answers.
fn spawn_vznetd(host: &str, cfg: &Path, state: &Path, log: &Path) -> Result<Agent> {
    let me = std::env::current_exe()?;
    let child = Command::new("ip")
        .args(["netns", "exec", host])
        .arg(&me)
        .arg("vznetd")
        .arg("--config-dir")
        .arg(cfg)
        .arg("--state-dir")
        .arg(state)
        .arg("--socket")
        .arg(socket(state))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let mut agent = Agent(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::os::unix::net::UnixStream::connect(socket(state)).is_err() {
        if let Some(status) = agent.0.try_wait()? {
            anyhow::bail!(
                "vznetd exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        ensure!(Instant::now() < deadline, "vznetd did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(agent)
}

struct Timed {
    elapsed: Duration,
    ok: bool,
    output: String,
    rss_kib: i64,
}

impl Timed {
    fn check(self, what: &str) -> Result<Timed> {
        ensure!(self.ok, "{what} failed:\n{}", self.output);
        Ok(self)
    }
}

fn addr(i: u32) -> String {
    format!("10.201.{}.{}", (i + 2) / 256, (i + 2) % 256)
}

/// Runs the benchmark.
pub fn run(count: u32) -> Result<()> {
    ensure!((1..=4000).contains(&count), "--count must be 1..4000");
    println!(
        "bench ve: {count} VEs from the busybox template, each with a veth on bridge br0, \
         an address and a default route inside"
    );
    let lab = Lab::new("bench_ve")?;
    let host = lab.host("h")?;
    let cfg = tempfile::tempdir()?;
    let state = tempfile::tempdir()?;
    std::fs::create_dir(cfg.path().join("ve"))?;
    std::fs::write(
        cfg.path().join("host.toml"),
        "[[bridge]]\nname = \"br0\"\naddresses = [\"10.201.0.1/16\"]\n",
    )?;
    let ids: Vec<u32> = (0..count).map(|i| 20_000 + i).collect();
    let extra = 30_000;
    eprintln!("  creating {} VE roots ...", count + 1);
    for (i, id) in ids.iter().chain(std::iter::once(&extra)).enumerate() {
        let s = id.to_string();
        vznet(
            host.name(),
            cfg.path(),
            state.path(),
            &["ve", "create", &s, "--template", "busybox"],
        )?
        .check("ve create")?;
        let file = cfg.path().join("ve").join(format!("{id}.toml"));
        let mut text = std::fs::read_to_string(&file)?;
        text.push_str(&format!(
            "\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"{}/16\"]\ngateway = \"10.201.0.1\"\n",
            addr(i as u32)
        ));
        std::fs::write(&file, text)?;
    }
    // The bridge first: the timed start wires VEs, not the host.
    vznet(host.name(), cfg.path(), state.path(), &["apply"])?.check("apply")?;
    let mut running = Running {
        host: host.name(),
        cfg: cfg.path(),
        state: state.path(),
        ids: Vec::new(),
    };
    let id_args: Vec<String> = ids.iter().map(ToString::to_string).collect();

    super::bench::settle()?;
    eprintln!("  starting {count} VEs ...");
    let mut args = vec!["ve", "start"];
    args.extend(id_args.iter().map(String::as_str));
    running.ids = ids.clone();
    let start = vznet(host.name(), cfg.path(), state.path(), &args)?;
    if !start.ok {
        // The VEs' own logs say why an init died.
        for e in std::fs::read_dir(state.path().join("run"))?.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            if e.path().extension().is_some_and(|x| x == "log") && !text.is_empty() {
                eprintln!("{}: {text}", e.path().display());
            }
        }
    }
    let start = start.check("ve start")?;
    // Every VE answers the host: really started and wired.
    let unreachable: Vec<String> = (0..count).map(addr).filter(|a| !host.ping(a)).collect();
    ensure!(
        unreachable.is_empty(),
        "VEs not reachable after start: {unreachable:?}"
    );
    let groups = recorded_cgroups(state.path())?;
    ensure!(
        groups.len() >= count as usize && groups.iter().all(|d| d.exists()),
        "every VE has its cgroup: {groups:?}"
    );

    super::bench::settle()?;
    eprintln!("  one more VE alone, {count} running ...");
    let s = extra.to_string();
    running.ids.push(extra);
    let one_start = vznet(host.name(), cfg.path(), state.path(), &["ve", "start", &s])?
        .check("ve start (one)")?;
    ensure!(host.ping(addr(count)), "the extra VE is not reachable");
    let one_stop = vznet(host.name(), cfg.path(), state.path(), &["ve", "stop", &s])?
        .check("ve stop (one)")?;
    running.ids.pop();

    super::bench::settle()?;
    eprintln!("  stopping {count} VEs ...");
    let mut args = vec!["ve", "stop"];
    args.extend(id_args.iter().map(String::as_str));
    let stop = vznet(host.name(), cfg.path(), state.path(), &args)?.check("ve stop")?;
    running.ids.clear();
    let left: Vec<String> = host
        .links()?
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n.starts_with("veth"))
        .collect();
    ensure!(left.is_empty(), "host ends left after stop: {left:?}");
    let groups: Vec<&PathBuf> = groups.iter().filter(|d| d.exists()).collect();
    ensure!(groups.is_empty(), "cgroups left after stop: {groups:?}");

    // The boot: every VE onboot, vznetd started, then what vznet-ves.service
    // runs, timed from vznetd's start to the last VE running and wired.
    for id in &ids {
        let file = cfg.path().join("ve").join(format!("{id}.toml"));
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, format!("onboot = true\n{text}"))?;
    }
    super::bench::settle()?;
    eprintln!("  boot: vznetd, then vznet ve start --onboot ({count} VEs) ...");
    let log = state.path().join("vznetd.log");
    let t = Instant::now();
    let agent = spawn_vznetd(host.name(), cfg.path(), state.path(), &log)?;
    let agent_ready = t.elapsed();
    running.ids = ids.clone();
    let onboot = vznet(
        host.name(),
        cfg.path(),
        state.path(),
        &["ve", "start", "--onboot"],
    )?
    .check("ve start --onboot")?;
    let boot = t.elapsed();
    let unreachable: Vec<String> = (0..count).map(addr).filter(|a| !host.ping(a)).collect();
    ensure!(
        unreachable.is_empty(),
        "VEs not reachable after the boot: {unreachable:?}\nvznetd's log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    super::bench::settle()?;
    eprintln!("  shutdown: vznet ve stop --all ...");
    let shutdown = vznet(
        host.name(),
        cfg.path(),
        state.path(),
        &["ve", "stop", "--all"],
    )?
    .check("ve stop --all")?;
    running.ids.clear();
    drop(agent);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let per = |d: Duration| ms(d) / f64::from(count);
    println!();
    println!("{:<46}{:>12}{:>14}", "step", "total (ms)", "per VE (ms)");
    println!(
        "{:<46}{:>12.1}{:>14.2}",
        format!("start + wire {count} VEs (one call)"),
        ms(start.elapsed),
        per(start.elapsed)
    );
    println!(
        "{:<46}{:>12.1}{:>14.2}",
        format!("stop {count} VEs (one call)"),
        ms(stop.elapsed),
        per(stop.elapsed)
    );
    println!(
        "{:<46}{:>12.1}{:>14.2}",
        format!("start + wire 1 VE while {count} run"),
        ms(one_start.elapsed),
        ms(one_start.elapsed)
    );
    println!(
        "{:<46}{:>12.1}{:>14.2}",
        "stop that 1 VE",
        ms(one_stop.elapsed),
        ms(one_stop.elapsed)
    );
    println!(
        "{:<46}{:>12.1}{:>14.2}",
        format!("boot: vznetd start -> {count} onboot VEs up"),
        ms(boot),
        per(boot)
    );
    println!("{:<46}{:>12.1}", "  of which vznetd ready", ms(agent_ready));
    println!(
        "{:<46}{:>12.1}{:>14.2}",
        "  of which ve start --onboot (via vznetd)",
        ms(onboot.elapsed),
        per(onboot.elapsed)
    );
    println!(
        "{:<46}{:>12.1}{:>14.2}",
        format!("shutdown: ve stop --all ({count} VEs)"),
        ms(shutdown.elapsed),
        per(shutdown.elapsed)
    );
    println!(
        "{:<46}{:>12.1}",
        "vznet peak RSS, start / stop (MiB)",
        start.rss_kib as f64 / 1024.0
    );
    println!("{:<46}{:>12.1}", "", stop.rss_kib as f64 / 1024.0);
    println!();
    let budget = Duration::from_millis(50 * u64::from(count));
    let met = start.elapsed < budget;
    println!(
        "  goal: 100 VEs started and wired in under 5 s (50 ms per VE; {:.2} s for {count}): [{}]",
        budget.as_secs_f64(),
        if met { "met" } else { "MISSED" }
    );
    drop(running);
    drop(host);
    lab.close()?;
    Ok(())
}

/// The cgroup folders recorded for the running VEs (`run/ID.cgroup`).
fn recorded_cgroups(state: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for e in std::fs::read_dir(state.join("run"))?.flatten() {
        if e.path().extension().is_some_and(|x| x == "cgroup") {
            let text = std::fs::read_to_string(e.path())?;
            dirs.extend(text.lines().filter(|l| !l.is_empty()).map(PathBuf::from));
        }
    }
    Ok(dirs)
}
