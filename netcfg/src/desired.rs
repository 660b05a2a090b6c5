//! The config flattened into what must exist in each netns.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::kernel::features::Feature;
use crate::kernel::state::ALIAS_PREFIX;
use crate::link::veth::{Veth, VethPeer};
use crate::link::{self, Kind, LinkDef, Port};
use crate::model::validate::{global_sysctl_path, interface_sysctl_path, VENET_IFNAME};
use crate::model::{Config, MacAddr, RouteDest};
use crate::op::{NsName, RouteSpec};

/// A link vznet creates and owns.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    /// Netns.
    pub ns: NsName,
    /// The link (kind, attributes, master, alias).
    pub link: LinkDef,
    /// Addresses.
    pub addrs: Vec<IpNet>,
}

/// An existing link vznet does not own but attaches (a bridge port or bond slave).
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The port.
    pub name: String,
    /// Its master.
    pub master: String,
    /// The master is a bond (the port must go down before joining).
    pub bond_slave: bool,
    /// Its attributes as a bridge port.
    pub port: Port,
}

/// An existing link the config declares (`[[ethernet]]`): vznet sets its MTU,
/// up state and addresses but does not own it.
#[derive(Debug, Clone, PartialEq)]
pub struct Nic {
    /// Name.
    pub name: String,
    /// MTU (`None`: left as it is).
    pub mtu: Option<u32>,
    /// Up.
    pub up: bool,
    /// Addresses vznet adds and marks as its own.
    pub addrs: Vec<IpNet>,
}

/// The VE end of a veth, in the VE's netns.
#[derive(Debug, Clone, PartialEq)]
pub struct VeEnd {
    /// Netns (as the config names it).
    pub ns: String,
    /// Name inside.
    pub name: String,
    /// MAC.
    pub mac: Option<MacAddr>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Host-side name (its peer).
    pub host_name: String,
    /// Alias.
    pub alias: String,
    /// Addresses.
    pub addrs: Vec<IpNet>,
}

/// Everything the config asks for.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Sysctl files and values (host netns).
    pub sysctls: Vec<(PathBuf, String)>,
    /// Links in the host netns (bonds, VLANs, bridges, host ends of veths).
    pub links: Vec<LinkSpec>,
    /// Existing links to attach.
    pub attachments: Vec<Attachment>,
    /// Existing links to configure.
    pub nics: Vec<Nic>,
    /// VE ends of veths.
    pub ve_ends: Vec<VeEnd>,
    /// Routes per netns (`None`: host).
    pub routes: BTreeMap<NsName, Vec<RouteSpec>>,
    /// VEs with network config but no netns (not running): not wired now.
    pub unwired: Vec<u32>,
    /// VRRP virtual IPs by interface (host netns): the VRRP instance adds and
    /// removes them, so plan never touches them.
    pub vips: Vec<(String, IpNet)>,
    /// Policy routing rules (host netns).
    pub rules: Vec<crate::rule::RuleSpec>,
    /// Proxy neighbour entries for routed VEs (host netns).
    pub proxies: Vec<crate::neighbour::ProxySpec>,
    /// Links whose IPv6 addresses skip duplicate address detection: the two
    /// ends of a venet pair, a point-to-point link where nobody else can hold
    /// an address, so DAD would only hold the VE's traffic back for a second.
    pub no_dad: BTreeSet<(NsName, String)>,
    /// Links whose IPv6 link-local addresses are all vznet's to keep as
    /// configured: venet host ends, made with no address generation (see
    /// kernel::ipv6), where the only link-local one is the VE's gateway.
    pub own_link_local: BTreeSet<(NsName, String)>,
    /// A bridge filters VLANs: observing reads the ports' VLANs too.
    pub bridge_vlans: bool,
}

/// A link `host.toml` declares, on its way to a [`LinkSpec`].
struct Made<'a> {
    name: &'a str,
    kind: Kind,
    alias: &'static str,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    addrs: &'a [IpNet],
    sysctl: &'a BTreeMap<String, crate::model::SysctlValue>,
}

impl<'a> Made<'a> {
    /// The keys every kind has.
    fn of(
        name: &'a str,
        mtu: Option<u32>,
        addrs: &'a [IpNet],
        sysctl: &'a BTreeMap<String, crate::model::SysctlValue>,
    ) -> Made<'a> {
        Made {
            name,
            kind: Kind::Other {
                kind: String::new(),
            },
            alias: "",
            mtu,
            mac: None,
            addrs,
            sysctl,
        }
    }
}

/// The host end's address on a venet link with IPv6: the VE's default route
/// points at it (`default via fe80::1 dev venet0`). A veth is not a NOARP
/// point-to-point device like OpenVZ's venet, and IPv6 has no proxy_arp: a
/// device route would make the VE solicit every destination, which nobody
/// answers. Link-local, so the same address on every venet link is fine.
pub const VENET_GATEWAY6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// [`VENET_GATEWAY6`] with its prefix, as the host end carries it.
const VENET_GATEWAY6_NET: IpNet = IpNet::V6(ipnet::Ipv6Net::new_assert(VENET_GATEWAY6, 64));

/// The alias of a VE's link.
pub fn ve_alias(id: u32, netif: &str) -> String {
    format!("{ALIAS_PREFIX}ve{id}:{netif}")
}

impl Desired {
    /// Flattens a validated config.
    pub fn from_config(config: &Config) -> Desired {
        let mut d = Desired::default();
        let host = &config.host;
        for (k, v) in &host.sysctl {
            // Validation refused keys that leave /proc/sys.
            if let Ok(p) = global_sysctl_path(k) {
                d.sysctls.push((p, v.to_string()));
            }
        }
        let iface_sysctls =
            |d: &mut Desired, ifname: &str, map: &BTreeMap<String, crate::model::SysctlValue>| {
                for (k, v) in map {
                    if let Ok(p) = interface_sysctl_path(k, ifname) {
                        d.sysctls.push((p, v.to_string()));
                    }
                }
                for (k, v) in crate::model::sysctl::implied_by(map) {
                    if let Ok(p) = interface_sysctl_path(&k, ifname) {
                        d.sysctls.push((p, v));
                    }
                }
            };
        let owned = |name: &str, kind: Kind, alias: &str| LinkDef {
            name: name.to_string(),
            kind,
            mtu: None,
            mac: None,
            master: None,
            port: Port::default(),
            alias: format!("{ALIAS_PREFIX}{alias}"),
            depth: 0,
            sysctls: Default::default(),
        };
        let made = host
            .bond
            .iter()
            .map(|b| Made {
                kind: Kind::Bond(link::bond::Bond::from_config(b)),
                alias: "bond",
                mac: None,
                ..Made::of(&b.name, b.mtu, &b.addresses, &b.sysctl)
            })
            .chain(host.vlan.iter().map(|v| Made {
                kind: Kind::Vlan(link::vlan::Vlan::new(&v.link, v.id, v.protocol)),
                alias: "vlan",
                mac: None,
                ..Made::of(&v.name, v.mtu, &v.addresses, &v.sysctl)
            }))
            .chain(host.macvlan.iter().map(|m| Made {
                kind: Kind::Macvlan(link::macvlan::Macvlan {
                    link: Some(m.link.as_str().into()),
                    mode: Some(m.mode),
                }),
                alias: "macvlan",
                mac: m.mac,
                ..Made::of(&m.name, m.mtu, &m.addresses, &m.sysctl)
            }))
            .chain(host.vxlan.iter().map(|v| Made {
                kind: Kind::Vxlan(link::vxlan::Vxlan::from_config(v)),
                alias: "vxlan",
                mac: v.mac,
                ..Made::of(&v.name, v.mtu, &v.addresses, &v.sysctl)
            }))
            .chain(host.dummy.iter().map(|x| Made {
                kind: Kind::Dummy(link::dummy::Dummy {}),
                alias: "dummy",
                mac: x.mac,
                ..Made::of(&x.name, x.mtu, &x.addresses, &x.sysctl)
            }))
            .chain(host.bridge.iter().map(|b| Made {
                kind: Kind::Bridge(link::bridge::Bridge::from_config(b)),
                alias: "bridge",
                // Pinned: a bridge takes its lowest port's MAC otherwise.
                mac: Some(b.mac.unwrap_or_else(|| MacAddr::for_bridge(&b.name))),
                ..Made::of(&b.name, b.mtu, &b.addresses, &b.sysctl)
            }));
        for m in made {
            let mut link = owned(m.name, m.kind, m.alias);
            link.mtu = m.mtu;
            link.mac = m.mac;
            iface_sysctls(&mut d, m.name, m.sysctl);
            d.links.push(LinkSpec {
                ns: None,
                link,
                addrs: m.addrs.to_vec(),
            });
        }
        // Members: a link vznet makes has its master in its spec; an existing
        // one is attached.
        for bond in &host.bond {
            for s in &bond.slaves {
                d.join(s, &bond.name, true, Port::default());
            }
        }
        for br in &host.bridge {
            for p in &br.ports {
                d.join(
                    p.name(),
                    &br.name,
                    false,
                    Port::from_config(br, &p.options()),
                );
            }
        }
        for nic in &host.ethernet {
            d.nics.push(Nic {
                name: nic.name.clone(),
                mtu: nic.mtu,
                up: nic.up,
                addrs: nic.addresses.clone(),
            });
            iface_sysctls(&mut d, &nic.name, &nic.sysctl);
        }
        d.bridge_vlans = host.bridge.iter().any(|b| b.vlan_filtering);
        for v in &host.vrrp {
            for (dev, a) in v.held_addresses() {
                d.vips.push((dev.to_owned(), a));
            }
        }
        // Sysctls vznet sets by itself (routed VEs, neighbour devices).
        let mut defaults: Vec<(PathBuf, String)> = Vec::new();
        let mut host_routes = Vec::new();
        for r in &host.route {
            let mut route = route_spec(r.to, r.via, r.dev.clone(), r.metric);
            route.table = r.table.map_or(crate::op::MAIN_TABLE, |t| t.0);
            host_routes.push(route);
        }
        for file in &config.ves {
            let ve = &file.ve;
            let Some(ns) = ve.netns.clone() else {
                if !ve.netif.is_empty() || ve.venet.is_some() {
                    d.unwired.push(ve.id);
                }
                continue;
            };
            let mut ve_routes = Vec::new();
            for (n, netif) in ve.netif.iter().enumerate() {
                let host_name = ve.host_ifname(n);
                let alias = ve_alias(ve.id, &netif.name);
                let port = netif
                    .bridge
                    .as_ref()
                    .and_then(|b| host.bridge.iter().find(|br| &br.name == b))
                    .map(|br| Port::from_config(br, &netif.port_options()))
                    .unwrap_or_default();
                d.links.push(LinkSpec {
                    ns: None,
                    link: LinkDef {
                        mtu: netif.mtu,
                        mac: netif.host_mac,
                        master: netif.bridge.clone(),
                        port,
                        alias: alias.clone(),
                        ..owned(
                            &host_name,
                            Kind::Veth(Veth {
                                peer: Some(VethPeer {
                                    ns: Some(ns.clone()),
                                    name: netif.name.clone(),
                                    mac: netif.mac,
                                    mtu: netif.mtu,
                                }),
                            }),
                            "",
                        )
                    },
                    addrs: Vec::new(),
                });
                d.ve_ends.push(VeEnd {
                    ns: ns.clone(),
                    name: netif.name.clone(),
                    mac: netif.mac,
                    mtu: netif.mtu,
                    host_name: host_name.clone(),
                    alias,
                    addrs: netif.addresses.clone(),
                });
                for gw in netif.gateway.iter().chain(&netif.gateway6) {
                    ve_routes.push(route_spec(
                        RouteDest::Default,
                        Some(*gw),
                        Some(netif.name.clone()),
                        None,
                    ));
                }
                iface_sysctls(&mut d, &host_name, &netif.sysctl);
            }
            if let Some(venet) = &ve.venet {
                let host_name = ve.venet_host_ifname();
                let alias = ve_alias(ve.id, VENET_IFNAME);
                let ipv6 = venet.addresses.iter().any(IpAddr::is_ipv6);
                d.links.push(LinkSpec {
                    ns: None,
                    link: LinkDef {
                        mtu: venet.mtu,
                        alias: alias.clone(),
                        ..owned(
                            &host_name,
                            Kind::Veth(Veth {
                                peer: Some(VethPeer {
                                    ns: Some(ns.clone()),
                                    name: VENET_IFNAME.into(),
                                    mac: None,
                                    mtu: venet.mtu,
                                }),
                            }),
                            "",
                        )
                    },
                    addrs: if ipv6 {
                        vec![VENET_GATEWAY6_NET]
                    } else {
                        Vec::new()
                    },
                });
                d.ve_ends.push(VeEnd {
                    ns: ns.clone(),
                    name: VENET_IFNAME.into(),
                    mac: None,
                    mtu: venet.mtu,
                    host_name: host_name.clone(),
                    alias,
                    addrs: venet.addresses.iter().map(|a| IpNet::from(*a)).collect(),
                });
                d.no_dad.insert((None, host_name.clone()));
                d.own_link_local.insert((None, host_name.clone()));
                d.no_dad.insert((Some(ns.clone()), VENET_IFNAME.into()));
                for a in &venet.addresses {
                    host_routes.push(route_spec(
                        RouteDest::Prefix(IpNet::from(*a)),
                        None,
                        Some(host_name.clone()),
                        None,
                    ));
                }
                if venet.addresses.iter().any(IpAddr::is_ipv4) {
                    ve_routes.push(route_spec(
                        RouteDest::Prefix(IpNet::from(IpAddr::from([0u8; 4])).trunc_to(0)),
                        None,
                        Some(VENET_IFNAME.into()),
                        None,
                    ));
                }
                if ipv6 {
                    ve_routes.push(route_spec(
                        RouteDest::Default,
                        Some(IpAddr::V6(VENET_GATEWAY6)),
                        Some(VENET_IFNAME.into()),
                        None,
                    ));
                }
                // Routed mode: the host answers ARP for every VE (at once, see
                // model::sysctl::implied_by) and forwards.
                let mut keys = vec![
                    ("proxy_arp", "1"),
                    ("neigh.proxy_delay", "0"),
                    ("forwarding", "1"),
                ];
                if ipv6 {
                    keys.push(("ipv6.forwarding", "1"));
                }
                for (key, value) in keys {
                    if let Ok(p) = interface_sysctl_path(key, &host_name) {
                        defaults.push((p, value.into()));
                    }
                }
            }
            if !ve_routes.is_empty() {
                d.routes.insert(Some(ns), ve_routes);
            }
        }
        if !host_routes.is_empty() {
            d.routes.insert(None, host_routes);
        }
        d.rules = crate::rule::desired(config);
        d.proxies = crate::neighbour::desired(config);
        defaults.extend(crate::neighbour::sysctls(config, &d.proxies));
        // What vznet sets by itself yields to what the config sets.
        let mut set: BTreeSet<PathBuf> = d.sysctls.iter().map(|(p, _)| p.clone()).collect();
        for (p, v) in defaults {
            if set.insert(p.clone()) {
                d.sysctls.push((p, v));
            }
        }
        d.set_depths();
        d
    }

    /// Whether every IPv6 link-local address on `dev` in `ns` is vznet's.
    pub fn owns_link_local(&self, ns: &NsName, dev: &str) -> bool {
        self.own_link_local.contains(&(ns.clone(), dev.to_string()))
    }

    /// Whether IPv6 addresses on `dev` in `ns` skip duplicate address detection.
    pub fn skips_dad(&self, ns: &NsName, dev: &str) -> bool {
        self.no_dad.contains(&(ns.clone(), dev.to_string()))
    }

    /// `name` joins `master`: as part of its spec if vznet makes it, as an
    /// attachment otherwise.
    fn join(&mut self, name: &str, master: &str, bond_slave: bool, port: Port) {
        if let Some(l) = self
            .links
            .iter_mut()
            .find(|l| l.ns.is_none() && l.link.name == name)
        {
            l.link.master = Some(master.to_string());
            l.link.port = port;
        } else {
            self.attachments.push(Attachment {
                name: name.to_string(),
                master: master.to_string(),
                bond_slave,
                port,
            });
        }
    }

    /// Each link's depth: one more than the deepest link of the config it names.
    fn set_depths(&mut self) {
        let depths = link::depths(self.links.iter().map(|l| (&l.ns, &l.link)));
        for (l, depth) in self.links.iter_mut().zip(depths) {
            l.link.depth = depth;
        }
    }

    /// The link vznet makes with this name in the host netns.
    pub fn host_link(&self, name: &str) -> Option<&LinkDef> {
        self.links
            .iter()
            .find(|l| l.ns.is_none() && l.link.name == name)
            .map(|l| &l.link)
    }

    /// Kernel features the config needs.
    pub fn features(&self) -> Vec<Feature> {
        let mut out: Vec<Feature> = Vec::new();
        for f in self.links.iter().flat_map(|l| l.link.kind.features()) {
            if !out.contains(&f) {
                out.push(f);
            }
        }
        out
    }
}

trait TruncTo {
    fn trunc_to(self, len: u8) -> IpNet;
}

impl TruncTo for IpNet {
    fn trunc_to(self, len: u8) -> IpNet {
        IpNet::new(self.addr(), len)
            .map(|n| n.trunc())
            .unwrap_or(self)
    }
}

fn route_spec(
    to: RouteDest,
    via: Option<IpAddr>,
    dev: Option<String>,
    metric: Option<u32>,
) -> RouteSpec {
    let dst = match to {
        RouteDest::Prefix(net) => net.trunc(),
        RouteDest::Default => {
            let v4 = via.is_none_or(|v| v.is_ipv4());
            let any = if v4 {
                IpAddr::from([0u8; 4])
            } else {
                IpAddr::from([0u16; 8])
            };
            IpNet::new(any, 0).unwrap_or_else(|_| IpNet::from(any))
        }
    };
    RouteSpec {
        dst,
        via,
        dev,
        metric,
        table: crate::op::MAIN_TABLE,
    }
}
