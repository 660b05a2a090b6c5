//! `vznet show --format dot|svg` on a host vznet wired: the graph's nodes and
//! edges are the kernel's links, the VEs' ports and the VEs, with addresses.

mod common;

use std::collections::BTreeSet;

use anyhow::{ensure, Result};
use common::{vznet_ok, ConfigDir};
use lab::Lab;

#[test]
fn the_picture_of_a_wired_host_has_its_bridge_ports_and_ves() -> Result<()> {
    let lab = Lab::new("pic")?;
    let host = lab.host("host")?;
    let ve = lab.host("ve1")?;
    let routed = lab.host("ve2")?;
    let cfg = ConfigDir::new()?;
    cfg.host(
        r#"
[sysctl]
"net.ipv4.ip_forward" = 1

[[bridge]]
name = "br0"
addresses = ["192.168.51.1/24"]
"#,
    )?;
    cfg.ve(
        1,
        &format!(
            "id = 1\nnetns = \"{}\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"192.168.51.11/24\"]\n",
            ve.name()
        ),
    )?;
    cfg.ve(
        2,
        &format!(
            "id = 2\nnetns = \"{}\"\n[venet]\naddresses = [\"10.9.0.2\"]\n",
            routed.name()
        ),
    )?;
    vznet_ok(&host, &cfg, &["apply"])?;

    let json: serde_json::Value = serde_json::from_str(&vznet_ok(
        &host,
        &cfg,
        &["show", "--format", "dot", "--json"],
    )?)?;
    let nodes: BTreeSet<String> = json["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str().map(str::to_string))
        .collect();
    for want in ["link:br0", "link:veth1.0", "link:venet2", "ve:1", "ve:2"] {
        ensure!(nodes.contains(want), "{want} not in {nodes:?}");
    }
    let edges: BTreeSet<(String, String, String)> = json["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("from"), s("to"), s("label"))
        })
        .collect();
    for (from, to, label) in [
        ("link:veth1.0", "link:br0", "port"),
        ("ve:1", "link:veth1.0", "eth0"),
        ("ve:2", "link:venet2", "venet0"),
    ] {
        ensure!(
            edges.contains(&(from.into(), to.into(), label.into())),
            "{from} -> {to} ({label}) not in {edges:?}"
        );
    }
    let node = |id: &str| {
        json["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    ensure!(
        node("link:br0")["label"]
            .to_string()
            .contains("192.168.51.1/24"),
        "{}",
        node("link:br0")
    );
    ensure!(
        node("ve:1")["label"]
            .to_string()
            .contains("eth0 192.168.51.11/24"),
        "{}",
        node("ve:1")
    );
    ensure!(node("ve:1")["state"] == "good", "{}", node("ve:1"));

    let dot = vznet_ok(&host, &cfg, &["show", "--format", "dot"])?;
    ensure!(
        dot.starts_with("digraph vznet {") && dot.contains("\"ve:1\" -> \"link:veth1.0\""),
        "{dot}"
    );
    let svg = vznet_ok(&host, &cfg, &["show", "--format", "svg"])?;
    ensure!(svg.contains("<svg") && svg.contains("VE 1"), "{svg}");
    Ok(())
}
