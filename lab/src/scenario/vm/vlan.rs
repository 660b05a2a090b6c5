//! VLANs in the VM: a VLAN-aware bridge that keeps VEs on VLAN 136 and 137
//! apart over one bond trunk, and QinQ (an 802.1ad outer tag, an 802.1Q inner
//! one) whose outer protocol changing makes both VLANs again.

use anyhow::{ensure, Result};
use lab::{Host, Lab};

use super::{check, unanswered, vlan_switch};
use crate::scenario::vznet_ok;

const VLAN_BRIDGE_HOST: &str = r#"
[[bond]]
name = "bond0"
mode = "active-backup"
slaves = ["eth0", "eth1"]

[[bridge]]
name = "br0"
vlan_filtering = true
ports = [{ name = "bond0", vlans = [136, 137] }]
"#;

fn ve_toml(id: u32, ns: &str, vlan: u16) -> String {
    format!(
        "id = {id}\nnetns = \"{ns}\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\npvid = {vlan}\naddresses = [\"10.70.0.{}/24\"]\ngateway = \"10.70.0.1\"\n",
        id - 100
    )
}

/// A router on an access port of VLAN `vid` of the switch, at 10.70.0.1.
fn router(lab: &Lab, sw: &lab::Switch, name: &str, port: &str, vid: &str) -> Result<Host> {
    let r = lab.host(name)?;
    lab.link(&r, "p0", sw, port)?;
    sw.host().run([
        "bridge", "vlan", "add", "dev", port, "vid", vid, "pvid", "untagged",
    ])?;
    sw.host()
        .run(["bridge", "vlan", "del", "dev", port, "vid", "1"])?;
    r.add_address("p0", "10.70.0.1/24")?;
    Ok(r)
}

/// The MAC `host` has learned for `ip`.
fn neighbour(host: &Host, ip: &str) -> Result<String> {
    let n = host.ip_json(["neigh", "show", ip])?;
    Ok(n.get(0)
        .and_then(|e| e["lladdr"].as_str())
        .unwrap_or("")
        .to_string())
}

/// bond0 (eth0+eth1) trunks VLANs 136 and 137 from a VLAN-filtering br0 to a
/// VLAN-aware switch; VE 136 and VE 137 sit on access ports of br0 (their
/// pvid) in the same subnet, each with a router at 10.70.0.1 on its VLAN.
/// Each VE reaches its own router (its neighbour entry has that router's
/// MAC), and not the other VE.
pub(in crate::scenario) fn vlan_bridge() -> Result<()> {
    let lab = Lab::new("vm_vlanbr")?;
    let host = lab.host("host")?;
    let sw = vlan_switch(&lab, &[(&host, "eth0", "s0"), (&host, "eth1", "s1")])?;
    let r136 = router(&lab, &sw, "r136", "s2", "136")?;
    let r137 = router(&lab, &sw, "r137", "s3", "137")?;
    let ve136 = lab.host("ve236")?;
    let ve137 = lab.host("ve237")?;
    let cfg = tempfile::tempdir()?;
    std::fs::create_dir(cfg.path().join("ve"))?;
    std::fs::write(cfg.path().join("host.toml"), VLAN_BRIDGE_HOST)?;
    std::fs::write(
        cfg.path().join("ve/236.toml"),
        ve_toml(236, ve136.name(), 136),
    )?;
    std::fs::write(
        cfg.path().join("ve/237.toml"),
        ve_toml(237, ve137.name(), 137),
    )?;
    print!("{}", vznet_ok(host.name(), &["apply"], cfg.path())?);
    let mut failures = Vec::new();
    let again = vznet_ok(host.name(), &["plan"], cfg.path())?;
    check(
        again.trim() == "0 changes",
        "second plan: 0 changes",
        &mut failures,
    );
    let vlans = host.run(["bridge", "vlan", "show"])?;
    println!("{vlans}");
    for (ve, router, vid) in [(&ve136, &r136, 136), (&ve137, &r137, 137)] {
        check(
            ve.ping("10.70.0.1"),
            &format!("VE on VLAN {vid} -> its gateway 10.70.0.1"),
            &mut failures,
        );
        let want = router.link("p0")?.mac.unwrap_or_default();
        let got = neighbour(ve, "10.70.0.1")?;
        check(
            got == want,
            &format!("VE on VLAN {vid} reached the VLAN {vid} router ({got}, router {want})"),
            &mut failures,
        );
    }
    check(
        unanswered(&ve136, "10.70.0.137"),
        "VE on VLAN 136 cannot reach the VE on VLAN 137 (same subnet)",
        &mut failures,
    );
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}

fn qinq_toml(outer: &str) -> String {
    format!(
        "[[ethernet]]\nname = \"eth0\"\n\n[[vlan]]\nname = \"eth0.100\"\nlink = \"eth0\"\nid = 100\nprotocol = \"{outer}\"\n\n[[vlan]]\nname = \"eth0.100.200\"\nlink = \"eth0.100\"\nid = 200\naddresses = [\"10.80.0.1/24\"]\n"
    )
}

/// QinQ between a host made by vznet and a peer made by hand: service tag 100
/// (802.1ad), customer tag 200 (802.1Q) inside. A new outer protocol makes
/// both VLANs again (the inner one rides on the outer one) and, not matching
/// the peer, stops the traffic until it is set back.
pub(in crate::scenario) fn qinq() -> Result<()> {
    let lab = Lab::new("vm_qinq")?;
    let a = lab.host("a")?;
    let b = lab.host("b")?;
    lab.link(&a, "eth0", &b, "eth0")?;
    b.run([
        "ip", "link", "add", "link", "eth0", "name", "eth0.100", "type", "vlan", "proto",
        "802.1ad", "id", "100",
    ])?;
    b.run([
        "ip",
        "link",
        "add",
        "link",
        "eth0.100",
        "name",
        "eth0.100.200",
        "type",
        "vlan",
        "id",
        "200",
    ])?;
    for dev in ["eth0.100", "eth0.100.200"] {
        b.run(["ip", "link", "set", dev, "up"])?;
    }
    b.add_address("eth0.100.200", "10.80.0.2/24")?;
    let cfg = tempfile::tempdir()?;
    std::fs::write(cfg.path().join("host.toml"), qinq_toml("802.1ad"))?;
    print!("{}", vznet_ok(a.name(), &["apply"], cfg.path())?);
    let mut failures = Vec::new();
    let outer = a.ip_json(["-d", "link", "show", "eth0.100"])?;
    let proto = outer[0]["linkinfo"]["info_data"]["protocol"].clone();
    check(
        proto == "802.1ad",
        &format!("outer VLAN protocol {proto}"),
        &mut failures,
    );
    check(a.ping("10.80.0.2"), "a -> b through QinQ", &mut failures);
    std::fs::write(cfg.path().join("host.toml"), qinq_toml("802.1Q"))?;
    let plan = vznet_ok(a.name(), &["plan"], cfg.path())?;
    let remade = [
        "- link eth0.100.200",
        "- link eth0.100",
        "+ vlan eth0.100 (link eth0, id 100, protocol 802.1Q)",
        "+ vlan eth0.100.200 (link eth0.100, id 200, protocol 802.1Q)",
    ];
    check(
        remade.iter().all(|op| plan.lines().any(|l| l == *op)),
        &format!(
            "a new outer protocol makes both VLANs again: {}",
            plan.trim().replace('\n', "; ")
        ),
        &mut failures,
    );
    vznet_ok(a.name(), &["apply"], cfg.path())?;
    check(
        unanswered(&a, "10.80.0.2"),
        "802.1Q outer tag: the 802.1ad peer drops it",
        &mut failures,
    );
    std::fs::write(cfg.path().join("host.toml"), qinq_toml("802.1ad"))?;
    vznet_ok(a.name(), &["apply"], cfg.path())?;
    check(
        a.ping("10.80.0.2"),
        "802.1ad again: traffic again",
        &mut failures,
    );
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}
