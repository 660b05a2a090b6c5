//! Load balancing end to end: vznetd in an LB host serves a VIP over three VE
//! backends (lab namespaces wired by vznet on a bridge), and a client namespace
//! connects to the VIP.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{spawn_vznetd, vznet_ok, ConfigDir};
use lab::{wait_until, Host, Lab, Process};

const LB_BACKEND: &str = env!("CARGO_BIN_EXE_lb-backend");
const TIMEOUT: Duration = Duration::from_secs(2);

/// An LB host with vznetd, a client on its `brc` side and VE backends on `brv`.
struct Site {
    /// Owns the namespaces: dropped last.
    _lab: Lab,
    lb: Host,
    client: Host,
    ves: Vec<Host>,
    cfg: ConfigDir,
    state: tempfile::TempDir,
    socket: PathBuf,
    backends: BTreeMap<String, Process>,
}

const VIP: &str = "10.71.0.100";

impl Site {
    /// `vs` is the `[[virtual_server]]` table(s) of host.toml.
    fn new(test: &str, ves: usize, vs: &str) -> Result<Site> {
        let lab = Lab::new(test)?;
        let lb = lab.host("lb")?;
        let client = lab.host("c")?;
        lab.link(&client, "eth0", &lb, "eth0")?;
        client.add_address("eth0", "10.71.0.2/24")?;
        let cfg = ConfigDir::new()?;
        let mut hosts = Vec::new();
        for i in 1..=ves {
            let ve = lab.host(&format!("ve{i}"))?;
            cfg.ve(
                i as u32,
                &format!(
                    r#"id = {i}
netns = "{ns}"
[[netif]]
name = "eth0"
bridge = "brv"
addresses = ["10.71.1.{a}/24"]
gateway = "10.71.1.1"
"#,
                    ns = ve.name(),
                    a = 10 + i
                ),
            )?;
            hosts.push(ve);
        }
        Site::write_host(&cfg, vs)?;
        let state = tempfile::tempdir()?;
        let socket = state.path().join("vznetd.sock");
        Ok(Site {
            _lab: lab,
            lb,
            client,
            ves: hosts,
            cfg,
            state,
            socket,
            backends: BTreeMap::new(),
        })
    }

    fn write_host(cfg: &ConfigDir, vs: &str) -> Result<()> {
        cfg.host(&format!(
            r#"[sysctl]
"net.ipv4.ip_forward" = 1

[[bridge]]
name = "brc"
ports = ["eth0"]
addresses = ["10.71.0.1/24", "{VIP}/32"]

[[bridge]]
name = "brv"
addresses = ["10.71.1.1/24"]

{vs}
"#
        ))
    }

    fn start_agent(&self) -> Result<Process> {
        spawn_vznetd(
            &self.lb,
            &self.cfg,
            &self.state.path().join("state"),
            &self.socket,
            &["--interval", "5s", "--metrics", "127.0.0.1:9633"],
        )
    }

    /// Starts VE `i`'s backend (1-based) on `port`, named `ve<i>`.
    fn start_backend(&mut self, i: usize, port: u16) -> Result<()> {
        let name = format!("ve{i}");
        let down = self.down_file(i);
        let p = self.ves[i - 1].spawn([
            LB_BACKEND.to_string(),
            name.clone(),
            format!("0.0.0.0:{port}"),
            down.display().to_string(),
        ])?;
        self.backends.insert(format!("{name}:{port}"), p);
        Ok(())
    }

    /// Starts a backend on `port` in every VE and the agent, and waits until
    /// every backend is up and the VIP answers.
    fn serve(&mut self, port: u16) -> Result<Process> {
        for i in 1..=self.ves.len() {
            self.start_backend(i, port)?;
        }
        let agent = self.start_agent()?;
        ensure!(
            self.wait_all("up"),
            "backends never came up: {}",
            self.status()?
        );
        wait_serving(self, port)?;
        Ok(agent)
    }

    fn kill_backend(&mut self, i: usize, port: u16) -> Result<()> {
        if let Some(p) = self.backends.remove(&format!("ve{i}:{port}")) {
            p.kill()?;
        }
        Ok(())
    }

    fn down_file(&self, i: usize) -> PathBuf {
        self.state.path().join(format!("ve{i}.down"))
    }

    fn status(&self) -> Result<serde_json::Value> {
        let socket = self.socket.display().to_string();
        let out = vznet_ok(
            &self.lb,
            &self.cfg,
            &["status", "--json", "--socket", &socket],
        )?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Waits until every backend of every virtual server is in `state`.
    fn wait_all(&self, state: &str) -> bool {
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            self.status().is_ok_and(|s| {
                s["virtual_servers"].as_array().is_some_and(|vss| {
                    !vss.is_empty()
                        && vss.iter().all(|vs| {
                            vs["backends"]
                                .as_array()
                                .is_some_and(|b| b.iter().all(|b| b["state"] == state))
                        })
                })
            })
        })
    }

    fn vip(&self, port: u16) -> SocketAddr {
        SocketAddr::new(VIP.parse().expect("VIP"), port)
    }

    /// `n` new connections to the VIP from the client: backend name -> count,
    /// failures under "".
    fn spread(&self, port: u16, n: usize) -> Result<BTreeMap<String, usize>> {
        let addr = self.vip(port);
        lab::in_netns(&self.client.netns_path(), move || {
            let mut counts = BTreeMap::new();
            for _ in 0..n {
                let name = lab::ask_name(addr, TIMEOUT).unwrap_or_default();
                *counts.entry(name).or_insert(0) += 1;
            }
            Ok(counts)
        })
    }
}

fn wait_serving(site: &Site, port: u16) -> Result<()> {
    let addr = site.vip(port);
    let ns = site.client.netns_path();
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            lab::in_netns(&ns, move || lab::ask_name(addr, TIMEOUT)).is_ok()
        }),
        "the VIP never answered"
    );
    Ok(())
}

#[test]
fn connections_follow_weights_and_a_dead_backend_leaves_and_returns() -> Result<()> {
    let mut site = Site::new(
        "lb_weights",
        3,
        r#"[[virtual_server]]
vip = "10.71.0.100"
port = 80
scheduler = "weighted-random"
check = { kind = "tcp", interval_ms = 200, timeout_ms = 100, fall = 3, rise = 2 }
backends = [ { ve = 1, weight = 1 }, { ve = 2, weight = 1 }, { ve = 3, weight = 2 } ]
"#,
    )?;
    let _agent = site.serve(80)?;

    // Distribution: within 10% of the weights over 3000 connections.
    let counts = site.spread(80, 3000)?;
    eprintln!("3000 connections: {counts:?}");
    ensure!(!counts.contains_key(""), "failed connections: {counts:?}");
    for (name, share) in [("ve1", 0.25), ("ve2", 0.25), ("ve3", 0.5)] {
        let got = counts.get(name).copied().unwrap_or(0) as f64;
        let want = 3000.0 * share;
        ensure!(
            (got - want).abs() <= want * 0.10,
            "{name}: {got} connections, want {want} +/- 10%: {counts:?}"
        );
    }

    // A client connecting every 10 ms while ve3's server dies, then returns.
    let stop = Arc::new(AtomicBool::new(false));
    let addr = site.vip(80);
    let ns = site.client.netns_path();
    let flag = stop.clone();
    let client = std::thread::spawn(move || {
        lab::in_netns(&ns, move || {
            let mut log = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                log.push((t, lab::ask_name(addr, TIMEOUT).ok()));
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(log)
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    site.kill_backend(3, 80)?;
    std::thread::sleep(Duration::from_millis(2500));
    let restarted = Instant::now();
    site.start_backend(3, 80)?;
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    let log = client
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))??;

    // interval x fall + timeout, plus scheduling slack for a loaded machine.
    let window = Duration::from_millis(200 * 3 + 100);
    let slack = Duration::from_millis(300);
    let last_failure = log
        .iter()
        .filter(|(t, r)| *t >= killed && r.is_none())
        .map(|(t, _)| *t - killed)
        .max();
    eprintln!("last failed connection {last_failure:?} after the kill (window {window:?})");
    ensure!(
        last_failure.is_some(),
        "no connection failed after the kill: the test did not reach the dead backend"
    );
    ensure!(
        last_failure.is_some_and(|d| d <= window + slack),
        "connections still failed {last_failure:?} after the kill (window {window:?})"
    );
    let dead_after = log
        .iter()
        .filter(|(t, _)| *t > killed + window + slack && *t < restarted)
        .filter(|(_, r)| r.as_deref() == Some("ve3") || r.is_none())
        .count();
    ensure!(
        dead_after == 0,
        "{dead_after} connections went to ve3 while it was out"
    );
    let back = log
        .iter()
        .find(|(t, r)| *t >= restarted && r.as_deref() == Some("ve3"))
        .map(|(t, _)| *t - restarted);
    eprintln!("ve3 back after {back:?}");
    ensure!(
        back.is_some_and(|d| d <= Duration::from_millis(200 * 2 + 100) + Duration::from_millis(500)),
        "ve3 did not get connections back within rise x interval: {back:?}"
    );
    let failed_after_restart = log
        .iter()
        .filter(|(t, r)| *t >= restarted && r.is_none())
        .count();
    ensure!(
        failed_after_restart == 0,
        "{failed_after_restart} failures after the restart"
    );
    let st = site.status()?;
    ensure!(
        st["virtual_servers"][0]["backends"][2]["transitions"].as_u64() == Some(2),
        "ve3 should have gone down and up once: {st}"
    );
    let metrics = lab::in_netns(&site.lb.netns_path(), || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect("127.0.0.1:9633")?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })?;
    for want in [
        "vznet_lb_backend_up{service=\"10.71.0.100:80/tcp\",backend=\"10.71.1.13:80\"} 1",
        "vznet_lb_backend_weight{service=\"10.71.0.100:80/tcp\",backend=\"10.71.1.13:80\"} 2",
        "vznet_lb_below_quorum{service=\"10.71.0.100:80/tcp\"} 0",
    ] {
        ensure!(metrics.contains(want), "{want} not in metrics:\n{metrics}");
    }
    Ok(())
}

#[test]
fn a_kept_open_connection_survives_100_backend_set_changes() -> Result<()> {
    let vs = |extra: &str| {
        format!(
            r#"[[virtual_server]]
vip = "10.71.0.100"
port = 80
check = {{ kind = "tcp", interval_ms = 200, timeout_ms = 100, fall = 3, rise = 2 }}
backends = [ {{ ve = 1 }}, {{ ve = 2 }}, {{ ve = 3 }}{extra} ]
"#
        )
    };
    let mut site = Site::new("lb_keepalive", 3, &vs(""))?;
    let _agent = site.serve(80)?;

    let addr = site.vip(80);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (answers_tx, answers) = std::sync::mpsc::channel::<Result<String>>();
    let ns = site.client.netns_path();
    let conn = std::thread::spawn(move || {
        lab::in_netns(&ns, move || {
            let mut ka = lab::KeepAlive::connect(addr, TIMEOUT)?;
            let _ = answers_tx.send(ka.ask());
            while rx.recv().is_ok() {
                let _ = answers_tx.send(ka.ask());
            }
            Ok(())
        })
    });
    let first = answers.recv_timeout(TIMEOUT)??;
    let socket = site.socket.display().to_string();
    for change in 0..100 {
        // Add or remove a fourth backend, and shift the weights of the others.
        let extra = if change % 2 == 0 {
            format!(r#", {{ address = "10.71.1.{}" }}"#, 100 + change)
        } else {
            String::new()
        };
        Site::write_host(&site.cfg, &vs(&extra))?;
        vznet_ok(&site.lb, &site.cfg, &["apply", "--socket", &socket])
            .with_context(|| format!("change {change}"))?;
        tx.send(())?;
        let now = answers.recv_timeout(TIMEOUT)??;
        ensure!(
            now == first,
            "change {change}: the connection moved from {first} to {now}"
        );
    }
    drop(tx);
    conn.join()
        .map_err(|_| anyhow::anyhow!("client panicked"))??;
    let st = site.status()?;
    ensure!(
        st["virtual_servers"][0]["commits"].as_u64().unwrap_or(0) >= 100,
        "100 changes should be 100 commits: {st}"
    );
    Ok(())
}

#[test]
fn source_hash_keeps_a_client_on_one_backend() -> Result<()> {
    let mut site = Site::new(
        "lb_srchash",
        3,
        r#"[[virtual_server]]
vip = "10.71.0.100"
port = 80
scheduler = "source-hash"
hash_seed = 1234
backends = [ { ve = 1 }, { ve = 2 }, { ve = 3 } ]
"#,
    )?;
    let _agent = site.serve(80)?;
    let counts = site.spread(80, 200)?;
    ensure!(counts.len() == 1 && !counts.contains_key(""), "{counts:?}");
    // A second client address: still sticky, to whichever backend it hashes to.
    site.client.add_address("eth0", "10.71.0.3/24")?;
    let addr = site.vip(80);
    let counts: BTreeMap<String, usize> = lab::in_netns(&site.client.netns_path(), move || {
        let mut counts = BTreeMap::new();
        for _ in 0..100 {
            let s = socket2_connect_from("10.71.0.3", addr)?;
            *counts.entry(s).or_insert(0) += 1;
        }
        Ok(counts)
    })?;
    ensure!(counts.len() == 1 && !counts.contains_key(""), "{counts:?}");
    Ok(())
}

/// Asks the backend's name over a connection bound to `source`.
fn socket2_connect_from(source: &str, addr: SocketAddr) -> Result<String> {
    use std::io::{Read, Write};
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let src: std::net::SocketAddrV4 = format!("{source}:0").parse()?;
    nix::sys::socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        &nix::sys::socket::SockaddrIn::from(src),
    )?;
    let SocketAddr::V4(dst) = addr else {
        anyhow::bail!("IPv4 only")
    };
    nix::sys::socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        &nix::sys::socket::SockaddrIn::from(dst),
    )?;
    let mut s = std::net::TcpStream::from(sock);
    s.set_read_timeout(Some(TIMEOUT))?;
    s.write_all(b"who\n")?;
    let mut out = String::new();
    let mut buf = [0u8; 64];
    while !out.contains('\n') {
        let n = s.read(&mut buf)?;
        ensure!(n > 0, "closed");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Ok(out.trim().to_string())
}

#[test]
fn a_failed_backend_is_drained_or_reset_by_config() -> Result<()> {
    let mut site = Site::new(
        "lb_drain",
        1,
        r#"[[virtual_server]]
vip = "10.71.0.100"
port = 80
check = { kind = "http", path = "/health", interval_ms = 100, timeout_ms = 100, fall = 2, rise = 1 }
backends = [ { ve = 1 } ]

[[virtual_server]]
vip = "10.71.0.100"
port = 81
on_backend_failure = "reset"
check = { kind = "http", path = "/health", interval_ms = 100, timeout_ms = 100, fall = 2, rise = 1 }
backends = [ { ve = 1 } ]
"#,
    )?;
    site.start_backend(1, 80)?;
    site.start_backend(1, 81)?;
    let _agent = site.start_agent()?;
    ensure!(site.wait_all("up"), "backends never came up");
    wait_serving(&site, 80)?;
    wait_serving(&site, 81)?;
    let ns = site.client.netns_path();
    let (a80, a81) = (site.vip(80), site.vip(81));
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let conns = std::thread::spawn(move || {
        lab::in_netns(&ns, move || {
            let mut drain = lab::KeepAlive::connect(a80, TIMEOUT)?;
            let mut reset = lab::KeepAlive::connect(a81, TIMEOUT)?;
            ensure!(drain.ask()? == "ve1" && reset.ask()? == "ve1");
            done_tx.send(())?;
            go_rx.recv()?;
            Ok((drain.ask().ok(), reset.ask().ok()))
        })
    });
    done_rx.recv_timeout(TIMEOUT)?;
    // The health page turns 503: both virtual servers take ve1 out.
    std::fs::write(site.down_file(1), b"")?;
    ensure!(
        site.wait_all("down"),
        "ve1 never went down: {}",
        site.status()?
    );
    go_tx.send(())?;
    let (drained, reset) = conns
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))??;
    ensure!(
        drained.as_deref() == Some("ve1"),
        "drain: the open connection should still work, got {drained:?}"
    );
    ensure!(
        reset.is_none(),
        "reset: the open connection should be reset, got {reset:?}"
    );
    // Back up: the health page answers 200 again.
    std::fs::remove_file(site.down_file(1))?;
    ensure!(site.wait_all("up"), "ve1 never came back");
    Ok(())
}

#[test]
fn round_robin_walks_the_slot_table_exactly() -> Result<()> {
    let mut site = Site::new(
        "lb_rr",
        3,
        r#"[[virtual_server]]
vip = "10.71.0.100"
port = 80
scheduler = "round-robin"
backends = [ { ve = 1 }, { ve = 2, weight = 2 }, { ve = 3 } ]
"#,
    )?;
    let _agent = site.serve(80)?;
    let st = site.status()?;
    let slots = st["virtual_servers"][0]["slots"].as_u64().unwrap_or(0) as usize;
    ensure!(slots > 0, "{st}");
    // Any `slots` consecutive connections visit every slot once.
    let counts = site.spread(80, slots)?;
    for (i, b) in st["virtual_servers"][0]["backends"]
        .as_array()
        .context("backends")?
        .iter()
        .enumerate()
    {
        let want = b["slots"].as_u64().unwrap_or(0) as usize;
        let got = counts.get(&format!("ve{}", i + 1)).copied().unwrap_or(0);
        ensure!(
            got == want,
            "ve{}: {got} connections, holds {want} slots: {counts:?}",
            i + 1
        );
    }
    Ok(())
}

#[test]
fn below_quorum_new_connections_go_to_the_sorry_server() -> Result<()> {
    let mut site = Site::new(
        "lb_sorry",
        3,
        r#"[[virtual_server]]
vip = "10.71.0.100"
port = 80
quorum = 2
sorry_server = { address = "10.71.1.13" }
check = { kind = "tcp", interval_ms = 100, timeout_ms = 100, fall = 1, rise = 1 }
backends = [ { ve = 1 }, { ve = 2 } ]
"#,
    )?;
    let _agent = site.serve(80)?;
    let counts = site.spread(80, 100)?;
    ensure!(
        !counts.contains_key("ve3") && !counts.contains_key(""),
        "{counts:?}"
    );
    site.kill_backend(2, 80)?;
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            site.status()
                .is_ok_and(|s| s["virtual_servers"][0]["below_quorum"] == true)
        }),
        "never went below quorum: {}",
        site.status()?
    );
    let counts = site.spread(80, 50)?;
    ensure!(counts.get("ve3") == Some(&50), "{counts:?}");
    Ok(())
}

/// Two LB hosts hold the VIP by VRRP (vznetd runs both); backends sit on a
/// second segment and are reached with masquerade, so either host can serve.
#[test]
fn sigkill_of_the_vrrp_master_moves_the_service_to_the_backup() -> Result<()> {
    let lab = Lab::new("lb_vrrp")?;
    let lan = lab.switch("lan")?;
    let back = lab.switch("back")?;
    let client = lab.host("c")?;
    lab.link(&client, "eth0", &lan, "pc")?;
    client.add_address("eth0", "10.72.0.9/24")?;
    let mut servers = Vec::new();
    for i in 1..=2 {
        let b = lab.host(&format!("b{i}"))?;
        lab.link(&b, "eth0", &back, &format!("pb{i}"))?;
        b.add_address("eth0", format!("10.72.1.1{i}/24"))?;
        servers.push(b.spawn([LB_BACKEND.to_string(), format!("b{i}"), "0.0.0.0:80".into()])?);
    }
    let mut routers = Vec::new();
    for (n, prio) in [(1u8, 150u8), (2, 100)] {
        let h = lab.host(&format!("r{n}"))?;
        lab.link(&h, "eth0", &lan, &format!("pr{n}"))?;
        lab.link(&h, "eth1", &back, &format!("qr{n}"))?;
        let cfg = ConfigDir::new()?;
        cfg.host(&format!(
            r#"[sysctl]
"net.ipv4.ip_forward" = 1

[[bridge]]
name = "brc"
ports = ["eth0"]
addresses = ["10.72.0.{n}/24"]

[[bridge]]
name = "brv"
ports = ["eth1"]
addresses = ["10.72.1.{n}/24"]

[[vrrp]]
name = "VI_LB"
interface = "brc"
vrid = 52
priority = {prio}
advert_interval_ms = 100
virtual_ips = ["10.72.0.100/24"]

[[virtual_server]]
vip = "10.72.0.100"
port = 80
masquerade = true
check = {{ kind = "tcp", interval_ms = 200, timeout_ms = 100, fall = 3, rise = 2 }}
backends = [ {{ address = "10.72.1.11" }}, {{ address = "10.72.1.12" }} ]
"#
        ))?;
        let state = tempfile::tempdir()?;
        let socket = state.path().join("vznetd.sock");
        let agent = spawn_vznetd(&h, &cfg, &state.path().join("s"), &socket, &[])?;
        routers.push((h, cfg, state, agent));
    }
    let vip: SocketAddr = "10.72.0.100:80".parse()?;
    let has_vip = |h: &Host| {
        h.addresses("brc")
            .is_ok_and(|a| a.iter().any(|x| x.addr.to_string() == "10.72.0.100"))
    };
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            has_vip(&routers[0].0)
        }),
        "r1 never became master"
    );
    let ns = client.netns_path();
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            lab::in_netns(&ns, move || lab::ask_name(vip, TIMEOUT)).is_ok()
        }),
        "the service never answered through r1"
    );
    // Same bridge name on both hosts, different MACs (derived from each host's
    // machine-id): identical ones would break the shared segment.
    let mac = |h: &Host| h.link("brc").map(|l| l.mac.clone());
    ensure!(
        mac(&routers[0].0)? != mac(&routers[1].0)?,
        "both routers' brc have the same MAC"
    );
    // The host dies: its agent is killed and its LAN port goes dark.
    let killed = Instant::now();
    routers[0].3.kill()?;
    routers[0].0.ip(["link", "set", "eth0", "down"])?;
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            has_vip(&routers[1].0)
        }),
        "r2 never took the VIP"
    );
    let ns = client.netns_path();
    let answered = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let ns = ns.clone();
        lab::in_netns(&ns, move || lab::ask_name(vip, Duration::from_millis(300))).is_ok()
    });
    ensure!(answered, "the service did not answer through r2");
    eprintln!(
        "service back through r2 {:?} after the kill",
        killed.elapsed()
    );
    let counts: BTreeMap<String, usize> = lab::in_netns(&client.netns_path(), move || {
        let mut c = BTreeMap::new();
        for _ in 0..100 {
            *c.entry(lab::ask_name(vip, TIMEOUT).unwrap_or_default())
                .or_insert(0) += 1;
        }
        Ok(c)
    })?;
    ensure!(
        !counts.contains_key("") && counts.len() == 2,
        "after failover every connection should succeed on both backends: {counts:?}"
    );
    drop(servers);
    Ok(())
}
