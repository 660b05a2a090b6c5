//! `vznet show --format dot`: the host as a graph. NICs, bonds, VLANs and
//! bridges (with their addresses), the VEs' ports and the VEs, VRRP instances
//! with their virtual addresses, virtual servers with their backends; state as
//! colour (up/down, Master/Backup/Fault, backend health).
//!
//! The picture is built from plain facts (`Host`), gathered by `show` from the
//! kernel, the config and vznetd's status, so it is tested without a kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// A host link as the picture needs it.
#[derive(Debug, Clone, Default)]
pub struct Link {
    /// Name.
    pub name: String,
    /// `bridge`, `bond`, `vlan`, `veth`, or the kernel's kind (`""`: a NIC).
    pub kind: String,
    /// Administratively up.
    pub up: bool,
    /// Its bridge or bond.
    pub master: Option<String>,
    /// A VLAN's lower link.
    pub lower: Option<String>,
    /// Addresses, `a.b.c.d/n`.
    pub addresses: Vec<String>,
}

/// A VE's interface and the host link it hangs on.
#[derive(Debug, Clone, Default)]
pub struct VePort {
    /// VE id.
    pub veid: u32,
    /// Name inside the VE.
    pub interface: String,
    /// The host end (a veth, or the venet link).
    pub host_interface: String,
    /// Whether the VE end exists and is up.
    pub up: bool,
    /// Addresses inside the VE.
    pub addresses: Vec<String>,
}

/// A VRRP instance.
#[derive(Debug, Clone, Default)]
pub struct Vrrp {
    /// Name.
    pub name: String,
    /// Its interface.
    pub interface: String,
    /// VRID.
    pub vrid: u8,
    /// Virtual addresses.
    pub vips: Vec<String>,
    /// Master, Backup, Fault, Initialize; `None` when vznetd does not answer.
    pub state: Option<String>,
}

/// A backend of a virtual server.
#[derive(Debug, Clone, Default)]
pub struct Backend {
    /// `address:port`.
    pub address: String,
    /// The VE it is, if any.
    pub ve: Option<u32>,
    /// Weight.
    pub weight: u32,
    /// Passing its checks; `None` when vznetd does not answer.
    pub up: Option<bool>,
}

/// A virtual server.
#[derive(Debug, Clone, Default)]
pub struct VirtualServer {
    /// Name.
    pub name: String,
    /// The VIP (no port).
    pub vip: String,
    /// `tcp/80`.
    pub service: String,
    /// Below quorum; `None` when vznetd does not answer.
    pub below_quorum: Option<bool>,
    /// Backends.
    pub backends: Vec<Backend>,
}

/// Everything drawn.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// Host links (loopback left out).
    pub links: Vec<Link>,
    /// VE interfaces.
    pub ve_ports: Vec<VePort>,
    /// VRRP instances.
    pub vrrp: Vec<Vrrp>,
    /// Virtual servers.
    pub virtual_servers: Vec<VirtualServer>,
}

/// How a node is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Up, healthy, Master.
    Good,
    /// Standing by: Backup, Initialize.
    Standby,
    /// Down, failed, Fault, below quorum.
    Bad,
    /// Not known (vznetd does not answer) or stateless.
    Unknown,
}

impl State {
    fn colour(self) -> &'static str {
        match self {
            State::Good => "palegreen",
            State::Standby => "lightgoldenrod1",
            State::Bad => "salmon",
            State::Unknown => "gray90",
        }
    }

    fn of_up(up: bool) -> State {
        if up {
            State::Good
        } else {
            State::Bad
        }
    }
}

/// One node: `id` is unique (`link:br0`, `ve:112`, `vrrp:VI_1`, ...).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// Unique id.
    pub id: String,
    /// Lines of its label.
    pub label: Vec<String>,
    /// Shape: box (links), component (VEs), ellipse (VRRP), hexagon (virtual
    /// servers), note (backends that are not VEs).
    pub shape: &'static str,
    /// State.
    pub state: State,
}

/// One edge, from the lower layer to the upper (a port to its bridge, a VE to
/// its port, an instance to its interface).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Edge {
    /// From node id.
    pub from: String,
    /// To node id.
    pub to: String,
    /// Label.
    pub label: String,
}

/// The graph.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Graph {
    /// Nodes in drawing order.
    pub nodes: Vec<Node>,
    /// Edges.
    pub edges: Vec<Edge>,
}

impl Graph {
    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

/// Builds the graph of `host`.
pub fn graph(host: &Host) -> Graph {
    let mut g = Graph::default();
    let names: BTreeSet<&str> = host.links.iter().map(|l| l.name.as_str()).collect();
    for l in &host.links {
        let kind = if l.kind.is_empty() { "nic" } else { &l.kind };
        let mut label = vec![format!("{} ({kind})", l.name)];
        label.extend(l.addresses.iter().cloned());
        g.nodes.push(Node {
            id: link_id(&l.name),
            label,
            shape: "box",
            state: State::of_up(l.up),
        });
        if let Some(m) = l.master.as_deref().filter(|m| names.contains(m)) {
            // A bond's members are its slaves; a bridge's, its ports.
            let into_bond = host.links.iter().any(|x| x.name == m && x.kind == "bond");
            let label = if into_bond { "slave" } else { "port" };
            g.edges.push(edge(&link_id(&l.name), &link_id(m), label));
        }
        if let Some(lower) = l.lower.as_deref().filter(|x| names.contains(x)) {
            g.edges
                .push(edge(&link_id(lower), &link_id(&l.name), "vlan"));
        }
    }
    let mut ves: BTreeMap<u32, (bool, Vec<String>)> = BTreeMap::new();
    for p in &host.ve_ports {
        let e = ves.entry(p.veid).or_default();
        e.0 |= p.up;
        e.1.extend(p.addresses.iter().map(|a| format!("{} {a}", p.interface)));
        if names.contains(p.host_interface.as_str()) {
            g.edges.push(edge(
                &ve_id(p.veid),
                &link_id(&p.host_interface),
                &p.interface,
            ));
        }
    }
    for (id, (up, addrs)) in &ves {
        let mut label = vec![format!("VE {id}")];
        label.extend(addrs.iter().cloned());
        g.nodes.push(Node {
            id: ve_id(*id),
            label,
            shape: "component",
            state: State::of_up(*up),
        });
    }
    for v in &host.vrrp {
        let state = match v.state.as_deref() {
            Some("Master") => State::Good,
            Some("Backup" | "Initialize") => State::Standby,
            Some(_) => State::Bad,
            None => State::Unknown,
        };
        let mut label = vec![format!("VRRP {} vrid {}", v.name, v.vrid)];
        label.extend(v.vips.iter().cloned());
        label.push(v.state.clone().unwrap_or_else(|| "state unknown".into()));
        g.nodes.push(Node {
            id: format!("vrrp:{}", v.name),
            label,
            shape: "ellipse",
            state,
        });
        if names.contains(v.interface.as_str()) {
            g.edges.push(edge(
                &format!("vrrp:{}", v.name),
                &link_id(&v.interface),
                "on",
            ));
        }
    }
    for vs in &host.virtual_servers {
        let id = format!("vs:{}", vs.name);
        let state = match vs.below_quorum {
            Some(true) => State::Bad,
            Some(false) => State::Good,
            None => State::Unknown,
        };
        let mut label = vec![format!("{} {} {}", vs.name, vs.vip, vs.service)];
        if vs.below_quorum == Some(true) {
            label.push("BELOW QUORUM".into());
        }
        g.nodes.push(Node {
            id: id.clone(),
            label,
            shape: "hexagon",
            state,
        });
        for v in host.vrrp.iter().filter(|v| {
            v.vips
                .iter()
                .any(|a| a.split('/').next() == Some(vs.vip.as_str()))
        }) {
            g.edges.push(edge(&id, &format!("vrrp:{}", v.name), "VIP"));
        }
        for b in &vs.backends {
            let state = match b.up {
                Some(up) => State::of_up(up),
                None => State::Unknown,
            };
            let target = match b.ve.filter(|ve| ves.contains_key(ve)) {
                Some(ve) => ve_id(ve),
                None => {
                    let bid = format!("backend:{}", b.address);
                    if g.node(&bid).is_none() {
                        g.nodes.push(Node {
                            id: bid.clone(),
                            label: vec![b.address.clone()],
                            shape: "note",
                            state,
                        });
                    }
                    bid
                }
            };
            let health = match b.up {
                Some(true) => "up",
                Some(false) => "down",
                None => "?",
            };
            g.edges.push(Edge {
                from: id.clone(),
                to: target,
                label: format!("{} w{} {health}", b.address, b.weight),
            });
        }
    }
    g
}

/// The graph in Graphviz's DOT language.
pub fn dot(g: &Graph) -> String {
    let mut o = String::from(
        "digraph vznet {\n  rankdir=BT;\n  node [style=\"rounded,filled\", fontname=\"sans\"];\n  edge [fontname=\"sans\", fontsize=10];\n",
    );
    for n in &g.nodes {
        let label = n
            .label
            .iter()
            .map(|l| quote(l))
            .collect::<Vec<_>>()
            .join("\\n");
        let _ = writeln!(
            o,
            "  \"{}\" [label=\"{label}\", shape={}, fillcolor={}];",
            quote(&n.id),
            n.shape,
            n.state.colour()
        );
    }
    for e in &g.edges {
        let _ = writeln!(
            o,
            "  \"{}\" -> \"{}\" [label=\"{}\"];",
            quote(&e.from),
            quote(&e.to),
            quote(&e.label)
        );
    }
    o.push_str("}\n");
    o
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn link_id(name: &str) -> String {
    format!("link:{name}")
}

fn ve_id(id: u32) -> String {
    format!("ve:{id}")
}

fn edge(from: &str, to: &str, label: &str) -> Edge {
    Edge {
        from: from.into(),
        to: to.into(),
        label: label.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, kind: &str, master: Option<&str>, addrs: &[&str]) -> Link {
        Link {
            name: name.into(),
            kind: kind.into(),
            up: true,
            master: master.map(Into::into),
            lower: None,
            addresses: addrs.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The seed's host: bond0 over eth0/eth1, bond0.136 on it, br104 over bond0
    /// and br136 over the VLAN with host addresses, VE 112 on both bridges, VE 120
    /// routed, a VRRP VIP on br104 and a virtual server on it over VE 112 and an
    /// outside backend that is down.
    fn seed() -> Host {
        let mut vlan = link("bond0.136", "vlan", Some("br136"), &[]);
        vlan.lower = Some("bond0".into());
        let mut down = link("veth112.1", "veth", Some("br136"), &[]);
        down.up = false;
        Host {
            links: vec![
                link("eth0", "", Some("bond0"), &[]),
                link("eth1", "", Some("bond0"), &[]),
                link("bond0", "bond", Some("br104"), &[]),
                vlan,
                link("br104", "bridge", None, &["192.168.17.52/24"]),
                link("br136", "bridge", None, &["192.168.136.52/24"]),
                link("veth112.0", "veth", Some("br104"), &[]),
                down,
                link("venet120", "veth", None, &[]),
            ],
            ve_ports: vec![
                VePort {
                    veid: 112,
                    interface: "eth0".into(),
                    host_interface: "veth112.0".into(),
                    up: true,
                    addresses: vec!["192.168.17.53/24".into()],
                },
                VePort {
                    veid: 112,
                    interface: "eth1".into(),
                    host_interface: "veth112.1".into(),
                    up: true,
                    addresses: vec![],
                },
                VePort {
                    veid: 120,
                    interface: "venet0".into(),
                    host_interface: "venet120".into(),
                    up: true,
                    addresses: vec!["10.1.0.5/32".into()],
                },
            ],
            vrrp: vec![Vrrp {
                name: "VI_1".into(),
                interface: "br104".into(),
                vrid: 51,
                vips: vec!["192.168.17.100/24".into()],
                state: Some("Master".into()),
            }],
            virtual_servers: vec![VirtualServer {
                name: "web".into(),
                vip: "192.168.17.100".into(),
                service: "tcp/80".into(),
                below_quorum: Some(false),
                backends: vec![
                    Backend {
                        address: "192.168.17.53:80".into(),
                        ve: Some(112),
                        weight: 1,
                        up: Some(true),
                    },
                    Backend {
                        address: "192.168.17.54:8080".into(),
                        ve: None,
                        weight: 2,
                        up: Some(false),
                    },
                ],
            }],
        }
    }

    #[test]
    fn the_seed_host_has_every_layer_and_every_edge() {
        let g = graph(&seed());
        let ids: BTreeSet<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
        let want: BTreeSet<&str> = [
            "link:eth0",
            "link:eth1",
            "link:bond0",
            "link:bond0.136",
            "link:br104",
            "link:br136",
            "link:veth112.0",
            "link:veth112.1",
            "link:venet120",
            "ve:112",
            "ve:120",
            "vrrp:VI_1",
            "vs:web",
            "backend:192.168.17.54:8080",
        ]
        .into_iter()
        .collect();
        assert_eq!(ids, want);
        let edges: BTreeSet<(&str, &str, &str)> = g
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.label.as_str()))
            .collect();
        let want: BTreeSet<(&str, &str, &str)> = [
            ("link:eth0", "link:bond0", "slave"),
            ("link:eth1", "link:bond0", "slave"),
            ("link:bond0", "link:br104", "port"),
            ("link:bond0", "link:bond0.136", "vlan"),
            ("link:bond0.136", "link:br136", "port"),
            ("link:veth112.0", "link:br104", "port"),
            ("link:veth112.1", "link:br136", "port"),
            ("ve:112", "link:veth112.0", "eth0"),
            ("ve:112", "link:veth112.1", "eth1"),
            ("ve:120", "link:venet120", "venet0"),
            ("vrrp:VI_1", "link:br104", "on"),
            ("vs:web", "vrrp:VI_1", "VIP"),
            ("vs:web", "ve:112", "192.168.17.53:80 w1 up"),
            (
                "vs:web",
                "backend:192.168.17.54:8080",
                "192.168.17.54:8080 w2 down",
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(edges, want);
    }

    #[test]
    fn state_is_colour_and_addresses_are_in_labels() {
        let g = graph(&seed());
        let node = |id: &str| g.node(id).expect(id);
        assert_eq!(node("link:veth112.1").state, State::Bad);
        assert_eq!(node("vrrp:VI_1").state, State::Good);
        assert_eq!(node("backend:192.168.17.54:8080").state, State::Bad);
        assert!(node("link:br104")
            .label
            .contains(&"192.168.17.52/24".to_string()));
        assert!(node("ve:112")
            .label
            .contains(&"eth0 192.168.17.53/24".to_string()));
        let text = dot(&g);
        assert!(
            text.contains(
                "\"link:veth112.1\" [label=\"veth112.1 (veth)\", shape=box, fillcolor=salmon];"
            ),
            "{text}"
        );
        assert!(
            text.contains("\"vs:web\" -> \"vrrp:VI_1\" [label=\"VIP\"];"),
            "{text}"
        );
    }

    #[test]
    fn graphviz_reads_the_picture() {
        // scripts/setup.sh installs graphviz: a missing `dot` is a failed set-up.
        let mut child = std::process::Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("dot (graphviz) runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(dot(&graph(&seed())).as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("dot finishes");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let svg = String::from_utf8_lossy(&out.stdout);
        assert!(svg.contains("<svg") && svg.contains("VE 112"), "{svg}");
    }
}
