//! Routed ("venet") VEs: /32 host routes and proxy ARP; VEs in different subnets
//! reach each other through the host.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{forwarding_host, lan_peer, sysctl, vznet_ok, ConfigDir};
use lab::Lab;

#[test]
fn routed_ves_in_different_subnets_reach_each_other_through_the_host() -> Result<()> {
    let lab = Lab::new("venet")?;
    let host = lab.host("host")?;
    let cfg = ConfigDir::new()?;
    cfg.host(
        r#"
[sysctl]
"net.ipv4.ip_forward" = 1

# The host's own address, which it answers from.
[[bridge]]
name = "br0"
addresses = ["192.168.50.1/24"]
"#,
    )?;
    let addrs = ["10.1.0.5", "10.2.0.7", "172.16.9.9"];
    let mut ves = Vec::new();
    for (n, addr) in addrs.iter().enumerate() {
        let id = 200 + n as u32;
        let ve = lab.host(&format!("ve{id}"))?;
        cfg.ve(
            id,
            &format!(
                "id = {id}\nnetns = \"{}\"\n[venet]\naddresses = [\"{addr}\"]\n",
                ve.name()
            ),
        )?;
        ves.push(ve);
    }
    vznet_ok(&host, &cfg, &["apply"])?;
    assert_eq!(vznet_ok(&host, &cfg, &["apply"])?.trim(), "0 changes");

    let routes = host.ip_json(["route", "show", "proto", "249"])?;
    for (n, addr) in addrs.iter().enumerate() {
        let dev = format!("venet{}", 200 + n);
        assert!(
            routes.as_array().is_some_and(|r| r
                .iter()
                .any(|x| x["dst"] == *addr && x["dev"] == dev.as_str())),
            "/32 route {addr} dev {dev} missing: {routes}"
        );
        assert_eq!(
            sysctl(&host, &format!("net/ipv4/conf/{dev}/proxy_arp"))?,
            "1"
        );
        assert_eq!(
            sysctl(&host, &format!("net/ipv4/conf/{dev}/forwarding"))?,
            "1"
        );
    }
    for (n, ve) in ves.iter().enumerate() {
        let a = ve.addresses("venet0")?;
        assert!(
            a.iter()
                .any(|x| x.addr.to_string() == addrs[n] && x.prefix_len == 32),
            "{a:?}"
        );
        for (m, addr) in addrs.iter().enumerate() {
            if m != n {
                assert!(ve.ping(addr), "VE {n} -> {addr} through the host");
            }
        }
    }
    assert!(host.ping(addrs[0]), "host -> routed VE");
    Ok(())
}

/// Two routed VEs with IPv4 and IPv6 addresses on a host whose own addresses
/// sit on a bridge with one LAN port.
fn dual_stack(lab: &Lab, cfg: &ConfigDir) -> Result<(lab::Host, Vec<lab::Host>)> {
    let host = lab.host("host")?;
    lan_peer(lab, &host)?;
    cfg.host(&forwarding_host(50))?;
    let mut ves = Vec::new();
    for (id, v4, v6) in [
        (210, "10.1.0.5", "fd00:1::5"),
        (211, "10.2.0.7", "fd00:2::7"),
    ] {
        let ve = lab.host(&format!("ve{id}"))?;
        cfg.ve(
            id,
            &format!(
                "id = {id}\nnetns = \"{}\"\n[venet]\naddresses = [\"{v4}\", \"{v6}\"]\n",
                ve.name()
            ),
        )?;
        ves.push(ve);
    }
    Ok((host, ves))
}

#[test]
fn ipv6_routed_ves_reach_each_other_and_the_host() -> Result<()> {
    let lab = Lab::new("venet6")?;
    let cfg = ConfigDir::new()?;
    let (host, ves) = dual_stack(&lab, &cfg)?;
    vznet_ok(&host, &cfg, &["apply"])?;
    assert_eq!(vznet_ok(&host, &cfg, &["apply"])?.trim(), "0 changes");

    // The host end invents no address of its own; it carries fe80::1, which
    // the VE's default route points at, and forwards IPv6.
    let link = host.ip_json(["-d", "link", "show", "venet210"])?;
    assert_eq!(link[0]["inet6_addr_gen_mode"], "none", "{link}");
    let a = host.addresses("venet210")?;
    let v6: Vec<String> = a
        .iter()
        .filter(|x| x.addr.is_ipv6())
        .map(|x| format!("{}/{}", x.addr, x.prefix_len))
        .collect();
    assert_eq!(v6, ["fe80::1/64"]);
    assert_eq!(sysctl(&host, "net/ipv6/conf/venet210/forwarding")?, "1");
    let route = ves[0].ip_json(["-6", "route", "show", "default"])?;
    assert_eq!(route[0]["gateway"], "fe80::1", "{route}");
    assert_eq!(route[0]["dev"], "venet0", "{route}");
    let host_routes = host.ip_json(["-6", "route", "show", "proto", "249"])?;
    assert!(
        host_routes.as_array().is_some_and(|r| r
            .iter()
            .any(|x| x["dst"] == "fd00:1::5" && x["dev"] == "venet210")),
        "{host_routes}"
    );
    // The VE's address skipped DAD: usable at once (its link-local one is the
    // kernel's, and may still be tentative).
    let tentative = ves[0].ip(["-6", "addr", "show", "tentative", "scope", "global"])?;
    assert!(tentative.trim().is_empty(), "{tentative}");

    assert!(
        ves[0].ping("fd00:2::7"),
        "VE -> VE over IPv6 through the host"
    );
    assert!(ves[1].ping("fd00:1::5"), "and back");
    assert!(
        host.wait_dad(Duration::from_secs(10)),
        "the bridge's address"
    );
    assert!(ves[0].ping("fd50::1"), "VE -> the host's bridge address");
    assert!(host.ping("fd00:2::7"), "host -> VE");
    assert!(ves[0].ping("10.2.0.7"), "IPv4 still works beside it");

    // Behind vznet's back: the gateway address and the VE's default route go.
    host.run(["ip", "addr", "del", "fe80::1/64", "dev", "venet211"])?;
    ves[1].run(["ip", "-6", "route", "del", "default"])?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    assert!(
        plan.contains("+ address fe80::1/64 dev venet211 nodad"),
        "{plan}"
    );
    assert!(
        plan.contains("+ route default via fe80::1 dev venet0 (netns"),
        "{plan}"
    );
    assert!(plan.contains("2 changes"), "{plan}");
    vznet_ok(&host, &cfg, &["apply"])?;
    assert_eq!(vznet_ok(&host, &cfg, &["plan"])?.trim(), "0 changes");
    assert!(ves[1].ping("fd00:1::5"), "repaired");

    // The VE loses its IPv6 address: exactly its IPv6 pieces go.
    cfg.ve(
        211,
        &format!(
            "id = 211\nnetns = \"{}\"\n[venet]\naddresses = [\"10.2.0.7\"]\n",
            ves[1].name()
        ),
    )?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    let ops: Vec<&str> = plan.lines().filter(|l| !l.ends_with("changes")).collect();
    let mut want = vec![
        "- address fd00:2::7/128 dev venet0".to_string(),
        "- address fe80::1/64 dev venet211".to_string(),
        "- route fd00:2::7/128 dev venet211".to_string(),
        "- route default via fe80::1 dev venet0".to_string(),
    ];
    want.sort();
    let mut got: Vec<String> = ops
        .iter()
        .map(|l| {
            l.split(" (netns")
                .next()
                .unwrap_or(l)
                .trim_end_matches(" nodad")
                .to_string()
        })
        .collect();
    got.sort();
    assert_eq!(got, want, "{plan}");
    vznet_ok(&host, &cfg, &["apply"])?;
    assert!(!ves[0].ping("fd00:2::7"));
    assert!(ves[0].ping("10.2.0.7"));
    Ok(())
}

/// The round trip time of one ping from `host` to `addr`, if it was answered.
fn first_ping_ms(host: &lab::Host, addr: &str) -> Option<f64> {
    let out = host.exec(["ping", "-n", "-c", "1", "-W", "3", addr]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let t = text.split("time=").nth(1)?;
    t.split_whitespace().next()?.parse().ok()
}

#[test]
fn a_routed_ves_first_packet_is_not_held_back_by_proxy_delay() -> Result<()> {
    let lab = Lab::new("venet_delay")?;
    let cfg = ConfigDir::new()?;
    let (host, ves) = dual_stack(&lab, &cfg)?;
    vznet_ok(&host, &cfg, &["apply"])?;
    for dev in ["venet210", "venet211"] {
        assert_eq!(
            sysctl(&host, &format!("net/ipv4/neigh/{dev}/proxy_delay"))?,
            "0"
        );
    }
    // Each VE resolves the other's address through proxy ARP on its own venet
    // link: with the kernel's default proxy_delay (0.8 s) each of those two
    // replies would wait up to 0.8 s.
    let ms = first_ping_ms(&ves[0], "10.2.0.7").expect("first ping answered");
    assert!(ms < 500.0, "first ping took {ms} ms");

    // The delay is a sysctl vznet keeps: drift is found and repaired.
    host.run([
        "sh",
        "-c",
        "echo 80 > /proc/sys/net/ipv4/neigh/venet211/proxy_delay",
    ])?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    assert!(
        plan.contains("ipv4/neigh/venet211/proxy_delay 80 -> 0"),
        "{plan}"
    );
    vznet_ok(&host, &cfg, &["apply"])?;
    assert_eq!(sysctl(&host, "net/ipv4/neigh/venet211/proxy_delay")?, "0");
    Ok(())
}
