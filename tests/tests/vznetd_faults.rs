//! vznetd under faults: a VE it cannot repair never blocks the others (and never
//! makes it spin), its doors (socket path, a second agent, a flood of idle
//! connections) hold, and config files that are not files are refused, not read.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{spawn_vznetd, vznet, ConfigDir, VZNET, VZNETD};
use lab::{wait_until, Host, Lab, Process};

struct Setup {
    _lab: Lab,
    host: Host,
    ves: Vec<Host>,
    cfg: ConfigDir,
    socket: PathBuf,
    state: tempfile::TempDir,
}

/// A host with bridge br0 and three VEs on it (ids 700..702, 10.41.0.10..12).
fn setup(name: &str) -> Result<Setup> {
    let lab = Lab::new(name)?;
    let host = lab.host("host")?;
    let cfg = ConfigDir::new()?;
    cfg.host(
        "[sysctl]\n\"net.ipv4.ip_forward\" = 1\n\n[[bridge]]\nname = \"br0\"\naddresses = [\"10.41.0.1/24\"]\n",
    )?;
    let mut ves = Vec::new();
    for n in 0..3u32 {
        let ve = lab.host(&format!("ve{n}"))?;
        let id = 700 + n;
        cfg.ve(
            id,
            &format!(
                "id = {id}\nnetns = \"{}\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"10.41.0.{}/24\"]\ngateway = \"10.41.0.1\"\n",
                ve.name(),
                10 + n
            ),
        )?;
        ves.push(ve);
    }
    let state = tempfile::tempdir()?;
    let socket = state.path().join("vznetd.sock");
    Ok(Setup {
        _lab: lab,
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

    fn status(&self) -> Result<serde_json::Value> {
        let s = self.socket.display().to_string();
        let out = vznet(&self.host, &self.cfg, &["status", "--json", "--socket", &s])?;
        ensure!(
            out.status.success(),
            "vznet status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

#[test]
fn a_ve_that_cannot_be_repaired_never_blocks_the_others_nor_spins() -> Result<()> {
    let s = setup("faults_isolate")?;
    let p = s.start(&[])?;
    for ve in &s.ves {
        ensure!(ve.ping("10.41.0.1"), "{} not wired at start", ve.name());
    }
    // VE 700's netns goes away (its veth pair with it) and, at the same time,
    // someone deletes the bridge: every VE is cut off.
    s.host.run(["ip", "netns", "del", s.ves[0].name()])?;
    s.host.run(["ip", "link", "del", "br0"])?;
    // The bridge and the other VEs' ports are repaired...
    for ve in &s.ves[1..] {
        ensure!(
            wait_until(Duration::from_secs(10), Duration::from_millis(50), || ve
                .ping("10.41.0.1")),
            "{} not repaired while VE 700 cannot be: {}",
            ve.name(),
            p.stderr().unwrap_or_default()
        );
    }
    // ...while VE 700 is reported, not retried in a loop.
    let v = s.status()?;
    let units = v["units"].as_array().context("units")?;
    ensure!(
        units.iter().any(|u| u["unit"]["ve"] == 700),
        "VE 700 not reported as failing: {v}"
    );
    ensure!(units.len() == 1, "only VE 700 fails: {v}");
    let before = v["reconciles"].as_u64().unwrap_or(0);
    let log_before = p.stderr()?.lines().count();
    std::thread::sleep(Duration::from_secs(3));
    let v = s.status()?;
    let reconciles = v["reconciles"].as_u64().unwrap_or(0) - before;
    let lines = p.stderr()?.lines().count() - log_before;
    // Backoff: 1 s, 2 s, ... for a unit that needs someone to act. A livelock
    // was ~16 reconciles and ~140 log lines a second.
    ensure!(
        reconciles <= 10,
        "{reconciles} reconciles in 3 s: spinning:\n{}",
        p.stderr()?
    );
    ensure!(
        lines == 0,
        "{lines} log lines in 3 s while nothing changed:\n{}",
        p.stderr()?
    );
    let log = p.stderr()?;
    let reported = log
        .matches("unit cannot be repaired; the others go on")
        .count();
    ensure!(
        reported == 1,
        "the failure is logged once, not per attempt:\n{log}"
    );
    Ok(())
}

/// A VE whose netns is gone is a VE that is not running: a reload while it is
/// down is not refused for it (that blocked every reload while one VE was
/// down); the other VEs' changes apply and the VE waits as a unit.
#[test]
fn a_reload_while_a_ve_is_down_applies_to_the_others() -> Result<()> {
    let s = setup("faults_reload_down")?;
    let p = s.start(&[])?;
    ensure!(s.ves[1].ping("10.41.0.1"), "VE 701 not wired at start");
    s.host.run(["ip", "netns", "del", s.ves[0].name()])?;
    let text = std::fs::read_to_string(s.cfg.path().join("ve/701.toml"))?;
    s.cfg
        .ve(701, &text.replace("10.41.0.11/24", "10.41.0.21/24"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    let moved = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        s.ves[1]
            .ip(["-4", "addr", "show", "dev", "eth0"])
            .is_ok_and(|a| a.contains("10.41.0.21/24") && !a.contains("10.41.0.11/24"))
    });
    ensure!(
        moved,
        "VE 701's new address not applied while VE 700 is down:\n{}",
        p.stderr()?
    );
    let log = p.stderr()?;
    ensure!(
        !log.contains("new config rejected"),
        "the reload was refused for a VE that is down:\n{log}"
    );
    let v = s.status()?;
    let units = v["units"].as_array().context("units")?;
    ensure!(
        units.len() == 1 && units[0]["unit"]["ve"] == 700,
        "VE 700 (and only it) waits as a unit: {v}"
    );
    // A one-shot `vznet check` still names the missing namespace.
    let out = vznet(&s.host, &s.cfg, &["check"])?;
    ensure!(
        out.status.code() == Some(2)
            && String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "vznet check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn a_socket_path_that_is_not_a_socket_is_never_deleted() -> Result<()> {
    let s = setup("faults_sockpath")?;
    std::fs::write(&s.socket, "precious")?;
    let out = s.host.exec([
        VZNETD,
        "--config-dir",
        &s.cfg.path().display().to_string(),
        "--state-dir",
        &s.state.path().join("state").display().to_string(),
        "--socket",
        &s.socket.display().to_string(),
    ])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&s.socket)?, "precious");
    // Refused before anything was applied.
    assert!(s.host.link("br0").is_err(), "nothing may change");
    Ok(())
}

#[test]
fn a_second_agent_is_refused_and_the_first_keeps_its_socket() -> Result<()> {
    let s = setup("faults_second")?;
    let first = s.start(&[])?;
    let run_second = |state: PathBuf| -> Result<String> {
        let out = s.host.exec([
            VZNETD.to_string(),
            "--config-dir".into(),
            s.cfg.path().display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
            "--socket".into(),
            s.socket.display().to_string(),
        ])?;
        ensure!(!out.status.success(), "a second agent started");
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Same state folder: the lock says who holds it.
    let err = run_second(s.state.path().join("state"))?;
    assert!(
        err.contains(&format!("another vznetd (pid {})", first.pid())),
        "{err}"
    );
    // Another state folder, same socket: refused, and the socket stays.
    let err = run_second(s.state.path().join("other"))?;
    assert!(err.contains("another agent answers"), "{err}");
    assert!(s.socket.exists());
    s.status().context("the first agent still answers")?;
    Ok(())
}

#[test]
fn a_flood_of_idle_connections_never_locks_status_out() -> Result<()> {
    let s = setup("faults_flood")?;
    let p = s.start(&[])?;
    // 20,000 idle clients from two processes (a process has at most 20,000
    // descriptors here).
    let script = format!(
        "import resource,socket,sys,time\n\
         resource.setrlimit(resource.RLIMIT_NOFILE,(10100,10100))\n\
         ss=[]\n\
         for _ in range(10000):\n\
         \x20 c=socket.socket(socket.AF_UNIX)\n\
         \x20 c.connect({path:?})\n\
         \x20 ss.append(c)\n\
         print('connected',flush=True)\n\
         time.sleep(60)\n",
        path = s.socket.display().to_string()
    );
    let mut floods = Vec::new();
    for _ in 0..2 {
        floods.push(KillOnDrop(
            std::process::Command::new("python3")
                .args(["-c", &script])
                .stdout(std::process::Stdio::piped())
                .spawn()?,
        ));
    }
    for f in &mut floods {
        let out = f.0.stdout.take().context("stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
        ensure!(line.trim() == "connected", "flood client: {line:?}");
    }
    let t = Instant::now();
    let v = s.status()?;
    assert!(v["pid"].as_u64() == Some(u64::from(p.pid())));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "status took {:?}",
        t.elapsed()
    );
    // And the agent still repairs (no EMFILE).
    s.host.run(["ip", "link", "set", "veth701.0", "nomaster"])?;
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || s
            .host
            .link("veth701.0")
            .is_ok_and(|l| l.master.as_deref() == Some("br0"))),
        "not repaired during the flood: {}",
        p.stderr().unwrap_or_default()
    );
    Ok(())
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn config_files_that_are_not_regular_files_are_refused_not_read() -> Result<()> {
    let cfg = ConfigDir::new()?;
    cfg.host("")?;
    let fifo = cfg.path().join("ve/101.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    std::os::unix::fs::symlink("/dev/zero", cfg.path().join("ve/102.toml"))?;
    std::fs::write(cfg.path().join("ve/103.TOML"), "id = 103\n")?;
    let t = Instant::now();
    let out = std::process::Command::new(VZNET)
        .args(["check", "--config-dir"])
        .arg(cfg.path())
        .output()?;
    ensure!(t.elapsed() < Duration::from_secs(5), "check hung");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ve/101.toml:1:1: cannot read: a FIFO, not a regular file"),
        "{err}"
    );
    assert!(
        err.contains("ve/102.toml:1:1: cannot read: a device, not a regular file"),
        "{err}"
    );
    // A file that looks like a VE file but is not read is named, not ignored.
    std::fs::remove_file(&fifo)?;
    std::fs::remove_file(cfg.path().join("ve/102.toml"))?;
    let out = std::process::Command::new(VZNET)
        .args(["check", "--config-dir"])
        .arg(cfg.path())
        .output()?;
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: ") && err.contains("ve/103.TOML:1:1: skipped"),
        "{err}"
    );
    Ok(())
}
