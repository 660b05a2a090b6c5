//! keepalived's extensions in network namespaces: accept mode enforced, virtual routes
//! and rules, the advert source, sync groups (against keepalived 2.2.7 where a peer
//! shows the interplay). `vznet-vrrp --config` reads the same tables as host.toml.
//! Needs root, iproute2, iputils-ping, nftables and keepalived.
#![cfg(feature = "cli")]

mod lan;

use std::time::Duration;

use anyhow::Result;
use lan::{stop_vznet, wait_instance_state, wait_vznet_state, Lan, VIP4};

const CONVERGE: Duration = Duration::from_secs(5);
const HOLD: Duration = Duration::from_millis(600);
const PING: Duration = Duration::from_secs(5);

/// One `[[vrrp]]` on eth0, VRID 51, 100 ms, VIP 10.0.0.100/24, plus `extra` keys.
fn instance(priority: u8, extra: &str) -> String {
    format!(
        r#"
[[vrrp]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = {priority}
advert_interval_ms = 100
virtual_ips = ["10.0.0.100/24"]
garp_master_delay_ms = 0
{extra}
"#
    )
}

/// One ping from the client, no retry.
fn ping_once(lan: &Lan, address: &str) -> bool {
    lan.client
        .exec(["ping", "-n", "-q", "-c", "1", "-W", "1", address])
        .is_ok_and(|out| out.status.success())
}

/// The MAC the client resolved for `address`.
fn client_neighbour(lan: &Lan, address: &str) -> Option<String> {
    let out = lan.client.ip(["neigh", "show", address]).ok()?;
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_owned)
}

fn mac_of(lan: &Lan, i: usize) -> Result<String> {
    let out = lan.router(i).ip(["-o", "link", "show", "eth0"])?;
    Ok(out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_default()
        .to_owned())
}

/// RFC 5798 §6.4.3: a Master that is not the address owner and runs without
/// `accept` drops packets addressed to the virtual IP; ARP still answers. A Master
/// with `accept` (keepalived's default) answers.
#[test]
fn a_master_without_accept_drops_traffic_to_the_vip_one_with_accept_answers() -> Result<()> {
    let lan = Lan::new("vrrp_accept", 3)?;
    let r1 = lan.start_vznet_config(1, &instance(200, ""))?;
    let r2 = lan.start_vznet_config(2, &instance(150, "accept = false"))?;
    let r3 = lan.start_vznet_config(3, &instance(100, "accept = true"))?;
    lan.expect_sole_master(1, VIP4, CONVERGE, HOLD);
    assert!(
        lan.client_reaches(VIP4, PING),
        "r1 (default accept) answers"
    );

    // r1 dies: r2, without accept, becomes Master and holds the VIP...
    lan.crash(1, &r1)?;
    assert!(wait_vznet_state(&r2, "Master", CONVERGE));
    lan.expect_sole_master(2, VIP4, CONVERGE, Duration::ZERO);
    let table = lan
        .router(2)
        .run(["nft", "list", "table", "inet", "vznet_vrrp"])?;
    assert!(table.contains("10.0.0.100"), "{table}");
    // ...answers ARP for it (the client learns r2's MAC)...
    let _ = ping_once(&lan, VIP4);
    assert_eq!(client_neighbour(&lan, VIP4), Some(mac_of(&lan, 2)?));
    // ...but drops the ping, while its own address answers.
    assert!(ping_once(&lan, "10.0.0.2"), "r2's own address answers");
    for _ in 0..3 {
        assert!(
            !ping_once(&lan, VIP4),
            "r2 answered on the VIP without accept"
        );
    }

    // r2 stops (its filter entry goes with its mastership); r3 has accept.
    stop_vznet(&r2)?;
    let table = lan
        .router(2)
        .run(["nft", "list", "table", "inet", "vznet_vrrp"]);
    assert!(
        table.as_ref().map_or(true, |t| !t.contains("10.0.0.100")),
        "{table:?}"
    );
    assert!(wait_vznet_state(&r3, "Master", CONVERGE));
    lan.expect_sole_master(3, VIP4, CONVERGE, Duration::ZERO);
    assert!(lan.client_reaches(VIP4, PING), "r3 (accept) answers");
    Ok(())
}

/// `virtual_routes`, `virtual_rules` and `virtual_ips_excluded` exist only on the
/// Master (routes and rules with protocol 248) and move with the VIP; `notify_stop`
/// runs at the end.
#[test]
fn virtual_routes_and_rules_are_installed_only_on_the_master() -> Result<()> {
    let lan = Lan::new("vrrp_vroutes", 2)?;
    for i in [1, 2] {
        let r = lan.router(i);
        lan.lab.link(r, "x0", r, "x1")?;
    }
    let stopped = lan.scratch.path().join("stopped");
    let extra = format!(
        r#"
notify_stop = ["/bin/sh", "-c", "echo \"$VRRP_STATE $VRRP_PREVIOUS_STATE\" >> {}"]
virtual_ips_excluded = [
  {{ address = "10.0.1.150/24", label = "eth0:vip", scope = "link" }},
  "fd00::150/64",
  {{ address = "10.5.0.1/24", dev = "x0", brd = "10.5.0.255" }},
]
virtual_routes = [
  {{ to = "10.9.0.0/24", via = "10.0.0.254" }},
  {{ to = "10.7.0.0/24", dev = "eth0", table = 100 }},
  {{ to = "10.6.0.0/24", type = "blackhole" }},
]
virtual_rules = [{{ from = "10.8.0.0/24", table = 100, priority = 1000 }}]
"#,
        stopped.display()
    );
    let r1 = lan.start_vznet_config(1, &instance(200, &extra))?;
    let r2 = lan.start_vznet_config(2, &instance(100, &extra))?;
    lan.expect_sole_master(1, VIP4, CONVERGE, HOLD);
    let routes = |i: usize| {
        let main = lan
            .router(i)
            .ip(["route", "show", "proto", "248"])
            .unwrap_or_default();
        let t100 = lan
            .router(i)
            .ip(["route", "show", "table", "100", "proto", "248"])
            .unwrap_or_default();
        let rules = lan.router(i).ip(["rule", "show"]).unwrap_or_default();
        (main, t100, rules)
    };
    let excluded = |i: usize| {
        let addrs = lan
            .router(i)
            .ip(["-o", "addr", "show", "eth0"])
            .unwrap_or_default();
        let v4 = addrs
            .lines()
            .any(|l| l.contains("10.0.1.150/24") && l.contains("scope link eth0:vip"));
        (v4, addrs.contains("fd00::150/64"))
    };
    let has_all = |i: usize| {
        let (main, t100, rules) = routes(i);
        main.contains("10.9.0.0/24 via 10.0.0.254")
            && main.contains("blackhole 10.6.0.0/24")
            && t100.contains("10.7.0.0/24 dev eth0")
            && rules.contains("1000:\tfrom 10.8.0.0/24 lookup 100")
            && excluded(i) == (true, true)
    };
    let has_none = |i: usize| {
        let (main, t100, rules) = routes(i);
        main.trim().is_empty()
            && t100.trim().is_empty()
            && !rules.contains("10.8.0.0/24")
            && excluded(i) == (false, false)
            && !lan
                .router(i)
                .ip(["-o", "addr", "show"])
                .unwrap_or_default()
                .contains("10.5.0.1/24")
    };
    assert!(
        lab::wait_until(CONVERGE, lan::POLL, || has_all(1)),
        "{:?}",
        routes(1)
    );
    assert!(has_none(2), "the Backup holds routes: {:?}", routes(2));

    lan.crash(1, &r1)?;
    assert!(wait_vznet_state(&r2, "Master", CONVERGE));
    assert!(
        lab::wait_until(CONVERGE, lan::POLL, || has_all(2)),
        "{:?}",
        routes(2)
    );
    // A graceful stop gives them back, then runs notify_stop.
    stop_vznet(&r2)?;
    assert!(has_none(2), "left behind: {:?}", routes(2));
    assert_eq!(std::fs::read_to_string(&stopped)?, "STOP INITIALIZE\n");
    Ok(())
}

/// `unicast_src_ip`: adverts leave from that address (not the interface's first), and
/// keepalived with `vrrp_check_unicast_src` hears them only because they do.
#[test]
fn unicast_src_ip_is_the_source_keepalived_checks() -> Result<()> {
    lab::keepalived_path()?;
    let lan = Lan::new("vrrp_unicast_src", 2)?;
    lan.router(1).add_address("eth0", "10.0.0.11/24")?;
    let keepalived = "global_defs {\n  router_id vznet_test\n  vrrp_check_unicast_src\n}\n\
         vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n\
         version 3\n  priority 100\n  advert_int 0.1\n  unicast_src_ip 10.0.0.2\n\
         unicast_peer {\n    10.0.0.11\n  }\n  virtual_ipaddress {\n    10.0.0.100/24\n  }\n}\n";
    let _ka = lan.start_keepalived_config(2, keepalived)?;
    let vz = lan.start_vznet_config(
        1,
        &instance(
            200,
            "unicast_src_ip = \"10.0.0.11\"\nunicast_peers = [\"10.0.0.2\"]",
        ),
    )?;
    // keepalived accepts adverts only from 10.0.0.11: one Master, r1.
    lan.expect_sole_master(1, VIP4, CONVERGE, Duration::from_millis(1500));
    assert!(wait_vznet_state(&vz, "Master", CONVERGE));
    let log = vz.stdout()?;
    assert!(log.contains("primary_address=10.0.0.11"), "{log}");
    // The other way: keepalived's adverts (from 10.0.0.2, a peer) reach vznet.
    let counters = stop_vznet(&vz)?;
    assert_eq!(counters.send_errors, 0, "{counters:?}");
    lan.expect_sole_master(2, VIP4, CONVERGE, Duration::ZERO);
    Ok(())
}

/// Two instances in a sync group on each side, vznet against keepalived: a tracked
/// link of one vznet member going down faults both members, so keepalived's group
/// takes both VIPs; the link back, vznet's group preempts both back. The group's
/// hooks see the group's states.
#[test]
fn sync_group_members_move_together_against_keepalived() -> Result<()> {
    lab::keepalived_path()?;
    let lan = Lan::new("vrrp_sync_ka", 2)?;
    let r1 = lan.router(1);
    lan.lab.link(r1, "trk0", r1, "trk1")?;
    let hooks = lan.scratch.path().join("group.log");
    let vz = format!(
        r#"
[[vrrp]]
name = "VI_51"
interface = "eth0"
vrid = 51
priority = 200
advert_interval_ms = 100
virtual_ips = ["10.0.0.100/24"]
track = ["trk0"]

[[vrrp]]
name = "VI_52"
interface = "eth0"
vrid = 52
priority = 200
advert_interval_ms = 100
virtual_ips = ["10.0.0.101/24"]

[[vrrp_sync_group]]
name = "G"
group = ["VI_51", "VI_52"]
notify = ["/bin/sh", "-c", "echo \"$@\" >> {log}", "hook"]
"#,
        log = hooks.display()
    );
    let ka_instance = |vrid: u8, vip: &str| {
        format!(
            "vrrp_instance VI_{vrid} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {vrid}\n\
             version 3\n  priority 100\n  advert_int 0.1\n  virtual_ipaddress {{\n    {vip}\n  }}\n}}\n"
        )
    };
    let keepalived = format!(
        "global_defs {{\n  router_id vznet_test\n}}\n\
         vrrp_sync_group G {{\n  group {{\n    VI_51\n    VI_52\n  }}\n}}\n{}{}",
        ka_instance(51, "10.0.0.100/24"),
        ka_instance(52, "10.0.0.101/24")
    );
    let _ka = lan.start_keepalived_config(2, &keepalived)?;
    let vz = lan.start_vznet_config(1, &vz)?;
    lan.expect_sole_master(1, VIP4, CONVERGE, Duration::ZERO);
    lan.expect_sole_master(1, "10.0.0.101", CONVERGE, HOLD);
    assert!(wait_instance_state(&vz, "VI_52", "Master", CONVERGE));

    r1.ip(["link", "set", "trk0", "down"])?;
    // VI_51's tracked link: Fault; VI_52 follows its group.
    assert!(wait_instance_state(&vz, "VI_51", "Fault", CONVERGE));
    assert!(wait_instance_state(&vz, "VI_52", "Fault", CONVERGE));
    lan.expect_sole_master(2, VIP4, CONVERGE, Duration::ZERO);
    lan.expect_sole_master(2, "10.0.0.101", CONVERGE, HOLD);
    assert!(lan.client_reaches("10.0.0.101", PING));

    r1.ip(["link", "set", "trk0", "up"])?;
    lan.expect_sole_master(1, VIP4, CONVERGE, Duration::ZERO);
    lan.expect_sole_master(1, "10.0.0.101", CONVERGE, HOLD);
    assert!(lan.client_reaches(VIP4, PING));
    stop_vznet(&vz)?;
    let log = std::fs::read_to_string(&hooks)?;
    for line in ["GROUP G MASTER 0", "GROUP G FAULT 0", "GROUP G STOP 0"] {
        assert!(log.contains(line), "{line} missing from {log}");
    }
    Ok(())
}
