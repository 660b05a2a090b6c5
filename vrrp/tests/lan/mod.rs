//! A LAN in network namespaces for the `vznet-vrrp` and keepalived tests: routers and a
//! client on one switch, plus helpers to start, kill and observe VRRP speakers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Display;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lab::{Host, Lab, Process, Switch};

/// The binary under test.
pub const VZNET_VRRP: &str = env!("CARGO_BIN_EXE_vznet-vrrp");

/// The LAN's interface name in every host.
pub const IFACE: &str = "eth0";
pub const VIP4: &str = "10.0.0.100";
pub const VIP6: &str = "fd00::100";
pub const VRID: u8 = 51;

/// How often the wait helpers look.
pub const POLL: Duration = Duration::from_millis(20);

/// A switch, a client (.254 / ::254) and routers r1..rN (.1.. / ::1..), all on
/// 10.0.0.0/24 and fd00::/64.
#[derive(Debug)]
pub struct Lan {
    pub lab: Lab,
    pub switch: Switch,
    pub client: Host,
    pub routers: Vec<Host>,
    /// Config files of the keepalived routers; removed with the LAN.
    pub scratch: tempfile::TempDir,
    /// Routers whose link is down after [`Lan::crash`]: whatever addresses they still
    /// hold are unreachable, so they hold no VIP as far as the LAN is concerned.
    crashed: Mutex<BTreeSet<usize>>,
    /// keepalived starts so far.
    starts: AtomicUsize,
}

impl Lan {
    pub fn new(test: &str, routers: usize) -> Result<Lan> {
        let lab = Lab::new(test)?;
        let switch = lab.switch("sw")?;
        let client = lab.host("client")?;
        lab.link(&client, IFACE, &switch, "pc")?;
        client.add_address(IFACE, "10.0.0.254/24")?;
        client.add_address(IFACE, "fd00::254/64")?;
        let mut hosts = Vec::new();
        for i in 1..=routers {
            let host = lab.host(&format!("r{i}"))?;
            lab.link(&host, IFACE, &switch, &format!("p{i}"))?;
            host.add_address(IFACE, format!("10.0.0.{i}/24"))?;
            hosts.push(host);
        }
        let scratch = tempfile::Builder::new()
            .prefix(&format!("vrrp-{}-", lab.prefix()))
            .tempdir()
            .context("scratch directory")?;
        Ok(Lan {
            lab,
            switch,
            client,
            routers: hosts,
            scratch,
            crashed: Mutex::new(BTreeSet::new()),
            starts: AtomicUsize::new(0),
        })
    }

    pub fn router(&self, i: usize) -> &Host {
        &self.routers[i - 1]
    }

    /// Starts `vznet-vrrp` on router `i` with `args` (after `--interface eth0`).
    pub fn start_vznet(&self, i: usize, args: &[&str]) -> Result<Process> {
        let mut argv = vec![VZNET_VRRP, "--interface", IFACE];
        argv.extend_from_slice(args);
        self.router(i).spawn(argv)
    }

    /// Starts `vznet-vrrp --config FILE` on router `i`, FILE holding `settings` (the
    /// `[[vrrp]]`, `[[vrrp_script]]`, `[[vrrp_sync_group]]` tables of host.toml).
    pub fn start_vznet_config(&self, i: usize, settings: &str) -> Result<Process> {
        let n = self.starts.fetch_add(1, Ordering::Relaxed);
        let file = self.scratch.path().join(format!("r{i}-{n}.toml"));
        std::fs::write(&file, settings)?;
        let file = file.display().to_string();
        self.router(i)
            .spawn([VZNET_VRRP, "--config", file.as_str()])
    }

    /// Starts keepalived (VRRP only, foreground) on router `i` with `config`.
    pub fn start_keepalived_config(&self, i: usize, config: &str) -> Result<Process> {
        let n = self.starts.fetch_add(1, Ordering::Relaxed);
        let dir = self.scratch.path().join(format!("r{i}-{n}"));
        lab::spawn_keepalived(self.router(i), &dir, config)
    }

    /// Starts keepalived (VRRP only, foreground) on router `i` with one instance.
    ///
    /// Each start gets its own pid files: keepalived refuses to start while the pid in
    /// an old one names a process, and a SIGKILLed VRRP child may linger as a zombie.
    pub fn start_keepalived(&self, i: usize, instance: &KeepalivedInstance) -> Result<Process> {
        let n = self.starts.fetch_add(1, Ordering::Relaxed);
        let dir = self.scratch.path().join(format!("r{i}-{n}"));
        lab::spawn_keepalived(self.router(i), &dir, &instance.config())
    }

    /// Whether router `i` has `vip` on any interface (the LAN's, or a virtual MAC
    /// interface over it).
    pub fn has_vip(&self, i: usize, vip: &str) -> bool {
        let needle = format!(" {vip}/");
        self.router(i)
            .ip(["-o", "addr", "show"])
            .is_ok_and(|out| out.contains(&needle))
    }

    /// The live routers holding `vip`, 1-based.
    pub fn vip_holders(&self, vip: &str) -> Vec<usize> {
        let crashed = self.crashed();
        (1..=self.routers.len())
            .filter(|i| !crashed.contains(i) && self.has_vip(*i, vip))
            .collect()
    }

    fn crashed(&self) -> MutexGuard<'_, BTreeSet<usize>> {
        self.crashed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until router `i` alone holds `vip`, then checks it stays so for `hold`.
    pub fn expect_sole_master(&self, i: usize, vip: &str, timeout: Duration, hold: Duration) {
        let ok = lab::wait_until(timeout, POLL, || self.vip_holders(vip) == [i]);
        assert!(
            ok,
            "router r{i} never became the only holder of {vip}: holders {:?}",
            self.vip_holders(vip)
        );
        let until = Instant::now() + hold;
        while Instant::now() < until {
            let holders = self.vip_holders(vip);
            assert_eq!(holders, [i], "{vip} moved while r{i} should stay Master");
            std::thread::sleep(POLL);
        }
    }

    /// Router `i` dies as a host would: its VRRP process gets SIGKILL and its link
    /// goes down (else its kernel, still holding the VIP, would answer for it).
    pub fn crash(&self, i: usize, process: &Process) -> Result<()> {
        process.kill()?;
        self.router(i).ip(["link", "set", IFACE, "down"])?;
        self.crashed().insert(i);
        Ok(())
    }

    /// Brings a crashed router's link back up, waiting for its IPv6 link-local address.
    /// An IPv4 VIP the killed process left stays until the next VRRP speaker started
    /// there removes it, as both vznet-vrrp and keepalived do at startup.
    pub fn revive(&self, i: usize) -> Result<()> {
        self.router(i).ip(["link", "set", IFACE, "up"])?;
        self.crashed().remove(&i);
        self.wait_link_local(i)
    }

    /// Waits until router `i`'s link-local address has passed duplicate address
    /// detection (keepalived cannot send IPv6 adverts before).
    pub fn wait_link_local(&self, i: usize) -> Result<()> {
        let host = self.router(i);
        let ready = lab::wait_until(Duration::from_secs(5), POLL, || {
            host.addresses(IFACE).is_ok_and(|addrs| {
                addrs
                    .iter()
                    .any(|a| a.scope == "link" && a.addr.is_ipv6() && !a.tentative)
            })
        });
        if !ready {
            bail!("r{i}: no usable IPv6 link-local address after 5 s");
        }
        Ok(())
    }

    /// Whether `vip` answers pings from the client, trying for up to `timeout`.
    pub fn client_reaches(&self, vip: impl Display, timeout: Duration) -> bool {
        let vip = vip.to_string();
        lab::wait_until(timeout, POLL, || {
            self.client
                .exec(["ping", "-n", "-q", "-c", "1", "-W", "1", &vip])
                .is_ok_and(|out| out.status.success())
        })
    }
}

/// The state `vznet-vrrp` last logged: `Initialize`, `Backup` or `Master`.
pub fn vznet_state(process: &Process) -> Option<String> {
    let out = process.stdout().ok()?;
    out.lines()
        .rfind(|l| l.contains("state changed"))
        .and_then(|l| field(l, "to"))
}

/// Waits until `vznet-vrrp` logs a transition to `state`.
pub fn wait_vznet_state(process: &Process, state: &str, timeout: Duration) -> bool {
    lab::wait_until(timeout, POLL, || {
        vznet_state(process).as_deref() == Some(state)
    })
}

/// Whether the process has printed `needle` to stdout.
pub fn log_has(process: &Process, needle: &str) -> bool {
    process.stdout().is_ok_and(|out| out.contains(needle))
}

/// `key=value` from a tracing line (values without spaces).
pub fn field(line: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .map(str::to_owned)
}

/// SIGTERM, then the `final counters` line `vznet-vrrp` prints on a clean exit.
pub fn stop_vznet(process: &Process) -> Result<FinalCounters> {
    let status = process.terminate(Duration::from_secs(5))?;
    if !status.success() {
        bail!("vznet-vrrp exited with {status}");
    }
    let out = process.stdout()?;
    let line = out
        .lines()
        .find(|l| l.contains("final counters"))
        .context("no final counters line")?;
    let number = |key| -> Result<u64> {
        field(line, key)
            .with_context(|| format!("no {key} in {line:?}"))?
            .parse()
            .with_context(|| format!("bad {key} in {line:?}"))
    };
    Ok(FinalCounters {
        adverts_sent: number("adverts_sent")?,
        adverts_received: number("adverts_received")?,
        dropped: number("dropped")?,
        drops: field(line, "drops").unwrap_or_default(),
        send_errors: number("send_errors")?,
    })
}

#[derive(Debug, Clone)]
pub struct FinalCounters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub dropped: u64,
    /// Non-zero drop reasons, `reason:count,...`, or `none`.
    pub drops: String,
    pub send_errors: u64,
}

/// One keepalived `vrrp_instance`, BACKUP at start, no `vrrp_strict`.
#[derive(Debug, Clone)]
pub struct KeepalivedInstance {
    pub version: u8,
    pub priority: u8,
    /// keepalived's `advert_int`, in seconds ("0.1" is allowed for version 3).
    pub advert_int: &'static str,
    /// With prefix, e.g. `10.0.0.100/24`.
    pub vip: &'static str,
}

impl KeepalivedInstance {
    pub fn config(&self) -> String {
        format!(
            "global_defs {{\n\
             \x20 router_id vznet_test\n\
             }}\n\
             vrrp_instance VI_1 {{\n\
             \x20 state BACKUP\n\
             \x20 interface {IFACE}\n\
             \x20 virtual_router_id {VRID}\n\
             \x20 version {}\n\
             \x20 priority {}\n\
             \x20 advert_int {}\n\
             \x20 virtual_ipaddress {{\n\
             \x20   {}\n\
             \x20 }}\n\
             }}\n",
            self.version, self.priority, self.advert_int, self.vip
        )
    }
}

/// The state instance `name` of a `vznet-vrrp` process last logged.
pub fn instance_state(process: &Process, name: &str) -> Option<String> {
    let out = process.stdout().ok()?;
    let tag = format!("instance={name} ");
    out.lines()
        .rfind(|l| l.contains("state changed") && l.contains(&tag))
        .and_then(|l| field(l, "to"))
}

/// Waits until instance `name` logs a transition to `state`.
pub fn wait_instance_state(process: &Process, name: &str, state: &str, timeout: Duration) -> bool {
    lab::wait_until(timeout, POLL, || {
        instance_state(process, name).as_deref() == Some(state)
    })
}
