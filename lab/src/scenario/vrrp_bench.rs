//! `lab bench vrrp --trials N`: VRRP failover time of `vznet-vrrp` and keepalived,
//! side by side.
//!
//! Two routers (priorities 150 and 100, VRRPv3 over IPv4, one VRID) and a client share
//! a lab switch. Per trial both routers start fresh; once r1 is the sole holder of the
//! VIP and the client's `ping -D -i 0.001` to it gets replies, r1 crashes (SIGKILL,
//! then its link goes down, so its kernel stops answering for the VIP). The takeover
//! time runs from the kill to the first echo reply, by ping's own timestamps, that
//! arrives after r1's link is down (so it can only come from r2). Then r2 stops,
//! r1's link comes back and leftover VIPs are removed.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use lab::{keepalived_path, wait_until, Host, Lab, Process};

const IFACE: &str = "eth0";
const VIP: &str = "10.0.0.100";
const VIP_CIDR: &str = "10.0.0.100/24";
const VRID: &str = "51";
const MASTER_PRIORITY: u32 = 150;
const BACKUP_PRIORITY: u32 = 100;
const POLL: Duration = Duration::from_millis(20);

/// Advertisement intervals measured: milliseconds, and keepalived's `advert_int`.
const INTERVALS: [(u32, &str); 3] = [(1000, "1"), (100, "0.1"), (10, "0.01")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Implementation {
    Vznet,
    Keepalived,
}

impl Implementation {
    fn name(self) -> &'static str {
        match self {
            Implementation::Vznet => "vznet-vrrp",
            Implementation::Keepalived => "keepalived",
        }
    }
}

/// The lab: a switch, a client (.254) and routers r1 (.1), r2 (.2) on 10.0.0.0/24.
struct Bench {
    lab: Lab,
    client: Host,
    routers: [Host; 2],
    vznet_vrrp: PathBuf,
    keepalived: PathBuf,
    /// keepalived configs and pid files, one directory per start; removed on drop.
    scratch: tempfile::TempDir,
    starts: usize,
}

/// Runs the VRRP failover benchmark.
pub fn run(trials: usize) -> Result<()> {
    ensure!(trials >= 1, "--trials must be at least 1");
    let vznet_vrrp = vznet_vrrp_path()?;
    let keepalived = keepalived_path()?;
    let lab = Lab::new("bench_vrrp")?;
    let switch = lab.switch("sw")?;
    let client = lab.host("client")?;
    lab.link(&client, IFACE, &switch, "pc")?;
    client.add_address(IFACE, "10.0.0.254/24")?;
    let mut routers = Vec::new();
    for i in 1..=2 {
        let host = lab.host(&format!("r{i}"))?;
        lab.link(&host, IFACE, &switch, &format!("p{i}"))?;
        host.add_address(IFACE, format!("10.0.0.{i}/24"))?;
        routers.push(host);
    }
    let scratch = tempfile::Builder::new()
        .prefix(&format!("vrrp-bench-{}-", lab.prefix()))
        .tempdir()
        .context("scratch directory")?;
    let routers: [Host; 2] = routers
        .try_into()
        .map_err(|_| anyhow::anyhow!("two routers"))?;
    let mut bench = Bench {
        lab,
        client,
        routers,
        vznet_vrrp,
        keepalived,
        scratch,
        starts: 0,
    };

    println!(
        "bench vrrp: {trials} trials per row; VRRPv3 IPv4, VRID {VRID}, priorities {MASTER_PRIORITY}/{BACKUP_PRIORITY}; \
         SIGKILL the Master + link down, time until the VIP answers the client's 1 ms pings again"
    );
    let mut rows = Vec::new();
    for (interval_ms, advert_int) in INTERVALS {
        for implementation in [Implementation::Vznet, Implementation::Keepalived] {
            if implementation == Implementation::Keepalived {
                if let Err(e) = bench.keepalived_accepts(advert_int) {
                    eprintln!(
                        "  {} @ {interval_ms} ms: skipped: {e:#}",
                        implementation.name()
                    );
                    rows.push((implementation, interval_ms, Err(format!("{e:#}"))));
                    continue;
                }
            }
            eprintln!(
                "  {} @ {interval_ms} ms: {trials} trials ...",
                implementation.name()
            );
            let mut times = Vec::new();
            let mut failure = None;
            for trial in 0..trials {
                // Spread the crash over the advert phase.
                let phase =
                    Duration::from_millis(u64::from(interval_ms) * trial as u64 / trials as u64);
                match bench.trial(implementation, interval_ms, advert_int, phase) {
                    Ok(d) => times.push(d),
                    Err(e) => {
                        eprintln!("    trial {trial} failed: {e:#}");
                        failure = Some(format!("trial {trial}: {e:#}"));
                        let _ = bench.restore();
                        break;
                    }
                }
            }
            let result = match failure {
                Some(f) => Err(f),
                None => Ok(times),
            };
            rows.push((implementation, interval_ms, result));
        }
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!(
        "{:<12}{:>10}{:>8}{:>14}{:>12}{:>10}{:>10}{:>10}",
        "impl", "interval", "trials", "MDI theo ms", "median ms", "p99 ms", "min ms", "max ms"
    );
    for (implementation, interval_ms, result) in &rows {
        let mdi = master_down_interval_ms(*interval_ms);
        let mut line = format!(
            "{:<12}{:>10}",
            implementation.name(),
            format!("{interval_ms} ms")
        );
        match result {
            Ok(times) => {
                let mut t = times.clone();
                t.sort();
                let pct = |p: f64| t[((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1];
                let _ = write!(
                    line,
                    "{:>8}{:>14.1}{:>12.1}{:>10.1}{:>10.1}{:>10.1}",
                    t.len(),
                    mdi,
                    ms(pct(0.5)),
                    ms(pct(0.99)),
                    ms(t[0]),
                    ms(t[t.len() - 1])
                );
            }
            Err(reason) => {
                let _ = write!(line, "{:>8}{:>14.1}   skipped: {reason}", "-", mdi);
            }
        }
        println!("{line}");
    }
    println!();
    println!(
        "MDI theo = Master_Down_Interval = 3 * interval + (256 - {BACKUP_PRIORITY}) * interval / 256 (the backup's skew)"
    );
    println!(
        "A crash lands anywhere in the advert cycle, so the backup's timer has already run \
         0..interval: expect takeover in [MDI - interval, MDI] plus gratuitous-ARP latency."
    );
    bench.restore()?;
    drop(bench.scratch);
    bench.lab.close()
}

/// RFC 5798's Master_Down_Interval of the backup, in milliseconds.
fn master_down_interval_ms(interval_ms: u32) -> f64 {
    let i = f64::from(interval_ms);
    3.0 * i + f64::from(256 - BACKUP_PRIORITY) * i / 256.0
}

/// `vznet-vrrp` next to this binary (both are built into the same target directory).
fn vznet_vrrp_path() -> Result<PathBuf> {
    let me = std::env::current_exe().context("finding the lab binary")?;
    let path = me
        .parent()
        .context("the lab binary has no directory")?
        .join("vznet-vrrp");
    ensure!(
        path.exists(),
        "{} not found: build it with `cargo build --release -p vrrp` (next to the lab binary)",
        path.display()
    );
    Ok(path)
}

fn keepalived_config(priority: u32, advert_int: &str) -> String {
    format!(
        "global_defs {{\n  router_id vznet_bench\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  interface {IFACE}\n  virtual_router_id {VRID}\n  \
         version 3\n  priority {priority}\n  advert_int {advert_int}\n  \
         virtual_ipaddress {{\n    {VIP_CIDR}\n  }}\n}}\n"
    )
}

/// Parses `[SECONDS.MICROS] 64 bytes from ...` (ping -D) into seconds since the epoch.
fn reply_time(line: &str) -> Option<f64> {
    if !line.contains("bytes from") {
        return None;
    }
    let rest = line.strip_prefix('[')?;
    let (ts, _) = rest.split_once(']')?;
    ts.parse().ok()
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Bench {
    fn router(&self, i: usize) -> &Host {
        &self.routers[i - 1]
    }

    fn has_vip(&self, i: usize) -> bool {
        self.router(i)
            .addresses(IFACE)
            .is_ok_and(|addrs| addrs.iter().any(|a| a.addr.to_string() == VIP))
    }

    /// Whether keepalived takes `advert_int` for VRRPv3 (`keepalived --config-test`).
    fn keepalived_accepts(&mut self, advert_int: &str) -> Result<()> {
        let dir = self.scratch.path().join(format!("check-{advert_int}"));
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("keepalived.conf");
        std::fs::write(&conf, keepalived_config(BACKUP_PRIORITY, advert_int))?;
        let out = self.router(1).exec([
            self.keepalived.display().to_string(),
            "--config-test".into(),
            "--use-file".into(),
            conf.display().to_string(),
        ])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(l) = text
            .lines()
            .find(|l| l.contains("Advert interval") || l.contains("outside range"))
        {
            bail!("keepalived rejects advert_int {advert_int}: {}", l.trim());
        }
        ensure!(
            out.status.success(),
            "keepalived --config-test failed: {}",
            text.trim()
        );
        Ok(())
    }

    fn start(
        &mut self,
        implementation: Implementation,
        i: usize,
        priority: u32,
        interval_ms: u32,
        advert_int: &str,
    ) -> Result<Process> {
        match implementation {
            Implementation::Vznet => self.router(i).spawn([
                self.vznet_vrrp.display().to_string(),
                "--interface".into(),
                IFACE.into(),
                "--vrid".into(),
                VRID.into(),
                "--version".into(),
                "3".into(),
                "--priority".into(),
                priority.to_string(),
                "--interval-ms".into(),
                interval_ms.to_string(),
                "--vip".into(),
                VIP_CIDR.into(),
            ]),
            Implementation::Keepalived => {
                // Fresh pid files per start: keepalived refuses to start while an old
                // one names a live process.
                self.starts += 1;
                let dir = self.scratch.path().join(format!("r{i}-{}", self.starts));
                lab::spawn_keepalived(
                    self.router(i),
                    &dir,
                    &keepalived_config(priority, advert_int),
                )
            }
        }
    }

    /// One crash; returns the time from SIGKILL to the VIP answering again.
    fn trial(
        &mut self,
        implementation: Implementation,
        interval_ms: u32,
        advert_int: &str,
        phase: Duration,
    ) -> Result<Duration> {
        let mdi = Duration::from_secs_f64(master_down_interval_ms(interval_ms) / 1000.0);
        let master = self.start(implementation, 1, MASTER_PRIORITY, interval_ms, advert_int)?;
        let backup = self.start(implementation, 2, BACKUP_PRIORITY, interval_ms, advert_int)?;
        let up = wait_until(mdi * 3 + Duration::from_secs(5), POLL, || {
            self.has_vip(1) && !self.has_vip(2)
        });
        if !up {
            let why = format!(
                "r1 never became the sole VIP holder (r1 {}, r2 {}); r1 log: {}{}",
                self.has_vip(1),
                self.has_vip(2),
                master.stdout().unwrap_or_default(),
                master.stderr().unwrap_or_default()
            );
            let _ = master.kill();
            let _ = backup.kill();
            self.restore()?;
            bail!(why);
        }
        // Let the backup hear a few adverts from the Master.
        std::thread::sleep((Duration::from_millis(u64::from(interval_ms)) * 2).max(POLL * 5));
        ensure!(
            backup.is_running()?,
            "r2 exited: {}",
            backup.stderr().unwrap_or_default()
        );

        let ping = self
            .client
            .spawn(["ping", "-D", "-n", "-i", "0.001", VIP])?;
        let result = self.crash_and_time(&master, &ping, mdi, phase);
        let _ = ping.kill();
        let _ = backup.terminate(Duration::from_secs(3));
        let _ = master.kill();
        self.restore()?;
        result
    }

    fn crash_and_time(
        &self,
        master: &Process,
        ping: &Process,
        mdi: Duration,
        phase: Duration,
    ) -> Result<Duration> {
        let replying = wait_until(Duration::from_secs(3), POLL, || {
            ping.stdout()
                .is_ok_and(|out| out.lines().any(|l| reply_time(l).is_some()))
        });
        ensure!(
            replying,
            "the client gets no replies from {VIP}: {}{}",
            ping.stdout().unwrap_or_default(),
            ping.stderr().unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50) + phase);

        let killed = SystemTime::now();
        master.kill()?;
        self.router(1).ip(["link", "set", IFACE, "down"])?;
        let down = epoch_secs(SystemTime::now());
        let killed = epoch_secs(killed);

        let deadline = Instant::now() + mdi * 3 + Duration::from_secs(3);
        let mut seen = 0;
        loop {
            let out = ping.stdout()?;
            let fresh = out.get(seen..).unwrap_or("");
            // Only whole lines.
            let complete = fresh.rfind('\n').map_or(0, |n| n + 1);
            if let Some(t) = fresh[..complete]
                .lines()
                .filter_map(reply_time)
                .find(|&t| t > down)
            {
                return Ok(Duration::from_secs_f64((t - killed).max(0.0)));
            }
            seen += complete;
            if Instant::now() > deadline {
                bail!(
                    "no reply from {VIP} within {:?} of the crash (r2 holds it: {})",
                    mdi * 3 + Duration::from_secs(3),
                    self.has_vip(2)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Brings r1's link back and removes VIPs the stopped speakers left behind.
    fn restore(&self) -> Result<()> {
        self.router(1).ip(["link", "set", IFACE, "up"])?;
        for i in 1..=2 {
            if self.has_vip(i) {
                let _ = self.router(i).ip(["addr", "del", VIP_CIDR, "dev", IFACE]);
            }
        }
        ensure!(
            !self.has_vip(1) && !self.has_vip(2),
            "cannot remove the VIP from the routers"
        );
        Ok(())
    }
}
