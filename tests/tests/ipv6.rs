//! IPv6 on bridged VEs: addresses, one default gateway per family (`gateway`
//! and `gateway6`, link-local or not), traffic between VEs, the host and a LAN
//! peer, and the gateway kept as configured.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{lan_peer, vznet_ok, ConfigDir};
use lab::{Host, Lab};

fn ve_toml(id: u32, ns: &str, n: u32, gateway6: Option<&str>) -> String {
    let mut s = format!(
        r#"id = {id}
netns = "{ns}"

[[netif]]
name = "eth0"
bridge = "br0"
addresses = ["192.168.80.{n}/24", "fd80::{n}/64"]
gateway = "192.168.80.1"
"#
    );
    if let Some(gw) = gateway6 {
        s.push_str(&format!("gateway6 = \"{gw}\"\n"));
    }
    s
}

fn default6(ve: &Host) -> Result<String> {
    let r = ve.ip_json(["-6", "route", "show", "default"])?;
    Ok(r[0]["gateway"].as_str().unwrap_or("").to_string())
}

#[test]
fn bridged_ves_speak_ipv6_to_each_other_the_host_and_the_lan() -> Result<()> {
    let lab = Lab::new("ipv6")?;
    let host = lab.host("host")?;
    let lan = lan_peer(&lab, &host)?;
    // The LAN's router: fd80::2 and fe80::1, with a network behind it.
    lan.add_address("eth0", "fd80::2/64")?;
    lan.add_address("eth0", "fe80::1/64")?;
    lan.add_address("lo", "2001:db8:99::1/128")?;
    let cfg = ConfigDir::new()?;
    cfg.host(
        r#"
[[bridge]]
name = "br0"
ports = ["lan0"]
addresses = ["192.168.80.1/24", "fd80::1/64"]
"#,
    )?;
    let (a, b) = (lab.host("ve230")?, lab.host("ve231")?);
    cfg.ve(230, &ve_toml(230, a.name(), 30, Some("fd80::1")))?;
    cfg.ve(231, &ve_toml(231, b.name(), 31, Some("fe80::1")))?;
    vznet_ok(&host, &cfg, &["apply"])?;
    assert_eq!(vznet_ok(&host, &cfg, &["apply"])?.trim(), "0 changes");
    // Bridged addresses do duplicate address detection (a LAN may hold a
    // duplicate): they are usable after it.
    for h in [&host, &a, &b, &lan] {
        assert!(h.wait_dad(Duration::from_secs(10)), "DAD in {h}");
    }
    assert_eq!(default6(&a)?, "fd80::1");
    assert_eq!(default6(&b)?, "fe80::1");
    let v4 = a.ip_json(["route", "show", "default"])?;
    assert_eq!(v4[0]["gateway"], "192.168.80.1", "gateway keeps working");

    assert!(a.ping("fd80::31"), "VE -> VE");
    assert!(a.ping("fd80::1"), "VE -> host");
    assert!(host.ping("fd80::31"), "host -> VE");
    assert!(a.ping("fd80::2"), "VE -> LAN peer");
    assert!(
        b.ping("2001:db8:99::1"),
        "VE -> beyond a link-local gateway"
    );
    assert!(!a.ping("2001:db8:99::1"), "the host does not route there");

    // Behind vznet's back: the IPv6 default route goes.
    b.ip(["-6", "route", "del", "default"])?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    assert_eq!(
        plan,
        format!(
            "+ route default via fe80::1 dev eth0 (netns {})\n1 changes\n",
            b.name()
        )
    );
    vznet_ok(&host, &cfg, &["apply"])?;
    assert!(b.ping("2001:db8:99::1"), "repaired");

    // The config moves VE 230's gateway6 to the LAN router: exactly that route.
    cfg.ve(230, &ve_toml(230, a.name(), 30, Some("fd80::2")))?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    let ns = a.name();
    assert_eq!(
        plan,
        format!(
            "- route default via fd80::1 dev eth0 (netns {ns})\n+ route default via fd80::2 dev eth0 (netns {ns})\n2 changes\n"
        )
    );
    vznet_ok(&host, &cfg, &["apply"])?;
    assert!(a.ping("2001:db8:99::1"), "now through the LAN router");

    // gateway6 leaves the config: the route leaves the VE, IPv4's stays.
    cfg.ve(230, &ve_toml(230, a.name(), 30, None))?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    assert_eq!(
        plan,
        format!("- route default via fd80::2 dev eth0 (netns {ns})\n1 changes\n")
    );
    vznet_ok(&host, &cfg, &["apply"])?;
    assert_eq!(default6(&a)?, "");
    assert!(a.ping("192.168.80.1"));
    Ok(())
}
