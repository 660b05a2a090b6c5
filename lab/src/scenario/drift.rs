//! `lab bench drift`: how fast vznetd repairs drift, and what it costs idle.
//!
//! A thread inside the host netns removes a VE's port from its bridge over
//! netlink (the clock starts at the kernel's ack) and polls every 0.5 ms until
//! the port is back. vznetd hears the link event, waits out its debounce, plans
//! and applies.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use lab::Lab;
use netcfg::kernel::{netns, state};

/// Runs the drift benchmark.
pub fn run(trials: usize) -> Result<()> {
    let lab = Lab::new("bench_drift")?;
    let host = lab.host("host")?;
    let cfg = tempfile::tempdir()?;
    std::fs::create_dir(cfg.path().join("ve"))?;
    std::fs::write(
        cfg.path().join("host.toml"),
        "[[bridge]]\nname = \"br0\"\naddresses = [\"10.50.0.1/24\"]\n",
    )?;
    for n in 0..3u32 {
        let ve = lab.host(&format!("ve{n}"))?;
        std::fs::write(
            cfg.path().join(format!("ve/{}.toml", 700 + n)),
            format!(
                "id = {}\nnetns = \"{}\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"10.50.0.{}/24\"]\ngateway = \"10.50.0.1\"\n",
                700 + n,
                ve.name(),
                10 + n
            ),
        )?;
    }
    let agent = super::spawn_vznetd(&host, cfg.path())?;

    // Idle: let start-up settle, then measure 10 s of nothing.
    std::thread::sleep(Duration::from_secs(2));
    let pid = agent.pid();
    let cpu0 = cpu_ticks(pid)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let idle_cpu =
        (cpu_ticks(pid)? - cpu0) as f64 / ticks_per_second() / t0.elapsed().as_secs_f64() * 100.0;
    let idle_rss = rss_kib(pid)?;

    let ns = std::fs::File::open(host.netns_path())?;
    let mut lat = std::thread::spawn(move || -> Result<Vec<Duration>> {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let h = netns::handle(netns::route_socket()?)?;
            let bridge = state::read_link(&h, "br0").await?.context("no br0")?.index;
            let mut out = Vec::new();
            for i in 0..trials {
                let port = format!("veth{}.0", 700 + i % 3);
                h.link()
                    .set(
                        rtnetlink::LinkUnspec::new_with_name(&port)
                            .nocontroller()
                            .build(),
                    )
                    .execute()
                    .await?;
                let t = Instant::now();
                loop {
                    let l = state::read_link(&h, &port)
                        .await?
                        .context("port vanished")?;
                    if l.master == Some(bridge) {
                        break;
                    }
                    ensure!(
                        t.elapsed() < Duration::from_secs(10),
                        "port {port} not repaired in 10 s"
                    );
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                out.push(t.elapsed());
                // Let the agent's own events die down before the next trial.
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            Ok(out)
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("drift thread panicked"))??;
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!("bench drift: {trials} trials of a bridge port removed by hand, vznetd (debounce 20 ms) repairing it");
    println!();
    println!(
        "{:<40}{:>10}",
        "drift repair latency median (ms)",
        format!("{:.1}", ms(pct(0.5)))
    );
    println!(
        "{:<40}{:>10}",
        "drift repair latency p99 (ms)",
        format!("{:.1}", ms(pct(0.99)))
    );
    println!(
        "{:<40}{:>10}",
        "drift repair latency max (ms)",
        format!("{:.1}", ms(lat[lat.len() - 1]))
    );
    println!(
        "{:<40}{:>10}",
        "vznetd idle RSS (MiB)",
        format!("{:.1}", idle_rss as f64 / 1024.0)
    );
    println!(
        "{:<40}{:>10}",
        "vznetd idle CPU (% of a core, 10 s)",
        format!("{idle_cpu:.2}")
    );
    println!();
    for (ok, what) in [
        (ms(pct(0.99)) < 50.0, "drift repair p99 under 50 ms"),
        ((idle_rss as f64) < 10.0 * 1024.0, "idle RSS under 10 MB"),
    ] {
        println!("  [{}] {what}", if ok { "met" } else { "MISSED" });
    }
    Ok(())
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').context("bad stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).context("utime")?.parse()?;
    let stime: u64 = f.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

pub(super) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}
