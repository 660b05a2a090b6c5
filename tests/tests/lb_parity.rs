//! keepalived parity of the load balancer, end to end with real traffic in
//! lab namespaces: client persistence, weighted least connection, direct
//! routing, TLS checks (certificate, digest, status ranges) with notify hooks,
//! UDP and IPv6 virtual servers, and multi-address virtual servers.
//!
//! Topology of the NAT tests: client `c` -- `eth0` LB `eth1` -- switch -- `b1..bN`,
//! IPv4 and IPv6, backends routing through the LB; vznetd on the LB.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{spawn_vznetd, vznet_ok, ConfigDir};
use lab::{wait_until, Host, Lab, Process};

const LB_BACKEND: &str = env!("CARGO_BIN_EXE_lb-backend");
const TIMEOUT: Duration = Duration::from_secs(2);

/// Client, LB and backends; `net` is the third octet of 10.N.x.y and the
/// `fd00:N::` prefix, unique per test.
struct Routed {
    _lab: Lab,
    lb: Host,
    client: Host,
    backends: Vec<Host>,
    cfg: ConfigDir,
    state: tempfile::TempDir,
    socket: PathBuf,
    servers: BTreeMap<String, Process>,
    net: u8,
}

impl Routed {
    fn new(test: &str, net: u8, backends: usize) -> Result<Routed> {
        let lab = Lab::new(test)?;
        let lb = lab.host("lb")?;
        let client = lab.host("c")?;
        lab.link(&client, "eth0", &lb, "eth0")?;
        let sw = lab.switch("s")?;
        lab.link(&lb, "eth1", &sw, "plb")?;
        for (h, dev, v4, v6) in [
            (
                &client,
                "eth0",
                format!("10.{net}.0.2/24"),
                format!("fd00:{net}::2/64"),
            ),
            (
                &lb,
                "eth0",
                format!("10.{net}.0.1/24"),
                format!("fd00:{net}::1/64"),
            ),
            (
                &lb,
                "eth1",
                format!("10.{net}.1.1/24"),
                format!("fd00:{net}:1::1/64"),
            ),
        ] {
            h.add_address(dev, v4)?;
            h.ip(["addr", "add", &v6, "dev", dev, "nodad"])?;
        }
        // The VIPs: local to the LB, routed to it by the client.
        lb.ip(["addr", "add", &format!("10.{net}.0.100/32"), "dev", "eth0"])?;
        lb.ip([
            "addr",
            "add",
            &format!("fd00:{net}::100/128"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        let mut hosts = Vec::new();
        for i in 1..=backends {
            let b = lab.host(&format!("b{i}"))?;
            lab.link(&b, "eth0", &sw, &format!("p{i}"))?;
            b.add_address("eth0", format!("10.{net}.1.{}/24", 10 + i))?;
            b.ip([
                "addr",
                "add",
                &format!("fd00:{net}:1::{}/64", 10 + i),
                "dev",
                "eth0",
                "nodad",
            ])?;
            b.ip(["route", "add", "default", "via", &format!("10.{net}.1.1")])?;
            b.ip([
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("fd00:{net}:1::1"),
            ])?;
            hosts.push(b);
        }
        let state = tempfile::tempdir()?;
        let socket = state.path().join("vznetd.sock");
        Ok(Routed {
            _lab: lab,
            lb,
            client,
            backends: hosts,
            cfg: ConfigDir::new()?,
            state,
            socket,
            servers: BTreeMap::new(),
            net,
        })
    }

    fn v4(&self, host: &str) -> String {
        format!("10.{}.{host}", self.net)
    }

    /// Writes host.toml with these `[[virtual_server]]`s and starts vznetd.
    fn start_agent(&self, virtual_servers: &str) -> Result<Process> {
        self.cfg.host(&format!(
            "[sysctl]\n\"net.ipv4.ip_forward\" = 1\n\"net.ipv6.conf.all.forwarding\" = 1\n\n{virtual_servers}\n"
        ))?;
        spawn_vznetd(
            &self.lb,
            &self.cfg,
            &self.state.path().join("state"),
            &self.socket,
            &["--interval", "5s"],
        )
    }

    /// `lb-backend bI ADDR:PORT` in backend `i` (1-based).
    fn serve_tcp(&mut self, i: usize, listen: &str) -> Result<()> {
        let p = self.backends[i - 1].spawn([
            LB_BACKEND.to_string(),
            format!("b{i}"),
            listen.to_string(),
        ])?;
        self.servers.insert(format!("b{i} {listen}"), p);
        // Listening before anyone checks it.
        let local: SocketAddr = listen
            .replace("0.0.0.0:", "127.0.0.1:")
            .replace("[::]:", "[::1]:")
            .parse()?;
        let ns = self.backends[i - 1].netns_path();
        ensure!(
            wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                lab::in_netns(&ns, move || lab::ask_name(local, TIMEOUT)).is_ok()
            }),
            "b{i} never listened on {listen}"
        );
        Ok(())
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

    /// Waits until every backend of every virtual server is `state` and,
    /// when checked, has passed a check (a backend is trusted until its
    /// first checks fail: its server may still be starting).
    fn wait_all(&self, state: &str) -> Result<()> {
        let settled = |b: &serde_json::Value| {
            b["state"] == state
                && (b["checks_ok"].as_u64() >= Some(2)
                    || b["checks_ok"].as_u64() == Some(0) && b["checks_failed"].as_u64() == Some(0))
        };
        let ok = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            self.status().is_ok_and(|s| {
                s["virtual_servers"].as_array().is_some_and(|v| {
                    !v.is_empty()
                        && v.iter().all(|vs| {
                            vs["backends"]
                                .as_array()
                                .is_some_and(|b| b.iter().all(settled))
                        })
                })
            })
        });
        ensure!(ok, "backends never all {state}: {}", self.status()?);
        Ok(())
    }

    /// `n` new connections from the client to `addr`: backend -> count.
    fn spread(&self, addr: SocketAddr, n: usize) -> Result<BTreeMap<String, usize>> {
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

fn wait_answer(client: &Host, addr: SocketAddr) -> Result<()> {
    let ns = client.netns_path();
    ensure!(
        wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            lab::in_netns(&ns, move || lab::ask_name(addr, TIMEOUT)).is_ok()
        }),
        "{addr} never answered"
    );
    Ok(())
}

/// Runs `serve` on a thread inside `netns` for the rest of the test process.
fn serve_in(netns: &Path, serve: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    let ns = std::fs::File::open(netns)?;
    std::thread::spawn(move || -> Result<()> {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        serve()
    });
    Ok(())
}

/// A UDP server answering every datagram with `name`.
fn serve_udp(host: &Host, name: &str, listen: &str) -> Result<()> {
    let (name, listen) = (name.to_string(), listen.to_string());
    let (ready_tx, ready) = std::sync::mpsc::channel();
    serve_in(&host.netns_path(), move || {
        let sock = UdpSocket::bind(&listen)?;
        ready_tx.send(())?;
        let mut buf = [0u8; 512];
        loop {
            let (_, from) = sock.recv_from(&mut buf)?;
            sock.send_to(name.as_bytes(), from)?;
        }
    })?;
    ready
        .recv_timeout(TIMEOUT)
        .context("UDP server never started")
}

/// One datagram to `addr` from a fresh socket (a fresh source port): who answered.
fn ask_udp(addr: SocketAddr) -> Result<String> {
    let any: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()?;
    let sock = UdpSocket::bind(any)?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    sock.send_to(b"who", addr)?;
    let mut buf = [0u8; 64];
    let (n, _) = sock.recv_from(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn persistence_keeps_a_client_on_its_backend_until_it_idles_past_the_timeout() -> Result<()> {
    let mut site = Routed::new("lb_persist", 74, 3)?;
    for i in 1..=3 {
        site.serve_tcp(i, "0.0.0.0:80")?;
    }
    let vip: SocketAddr = format!("{}:80", site.v4("0.100")).parse()?;
    let backends = (1..=3)
        .map(|i| format!("{{ address = \"{}\" }}", site.v4(&format!("1.{}", 10 + i))))
        .collect::<Vec<_>>()
        .join(", ");
    let _agent = site.start_agent(&format!(
        "[[virtual_server]]\nvip = \"{}\"\nport = 80\n{}\n\
         check = {{ kind = \"tcp\", interval_ms = 300, timeout_ms = 1000 }}\nbackends = [ {backends} ]\n",
        site.v4("0.100"),
        "persistence_timeout_ms = 2000"
    ))?;
    site.wait_all("up")?;
    wait_answer(&site.client, vip)?;
    // 100 connections from one client: one backend, whatever the random pick
    // would have said.
    let counts = site.spread(vip, 100)?;
    ensure!(
        counts.len() == 1 && !counts.contains_key(""),
        "{counts:?}\n{}\n{}\n{}",
        site.status()?,
        _agent.stderr().unwrap_or_default(),
        site.lb.run(["nft", "list", "ruleset"])?
    );
    let first = counts.keys().next().cloned().unwrap_or_default();
    // Idle 1.2 s (under the timeout), twice: still the same backend.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1200));
        let again = site.spread(vip, 5)?;
        ensure!(
            again.get(&first) == Some(&5),
            "moved after a short idle: {again:?}"
        );
    }
    // Another client address is a separate client (random picks among three).
    site.client.ip([
        "addr",
        "add",
        &format!("{}/24", site.v4("0.3")),
        "dev",
        "eth0",
    ])?;
    // Idle past the timeout: the entry is gone, the next pick is fresh.
    std::thread::sleep(Duration::from_millis(2600));
    let map = site.lb.run(["nft", "list", "table", "inet", "vznet_lb"])?;
    ensure!(
        !map.contains(&site.v4("0.2")),
        "the client's persistence entry outlived the timeout:\n{map}"
    );
    // Fresh picks land anywhere: over a few expiries the client moves.
    let mut seen = std::collections::BTreeSet::from([first]);
    for _ in 0..6 {
        let c = site.spread(vip, 1)?;
        seen.extend(c.into_keys());
        if seen.len() > 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2300));
    }
    ensure!(
        seen.len() > 1,
        "the client never moved after its entry expired: {seen:?}"
    );
    Ok(())
}

#[test]
fn wlc_sends_new_connections_to_the_backend_with_fewer_open_ones() -> Result<()> {
    let mut site = Routed::new("lb_wlc", 75, 2)?;
    for i in 1..=2 {
        site.serve_tcp(i, "0.0.0.0:80")?;
    }
    let vip: SocketAddr = format!("{}:80", site.v4("0.100")).parse()?;
    let _agent = site.start_agent(&format!(
        "[[virtual_server]]\nvip = \"{}\"\nport = 80\nscheduler = \"wlc\"\n\
         backends = [ {{ address = \"{}\" }}, {{ address = \"{}\" }} ]\n",
        site.v4("0.100"),
        site.v4("1.11"),
        site.v4("1.12")
    ))?;
    wait_answer(&site.client, vip)?;
    let ns = site.client.netns_path();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel::<Result<BTreeMap<String, usize>>>();
    // Keep 12 connections open on b1 (opening more and closing b2's).
    let holder = std::thread::spawn(move || {
        lab::in_netns(&ns, move || {
            let mut kept = Vec::new();
            let mut tries = 0;
            while kept.len() < 12 && tries < 500 {
                tries += 1;
                let mut ka = lab::KeepAlive::connect(vip, TIMEOUT)?;
                if ka.ask()? == "b1" {
                    kept.push(ka);
                }
            }
            let _ = tx.send(Ok(BTreeMap::from([("b1".to_string(), kept.len())])));
            let _ = go_rx.recv();
            drop(kept);
            Ok(())
        })
    });
    let held = rx.recv_timeout(Duration::from_secs(30))??;
    ensure!(
        held.get("b1") == Some(&12),
        "could not hold 12 on b1: {held:?}"
    );
    // A few samples (100 ms each) see b1's load.
    ensure!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            site.status().is_ok_and(|s| {
                s["virtual_servers"][0]["backends"][0]["connections"].as_u64() >= Some(12)
            })
        }),
        "conntrack counts never showed b1's connections: {}",
        site.status()?
    );
    std::thread::sleep(Duration::from_millis(300));
    // New connections, at an even pace: b2 has fewer open ones.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..10 {
        for (k, v) in site.spread(vip, 1)? {
            *counts.entry(k).or_default() += v;
        }
        std::thread::sleep(Duration::from_millis(120));
    }
    let _ = go_tx.send(());
    holder
        .join()
        .map_err(|_| anyhow::anyhow!("holder panicked"))??;
    eprintln!("with 12 open on b1 and none on b2, new connections went {counts:?}");
    ensure!(
        counts.get("b2").copied().unwrap_or(0) >= 9,
        "wlc should send new connections to b2: {counts:?}"
    );
    Ok(())
}

#[test]
fn udp_and_ipv6_virtual_servers_carry_real_traffic() -> Result<()> {
    let mut site = Routed::new("lb_udp6", 76, 2)?;
    for i in 1..=2 {
        site.serve_tcp(i, "[::]:80")?;
        serve_udp(&site.backends[i - 1], &format!("b{i}"), "[::]:53")?;
    }
    let net = site.net;
    let (b6_1, b6_2) = (format!("fd00:{net}:1::11"), format!("fd00:{net}:1::12"));
    let (b4_1, b4_2) = (site.v4("1.11"), site.v4("1.12"));
    let _agent = site.start_agent(&format!(
        r#"[[virtual_server]]
vip = "10.{net}.0.100"
port = 53
protocol = "udp"
backends = [ {{ address = "{b4_1}" }}, {{ address = "{b4_2}" }} ]

[[virtual_server]]
vip = "fd00:{net}::100"
port = 53
protocol = "udp"
scheduler = "round-robin"
backends = [ {{ address = "{b6_1}" }}, {{ address = "{b6_2}" }} ]

[[virtual_server]]
vip = "fd00:{net}::100"
port = 80
check = {{ kind = "tcp", interval_ms = 200, timeout_ms = 100 }}
backends = [ {{ address = "{b6_1}" }}, {{ address = "{b6_2}" }} ]

[[virtual_server]]
fwmark = 5
check = {{ kind = "tcp", port = 80, interval_ms = 200, timeout_ms = 100 }}
backends = [ {{ address = "{b4_1}" }}, {{ address = "{b4_2}" }} ]

[[virtual_server]]
members = [ {{ vip = "10.{net}.0.100", port = 8080 }}, {{ vip = "10.{net}.0.100", port = 8081 }} ]
check = {{ kind = "tcp", port = 80, interval_ms = 200, timeout_ms = 100 }}
backends = [ {{ address = "{b4_1}" }}, {{ address = "{b4_2}" }} ]
"#
    ))?;
    for i in 1..=2 {
        site.serve_tcp(i, "0.0.0.0:8080")?;
        site.serve_tcp(i, "0.0.0.0:8081")?;
        site.serve_tcp(i, "0.0.0.0:9090")?;
    }
    // The user's own rule marks what the fwmark virtual server takes (before
    // DNAT, at mangle priority, as with IPVS).
    site.lb.run([
        "nft",
        "add table ip mark_test ; \
         add chain ip mark_test pre { type filter hook prerouting priority mangle ; } ; \
         add rule ip mark_test pre ip daddr 10.76.0.100 tcp dport 9090 meta mark set 5",
    ])?;
    site.wait_all("up")?;
    let tcp6: SocketAddr = format!("[fd00:{net}::100]:80").parse()?;
    wait_answer(&site.client, tcp6)?;
    let counts = site.spread(tcp6, 100)?;
    ensure!(
        counts.len() == 2 && !counts.contains_key(""),
        "TCP over IPv6 through the VIP: {counts:?}"
    );
    for port in [8080, 8081, 9090] {
        let member: SocketAddr = format!("10.{net}.0.100:{port}").parse()?;
        let counts = site.spread(member, 40)?;
        ensure!(
            counts.len() == 2 && !counts.contains_key(""),
            "port {port} (members, or marked; the client's port kept): {counts:?}"
        );
    }
    for vip in [
        format!("10.{net}.0.100:53"),
        format!("[fd00:{net}::100]:53"),
    ] {
        let addr: SocketAddr = vip.parse()?;
        let counts: BTreeMap<String, usize> =
            lab::in_netns(&site.client.netns_path(), move || {
                let mut c = BTreeMap::new();
                for _ in 0..60 {
                    *c.entry(ask_udp(addr).unwrap_or_default()).or_insert(0) += 1;
                }
                Ok(c)
            })?;
        ensure!(
            counts.len() == 2 && !counts.contains_key(""),
            "UDP to {vip}: {counts:?}"
        );
    }
    Ok(())
}

/// Client, LB and backends on one segment; the backends hold the VIP on
/// their loopback and ignore ARP for it, the LB does not forward.
#[test]
fn direct_routing_delivers_unchanged_packets_and_backends_answer_directly() -> Result<()> {
    let lab = Lab::new("lb_dr")?;
    let sw = lab.switch("lan")?;
    let client = lab.host("c")?;
    let lb = lab.host("lb")?;
    lab.link(&client, "eth0", &sw, "pc")?;
    lab.link(&lb, "eth0", &sw, "plb")?;
    client.add_address("eth0", "10.77.0.2/24")?;
    lb.add_address("eth0", "10.77.0.1/24")?;
    lb.ip(["addr", "add", "10.77.0.100/32", "dev", "eth0"])?;
    let mut servers = Vec::new();
    let mut list = Vec::new();
    let mut hosts = Vec::new();
    for i in 1..=2 {
        let b = lab.host(&format!("b{i}"))?;
        lab.link(&b, "eth0", &sw, &format!("pb{i}"))?;
        b.add_address("eth0", format!("10.77.0.1{i}/24"))?;
        b.ip(["addr", "add", "10.77.0.100/32", "dev", "lo"])?;
        for (key, v) in [("arp_ignore", "1"), ("arp_announce", "2")] {
            b.run(["sysctl", "-qw", &format!("net.ipv4.conf.all.{key}={v}")])?;
            b.run(["sysctl", "-qw", &format!("net.ipv4.conf.eth0.{key}={v}")])?;
        }
        servers.push(b.spawn([LB_BACKEND.to_string(), format!("b{i}"), "0.0.0.0:80".into()])?);
        list.push(format!("{{ address = \"10.77.0.1{i}\" }}"));
        hosts.push(b);
    }
    let cfg = ConfigDir::new()?;
    cfg.host(&format!(
        "[sysctl]\n\"net.ipv4.ip_forward\" = 0\n\n[[virtual_server]]\nvip = \"10.77.0.100\"\nport = 80\n\
         lb_kind = \"dr\"\ncheck = {{ kind = \"tcp\", interval_ms = 100, timeout_ms = 100, fall = 2 }}\n\
         backends = [ {} ]\n",
        list.join(", ")
    ))?;
    let state = tempfile::tempdir()?;
    let socket = state.path().join("vznetd.sock");
    let _agent = spawn_vznetd(&lb, &cfg, &state.path().join("s"), &socket, &[])?;
    let vip: SocketAddr = "10.77.0.100:80".parse()?;
    wait_answer(&client, vip)?;
    let ask = |n: usize| {
        lab::in_netns(&client.netns_path(), move || {
            let mut c: BTreeMap<String, usize> = BTreeMap::new();
            for _ in 0..n {
                *c.entry(lab::ask_name(vip, TIMEOUT).unwrap_or_default())
                    .or_insert(0) += 1;
            }
            Ok(c)
        })
    };
    let counts = ask(100)?;
    ensure!(
        counts.len() == 2 && !counts.contains_key(""),
        "DR spread (the LB forwards nothing, so answers came from the backends): {counts:?}"
    );
    // The LB never saw the answers: no conntrack entry, no NAT for the VIP.
    let table = lb.run(["nft", "list", "table", "ip", "vznet_lb_dr"])?;
    ensure!(table.contains("dup to meta mark map @addr"), "{table}");
    // A kept-open connection stays on its backend across 50 exchanges.
    let same: Result<bool> = lab::in_netns(&client.netns_path(), move || {
        let mut ka = lab::KeepAlive::connect(vip, TIMEOUT)?;
        let first = ka.ask()?;
        for _ in 0..50 {
            if ka.ask()? != first {
                return Ok(false);
            }
        }
        Ok(true)
    });
    ensure!(same?, "a DR connection changed backends");
    // b2's server dies: new connections all go to b1.
    servers.pop().context("server")?.kill()?;
    let socket_s = socket.display().to_string();
    ensure!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            vznet_ok(&lb, &cfg, &["status", "--json", "--socket", &socket_s])
                .is_ok_and(|s| s.contains("\"down\""))
        }),
        "b2 never went down"
    );
    let counts = ask(40)?;
    ensure!(counts.get("b1") == Some(&40), "{counts:?}");
    Ok(())
}

/// A CA and a certificate for `backend.test` signed by it, in `dir`.
fn certificates(dir: &Path) -> Result<()> {
    let run = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("openssl (Debian's openssl package)")?;
        ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=vznet test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ])?;
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=backend.test",
        "-keyout",
        "b.key",
        "-out",
        "b.csr",
    ])?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:backend.test\nbasicConstraints=CA:FALSE\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "b.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "b.pem",
    ])
}

#[test]
fn tls_checks_verify_certificates_digests_and_status_ranges_and_run_hooks() -> Result<()> {
    let mut site = Routed::new("lb_tls", 78, 2)?;
    let pki = tempfile::tempdir()?;
    certificates(pki.path())?;
    let body = "healthy\n";
    // md5 of the body, as keepalived's genhash prints it (s_server -WWW
    // sends no Content-Length: the body is all that follows the header).
    let sum = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .map(|mut i| i.write_all(body.as_bytes()))
                .transpose()?;
            c.wait_with_output()
        })?;
    let digest = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .context("md5sum")?
        .to_string();
    let mut roots = Vec::new();
    for i in 1..=2 {
        let root = tempfile::tempdir()?;
        std::fs::write(root.path().join("health.txt"), body)?;
        let p = site.backends[i - 1].spawn([
            "/bin/sh".to_string(),
            "-c".into(),
            format!(
                "cd {} && exec openssl s_server -quiet -accept 443 -cert {} -key {} -WWW",
                root.path().display(),
                pki.path().join("b.pem").display(),
                pki.path().join("b.key").display()
            ),
        ])?;
        site.servers.insert(format!("tls{i}"), p);
        site.serve_tcp(i, "0.0.0.0:80")?;
        roots.push(root);
    }
    let log = site.state.path().join("hooks.log");
    let hook = |what: &str| {
        format!(
            "[\"/bin/sh\", \"-c\", \"echo {what} $VZNET_BACKEND_ADDRESS $VZNET_BACKEND_STATE $VZNET_QUORUM_STATE >> {}\"]",
            log.display()
        )
    };
    let ca = pki.path().join("ca.pem").display().to_string();
    let check = format!(
        "check = {{ kind = \"https\", port = 443, interval_ms = 200, timeout_ms = 1000, fall = 2, rise = 1, \
         tls_verify = true, tls_ca = \"{ca}\", virtualhost = \"backend.test\", \
         urls = [ {{ path = \"/health.txt\", digest = \"{digest}\" }}, {{ path = \"/other\", status = [\"300-399\", 200] }} ] }}"
    );
    let _agent = site.start_agent(&format!(
        "[[virtual_server]]\nvip = \"{vip}\"\nport = 80\nquorum = 2\nquorum_up = {qu}\nquorum_down = {qd}\n{check}\n\
         backends = [ {{ address = \"{b1}\", notify_up = {up}, notify_down = {down} }}, {{ address = \"{b2}\", notify_up = {up}, notify_down = {down} }} ]\n\n\
         [[virtual_server]]\nvip = \"{vip}\"\nport = 81\n\
         check = {{ kind = \"https\", port = 443, interval_ms = 200, timeout_ms = 1000, fall = 1, tls_verify = true, tls_ca = \"{ca}\", tls_server_name = \"other.test\" }}\n\
         backends = [ {{ address = \"{b1}\", port = 80 }} ]\n",
        vip = site.v4("0.100"),
        b1 = site.v4("1.11"),
        b2 = site.v4("1.12"),
        up = hook("backend"),
        down = hook("backend"),
        qu = hook("quorum"),
        qd = hook("quorum"),
    ))?;
    // The first virtual server's backends pass (certificate for backend.test,
    // digest, a 200 among "300-399" and 200); the second's fail on the name.
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        site.status().is_ok_and(|s| {
            s["virtual_servers"][0]["backends"]
                .as_array()
                .is_some_and(|b| {
                    b.iter()
                        .all(|b| b["state"] == "up" && b["checks_ok"].as_u64() >= Some(3))
                })
                && s["virtual_servers"][1]["backends"][0]["state"] == "down"
        })
    });
    ensure!(ok, "TLS checks: {}", site.status()?);
    let wrong_name = site.status()?["virtual_servers"][1]["backends"][0]["last_error"].to_string();
    ensure!(
        wrong_name.contains("TLS") || wrong_name.contains("certificate"),
        "{wrong_name}"
    );
    // b2's page changes: its digest no longer matches, it goes down, quorum
    // (2) is lost; the page comes back: up again, quorum regained.
    std::fs::write(roots[1].path().join("health.txt"), "changed\n")?;
    let down = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        site.status()
            .is_ok_and(|s| s["virtual_servers"][0]["backends"][1]["state"] == "down")
    });
    ensure!(down, "digest change not noticed: {}", site.status()?);
    let err = site.status()?["virtual_servers"][0]["backends"][1]["last_error"].to_string();
    ensure!(err.contains("digest"), "{err}");
    std::fs::write(roots[1].path().join("health.txt"), body)?;
    site.wait_all_of(0, "up")?;
    let b2 = site.v4("1.12");
    ensure!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            std::fs::read_to_string(&log).is_ok_and(|l| {
                l.contains(&format!("backend {b2} DOWN"))
                    && l.contains(&format!("backend {b2} UP"))
                    && l.contains("quorum DOWN")
                    && l.contains("quorum UP")
            })
        }),
        "hooks did not all run: {:?}",
        std::fs::read_to_string(&log)
    );
    Ok(())
}

impl Routed {
    /// Waits until every backend of virtual server `i` is `state`.
    fn wait_all_of(&self, i: usize, state: &str) -> Result<()> {
        let ok = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            self.status().is_ok_and(|s| {
                s["virtual_servers"][i]["backends"]
                    .as_array()
                    .is_some_and(|b| b.iter().all(|b| b["state"] == state))
            })
        });
        ensure!(
            ok,
            "virtual server {i} never all {state}: {}",
            self.status()?
        );
        Ok(())
    }
}
