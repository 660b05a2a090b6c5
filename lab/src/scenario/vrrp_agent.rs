//! VRRP measured through vznetd, the path users run: a router whose `[[vrrp]]`
//! instance lives in the agent, next to the standalone `vznet-vrrp` and keepalived
//! rows of `bench vrrp`; and the "busy master": the longest silence between a
//! vznetd master's 10 ms adverts, seen from the backup, while the same agent repairs
//! drift on N VEs.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use lab::{AdvertWatch, Host, Lab, Process};

/// One `[[vrrp]]` instance for a benchmark router.
#[derive(Debug, Clone, Copy)]
pub struct Instance<'a> {
    /// Interface.
    pub iface: &'a str,
    /// VRID.
    pub vrid: &'a str,
    /// Priority.
    pub priority: u32,
    /// Advert interval.
    pub interval_ms: u32,
    /// The VIP with its prefix length.
    pub vip_cidr: &'a str,
}

/// Starts `lab vznetd` in `host` with `instance` (and `extra_host_toml` before it),
/// its files in `dir` (which must be fresh), and waits until its socket answers.
pub fn spawn_vrrp_agent(
    host: &Host,
    dir: &Path,
    instance: Instance<'_>,
    extra_host_toml: &str,
) -> Result<Process> {
    let Instance {
        iface,
        vrid,
        priority,
        interval_ms,
        vip_cidr,
    } = instance;
    let cfg = dir.join("cfg");
    std::fs::create_dir_all(cfg.join("ve"))?;
    std::fs::write(
        cfg.join("host.toml"),
        format!(
            "{extra_host_toml}\n[[vrrp]]\nname = \"VI_bench\"\ninterface = \"{iface}\"\nvrid = {vrid}\npriority = {priority}\nversion = 3\nadvert_interval_ms = {interval_ms}\nvirtual_ips = [\"{vip_cidr}\"]\n"
        ),
    )?;
    start_agent(host, dir)
}

/// Starts `lab vznetd` on `dir/cfg` (state and socket in `dir`), waits for its socket.
fn start_agent(host: &Host, dir: &Path) -> Result<Process> {
    let me = std::env::current_exe()?;
    let socket = dir.join("vznetd.sock");
    let agent = host.spawn([
        me.display().to_string(),
        "vznetd".into(),
        "--config-dir".into(),
        dir.join("cfg").display().to_string(),
        "--state-dir".into(),
        dir.join("state").display().to_string(),
        "--socket".into(),
        socket.display().to_string(),
    ])?;
    let started = lab::wait_until(Duration::from_secs(60), Duration::from_millis(20), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    ensure!(
        started,
        "vznetd did not start: {}",
        agent.stderr().unwrap_or_default()
    );
    Ok(agent)
}

/// The busy master's figures.
#[derive(Debug)]
pub struct Busy {
    /// VEs wired.
    pub ves: u32,
    /// Link deletions during the window.
    pub deletions: u32,
    /// Ops vznetd repaired.
    pub repaired: u64,
    /// Adverts the backup saw.
    pub adverts: usize,
    /// 99th percentile and longest silence.
    pub p99: Duration,
    /// The longest silence.
    pub max: Duration,
    /// Takeovers by the backup (keepalived) during the window.
    pub takeovers: usize,
}

/// vznetd wires `ves` VEs on a bridge and is VRRP master at 10 ms adverts on its
/// uplink against keepalived; for `seconds` a VE link is deleted every 100 ms (the
/// agent repairs each). Measured at the backup.
pub fn busy_master(ves: u32, seconds: u64) -> Result<Busy> {
    let lab = Lab::new("bench_vrrp_busy")?;
    let sw = lab.switch("sw")?;
    let r1 = lab.host("r1")?;
    let r2 = lab.host("r2")?;
    lab.link(&r1, "eth0", &sw, "p1")?;
    lab.link(&r2, "eth0", &sw, "p2")?;
    r1.add_address("eth0", "10.9.0.1/24")?;
    r2.add_address("eth0", "10.9.0.2/24")?;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().join("r1");
    let cfg = dir.join("cfg");
    std::fs::create_dir_all(cfg.join("ve"))?;
    eprintln!("    busy master: {ves} VE namespaces ...");
    let mut hosts = Vec::new();
    for i in 0..ves {
        let h = lab.host(&format!("v{i}"))?;
        let id = 5000 + i;
        std::fs::write(
            cfg.join(format!("ve/{id}.toml")),
            format!(
                "id = {id}\nnetns = \"{}\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"10.10.{}.{}/16\"]\ngateway = \"10.10.0.1\"\n",
                h.name(),
                i / 250,
                2 + i % 250
            ),
        )?;
        hosts.push(h);
    }
    let agent = spawn_vrrp_agent(
        &r1,
        &dir,
        Instance {
            iface: "eth0",
            vrid: "77",
            priority: 150,
            interval_ms: 10,
            vip_cidr: "10.9.0.100/24",
        },
        "[[bridge]]\nname = \"br0\"\naddresses = [\"10.10.0.1/16\"]\n",
    )?;
    let kdir = scratch.path().join("keepalived");
    let keepalived = lab::spawn_keepalived(
        &r2,
        &kdir,
        // Real-time like the agent's protocol thread, so the figure is the
        // master's silence and not the backup's turn on the CPU.
        "global_defs {\n  vrrp_version 3\n  vrrp_rt_priority 1\n}\nvrrp_instance VI_bench {\n  interface eth0\n  virtual_router_id 77\n  priority 100\n  advert_int 0.01\n  virtual_ipaddress {\n    10.9.0.100/24\n  }\n}\n",
    )?;
    let backup = lab::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let log = format!(
            "{}{}",
            keepalived.stdout().unwrap_or_default(),
            keepalived.stderr().unwrap_or_default()
        );
        log.contains("Entering BACKUP STATE")
    });
    ensure!(backup, "keepalived did not settle as Backup");
    let before = takeovers(&keepalived);
    let watch = AdvertWatch::start(&r2, Ipv4Addr::new(10, 9, 0, 1))?;
    let mut ip = std::process::Command::new("ip")
        .args(["-n", r1.name(), "-force", "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut input = ip.stdin.take().context("ip stdin")?;
    let t0 = Instant::now();
    let mut deletions = 0u32;
    while t0.elapsed() < Duration::from_secs(seconds) {
        let victim = 5000 + (deletions * 37) % ves.max(1);
        std::io::Write::write_all(&mut input, format!("link del veth{victim}.0\n").as_bytes())?;
        std::io::Write::flush(&mut input)?;
        deletions += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let adverts = watch.stop()?;
    drop(input);
    let _ = ip.wait();
    let status = super::status_of(&dir.join("vznetd.sock"))?;
    let _ = agent.terminate(Duration::from_secs(5));
    let _ = keepalived.terminate(Duration::from_secs(5));
    Ok(Busy {
        ves,
        deletions,
        repaired: status.drift_repairs,
        adverts: adverts.times.len(),
        p99: adverts.p99_gap(),
        max: adverts.max_gap(),
        takeovers: takeovers(&keepalived) - before,
    })
}

fn takeovers(keepalived: &Process) -> usize {
    format!(
        "{}{}",
        keepalived.stdout().unwrap_or_default(),
        keepalived.stderr().unwrap_or_default()
    )
    .matches("Entering MASTER STATE")
    .count()
}
