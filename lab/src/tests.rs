//! Tests against the real kernel: they run as root and build real namespaces. Every lab is
//! dropped on the way out, failing or not, and traffic stays inside namespaces made here.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::{link, marker, netns, wait_until, Lab, Root, Switch};

/// Whether interface `name` exists in the root namespace, asked of the kernel itself.
fn root_link_exists(name: &str) -> bool {
    crate::command::ip(["link", "show", "dev", name]).is_ok()
}

fn pid_alive(pid: u32) -> bool {
    marker::process_start_time(pid).is_some()
}

#[test]
fn two_hosts_on_a_switch_ping_each_other() {
    let lab = Lab::new("two_hosts_on_a_switch_ping_each_other").expect("lab");
    let sw = lab.switch("sw").expect("switch");
    let a = lab.host("a").expect("host a");
    let b = lab.host("b").expect("host b");
    lab.link(&a, "eth0", &sw, "p1").expect("link a");
    lab.link(&b, "eth0", &sw, "p2").expect("link b");
    a.add_address("eth0", "10.0.0.1/24").expect("address a");
    b.add_address("eth0", "10.0.0.2/24").expect("address b");
    a.add_address("eth0", "fd00::1/64").expect("address a v6");
    b.add_address("eth0", "fd00::2/64").expect("address b v6");

    assert!(a.ping("10.0.0.2"), "a cannot ping b over IPv4");
    assert!(b.ping("10.0.0.1"), "b cannot ping a over IPv4");
    assert!(a.ping("fd00::2"), "a cannot ping b over IPv6");

    let port = sw.host().link("p1").expect("switch port");
    assert_eq!(port.master.as_deref(), Some(Switch::BRIDGE));
    assert!(port.is_up());
    let bridge = sw.host().link(sw.bridge()).expect("bridge");
    assert_eq!(bridge.kind.as_deref(), Some("bridge"));
    let names: Vec<String> = a
        .links()
        .expect("links")
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["lo", "eth0"]);
    let addrs: Vec<String> = a
        .addresses("eth0")
        .expect("addresses")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(addrs.contains(&"10.0.0.1/24".to_owned()), "{addrs:?}");
    assert!(a.addresses("nope").is_err());
}

#[test]
fn commands_report_their_failures() {
    let lab = Lab::new("commands_report_their_failures").expect("lab");
    let h = lab.host("h").expect("host");
    assert_eq!(h.run(["sh", "-c", "echo hi"]).expect("echo"), "hi\n");
    let out = h.exec(["sh", "-c", "exit 7"]).expect("exec starts");
    assert_eq!(out.status.code(), Some(7));
    let err = h
        .run(["sh", "-c", "echo broken >&2; exit 2"])
        .expect_err("exit 2 fails");
    let msg = format!("{err:#}");
    assert!(msg.contains(h.name()) && msg.contains("broken"), "{msg}");
    assert!(h.exec(Vec::<String>::new()).is_err(), "empty argv accepted");
    assert!(h.ip_json(["route", "show"]).is_ok());
    assert!(lab.host("h").is_err(), "a host name was reused");
    assert!(lab.host("bad/name").is_err());
}

#[test]
fn root_link_is_gone_after_drop() {
    let lab = Lab::new("root_link_is_gone_after_drop").expect("lab");
    let h = lab.host("h").expect("host");
    let up = lab.ifname("up").expect("ifname");
    assert!(
        lab.link(&h, "eth0", Root, "uplink").is_err(),
        "a root-namespace name without the lab prefix was accepted"
    );
    lab.link(&h, "eth0", Root, &up).expect("root link");
    assert!(root_link_exists(&up), "{up} missing after link");
    assert!(h.link("eth0").expect("host end").is_up());
    let ns = h.name().to_owned();
    lab.close().expect("teardown");
    assert!(!root_link_exists(&up), "{up} survived the lab");
    assert!(!netns::exists(&ns), "{ns} survived the lab");
}

#[test]
fn ifnames_fit_the_kernel_limit() {
    let lab = Lab::new("ifnames_fit_the_kernel_limit").expect("lab");
    let longest = lab.ifname("1234567").expect("7-byte suffix");
    assert_eq!(longest.len(), 15);
    assert!(longest.starts_with(lab.prefix()));
    let err = lab.ifname("12345678").expect_err("8-byte suffix");
    assert!(err.to_string().contains("15"), "{err}");
    assert!(lab.ifname("").is_err());
    assert!(lab.ifname("a b").is_err());
}

#[test]
fn names_are_unique_across_1000_labs() {
    let labs: Vec<Lab> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    (0..250)
                        .map(|i| Lab::new(&format!("unique {t}.{i}")).expect("lab"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker thread"))
            .collect()
    });
    assert_eq!(labs.len(), 1000);
    let prefixes: HashSet<&str> = labs.iter().map(Lab::prefix).collect();
    assert_eq!(prefixes.len(), 1000, "duplicate prefixes");
    let ifnames: HashSet<String> = labs
        .iter()
        .map(|l| l.ifname("eth0").expect("ifname"))
        .collect();
    assert_eq!(ifnames.len(), 1000, "duplicate interface names");
    let markers: Vec<_> = labs.iter().map(|l| marker::path(l.prefix())).collect();
    assert!(markers.iter().all(|m| m.exists()));
    drop(labs);
    assert!(markers.iter().all(|m| !m.exists()), "markers survived");
}

#[test]
fn panic_inside_a_test_still_tears_down() {
    let mut seen = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::new("panic_inside_a_test_still_tears_down").expect("lab");
        let h = lab.host("h").expect("host");
        let up = lab.ifname("up").expect("ifname");
        lab.link(&h, "eth0", Root, &up).expect("root link");
        let sleeper = h.spawn(["sleep", "1000"]).expect("spawn");
        seen = Some((
            h.name().to_owned(),
            up,
            sleeper.pid(),
            lab.prefix().to_owned(),
        ));
        panic!("deliberate panic inside the lab");
    }));
    assert!(result.is_err(), "the closure was meant to panic");
    let (ns, up, pid, prefix) = seen.expect("the closure got as far as the panic");
    assert!(!netns::exists(&ns), "{ns} survived the panic");
    assert!(!root_link_exists(&up), "{up} survived the panic");
    assert!(!pid_alive(pid), "spawned pid {pid} survived the panic");
    assert!(!marker::path(&prefix).exists(), "marker survived the panic");
}

#[test]
fn spawned_processes_die_with_the_lab() {
    let lab = Lab::new("spawned_processes_die_with_the_lab").expect("lab");
    let h = lab.host("h").expect("host");
    let parent = h
        .spawn(["sh", "-c", "sleep 1000 & echo $!; wait"])
        .expect("spawn");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            parent.stdout().is_ok_and(|out| out.ends_with('\n'))
        }),
        "the shell never printed its child's pid"
    );
    let grandchild: u32 = parent
        .stdout()
        .expect("stdout")
        .trim()
        .parse()
        .expect("a pid");
    let quitter = h.spawn(["sleep", "1000"]).expect("spawn");
    let status = quitter
        .terminate(Duration::from_secs(5))
        .expect("terminate");
    assert!(!status.success());
    assert!(!quitter.is_running().expect("poll"));
    assert!(parent.is_running().expect("poll"));

    lab.close().expect("teardown");
    assert!(!pid_alive(parent.pid()), "spawned process survived");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            !pid_alive(grandchild)
        }),
        "its child survived"
    );
}

#[test]
fn sweep_keeps_live_labs() {
    let lab = Lab::new("sweep_keeps_live_labs").expect("lab");
    let h = lab.host("h").expect("host");
    let up = lab.ifname("up").expect("ifname");
    lab.link(&h, "eth0", Root, &up).expect("root link");
    let report = Lab::sweep_stale().expect("sweep");
    assert!(!report.labs.iter().any(|p| p == lab.prefix()), "{report:?}");
    assert!(netns::exists(h.name()), "sweep removed a live namespace");
    assert!(root_link_exists(&up), "sweep removed a live link");
    assert!(marker::path(lab.prefix()).exists());
    assert!(h.ping("127.0.0.1"));
}

/// Deletes a hand-made dead lab's leftovers, in case the sweep under test does not.
struct Leftovers {
    prefix: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = link::delete_root(&format!("{}a", self.prefix));
        let _ = netns::delete(&format!("{}-x", self.prefix));
        let _ = marker::remove(&self.prefix);
    }
}

#[test]
fn sweep_removes_dead_labs() {
    let prefix = marker::reserve("sweep_removes_dead_labs").expect("prefix");
    let leftovers = Leftovers { prefix };
    let prefix = leftovers.prefix.as_str();
    let (ns, a, b) = (
        format!("{prefix}-x"),
        format!("{prefix}a"),
        format!("{prefix}b"),
    );
    // Build while the marker still names this live process, so a sweep started meanwhile by
    // another test leaves it alone; then hand it to a process that has exited.
    netns::add(&ns).expect("namespace");
    crate::command::ip(["link", "add", &a, "type", "veth", "peer", "name", &b]).expect("veth");
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let dead_pid = child.id();
    child.wait().expect("reap true");
    let dead = marker::Marker {
        pid: dead_pid,
        start_time: 0,
        test: "dead".to_owned(),
    };
    std::fs::write(marker::path(prefix), dead.render()).expect("rewrite marker");

    Lab::sweep_stale().expect("sweep");
    assert!(!netns::exists(&ns), "{ns} survived the sweep");
    assert!(!root_link_exists(&a), "{a} survived the sweep");
    assert!(!root_link_exists(&b), "{b} survived the sweep");
    assert!(!marker::path(prefix).exists(), "marker survived the sweep");
}

#[test]
fn wait_until_polls_until_true_or_timeout() {
    let mut calls = 0;
    assert!(wait_until(
        Duration::from_secs(1),
        Duration::from_millis(1),
        || {
            calls += 1;
            calls == 3
        }
    ));
    assert_eq!(calls, 3);
    assert!(!wait_until(
        Duration::from_millis(30),
        Duration::from_millis(5),
        || false
    ));
    assert!(wait_until(Duration::ZERO, Duration::from_secs(1), || true));
}

#[test]
fn handles_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Lab>();
    send_sync::<crate::Host>();
    send_sync::<Switch>();
    send_sync::<crate::Process>();
}

#[test]
fn snapshots_see_links_addresses_and_sysctls_across_namespaces() {
    let lab = Lab::new("snapshots_see_links").expect("lab");
    let a = lab.host("a").expect("host a");
    let b = lab.host("b").expect("host b");
    lab.link(&a, "eth0", &b, "eth0").expect("link");
    a.add_address("eth0", "10.0.0.1/24").expect("address");
    let set = vec![
        ("a".to_string(), a.netns_path()),
        ("b".to_string(), b.netns_path()),
    ];
    let one = crate::Snapshot::read(&set).expect("snapshot");
    let two = crate::Snapshot::read(&set).expect("snapshot");
    assert_eq!(one.diff(&two), Vec::<String>::new(), "nothing changed");
    let link = &one.namespaces["a"]["link eth0"];
    assert!(
        link.contains("link eth0@b"),
        "the peer by netns and name: {link}"
    );
    assert!(one.namespaces["a"].contains_key("addr eth0 10.0.0.1/24"));
    assert!(one.namespaces["a"].contains_key("sysctl ipv4/conf/eth0/proxy_arp"));
    a.run(["sysctl", "-qw", "net.ipv4.conf.eth0.proxy_arp=1"])
        .expect("sysctl");
    let three = crate::Snapshot::read(&set).expect("snapshot");
    assert_eq!(
        one.diff(&three),
        vec!["a: ~ sysctl ipv4/conf/eth0/proxy_arp: 0  ->  1".to_string()]
    );
}
