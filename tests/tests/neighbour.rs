//! `[venet] neighbour_devs`: the LAN reaches routed VEs through proxy neighbour
//! entries on the host's uplink, which answer for the VEs' addresses and for
//! nothing else (unlike proxy_arp on the whole uplink).

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{forwarding_host, lan_peer, sysctl, vznet_ok, ConfigDir};
use lab::{Host, Lab};

const NEIGHBOUR_DEVS: &str = "\n[venet]\nneighbour_devs = [\"br0\"]\n";

/// Whether `target` answers ARP from `peer` on eth0 (`arping` exits 0 on a reply).
fn arp_answered(peer: &Host, target: &str) -> bool {
    peer.exec(["arping", "-q", "-c", "1", "-w", "2", "-I", "eth0", target])
        .is_ok_and(|o| o.status.success())
}

/// Whether a neighbour solicitation for `target` from `peer` on eth0 is
/// answered: the peer's kernel resolves it (a ping makes it solicit) and learns
/// a link-layer address. (ndisc6 ignores proxied answers: they come from the
/// proxy's address, not the target's.)
fn nd_answered(peer: &Host, target: &str) -> bool {
    let _ = peer.ip(["-6", "neigh", "flush", "to", target, "dev", "eth0"]);
    let _ = peer.exec(["ping", "-n", "-c", "1", "-W", "1", target]);
    peer.ip_json(["-6", "neigh", "show", "to", target, "dev", "eth0"])
        .is_ok_and(|v| v[0]["lladdr"].is_string())
}

fn proxies(host: &Host) -> Result<Vec<String>> {
    let v = host.ip_json(["neigh", "show", "proxy"])?;
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{} dev {} proto {}",
                        e["dst"].as_str().unwrap_or(""),
                        e["dev"].as_str().unwrap_or(""),
                        e["protocol"].as_str().unwrap_or("-")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    Ok(out)
}

#[test]
fn proxy_entries_answer_for_routed_ves_and_nothing_else() -> Result<()> {
    let lab = Lab::new("neighbour")?;
    let host = lab.host("host")?;
    let lan = lan_peer(&lab, &host)?;
    let side = lab.host("side")?;
    // Somewhere else the host routes to: proxy_arp on br0 would answer for it.
    lab.link(&host, "side0", &side, "eth0")?;
    lan.add_address("eth0", "192.168.60.2/24")?;
    lan.add_address("eth0", "fd60::2/64")?;
    lan.ip(["route", "add", "default", "via", "192.168.60.1"])?;
    lan.ip(["-6", "route", "add", "default", "via", "fd60::1"])?;
    host.ip(["route", "add", "192.168.60.99/32", "dev", "side0"])?;
    host.ip(["-6", "route", "add", "fd60::99/128", "dev", "side0"])?;

    let cfg = ConfigDir::new()?;
    cfg.host(&(forwarding_host(60) + NEIGHBOUR_DEVS))?;
    let ve = lab.host("ve220")?;
    let ve_toml = |addrs: &str| {
        format!(
            "id = 220\nnetns = \"{}\"\n[venet]\naddresses = [{addrs}]\n",
            ve.name()
        )
    };
    cfg.ve(220, &ve_toml("\"192.168.60.10\", \"fd60::10\""))?;
    let out = vznet_ok(&host, &cfg, &["apply"])?;
    assert!(
        out.contains("+ neighbour proxy 192.168.60.10 dev br0"),
        "{out}"
    );
    assert!(out.contains("+ neighbour proxy fd60::10 dev br0"), "{out}");
    assert_eq!(vznet_ok(&host, &cfg, &["apply"])?.trim(), "0 changes");
    assert_eq!(
        proxies(&host)?,
        [
            "192.168.60.10 dev br0 proto 249",
            "fd60::10 dev br0 proto 249"
        ]
    );
    for (key, value) in [
        ("net/ipv4/conf/br0/proxy_arp", "0"),
        ("net/ipv4/neigh/br0/proxy_delay", "0"),
        ("net/ipv6/conf/br0/proxy_ndp", "1"),
        ("net/ipv6/conf/br0/forwarding", "1"),
        ("net/ipv6/neigh/br0/proxy_delay", "0"),
    ] {
        assert_eq!(sysctl(&host, key)?, value, "{key}");
    }
    assert!(host.wait_dad(Duration::from_secs(10)));
    assert!(lan.wait_dad(Duration::from_secs(10)));

    // The LAN reaches the routed VE's addresses, and the proxy answers for
    // exactly those.
    assert!(arp_answered(&lan, "192.168.60.10"), "ARP for the VE");
    assert!(nd_answered(&lan, "fd60::10"), "NS for the VE");
    assert!(
        !arp_answered(&lan, "192.168.60.99"),
        "ARP for another address"
    );
    assert!(!nd_answered(&lan, "fd60::99"), "NS for another address");
    assert!(lan.ping("192.168.60.10"), "LAN -> VE");
    assert!(lan.ping("fd60::10"), "LAN -> VE over IPv6");
    // The negative checks can fail: proxy_arp on the uplink answers for the
    // other address too.
    host.run(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/br0/proxy_arp"])?;
    assert!(
        arp_answered(&lan, "192.168.60.99"),
        "proxy_arp answers for all"
    );
    host.run(["sh", "-c", "echo 0 > /proc/sys/net/ipv4/conf/br0/proxy_arp"])?;

    // Behind vznet's back: its entry goes, an admin's entry comes, and a stray
    // entry marked as vznet's appears.
    host.ip(["neigh", "del", "proxy", "fd60::10", "dev", "br0"])?;
    host.ip(["neigh", "add", "proxy", "192.168.60.77", "dev", "br0"])?;
    host.ip([
        "neigh",
        "add",
        "proxy",
        "192.168.60.78",
        "dev",
        "br0",
        "proto",
        "249",
    ])?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    assert_eq!(
        plan,
        "- neighbour proxy 192.168.60.78 dev br0\n+ neighbour proxy fd60::10 dev br0\n2 changes\n"
    );
    vznet_ok(&host, &cfg, &["apply"])?;
    assert_eq!(vznet_ok(&host, &cfg, &["plan"])?.trim(), "0 changes");
    assert!(
        proxies(&host)?.contains(&"192.168.60.77 dev br0 proto -".to_string()),
        "the admin's entry stays"
    );
    assert!(nd_answered(&lan, "fd60::10"), "repaired");

    // The VE's address changes: the entry follows it.
    cfg.ve(220, &ve_toml("\"192.168.60.11\", \"fd60::10\""))?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    assert!(
        plan.contains("- neighbour proxy 192.168.60.10 dev br0\n"),
        "{plan}"
    );
    assert!(
        plan.contains("+ neighbour proxy 192.168.60.11 dev br0\n"),
        "{plan}"
    );
    vznet_ok(&host, &cfg, &["apply"])?;
    assert!(arp_answered(&lan, "192.168.60.11"));
    assert!(!arp_answered(&lan, "192.168.60.10"));

    // No neighbour devices: vznet's entries go, the admin's stays.
    cfg.host(&forwarding_host(60))?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    assert_eq!(
        plan,
        "- neighbour proxy 192.168.60.11 dev br0\n- neighbour proxy fd60::10 dev br0\n2 changes\n"
    );
    vznet_ok(&host, &cfg, &["apply"])?;
    assert_eq!(proxies(&host)?, ["192.168.60.77 dev br0 proto -"]);
    assert!(!arp_answered(&lan, "192.168.60.11"));
    Ok(())
}
