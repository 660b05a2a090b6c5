//! vznetd in a lab host: readiness, drift repair, unmanaged links left alone,
//! kill -9 and restart without loss, invalid reload, and a control socket that
//! refuses strangers and survives garbage.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{spawn_vznetd, sysctl, vznet, ConfigDir, VZNETD};
use lab::{wait_until, Host, Lab, Process};

struct Setup {
    lab: Lab,
    host: Host,
    ves: Vec<Host>,
    cfg: ConfigDir,
    socket: PathBuf,
    state: tempfile::TempDir,
}

const HOST: &str = r#"
[sysctl]
"net.ipv4.ip_forward" = 1

[[bridge]]
name = "br0"
addresses = ["10.40.0.1/24"]
"#;

fn setup(name: &str) -> Result<Setup> {
    let lab = Lab::new(name)?;
    let host = lab.host("host")?;
    let cfg = ConfigDir::new()?;
    cfg.host(HOST)?;
    let mut ves = Vec::new();
    for n in 0..2u32 {
        let ve = lab.host(&format!("ve{n}"))?;
        let id = 500 + n;
        cfg.ve(
            id,
            &format!(
                "id = {id}\nnetns = \"{}\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"10.40.0.{}/24\"]\ngateway = \"10.40.0.1\"\nsysctl = {{ proxy_arp = 1 }}\n",
                ve.name(),
                10 + n
            ),
        )?;
        ves.push(ve);
    }
    let routed = lab.host("vr")?;
    cfg.ve(
        600,
        &format!(
            "id = 600\nnetns = \"{}\"\n[venet]\naddresses = [\"10.77.0.5\"]\n",
            routed.name()
        ),
    )?;
    ves.push(routed);
    let state = tempfile::tempdir()?;
    let socket = state.path().join("vznetd.sock");
    Ok(Setup {
        lab,
        host,
        ves,
        cfg,
        socket,
        state,
    })
}

impl Setup {
    fn start(&self, extra: &[&str]) -> Result<Process> {
        spawn_vznetd(
            &self.host,
            &self.cfg,
            &self.state.path().join("state"),
            &self.socket,
            extra,
        )
    }

    fn vznet(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut a: Vec<&str> = args.to_vec();
        let s = self.socket.display().to_string();
        a.extend(["--socket", &s]);
        vznet(&self.host, &self.cfg, &a)
    }
}

fn ask(socket: &std::path::Path, line: &[u8]) -> Result<serde_json::Value> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(line)?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply)?;
    serde_json::from_str(&reply).with_context(|| format!("reply {reply:?}"))
}

#[test]
fn signals_readiness_after_applying() -> Result<()> {
    let s = setup("vznetd_ready")?;
    let notify_path = s.state.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path)?;
    notify.set_read_timeout(Some(Duration::from_secs(20)))?;
    let argv = [
        "env".to_string(),
        format!("NOTIFY_SOCKET={}", notify_path.display()),
        VZNETD.to_string(),
        "--config-dir".into(),
        s.cfg.path().display().to_string(),
        "--state-dir".into(),
        s.state.path().join("state").display().to_string(),
        "--socket".into(),
        s.socket.display().to_string(),
    ];
    let _p = s.host.spawn(argv)?;
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).context("no sd_notify message")?;
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means applied: the network works at once.
    assert!(s.host.link("br0").is_ok());
    assert!(s.ves[0].ping("10.40.0.1"));
    Ok(())
}

#[test]
fn drift_on_managed_objects_is_repaired_and_logged_unmanaged_left_alone() -> Result<()> {
    let s = setup("vznetd_drift")?;
    let p = s.start(&["--interval", "1s"])?;
    s.host
        .run(["ip", "link", "add", "mine0", "type", "bridge"])?;
    s.host
        .run(["ip", "addr", "add", "10.99.9.9/32", "dev", "mine0"])?;

    let repaired = |what: &str, check: &dyn Fn() -> bool| -> Result<()> {
        ensure!(
            wait_until(Duration::from_secs(10), Duration::from_millis(20), check),
            "{what} not repaired: {}",
            p.stderr().unwrap_or_default()
        );
        Ok(())
    };
    s.host.run(["ip", "link", "set", "veth500.0", "nomaster"])?;
    repaired("bridge port", &|| {
        s.host
            .link("veth500.0")
            .is_ok_and(|l| l.master.as_deref() == Some("br0"))
    })?;
    s.host
        .run(["ip", "addr", "del", "10.40.0.1/24", "dev", "br0"])?;
    repaired("bridge address", &|| {
        s.host
            .addresses("br0")
            .is_ok_and(|a| a.iter().any(|x| x.addr.to_string() == "10.40.0.1"))
    })?;
    s.host.run(["ip", "route", "del", "10.77.0.5/32"])?;
    repaired("venet host route", &|| {
        s.host
            .ip(["route", "show", "10.77.0.5"])
            .is_ok_and(|r| r.contains("venet600"))
    })?;
    s.host.run([
        "sh",
        "-c",
        "echo 0 > /proc/sys/net/ipv4/conf/veth501.0/proxy_arp",
    ])?;
    repaired("sysctl", &|| {
        sysctl(&s.host, "net/ipv4/conf/veth501.0/proxy_arp").is_ok_and(|v| v == "1")
    })?;
    s.ves[1].run(["ip", "route", "del", "default"])?;
    repaired("VE default route", &|| {
        s.ves[1]
            .ip(["route", "show", "default"])
            .is_ok_and(|r| r.contains("10.40.0.1"))
    })?;

    let log = p.stderr()?;
    for needle in [
        "repairing drift op=~ link veth500.0 master br0",
        "repairing drift op=+ address 10.40.0.1/24 dev br0",
        "repairing drift op=+ route 10.77.0.5/32 dev venet600",
        "repairing drift op=~ sysctl net/ipv4/conf/veth501.0/proxy_arp 0 -> 1",
        "repairing drift op=+ route default via 10.40.0.1 dev eth0",
    ] {
        assert!(log.contains(needle), "log lacks {needle:?}:\n{log}");
    }
    assert!(s.host.link("mine0").is_ok(), "unmanaged link untouched");
    assert!(s
        .host
        .addresses("mine0")?
        .iter()
        .any(|a| a.addr.to_string() == "10.99.9.9"));
    let status = s.vznet(&["status", "--json"])?;
    let v: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    assert!(v["drift_repairs"].as_u64().is_some_and(|n| n >= 5), "{v}");
    Ok(())
}

#[test]
fn kill_9_and_restart_loses_no_packets() -> Result<()> {
    let s = setup("vznetd_restart")?;
    let p = s.start(&[])?;
    assert!(s.ves[0].ping("10.40.0.1"));
    // 10 ms pings for 4 s across a SIGKILL and a restart.
    let pinger = s.ves[0].spawn(["ping", "-i", "0.01", "-c", "400", "10.40.0.1"])?;
    std::thread::sleep(Duration::from_millis(500));
    p.kill()?;
    let p2 = s.start(&[])?;
    let out = loop {
        if let Some(_st) = pinger.wait_timeout(Duration::from_secs(20))? {
            break pinger.stdout()?;
        }
    };
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .context("ping summary")?;
    assert!(
        line.contains("400 packets transmitted, 400 received"),
        "{line}"
    );
    let log = p2.stderr()?;
    assert!(
        !log.contains("repairing drift") && !log.contains("applying"),
        "restart changed something:\n{log}"
    );
    Ok(())
}

#[test]
fn invalid_reload_is_rejected_and_the_agent_keeps_serving() -> Result<()> {
    let s = setup("vznetd_reload")?;
    let p = s.start(&[])?;
    let good = std::fs::read_to_string(s.cfg.path().join("host.toml"))?;
    s.cfg.host(&good.replace("10.40.0.1/24", "10.40.0.1/99"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || p.stderr().is_ok_and(|l| l.contains("new config rejected"))
    ));
    let out = s.vznet(&["apply"])?;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("host.toml:"),
        "names the file"
    );
    assert!(s.ves[0].ping("10.40.0.1"), "network kept");
    let v = ask(&s.socket, b"{\"v\":2,\"cmd\":\"status\"}\n")?;
    assert!(
        v["result"]["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("host.toml")),
        "{v}"
    );
    s.cfg.host(&good)?;
    let out = s.vznet(&["apply"])?;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("via vznetd"));
    Ok(())
}

#[test]
fn control_socket_refuses_non_root_and_survives_garbage() -> Result<()> {
    let s = setup("vznetd_socket")?;
    let _p = s.start(&[])?;
    let mode = std::fs::metadata(&s.socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))?;
    assert_eq!(mode & 0o777, 0o600);
    // Open the file mode to reach the SO_PEERCRED check, then ask as nobody
    // from a thread that alone drops to uid 65534 (the raw syscall changes one
    // thread's credentials; glibc's wrapper would change the whole process's).
    std::fs::set_permissions(
        &s.socket,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )?;
    let path = s.socket.clone();
    let reply = std::thread::spawn(move || -> Result<String> {
        // SAFETY: plain syscalls on this thread's credentials.
        let rc = unsafe { libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534) };
        ensure!(rc == 0, "setresgid: {}", std::io::Error::last_os_error());
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        ensure!(rc == 0, "setresuid: {}", std::io::Error::last_os_error());
        let v = ask(&path, b"{\"v\":2,\"cmd\":\"status\"}\n")?;
        Ok(v.to_string())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("non-root thread panicked"))??;
    assert!(reply.contains("permission_denied"), "non-root got: {reply}");
    assert!(reply.contains("permission denied"), "in words too: {reply}");
    assert!(!reply.contains("config_dir"));

    for garbage in [
        &b"not json\n"[..],
        b"{\"v\":99,\"cmd\":\"status\"}\n",
        b"{\"v\":2,\"cmd\":\"format-disk\"}\n",
        b"\xff\xfe\xfd\n",
    ] {
        let v = ask(&s.socket, garbage)?;
        assert_eq!(v["ok"], false, "{v}");
    }
    let mut big = vec![b'x'; 200 * 1024];
    big.push(b'\n');
    let v = ask(&s.socket, &big)?;
    assert!(v["error"]["kind"] == "too_long", "{v}");
    // Half a request, then hang up.
    {
        let mut c = UnixStream::connect(&s.socket)?;
        c.write_all(b"{\"v\":2,")?;
    }
    let t = Instant::now();
    let v = ask(&s.socket, b"{\"v\":2,\"cmd\":\"status\"}\n")?;
    assert_eq!(v["ok"], true, "{v}");
    assert!(t.elapsed() < Duration::from_secs(5));
    let _ = &s.lab;
    Ok(())
}

#[test]
fn a_rule_deleted_by_hand_comes_back_on_its_kernel_event() -> Result<()> {
    let s = setup("vznetd_rule")?;
    s.cfg.host(&format!(
        "{HOST}\n[[rule]]\npriority = 1200\nfrom = \"10.40.0.0/24\"\ntable = 120\n"
    ))?;
    // No periodic reconcile in the test's time: only the rule event can repair.
    let p = s.start(&["--interval", "3600s"])?;
    let present = || {
        s.host
            .ip(["rule", "show", "priority", "1200"])
            .is_ok_and(|r| r.contains("lookup 120"))
    };
    ensure!(present(), "rule not applied at start");
    s.host.run(["ip", "rule", "del", "priority", "1200"])?;
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), present),
        "rule not repaired: {}",
        p.stderr().unwrap_or_default()
    );
    let log = p.stderr()?;
    assert!(
        log.contains("repairing drift op=+ rule ipv4 1200: from 10.40.0.0/24 lookup 120"),
        "{log}"
    );
    Ok(())
}

#[test]
fn a_port_that_joins_its_bridge_again_is_still_vznets_to_the_agent() -> Result<()> {
    // The last message the kernel sends about a link that joins a bridge is the
    // bridge's notice about its new port (family AF_BRIDGE), without the link's
    // group or alias: the agent took it for the link's state and blocked the
    // VE as "exists and was not created by vznet" until it read the host again.
    let s = setup("vznetd_port_notice")?;
    // No periodic reconcile in the test's time: the view is only what events made it.
    let p = s.start(&["--interval", "3600s"])?;
    s.host.run(["ip", "link", "set", "veth500.0", "nomaster"])?;
    let joined = || {
        s.host
            .link("veth500.0")
            .is_ok_and(|l| l.master.as_deref() == Some("br0"))
    };
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), joined),
        "port not repaired: {}",
        p.stderr().unwrap_or_default()
    );
    // The VE's next plan is made against the view the repair's events left.
    s.ves[0].run(["ip", "route", "del", "default"])?;
    let routed = || {
        s.ves[0]
            .ip(["route", "show", "default"])
            .is_ok_and(|r| r.contains("10.40.0.1"))
    };
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), routed),
        "VE default route not repaired: {}",
        p.stderr().unwrap_or_default()
    );
    let log = p.stderr()?;
    assert!(!log.contains("was not created by vznet"), "{log}");
    assert!(
        log.contains("repairing drift op=+ route default via 10.40.0.1 dev eth0"),
        "{log}"
    );
    Ok(())
}
