//! `vznet show`: bridges and their ports, like `brctl show`, then VE interfaces.

use std::process::ExitCode;

use anyhow::Context;
use netcfg::desired::Desired;
use netcfg::kernel::netns;
use netcfg::kernel::state::{LinkType, NsState};
use netcfg::model::Config;

use super::picture;
use super::Cli;

/// What `vznet show` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables, like `brctl show`.
    Text,
    /// The host as a Graphviz graph (with --json: its nodes and edges).
    Dot,
    /// The graph drawn by Graphviz's `dot` (apt-get install graphviz).
    Svg,
}

pub(super) async fn show(cli: &Cli, format: Format) -> anyhow::Result<ExitCode> {
    let host_handle = netns::handle(netns::route_socket()?)?;
    let host = NsState::read(&host_handle).await.context("reading links")?;
    let config = Config::load(&cli.config_dir).ok();
    let desired = config
        .as_ref()
        .map(Desired::from_config)
        .unwrap_or_default();

    let mut bridges = Vec::new();
    for br in host.links.iter().filter(|l| l.kind == LinkType::Bridge) {
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
    let mut ve_ports = Vec::new();
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
                ve_ports.push(picture::VePort {
                    veid: ve.id,
                    interface: end.name.clone(),
                    host_interface: end.host_name.clone(),
                    up: link.is_some_and(|l| l.up),
                    addresses: addrs.clone(),
                });
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

    if format != Format::Text {
        let status = super::agent::find(cli);
        let facts = picture_facts(&host, ve_ports, config.as_ref(), status.as_ref());
        return draw(cli, format, &picture::graph(&facts));
    }
    if cli.json {
        let bj: Vec<_> = bridges
            .iter()
            .map(|(br, ports, addrs)| {
                serde_json::json!({
                    "name": br.name, "mac": br.mac.map(|m| m.to_string()), "stp": br.stp.unwrap_or(false),
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
        let stp = if br.stp.unwrap_or(false) { "yes" } else { "no" };
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

/// Prints the graph as DOT, as JSON (--json) or as SVG drawn by `dot`.
fn draw(cli: &Cli, format: Format, graph: &picture::Graph) -> anyhow::Result<ExitCode> {
    if cli.json {
        println!("{}", serde_json::to_string_pretty(graph)?);
        return Ok(ExitCode::SUCCESS);
    }
    let text = picture::dot(graph);
    if format == Format::Dot {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    use std::io::Write;
    let mut child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("running Graphviz's dot for --format svg (apt-get install graphviz)")?;
    child
        .stdin
        .take()
        .context("dot's stdin")?
        .write_all(text.as_bytes())?;
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "dot -Tsvg failed ({status})");
    Ok(ExitCode::SUCCESS)
}

/// The facts the picture draws: the kernel's links, the VEs' ports, and the
/// config's VRRP instances and virtual servers with vznetd's view of them.
fn picture_facts(
    host: &NsState,
    ve_ports: Vec<picture::VePort>,
    config: Option<&Config>,
    status: Option<&crate::daemon::Status>,
) -> picture::Host {
    let name_of = |index: Option<u32>| {
        index
            .and_then(|i| host.link_by_index(i))
            .map(|l| l.name.clone())
    };
    let links = host
        .links
        .iter()
        .filter(|l| l.name != "lo")
        .map(|l| picture::Link {
            name: l.name.clone(),
            kind: match &l.kind {
                LinkType::Bridge => "bridge".into(),
                LinkType::Veth => "veth".into(),
                LinkType::Bond => "bond".into(),
                LinkType::Vlan => "vlan".into(),
                LinkType::Other(k) => k.clone(),
            },
            up: l.up,
            master: name_of(l.master),
            lower: if l.kind == LinkType::Vlan {
                name_of(l.link)
            } else {
                None
            },
            addresses: host.addrs_of(l.index).map(|a| a.to_string()).collect(),
        })
        .collect();
    let vrrp = config
        .map(|c| &c.host.vrrp[..])
        .unwrap_or_default()
        .iter()
        .map(|v| picture::Vrrp {
            name: v.name.clone(),
            interface: v.interface.clone(),
            vrid: v.vrid,
            vips: v
                .virtual_ips
                .iter()
                .map(|a| a.address.to_string())
                .collect(),
            state: status
                .and_then(|s| s.vrrp.iter().find(|x| x.name == v.name))
                .map(|x| x.state.clone()),
        })
        .collect();
    // A backend is a VE when one of the VE's addresses is its address.
    let ve_of = |addr: &str| {
        ve_ports
            .iter()
            .find(|p| {
                p.addresses
                    .iter()
                    .any(|a| a.split('/').next() == Some(addr))
            })
            .map(|p| p.veid)
    };
    let virtual_servers = config
        .map(|c| &c.host.virtual_server[..])
        .unwrap_or_default()
        .iter()
        .map(|vs| {
            let name = vs.display_name();
            let live = status.and_then(|s| s.virtual_servers.iter().find(|x| x.name == name));
            let backends = match live {
                Some(l) => l
                    .backends
                    .iter()
                    .map(|b| picture::Backend {
                        address: std::net::SocketAddr::new(b.address, b.port).to_string(),
                        ve: ve_of(&b.address.to_string()),
                        weight: b.weight,
                        up: Some(b.state == "up"),
                    })
                    .collect(),
                None => vs
                    .backends
                    .iter()
                    .map(|b| picture::Backend {
                        address: {
                            let port = b
                                .port
                                .or(vs.single_port())
                                .map_or_else(|| "*".to_string(), |p| p.to_string());
                            match (b.address, b.ve) {
                                (Some(a), _) if a.is_ipv6() => format!("[{a}]:{port}"),
                                (Some(a), _) => format!("{a}:{port}"),
                                (None, Some(ve)) => format!("VE {ve}:{port}"),
                                (None, None) => "?".into(),
                            }
                        },
                        ve: b.ve,
                        weight: b.weight,
                        up: None,
                    })
                    .collect(),
            };
            picture::VirtualServer {
                name,
                vip: vs.vip.map_or_else(|| vs.display_name(), |v| v.to_string()),
                service: format!(
                    "{}/{}",
                    vs.protocol.as_str(),
                    vs.single_port()
                        .map_or_else(|| "*".to_string(), |p| p.to_string())
                ),
                below_quorum: live.map(|l| l.below_quorum),
                backends,
            }
        })
        .collect();
    picture::Host {
        links,
        ve_ports,
        vrrp,
        virtual_servers,
    }
}

async fn read_ns(path: &std::path::Path) -> anyhow::Result<NsState> {
    let file = netns::open(path)?;
    let mut sockets = netns::route_sockets(vec![file])?;
    let fd = sockets.pop().context("no socket")??;
    let h = netns::handle(fd)?;
    Ok(NsState::read(&h).await?)
}
