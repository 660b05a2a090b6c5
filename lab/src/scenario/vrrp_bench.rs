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
//!
//! Then, vznet-vrrp only:
//! - graceful handover: r1 gets SIGTERM (it sends priority 0 and drops the VIP); the
//!   time runs to the first echo reply from r2, told apart by its TTL (r2's netns
//!   answers with TTL 63, r1's with 64). The client probes with its own echo requests
//!   every millisecond ([`Prober`]): `ping -i 0.001` holds its next request back ~10 ms
//!   while one is unanswered, which is as long as the whole handover at 10 ms adverts.
//!   RFC 5798's goal: the Backup's Skew_Time.
//! - CPU of one instance at 10 ms adverts, Master and Backup processes, from
//!   /proc/PID/stat over a window after convergence.
//! - CPU and RSS of N instances at 1 s (`--instances`, default 1000): VRIDs 1..250 on
//!   each of ceil(N / 250) veth pairs between two hosts, one `vznet-vrrp` process per
//!   host (Master side at 200, Backup side at 100), measured after every VIP is held.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
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
    /// The instance inside vznetd (the path users run).
    Vznetd,
}

impl Implementation {
    fn name(self) -> &'static str {
        match self {
            Implementation::Vznet => "vznet-vrrp",
            Implementation::Keepalived => "keepalived",
            Implementation::Vznetd => "vznetd",
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

/// The Backup's TTL, so that its echo replies are told from the Master's.
const BACKUP_TTL: &str = "63";
/// How long CPU use is measured.
const CPU_WINDOW: Duration = Duration::from_secs(10);
/// VRIDs per interface in the many-instances measurement.
const VRIDS_PER_LINK: usize = 250;

/// Runs the VRRP failover benchmark; with `via_vznetd`, rows for the instance
/// inside vznetd too, and the busy master with `busy_ves` VEs (0: skipped).
pub fn run(trials: usize, instances: usize, via_vznetd: bool, busy_ves: u32) -> Result<()> {
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
    routers[1].run([
        "sh",
        "-c",
        &format!("echo {BACKUP_TTL} > /proc/sys/net/ipv4/ip_default_ttl"),
    ])?;
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
        let implementations: &[Implementation] = if via_vznetd {
            &[
                Implementation::Vznet,
                Implementation::Vznetd,
                Implementation::Keepalived,
            ]
        } else {
            &[Implementation::Vznet, Implementation::Keepalived]
        };
        for &implementation in implementations {
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

    // Graceful handover: vznet's own (keepalived's differs: it sends priority 0
    // too, but is not what this measures).
    eprintln!("  graceful handover: {trials} trials per interval ...");
    let mut graceful = Vec::new();
    let speakers: &[Implementation] = if via_vznetd {
        &[Implementation::Vznet, Implementation::Vznetd]
    } else {
        &[Implementation::Vznet]
    };
    for &implementation in speakers {
        for (interval_ms, _) in INTERVALS {
            let mut times = Vec::new();
            let mut failure = None;
            for trial in 0..trials {
                match bench.graceful_trial(implementation, interval_ms) {
                    Ok(d) => times.push(d),
                    Err(e) => {
                        eprintln!("    graceful @ {interval_ms} ms trial {trial} failed: {e:#}");
                        failure = Some(format!("trial {trial}: {e:#}"));
                        let _ = bench.restore();
                        break;
                    }
                }
            }
            graceful.push((implementation, interval_ms, failure.map_or(Ok(times), Err)));
        }
    }
    println!();
    println!(
        "graceful handover: SIGTERM to the Master (priority 0), time until the Backup answers the client's 1 ms echo requests"
    );
    println!(
        "{:<12}{:<10}{:>8}{:>10}{:>10}{:>12}{:>10}{:>10}{:>8}",
        "impl", "interval", "trials", "Skew ms", "goal ms", "median ms", "p99 ms", "max ms", "met"
    );
    for (implementation, interval_ms, result) in &graceful {
        let skew = skew_time_ms(*interval_ms);
        let goal = skew + 10.0;
        let mut line = format!(
            "{:<12}{:<10}",
            implementation.name(),
            format!("{interval_ms} ms")
        );
        match result {
            Ok(times) => {
                let mut t = times.clone();
                t.sort();
                let pct = |p: f64| t[((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1];
                let p99 = ms(pct(0.99));
                let _ = write!(
                    line,
                    "{:>8}{:>10.1}{:>10.1}{:>12.1}{:>10.1}{:>10.1}{:>8}",
                    t.len(),
                    skew,
                    goal,
                    ms(pct(0.5)),
                    p99,
                    ms(t[t.len() - 1]),
                    if p99 <= goal { "yes" } else { "NO" }
                );
            }
            Err(reason) => {
                let _ = write!(line, "{:>8}{:>10.1}   failed: {reason}", "-", skew);
            }
        }
        println!("{line}");
    }
    println!(
        "Skew_Time = ((256 - {BACKUP_PRIORITY}) * interval in cs / 256) cs, integer centiseconds (RFC 5798 6.1)"
    );
    println!(
        "The time includes the Backup adding the VIP, its gratuitous ARP reaching the client and the next 1 ms probe."
    );

    // CPU at 10 ms adverts.
    eprintln!("  CPU of one instance at 10 ms ...");
    let busy = if via_vznetd && busy_ves > 0 {
        Some(busy_ves)
    } else {
        None
    };
    let one = bench.cpu_one_instance(10);
    bench.restore()?;
    drop(bench.scratch);
    bench.lab.close()?;

    let many = if instances > 0 {
        eprintln!("  {instances} instances at 1 s ...");
        let vznet_vrrp = vznet_vrrp_path()?;
        Some(many_instances(&vznet_vrrp, instances))
    } else {
        None
    };

    println!();
    println!(
        "vznet-vrrp CPU (% of one core, utime+stime from /proc/PID/stat over {} s after convergence) and RSS (VmRSS)",
        CPU_WINDOW.as_secs()
    );
    println!(
        "{:<34}{:>9}{:>10}{:>15}{:>10}{:>9}   goal",
        "scenario", "process", "CPU %", "CPU %/inst", "RSS MB", "flaps"
    );
    let row = |name: &str, n: usize, m: &Result<[Usage; 2]>, goal: &str| match m {
        Ok(usage) => {
            for (role, u) in ["master", "backup"].iter().zip(usage) {
                let met = if goal.is_empty() {
                    String::new()
                } else {
                    let ok = u.cpu_percent < 2.0 && u.rss_kb < 64 * 1024;
                    format!("{goal}: {}", if ok { "met" } else { "MISSED" })
                };
                println!(
                    "{:<34}{:>9}{:>10.3}{:>15.5}{:>10.1}{:>9}   {met}",
                    name,
                    role,
                    u.cpu_percent,
                    u.cpu_percent / n as f64,
                    u.rss_kb as f64 / 1024.0,
                    u.state_changes
                );
            }
        }
        Err(e) => println!("{name:<34}   failed: {e:#}"),
    };
    row("1 instance @ 10 ms", 1, &one, "");
    match &many {
        Some(m) => row(
            &format!(
                "{instances} instances @ 1 s ({} links)",
                instances.div_ceil(VRIDS_PER_LINK)
            ),
            instances,
            m,
            "< 2 % and < 64 MB",
        ),
        None => println!("(many instances: skipped, --instances 0)"),
    }
    println!("flaps = state changes the process logged during the window (0: stable)");
    if let Some(n) = busy {
        eprintln!("  busy master: vznetd at 10 ms adverts repairing drift on {n} VEs ...");
        println!();
        println!(
            "busy master: vznetd is VRRP master at 10 ms adverts (keepalived backup) while it repairs drift on N VEs (a VE link deleted every 100 ms, 10 s); silences between adverts seen at the backup"
        );
        match super::vrrp_agent::busy_master(n, 10) {
            Ok(b) => {
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                println!(
                    "{:>6}{:>11}{:>10}{:>9}{:>12}{:>12}{:>11}   goal: max < 20 ms: {}",
                    "VEs",
                    "deletions",
                    "repaired",
                    "adverts",
                    "p99 gap ms",
                    "max gap ms",
                    "takeovers",
                    if ms(b.max) < 20.0 { "met" } else { "MISSED" }
                );
                println!(
                    "{:>6}{:>11}{:>10}{:>9}{:>12.1}{:>12.1}{:>11}",
                    b.ves,
                    b.deletions,
                    b.repaired,
                    b.adverts,
                    ms(b.p99),
                    ms(b.max),
                    b.takeovers
                );
            }
            Err(e) => println!("  failed: {e:#}"),
        }
    }
    Ok(())
}

/// CPU and memory of one process over [`CPU_WINDOW`].
#[derive(Debug, Clone, Copy)]
struct Usage {
    cpu_percent: f64,
    rss_kb: u64,
    /// State changes logged during the window (0 when stable).
    state_changes: usize,
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .context("short /proc/PID/stat")?
            .parse()
            .context("bad /proc/PID/stat field")
    };
    Ok(field(14)? + field(15)?)
}

fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// CPU and RSS of `processes` over [`CPU_WINDOW`], measured together.
fn measure(processes: [&Process; 2]) -> Result<[Usage; 2]> {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ensure!(ticks_per_s > 0, "sysconf(_SC_CLK_TCK) failed");
    let changes = [state_changes(processes[0]), state_changes(processes[1])];
    let before = [
        cpu_ticks(processes[0].pid())?,
        cpu_ticks(processes[1].pid())?,
    ];
    let start = Instant::now();
    std::thread::sleep(CPU_WINDOW);
    let after = [
        cpu_ticks(processes[0].pid())?,
        cpu_ticks(processes[1].pid())?,
    ];
    let elapsed = start.elapsed().as_secs_f64();
    let usage = |i: usize| -> Result<Usage> {
        ensure!(
            processes[i].is_running()?,
            "{} exited: {}",
            processes[i].command(),
            processes[i].stderr().unwrap_or_default()
        );
        Ok(Usage {
            cpu_percent: (after[i] - before[i]) as f64 / ticks_per_s as f64 / elapsed * 100.0,
            rss_kb: rss_kb(processes[i].pid())?,
            state_changes: state_changes(processes[i]) - changes[i],
        })
    };
    Ok([usage(0)?, usage(1)?])
}

/// How many state changes a `vznet-vrrp` has logged.
fn state_changes(process: &Process) -> usize {
    process
        .stdout()
        .map(|o| o.matches("state changed").count())
        .unwrap_or(0)
}

/// N instances at 1 s between two hosts: the Master side's and the Backup side's
/// processes, measured once the Master side holds every VIP and the Backup side none.
fn many_instances(vznet_vrrp: &Path, n: usize) -> Result<[Usage; 2]> {
    let lab = Lab::new("bench_vrrp_many")?;
    let master = lab.host("m")?;
    let backup = lab.host("b")?;
    let links = n.div_ceil(VRIDS_PER_LINK);
    for k in 0..links {
        let ifname = format!("v{k}");
        lab.link(&master, &ifname, &backup, &ifname)?;
        master.add_address(&ifname, format!("10.9.{k}.1/24"))?;
        backup.add_address(&ifname, format!("10.9.{k}.2/24"))?;
    }
    let argv = |priority: &str| {
        let mut argv = vec![vznet_vrrp.display().to_string()];
        for i in 0..n {
            let (k, vrid) = (i / VRIDS_PER_LINK, i % VRIDS_PER_LINK + 1);
            if i > 0 {
                argv.push("--and".into());
            }
            argv.extend([
                "--interface".into(),
                format!("v{k}"),
                "--vrid".into(),
                vrid.to_string(),
                "--priority".into(),
                priority.into(),
                "--interval-ms".into(),
                "1000".into(),
                "--vip".into(),
                format!("10.9.{k}.{}/24", vrid + 2),
            ]);
        }
        argv
    };
    let count_vips = |host: &Host| -> usize {
        host.ip(["-o", "addr", "show"])
            .map(|o| {
                o.lines()
                    .filter(|l| l.contains(" 10.9."))
                    .count()
                    .saturating_sub(links)
            })
            .unwrap_or(0)
    };
    let started = Instant::now();
    let m = master.spawn(argv("200"))?;
    let b = backup.spawn(argv("100"))?;
    let converged = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        count_vips(&master) == n && count_vips(&backup) == 0
    });
    ensure!(
        converged,
        "no convergence in 60 s: master side holds {} VIPs, backup side {}; {}",
        count_vips(&master),
        count_vips(&backup),
        m.stderr().unwrap_or_default()
    );
    eprintln!(
        "    converged in {:.1} s (every VIP on the Master side)",
        started.elapsed().as_secs_f64()
    );
    // The Backup side's adverts-received counters need a moment to settle too.
    std::thread::sleep(Duration::from_secs(2));
    let usage = measure([&m, &b])?;
    ensure!(
        count_vips(&master) == n && count_vips(&backup) == 0,
        "VIPs moved during the measurement"
    );
    let _ = m.terminate(Duration::from_secs(20));
    let _ = b.terminate(Duration::from_secs(20));
    lab.close()?;
    Ok(usage)
}

/// Skew_Time of the Backup in milliseconds, in whole centiseconds as RFC 5798 has it.
fn skew_time_ms(interval_ms: u32) -> f64 {
    let cs = (256 - BACKUP_PRIORITY) * (interval_ms / 10) / 256;
    f64::from(cs * 10)
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
            Implementation::Vznetd => {
                self.starts += 1;
                let dir = self
                    .scratch
                    .path()
                    .join(format!("r{i}-vznetd-{}", self.starts));
                super::vrrp_agent::spawn_vrrp_agent(
                    self.router(i),
                    &dir,
                    super::vrrp_agent::Instance {
                        iface: IFACE,
                        vrid: VRID,
                        priority,
                        interval_ms,
                        vip_cidr: VIP_CIDR,
                    },
                    "",
                )
            }
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

    /// Starts a pair and waits until r1 alone holds the VIP and r2 heard it.
    fn start_pair(
        &mut self,
        implementation: Implementation,
        interval_ms: u32,
    ) -> Result<(Process, Process)> {
        let mdi = Duration::from_secs_f64(master_down_interval_ms(interval_ms) / 1000.0);
        let master = self.start(implementation, 1, MASTER_PRIORITY, interval_ms, "")?;
        let backup = self.start(implementation, 2, BACKUP_PRIORITY, interval_ms, "")?;
        let up = wait_until(mdi * 3 + Duration::from_secs(5), POLL, || {
            self.has_vip(1) && !self.has_vip(2)
        });
        if !up {
            let _ = master.kill();
            let _ = backup.kill();
            self.restore()?;
            bail!("r1 never became the sole VIP holder");
        }
        std::thread::sleep((Duration::from_millis(u64::from(interval_ms)) * 2).max(POLL * 5));
        Ok((master, backup))
    }

    /// One graceful stop; the time from SIGTERM to the first reply from r2.
    fn graceful_trial(
        &mut self,
        implementation: Implementation,
        interval_ms: u32,
    ) -> Result<Duration> {
        let (master, backup) = self.start_pair(implementation, interval_ms)?;
        let vip: std::net::Ipv4Addr = VIP.parse().context("VIP literal")?;
        let prober = Prober::start(&self.client, vip)?;
        let backup_ttl: u8 = BACKUP_TTL.parse().context("TTL literal")?;
        let result = (|| -> Result<Duration> {
            let replying = wait_until(Duration::from_secs(3), POLL, || {
                !prober.replies().is_empty()
            });
            ensure!(replying, "the client gets no replies from {VIP}");
            std::thread::sleep(Duration::from_millis(50));
            let pid = nix::unistd::Pid::from_raw(
                i32::try_from(master.pid()).context("pid out of range")?,
            );
            let stopped = epoch_secs(SystemTime::now());
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
                .context("SIGTERM to the Master")?;
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some((t, _)) = prober
                    .replies()
                    .into_iter()
                    .find(|&(t, ttl)| ttl == backup_ttl && t > stopped)
                {
                    return Ok(Duration::from_secs_f64(t - stopped));
                }
                ensure!(
                    Instant::now() < deadline,
                    "no reply from r2 within 5 s of SIGTERM (r2 holds the VIP: {})",
                    self.has_vip(2)
                );
                std::thread::sleep(POLL);
            }
        })();
        let probed = prober.finish();
        let _ = master.terminate(Duration::from_secs(3));
        let _ = backup.terminate(Duration::from_secs(3));
        self.restore()?;
        probed?;
        result
    }

    /// CPU of the Master's and the Backup's process, one instance at `interval_ms`.
    fn cpu_one_instance(&mut self, interval_ms: u32) -> Result<[Usage; 2]> {
        let (master, backup) = self.start_pair(Implementation::Vznet, interval_ms)?;
        let usage = measure([&master, &backup]);
        let _ = master.terminate(Duration::from_secs(3));
        let _ = backup.terminate(Duration::from_secs(3));
        self.restore()?;
        usage
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

/// Echo requests to the VIP every millisecond from the client, whatever the replies
/// do (ping stops sending for ~10 ms while a request is unanswered, which would hide
/// a handover faster than that). Records each reply's arrival time and TTL.
struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    replies: std::sync::Arc<std::sync::Mutex<Vec<(f64, u8)>>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Prober {
    fn start(client: &Host, target: std::net::Ipv4Addr) -> Result<Prober> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let ns = std::fs::File::open(client.netns_path()).context("client netns")?;
        let stop = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), replies.clone());
        let thread = std::thread::spawn(move || -> Result<()> {
            use std::os::fd::AsFd;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .context("setns into the client")?;
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::RAW,
                Some(socket2::Protocol::ICMPV4),
            )
            .context("raw ICMP socket")?;
            socket.set_nonblocking(true)?;
            let to = socket2::SockAddr::from(std::net::SocketAddrV4::new(target, 0));
            let id = (std::process::id() & 0xffff) as u16;
            let mut seq: u16 = 0;
            let mut next = Instant::now();
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
            while !s.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    let mut echo = [0u8; 16];
                    echo[0] = 8; // echo request
                    echo[4..6].copy_from_slice(&id.to_be_bytes());
                    echo[6..8].copy_from_slice(&seq.to_be_bytes());
                    let sum = icmp_checksum(&echo);
                    echo[2..4].copy_from_slice(&sum.to_be_bytes());
                    // A send error (no route while the VIP moves) is a lost probe.
                    let _ = socket.send_to(&echo, &to);
                    seq = seq.wrapping_add(1);
                    next += Duration::from_millis(1);
                }
                while let Ok(n) = socket.recv(&mut buf) {
                    // SAFETY: recv initialised the first n bytes.
                    let bytes: Vec<u8> = buf[..n]
                        .iter()
                        .map(|b| unsafe { b.assume_init() })
                        .collect();
                    let ihl = usize::from(bytes.first().copied().unwrap_or(0) & 0x0f) * 4;
                    let icmp = bytes.get(ihl..).unwrap_or(&[]);
                    if icmp.first() == Some(&0) && icmp.get(4..6) == Some(&id.to_be_bytes()[..]) {
                        let ttl = bytes.get(8).copied().unwrap_or(0);
                        let at = epoch_secs(SystemTime::now());
                        r.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((at, ttl));
                    }
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            Ok(())
        });
        Ok(Prober {
            stop,
            replies,
            thread: Some(thread),
        })
    }

    fn replies(&self) -> Vec<(f64, u8)> {
        self.replies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn finish(mut self) -> Result<()> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("prober thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn icmp_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
