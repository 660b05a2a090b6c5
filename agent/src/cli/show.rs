//! `vznet show`: bridges and their ports, like `brctl show`, then VE interfaces.

use std::process::ExitCode;

use anyhow::Context;
use netcfg::desired::Desired;
use netcfg::kernel::netns;
use netcfg::kernel::state::{LinkState, NsState};
use netcfg::model::Config;

use super::Cli;

pub(super) async fn show(cli: &Cli) -> anyhow::Result<ExitCode> {
    let host_handle = netns::handle(netns::route_socket()?)?;
    let host = NsState::read(&host_handle).await.context("reading links")?;
    let config = Config::load(&cli.config_dir).ok();
    let desired = config
        .as_ref()
        .map(Desired::from_config)
        .unwrap_or_default();

    let mut bridges = Vec::new();
    for br in host.links.iter().filter(|l| l.is_bridge()) {
        let ports: Vec<&str> = host
            .links
            .iter()
            .filter(|l| l.master == Some(br.index))
            .map(|l| l.name.as_str())
            .collect();
        let addrs: Vec<String> = host.addrs_of(br.index).map(|a| a.to_string()).collect();
        bridges.push((br, ports, addrs));
    }

    // VE ends, read inside each VE netns the config names.
    let mut ves = Vec::new();
    if let Some(config) = &config {
        for file in &config.ves {
            let ve = &file.ve;
            let state = match ve.netns_path() {
                Some(path) => read_ns(&path).await.ok(),
                None => None,
            };
            for end in desired
                .ve_ends
                .iter()
                .filter(|e| Some(&e.ns) == ve.netns.as_ref())
            {
                let link = state.as_ref().and_then(|s| s.link(&end.name));
                let addrs: Vec<String> = match (state.as_ref(), link) {
                    (Some(s), Some(l)) => s.addrs_of(l.index).map(|a| a.to_string()).collect(),
                    _ => Vec::new(),
                };
                let bridge = host
                    .link(&end.host_name)
                    .and_then(|h| h.master)
                    .and_then(|m| host.link_by_index(m))
                    .map(|b| b.name.clone());
                ves.push(serde_json::json!({
                    "veid": ve.id, "netns": ve.netns, "interface": end.name, "host_interface": end.host_name,
                    "bridge": bridge, "mac": link.and_then(|l| l.mac).map(|m| m.to_string()),
                    "up": link.is_some_and(|l| l.up), "present": link.is_some(), "addresses": addrs,
                }));
            }
            if ve.netns.is_none() && (!ve.netif.is_empty() || ve.venet.is_some()) {
                ves.push(serde_json::json!({ "veid": ve.id, "netns": null, "present": false }));
            }
        }
    }

    if cli.json {
        let bj: Vec<_> = bridges
            .iter()
            .map(|(br, ports, addrs)| {
                serde_json::json!({
                    "name": br.name, "mac": br.mac.map(|m| m.to_string()), "stp": stp_on(br),
                    "managed": br.is_managed(), "up": br.up, "ports": ports, "addresses": addrs,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "bridges": bj, "ves": ves }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16}{:<24}{:<13}{:<16}addresses",
        "bridge name", "bridge id", "STP enabled", "interfaces"
    );
    for (br, ports, addrs) in &bridges {
        let id = br.mac.map_or_else(
            || "-".into(),
            |m| format!("8000.{}", m.to_string().replace(':', "")),
        );
        let stp = if stp_on(br) { "yes" } else { "no" };
        let first = ports.first().copied().unwrap_or("");
        println!(
            "{:<16}{:<24}{:<13}{:<16}{}",
            br.name,
            id,
            stp,
            first,
            addrs.join(" ")
        );
        for p in ports.iter().skip(1) {
            println!("{:<16}{:<24}{:<13}{p}", "", "", "");
        }
    }
    if !ves.is_empty() {
        println!();
        println!(
            "{:<8}{:<20} {:<11}{:<14}{:<10}{:<19}{:<6}addresses",
            "VEID", "netns", "interface", "host_if", "bridge", "mac", "state"
        );
        for v in &ves {
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
            let state = if !v["present"].as_bool().unwrap_or(false) {
                "absent"
            } else if v["up"].as_bool().unwrap_or(false) {
                "up"
            } else {
                "down"
            };
            let addrs: Vec<&str> = v["addresses"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            println!(
                "{:<8}{:<20} {:<11}{:<14}{:<10}{:<19}{:<6}{}",
                v["veid"].to_string(),
                s("netns"),
                s("interface"),
                s("host_interface"),
                s("bridge"),
                s("mac"),
                state,
                addrs.join(" ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stp_on(br: &LinkState) -> bool {
    br.kind.as_bridge().and_then(|b| b.stp).unwrap_or(false)
}

async fn read_ns(path: &std::path::Path) -> anyhow::Result<NsState> {
    let file = netns::open(path)?;
    let mut sockets = netns::route_sockets(vec![file])?;
    let fd = sockets.pop().context("no socket")??;
    let h = netns::handle(fd)?;
    Ok(NsState::read(&h).await?)
}
