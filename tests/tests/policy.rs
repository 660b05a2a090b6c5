//! Policy routing: routes in other tables and `[[rule]]`s, owned by vznet like
//! its main-table routes (protocol 249), found and repaired when they drift.

mod common;

use anyhow::Result;
use common::{forwarding_host, lan_peer, vznet_ok, ConfigDir};
use lab::{Host, Lab};

/// The host's own traffic to the far network leaves through uplink 1.
fn base() -> String {
    forwarding_host(70) + "\n[[route]]\nto = \"203.0.113.0/24\"\nvia = \"10.71.0.2\"\n"
}

/// VEs on br0 leave through uplink 2 (a table chosen by source address), the
/// host itself through uplink 1 (main table).
fn host_toml(rule_priority: u32, table: &str) -> String {
    format!(
        r#"{}
[[route]]
to = "203.0.113.0/24"
via = "10.72.0.2"
table = {table}

[[route]]
to = "default"
via = "fd72::2"
table = {table}

[[rule]]
priority = {rule_priority}
from = "192.168.70.0/24"
table = {table}

[[rule]]
priority = {rule_priority}
from = "fd70::/64"
table = {table}

[[rule]]
priority = 3000
fwmark = "0x10/0xff"
iif = "br0"
table = "main"
"#,
        base()
    )
}

/// The gateway the host picks for `ip route get ARGS`.
fn route_via(host: &Host, args: &[&str]) -> Result<String> {
    let r = host.ip_json(["route", "get"].iter().chain(args))?;
    Ok(r[0]["gateway"].as_str().unwrap_or("").to_string())
}

/// The gateway the host picks for traffic from the LAN's 192.168.70.10.
fn lan_route_via(host: &Host) -> Result<String> {
    route_via(
        host,
        &["203.0.113.1", "from", "192.168.70.10", "iif", "br0"],
    )
}

fn rules(host: &Host) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        let v = host.ip_json([family, "rule", "show"])?;
        for r in v.as_array().into_iter().flatten() {
            if r["protocol"] != "249" {
                continue;
            }
            out.push(format!(
                "{} {} {} {}",
                family,
                r["priority"],
                r["src"].as_str().unwrap_or("all"),
                r["table"].as_str().unwrap_or("")
            ));
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn rules_and_tables_route_by_source_and_stay_as_configured() -> Result<()> {
    let lab = Lab::new("policy")?;
    let host = lab.host("host")?;
    let lan = lan_peer(&lab, &host)?;
    let (up1, up2) = (lab.host("up1")?, lab.host("up2")?);
    lab.link(&host, "up1", &up1, "eth0")?;
    lab.link(&host, "up2", &up2, "eth0")?;
    host.add_address("up1", "10.71.0.1/24")?;
    host.add_address("up2", "10.72.0.1/24")?;
    host.add_address("up2", "fd72::1/64")?;
    up1.add_address("eth0", "10.71.0.2/24")?;
    up2.add_address("eth0", "10.72.0.2/24")?;
    up2.add_address("eth0", "fd72::2/64")?;
    // Only uplink 2 has the far address: a VE reaches it only by its rule.
    up2.add_address("lo", "203.0.113.1/32")?;
    up2.add_address("lo", "2001:db8:113::1/128")?;
    up2.ip(["route", "add", "192.168.70.0/24", "via", "10.72.0.1"])?;
    up2.ip(["-6", "route", "add", "fd70::/64", "via", "fd72::1"])?;
    lan.add_address("eth0", "192.168.70.10/24")?;
    lan.add_address("eth0", "fd70::10/64")?;
    lan.ip(["route", "add", "default", "via", "192.168.70.1"])?;
    lan.ip(["-6", "route", "add", "default", "via", "fd70::1"])?;

    let cfg = ConfigDir::new()?;
    cfg.host(&host_toml(1000, "100"))?;
    let out = vznet_ok(&host, &cfg, &["apply"])?;
    assert!(
        out.contains("+ rule ipv4 1000: from 192.168.70.0/24 lookup 100"),
        "{out}"
    );
    assert!(
        out.contains("+ route 203.0.113.0/24 via 10.72.0.2 table 100"),
        "{out}"
    );
    assert_eq!(vznet_ok(&host, &cfg, &["apply"])?.trim(), "0 changes");
    assert_eq!(
        rules(&host)?,
        [
            "-4 1000 192.168.70.0 100",
            "-4 3000 all main",
            "-6 1000 fd70:: 100",
            "-6 3000 all main"
        ]
    );
    assert_eq!(lan_route_via(&host)?, "10.72.0.2");
    assert_eq!(route_via(&host, &["203.0.113.1"])?, "10.71.0.2");
    assert!(host.wait_dad(std::time::Duration::from_secs(10)));
    assert!(lan.wait_dad(std::time::Duration::from_secs(10)));
    assert!(lan.ping("203.0.113.1"), "LAN -> far side through table 100");
    assert!(lan.ping("2001:db8:113::1"), "and over IPv6");

    // Behind vznet's back: its rule and a table-100 route go, an admin's rule
    // and route come, and a stray rule marked as vznet's appears.
    host.ip(["rule", "del", "priority", "1000", "from", "192.168.70.0/24"])?;
    host.ip(["route", "del", "203.0.113.0/24", "table", "100"])?;
    host.ip([
        "rule",
        "add",
        "priority",
        "1500",
        "from",
        "10.9.0.0/16",
        "table",
        "7",
    ])?;
    host.ip([
        "route",
        "add",
        "10.9.0.0/16",
        "via",
        "10.72.0.2",
        "table",
        "7",
    ])?;
    host.ip([
        "rule",
        "add",
        "priority",
        "1600",
        "to",
        "10.8.0.0/16",
        "table",
        "8",
        "proto",
        "249",
    ])?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    assert_eq!(
        plan,
        "- rule ipv4 1600: from all to 10.8.0.0/16 lookup 8\n\
         + route 203.0.113.0/24 via 10.72.0.2 table 100\n\
         + rule ipv4 1000: from 192.168.70.0/24 lookup 100\n\
         3 changes\n"
    );
    vznet_ok(&host, &cfg, &["apply"])?;
    assert_eq!(vznet_ok(&host, &cfg, &["plan"])?.trim(), "0 changes");
    assert!(lan.ping("203.0.113.1"), "repaired");
    let admin = host.ip(["rule", "show", "priority", "1500"])?;
    assert!(
        admin.contains("lookup 7"),
        "the admin's rule stays: {admin}"
    );
    assert!(!host.ip(["route", "show", "table", "7"])?.trim().is_empty());

    // A new priority and table in the config: exactly the rules and the
    // table's routes move.
    cfg.host(&host_toml(1100, "200"))?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    let mut ops: Vec<&str> = plan.lines().filter(|l| !l.ends_with("changes")).collect();
    ops.sort();
    assert_eq!(
        ops,
        [
            "+ route 203.0.113.0/24 via 10.72.0.2 table 200",
            "+ route default via fd72::2 table 200",
            "+ rule ipv4 1100: from 192.168.70.0/24 lookup 200",
            "+ rule ipv6 1100: from fd70::/64 lookup 200",
            "- route 203.0.113.0/24 via 10.72.0.2 dev up2 table 100",
            "- route default via fd72::2 dev up2 table 100",
            "- rule ipv4 1000: from 192.168.70.0/24 lookup 100",
            "- rule ipv6 1000: from fd70::/64 lookup 100",
        ],
        "{plan}"
    );
    vznet_ok(&host, &cfg, &["apply"])?;
    assert_eq!(lan_route_via(&host)?, "10.72.0.2");
    assert!(host
        .ip(["route", "show", "table", "100"])?
        .trim()
        .is_empty());

    // Rules and table routes leave the config: they leave the kernel; the
    // admin's stay.
    cfg.host(&base())?;
    let plan = vznet_ok(&host, &cfg, &["plan"])?;
    assert!(plan.contains("6 changes"), "{plan}");
    vznet_ok(&host, &cfg, &["apply"])?;
    assert!(rules(&host)?.is_empty());
    assert!(host
        .ip(["route", "show", "table", "200"])?
        .trim()
        .is_empty());
    assert!(host
        .ip(["rule", "show", "priority", "1500"])?
        .contains("lookup 7"));
    assert!(
        !lan.ping("203.0.113.1"),
        "the VE subnet uses the main table again"
    );
    Ok(())
}
