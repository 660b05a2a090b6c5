//! VRRP in vznetd: two routers whose `[[vrrp]]` VIP sits on a bridge vznet
//! manages. The master holds the VIP (and netcfg's drift repair leaves it
//! alone), `vznet status` shows the instances, and a graceful stop of the
//! master hands the VIP over while a client keeps reaching it.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Result};
use common::{spawn_vznetd, vznet, ConfigDir, VZNET};
use lab::{wait_until, Host, Lab, Process};

struct Router {
    host: Host,
    cfg: ConfigDir,
    socket: PathBuf,
    _state: tempfile::TempDir,
}

fn router(lab: &Lab, sw: &lab::Switch, name: &str, addr: &str, priority: u8) -> Result<Router> {
    router_with(lab, sw, name, addr, priority, "")
}

/// A router whose `[[vrrp]]` ends with `extra` (more keys of the instance).
fn router_with(
    lab: &Lab,
    sw: &lab::Switch,
    name: &str,
    addr: &str,
    priority: u8,
    extra: &str,
) -> Result<Router> {
    let host = lab.host(name)?;
    lab.link(&host, "eth0", sw, &format!("p{name}"))?;
    let cfg = ConfigDir::new()?;
    cfg.host(&format!(
        r#"
[[bridge]]
name = "br0"
ports = ["eth0"]
addresses = ["{addr}/24"]

[[vrrp]]
name = "VI_1"
interface = "br0"
vrid = 51
priority = {priority}
version = 3
advert_interval_ms = 100
virtual_ips = ["10.70.0.100/24"]
{extra}
"#
    ))?;
    let state = tempfile::tempdir()?;
    let socket = state.path().join("vznetd.sock");
    Ok(Router {
        host,
        cfg,
        socket,
        _state: state,
    })
}

impl Router {
    fn start(&self) -> Result<Process> {
        // Metrics on the loopback of the router's own netns.
        let extra = ["--interval", "1s", "--metrics", "127.0.0.1:9633"];
        spawn_vznetd(
            &self.host,
            &self.cfg,
            &self._state.path().join("state"),
            &self.socket,
            &extra,
        )
    }

    fn vrrp_state(&self) -> Option<String> {
        self.vrrp_status()
            .and_then(|v| v["state"].as_str().map(str::to_string))
    }

    /// The first instance of `vznet status --json`.
    fn vrrp_status(&self) -> Option<serde_json::Value> {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                self.host.name(),
                VZNET,
                "status",
                "--json",
                "--config-dir",
            ])
            .arg(self.cfg.path())
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(v["vrrp"][0].clone())
    }

    /// GET /metrics from inside the router's netns.
    fn metrics(&self) -> Result<String> {
        let ns = std::fs::File::open(self.host.netns_path())?;
        std::thread::spawn(move || -> Result<String> {
            use std::io::{Read, Write};
            use std::os::fd::AsFd;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            let mut s = std::net::TcpStream::connect("127.0.0.1:9633")?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("metrics thread panicked"))?
    }

    fn has_vip(&self) -> bool {
        self.host
            .addresses("br0")
            .is_ok_and(|a| a.iter().any(|x| x.addr.to_string() == "10.70.0.100"))
    }
}

#[test]
fn vznetd_runs_vrrp_on_a_managed_bridge_and_hands_over_on_stop() -> Result<()> {
    let lab = Lab::new("vznetd_vrrp")?;
    let sw = lab.switch("sw")?;
    let client = lab.host("client")?;
    lab.link(&client, "eth0", &sw, "pc")?;
    client.add_address("eth0", "10.70.0.10/24")?;
    let r1 = router(&lab, &sw, "r1", "10.70.0.1", 150)?;
    let r2 = router(&lab, &sw, "r2", "10.70.0.2", 100)?;
    let p1 = r1.start()?;
    let _p2 = r2.start()?;

    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || r1
            .vrrp_state()
            .as_deref()
            == Some("Master")
            && r2.vrrp_state().as_deref() == Some("Backup")),
        "no election: r1 {:?} r2 {:?}\n{}",
        r1.vrrp_state(),
        r2.vrrp_state(),
        p1.stderr().unwrap_or_default()
    );
    assert!(r1.has_vip() && !r2.has_vip());
    let m = r1.metrics()?;
    assert!(m.starts_with("HTTP/1.1 200 OK"), "{m}");
    assert!(
        m.contains("vznet_vrrp_state{vrrp_instance=\"VI_1\",state=\"Master\"} 1"),
        "{m}"
    );
    assert!(m.contains("vznet_reconciles_total"), "{m}");
    assert!(
        client.ping("10.70.0.1"),
        "r1 answers: {}",
        r1.host.ip(["-d", "link"]).unwrap_or_default()
    );
    assert!(client.ping("10.70.0.100"), "VIP answers");
    // Periodic reconciles (1 s) must leave the VIP on the managed bridge.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        r1.has_vip(),
        "netcfg removed the VRRP VIP: {}",
        p1.stderr().unwrap_or_default()
    );
    assert!(
        !p1.stderr()?.contains("10.70.0.100/24 dev br0"),
        "VIP treated as drift"
    );

    // Graceful stop: priority 0, the backup takes over at once.
    p1.terminate(Duration::from_secs(10))?;
    assert!(!r1.has_vip(), "stopped master keeps the VIP");
    ensure!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || r2
            .has_vip()),
        "backup did not take over"
    );
    assert!(client.ping("10.70.0.100"), "VIP answers after handover");
    assert_eq!(r2.vrrp_state().as_deref(), Some("Master"));
    Ok(())
}

/// A reload that changes only an instance's priority keeps its state, as
/// keepalived's does: the master stays master at the new priority (no
/// priority-0 handover, the backup never takes over), and a priority below the
/// peer's is taken at once by the protocol (the peer preempts).
#[test]
fn a_reload_that_changes_only_the_priority_keeps_the_state() -> Result<()> {
    let lab = Lab::new("vznetd_vrrp_prio")?;
    let sw = lab.switch("sw")?;
    let r1 = router(&lab, &sw, "r1", "10.70.0.1", 150)?;
    let r2 = router(&lab, &sw, "r2", "10.70.0.2", 100)?;
    let p1 = r1.start()?;
    let _p2 = r2.start()?;
    let field = |r: &Router, k: &str| r.vrrp_status().and_then(|s| s[k].as_u64());
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || r1
            .vrrp_state()
            .as_deref()
            == Some("Master")
            && r2.vrrp_state().as_deref() == Some("Backup")),
        "no election: r1 {:?} r2 {:?}",
        r1.vrrp_state(),
        r2.vrrp_state()
    );
    let reload = |priority: u8| -> Result<()> {
        let text = std::fs::read_to_string(r1.cfg.path().join("host.toml"))?;
        let line = text
            .lines()
            .find(|l| l.starts_with("priority = "))
            .unwrap_or("priority = ");
        r1.cfg
            .host(&text.replace(line, &format!("priority = {priority}")))?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p1.pid() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )?;
        Ok(())
    };

    reload(120)?;
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            field(&r1, "priority") == Some(120)
        }),
        "priority not taken: {:?}\n{}",
        r1.vrrp_status(),
        p1.stderr().unwrap_or_default()
    );
    // Several adverts later, still one election.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(r1.vrrp_state().as_deref(), Some("Master"));
    assert_eq!(field(&r1, "master_transitions"), Some(1));
    assert_eq!(
        field(&r2, "master_transitions"),
        Some(0),
        "{:?}",
        r2.vrrp_status()
    );
    let log = p1.stderr()?;
    assert!(
        log.contains("state kept") && !log.contains("stopping VRRP"),
        "{log}"
    );

    reload(90)?;
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            r2.vrrp_state().as_deref() == Some("Master")
                && r1.vrrp_state().as_deref() == Some("Backup")
        }),
        "the peer did not preempt: r1 {:?} r2 {:?}",
        r1.vrrp_status(),
        r2.vrrp_status()
    );
    assert!(r2.has_vip() && !r1.has_vip());
    Ok(())
}

/// `[[vrrp]]` with `track`, `notify_master` and `use_vmac` in vznetd: the Master's
/// VIP sits on the virtual MAC interface, its hook sees the state, and its tracked
/// link going down is a Fault that hands the VIP to the peer until the link returns.
#[test]
fn vznetd_vrrp_tracking_notify_and_virtual_mac() -> Result<()> {
    let lab = Lab::new("vznetd_vrrp_more")?;
    let sw = lab.switch("sw")?;
    let client = lab.host("client")?;
    lab.link(&client, "eth0", &sw, "pc")?;
    client.add_address("eth0", "10.70.0.10/24")?;
    let hooks = tempfile::tempdir()?;
    let env_file = hooks.path().join("master.env");
    let r1 = router_with(
        &lab,
        &sw,
        "r1",
        "10.70.0.1",
        150,
        &format!(
            "track = [\"trk0\"]\nuse_vmac = true\nnotify_master = [\"/bin/sh\", \"-c\", \"env > {}\"]\n",
            env_file.display()
        ),
    )?;
    lab.link(&r1.host, "trk0", &r1.host, "trk1")?;
    let r2 = router_with(&lab, &sw, "r2", "10.70.0.2", 100, "use_vmac = true\n")?;
    let p1 = r1.start()?;
    let _p2 = r2.start()?;
    let settled = || {
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            r1.vrrp_state().as_deref() == Some("Master")
                && r2.vrrp_state().as_deref() == Some("Backup")
        })
    };
    ensure!(
        settled(),
        "no election: r1 {:?} r2 {:?}\n{}",
        r1.vrrp_status(),
        r2.vrrp_status(),
        p1.stderr().unwrap_or_default()
    );
    let status = r1.vrrp_status().unwrap_or_default();
    let vmac = status["vmac_interface"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no vmac_interface in {status}"))?;
    let link = r1.host.ip(["-o", "link", "show", &vmac])?;
    assert!(link.contains("00:00:5e:00:01:33"), "{link}");
    assert!(
        r1.host
            .addresses(&vmac)?
            .iter()
            .any(|a| a.addr.to_string() == "10.70.0.100"),
        "VIP not on {vmac}"
    );
    assert!(client.ping("10.70.0.100"), "VIP answers");
    ensure!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            std::fs::read_to_string(&env_file).is_ok_and(|e| e.contains("VRRP_STATE=MASTER"))
        }),
        "notify_master did not run"
    );
    let env = std::fs::read_to_string(&env_file)?;
    assert!(env.lines().any(|l| l == "VRRP_INSTANCE=VI_1"), "{env}");
    assert!(env.lines().any(|l| l == "VRRP_INTERFACE=br0"), "{env}");

    r1.host.ip(["link", "set", "trk0", "down"])?;
    ensure!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            r1.vrrp_state().as_deref() == Some("Fault")
                && r2.vrrp_state().as_deref() == Some("Master")
        }),
        "no fault/takeover: r1 {:?} r2 {:?}",
        r1.vrrp_status(),
        r2.vrrp_status()
    );
    assert_eq!(
        r1.vrrp_status().unwrap_or_default()["tracked_down"][0].as_str(),
        Some("trk0")
    );
    assert!(client.ping("10.70.0.100"), "VIP answers from r2");
    r1.host.ip(["link", "set", "trk0", "up"])?;
    ensure!(settled(), "r1 did not return from Fault");

    // Graceful stop: the virtual MAC interface goes too.
    p1.terminate(Duration::from_secs(10))?;
    let gone = r1.host.ip(["-o", "link", "show", &vmac]);
    assert!(gone.is_err(), "{vmac} left behind: {gone:?}");
    Ok(())
}

/// `track_script` against keepalived: the script failing `fall` times takes its weight
/// off vznetd's priority, so keepalived (at 100) preempts and holds the VIP; the
/// script succeeding again gives the priority back and vznetd preempts back.
#[test]
fn vznetd_track_script_moves_the_vip_to_keepalived_and_back() -> Result<()> {
    lab::keepalived_path()?;
    let lab = Lab::new("vznetd_vrrp_script")?;
    let sw = lab.switch("sw")?;
    let client = lab.host("client")?;
    lab.link(&client, "eth0", &sw, "pc")?;
    client.add_address("eth0", "10.70.0.10/24")?;
    let flag_dir = tempfile::tempdir()?;
    let flag = flag_dir.path().join("healthy");
    std::fs::write(&flag, "")?;
    let r1 = router_with(
        &lab,
        &sw,
        "r1",
        "10.70.0.1",
        150,
        &format!(
            "track_script = [{{ script = \"chk\", weight = -100 }}]\n\n\
             [[vrrp_script]]\nname = \"chk\"\nscript = \"test -e {}\"\n\
             interval_ms = 200\nfall = 2\nrise = 1\n",
            flag.display()
        ),
    )?;
    let ka_host = lab.host("r2")?;
    lab.link(&ka_host, "eth0", &sw, "pr2")?;
    ka_host.add_address("eth0", "10.70.0.2/24")?;
    let ka_dir = tempfile::tempdir()?;
    let _ka = lab::spawn_keepalived(
        &ka_host,
        ka_dir.path(),
        "global_defs {\n  router_id vznet_test\n}\n\
         vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n\
         version 3\n  priority 100\n  advert_int 0.1\n\
         virtual_ipaddress {\n    10.70.0.100/24\n  }\n}\n",
    )?;
    let p1 = r1.start()?;
    let ka_has_vip = || {
        ka_host
            .addresses("eth0")
            .is_ok_and(|a| a.iter().any(|x| x.addr.to_string() == "10.70.0.100"))
    };
    let settled = |vznet_master: bool| {
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            r1.has_vip() == vznet_master && ka_has_vip() != vznet_master
        })
    };
    ensure!(
        settled(true),
        "vznetd never Master: {:?}\n{}",
        r1.vrrp_status(),
        p1.stderr().unwrap_or_default()
    );
    assert!(client.ping("10.70.0.100"));

    std::fs::remove_file(&flag)?;
    ensure!(
        settled(false),
        "the VIP did not move to keepalived: {:?}",
        r1.vrrp_status()
    );
    let status = r1.vrrp_status().unwrap_or_default();
    assert_eq!(status["priority"].as_u64(), Some(50), "{status}");
    assert_eq!(status["state"].as_str(), Some("Backup"), "{status}");
    assert_eq!(
        status["tracked_down"][0].as_str(),
        Some("script chk"),
        "{status}"
    );
    assert!(client.ping("10.70.0.100"), "keepalived answers");

    std::fs::write(&flag, "")?;
    ensure!(
        settled(true),
        "vznetd did not preempt back: {:?}",
        r1.vrrp_status()
    );
    assert_eq!(
        r1.vrrp_status().unwrap_or_default()["priority"].as_u64(),
        Some(150)
    );
    assert!(client.ping("10.70.0.100"));
    Ok(())
}

/// Bad tracking and notify settings are refused with file, line and key.
#[test]
fn vrrp_track_and_notify_errors_are_located() -> Result<()> {
    let lab = Lab::new("vznetd_vrrp_errors")?;
    let host = lab.host("h")?;
    let base = "[[vrrp]]\nname = \"VI_1\"\ninterface = \"br0\"\nvrid = 5\nvirtual_ips = [\"10.0.0.100/24\"]\n";
    let cases = [
        (
            "track = [{ interface = \"eth1\", weight = 300 }]\n",
            "host.toml:6:",
            "vrrp[0].track[0]",
            "out of range",
        ),
        (
            "track = [\"this-name-is-far-too-long\"]\n",
            "host.toml:6:",
            "vrrp[0].track[0]",
            "at most 15",
        ),
        (
            "notify_master = [\"notify.sh\"]\n",
            "host.toml:6:",
            "vrrp[0].notify_master",
            "absolute path",
        ),
        (
            "notify_timeout_ms = 0\n",
            "host.toml:6:",
            "vrrp[0].notify_timeout_ms",
            "out of range",
        ),
        (
            "track_script = [\"chk_web\"]\n",
            "host.toml:6:",
            "vrrp[0].track_script[0]",
            "no [[vrrp_script]] is called \"chk_web\"",
        ),
        (
            "strict = true\nunicast_peers = [\"10.0.0.2\"]\n",
            "host.toml:7:",
            "vrrp[0].unicast_peers",
            "strict",
        ),
        (
            "virtual_ips_excluded = [{ address = \"10.0.0.7/24\", label = \"eth9:x\" }]\n",
            "host.toml:6:",
            "vrrp[0].virtual_ips_excluded[0].label",
            "must start with the interface name \"br0\"",
        ),
        (
            "\n[[vrrp_script]]\nname = \"chk\"\nscript = \"true\"\nfall = 0\n",
            "host.toml:10:",
            "vrrp_script[0].fall",
            "out of range",
        ),
        (
            "\n[[vrrp_sync_group]]\nname = \"G\"\ngroup = [\"VI_1\", \"VI_9\"]\n",
            "host.toml:9:",
            "vrrp_sync_group[0].group[1]",
            "no [[vrrp]] instance is called \"VI_9\"",
        ),
        (
            "version = 4\n",
            "host.toml:6:",
            "vrrp[0].version",
            "use 2 (RFC 3768) or 3",
        ),
        (
            "\n[[bridge]]\nname = \"br0\"\nsysctl = { accept_local = 0 }\n",
            "host.toml:3:",
            "vrrp[0].interface",
            "accept_local",
        ),
    ];
    for (extra, at, key, says) in cases {
        let cfg = ConfigDir::new()?;
        cfg.host(&format!("{base}{extra}"))?;
        let out = vznet(&host, &cfg, &["check"])?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra}: {err}");
        let want = format!("{}/{at}", cfg.path().display());
        assert!(err.contains(&want), "{extra}: expected {want:?} in {err}");
        assert!(err.contains(key) && err.contains(says), "{extra}: {err}");
    }
    Ok(())
}
