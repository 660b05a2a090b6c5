//! The host's interfaces as the network files describe them (RHEL's ifcfg-* or
//! Debian's ifupdown), before they become host.toml's bonds, VLANs, bridges and
//! NICs: one shape for both sources.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use netcfg::model::{
    Bridge, BridgePort, Ethernet, HostConfig, MacAddr, Route, RouteDest, SysctlValue, Vlan,
};

use crate::import::report::{Kind, Report};

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// The file as the host names it (`/etc/...`).
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
}

/// What an interface is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfKind {
    /// A NIC (or anything vznet does not make).
    Ethernet,
    /// A bonding master.
    Bond,
    /// An 802.1Q VLAN on `link`.
    Vlan { link: String, id: u16 },
    /// A Linux bridge.
    Bridge,
}

/// A bonding option (`miimon=100`) and where it was set.
#[derive(Debug, Clone)]
pub struct BondOption {
    /// The kernel's option name.
    pub key: String,
    /// Its value as written.
    pub value: String,
    /// Where.
    pub at: At,
}

/// One interface of the host's network files.
#[derive(Debug, Clone)]
pub struct Iface {
    /// Interface name.
    pub name: String,
    /// Where it is declared.
    pub at: At,
    /// What it is.
    pub kind: IfKind,
    /// The bond it is a slave of.
    pub master: Option<String>,
    /// The bridge it is a port of.
    pub bridge: Option<String>,
    /// Slaves named by the bond itself (ifupdown's `bond-slaves`).
    pub slaves: Vec<String>,
    /// Ports named by the bridge itself (ifupdown's `bridge_ports`).
    pub ports: Vec<String>,
    /// Addresses.
    pub addresses: Vec<IpNet>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Bonding options of this bond (after the module's).
    pub bond_options: Vec<BondOption>,
    /// Bridge: spanning tree.
    pub stp: Option<bool>,
    /// Bridge: STP timers and priority: vznet key, value, the source's
    /// keyword and where.
    pub bridge_numbers: Vec<(&'static str, u32, String, At)>,
    /// A MAC the files set (bridges only carry it).
    pub mac: Option<(MacAddr, At)>,
    /// Per-interface sysctls (from sysctl.conf).
    pub sysctl: BTreeMap<String, SysctlValue>,
}

impl Iface {
    /// A fresh interface of `kind`.
    pub fn new(name: &str, kind: IfKind, at: At) -> Iface {
        Iface {
            name: name.to_string(),
            at,
            kind,
            master: None,
            bridge: None,
            slaves: Vec::new(),
            ports: Vec::new(),
            addresses: Vec::new(),
            mtu: None,
            bond_options: Vec::new(),
            stp: None,
            bridge_numbers: Vec::new(),
            mac: None,
            sysctl: BTreeMap::new(),
        }
    }
}

/// The host's network as read.
#[derive(Debug, Default)]
pub struct HostNet {
    /// Interfaces in the order they were read.
    pub ifaces: Vec<Iface>,
    /// Routes (default gateways), each with where it was set.
    pub routes: Vec<(Route, At)>,
    /// Bonding module options (`options bonding ...`), defaults of every bond.
    pub module_options: Vec<BondOption>,
    /// Bonding options per bond from modprobe (`options bond0 ...` with an alias).
    pub named_module_options: BTreeMap<String, Vec<BondOption>>,
    /// Names modprobe aliases to the bonding module (`alias bond0 bonding`).
    pub bond_aliases: Vec<String>,
    /// Global sysctls.
    pub sysctl: BTreeMap<String, (SysctlValue, At)>,
}

impl HostNet {
    /// Interfaces that are bonds without saying so (RHEL's ifcfg-bond0 needs
    /// no TYPE): other interfaces name them as MASTER, or modprobe aliases
    /// them to the bonding module.
    pub fn find_bonds(&mut self) {
        let masters: Vec<String> = self
            .ifaces
            .iter()
            .filter_map(|i| i.master.clone())
            .collect();
        for i in &mut self.ifaces {
            if i.kind == IfKind::Ethernet
                && (masters.contains(&i.name) || self.bond_aliases.contains(&i.name))
            {
                i.kind = IfKind::Bond;
            }
        }
    }

    /// The interface called `name`.
    pub fn iface_mut(&mut self, name: &str) -> Option<&mut Iface> {
        self.ifaces.iter_mut().find(|i| i.name == name)
    }

    /// Adds a default route unless there is one of its family already.
    pub fn add_gateway(
        &mut self,
        via: IpAddr,
        dev: Option<String>,
        at: At,
        key: &str,
        report: &mut Report,
    ) {
        if let Some((_, first)) = self
            .routes
            .iter()
            .find(|(r, _)| r.via.is_some_and(|v| v.is_ipv4() == via.is_ipv4()))
        {
            report.add(
                &at.file,
                at.line,
                key,
                Kind::NotCarried,
                format!(
                    "a second default route: the one from {}:{} is carried",
                    first.file.display(),
                    first.line
                ),
            );
            return;
        }
        let route = Route {
            to: RouteDest::Default,
            via: Some(via),
            dev,
            metric: None,
            table: None,
        };
        self.routes.push((route, at));
    }
}

/// Names in `explicit`, then those of interfaces whose `of` is `name`.
fn members(
    ifaces: &[Iface],
    name: &str,
    explicit: &[String],
    of: fn(&Iface) -> Option<&String>,
) -> Vec<String> {
    let mut out: Vec<String> = explicit.to_vec();
    for i in ifaces {
        if of(i).is_some_and(|m| m == name) && !out.contains(&i.name) {
            out.push(i.name.clone());
        }
    }
    out
}

/// Where each object of the host config comes from: (array, origin) in the
/// order of the config's arrays.
pub type Origins = BTreeMap<String, Vec<At>>;

/// host.toml's links, routes and sysctls from the network files.
pub fn host_config(net: &HostNet, report: &mut Report) -> (HostConfig, Origins) {
    let mut host = HostConfig::default();
    let mut origins = Origins::new();
    let mut origin = |array: &str, at: &At| {
        origins
            .entry(array.to_string())
            .or_default()
            .push(at.clone())
    };
    let in_bond: Vec<&str> = net
        .ifaces
        .iter()
        .filter(|i| i.kind == IfKind::Bond)
        .flat_map(|b| b.slaves.iter().map(String::as_str))
        .collect();
    for i in &net.ifaces {
        match &i.kind {
            IfKind::Bond => {
                let mut options = net.module_options.clone();
                options.extend(
                    net.named_module_options
                        .get(&i.name)
                        .cloned()
                        .unwrap_or_default(),
                );
                options.extend(i.bond_options.iter().cloned());
                let slaves = members(&net.ifaces, &i.name, &i.slaves, |s| s.master.as_ref());
                host.bond
                    .push(super::bonding::bond(i, &options, slaves, report));
                origin("bond", &i.at);
            }
            IfKind::Vlan { link, id } => {
                host.vlan.push(Vlan {
                    name: i.name.clone(),
                    link: link.clone(),
                    id: *id,
                    protocol: Default::default(),
                    mtu: i.mtu,
                    addresses: i.addresses.clone(),
                    sysctl: i.sysctl.clone(),
                });
                origin("vlan", &i.at);
            }
            IfKind::Bridge => {
                let ports = members(&net.ifaces, &i.name, &i.ports, |p| p.bridge.as_ref());
                let mut b = Bridge {
                    name: i.name.clone(),
                    ports: ports.into_iter().map(BridgePort::Name).collect(),
                    addresses: i.addresses.clone(),
                    stp: i.stp.unwrap_or(false),
                    forward_delay_s: None,
                    hello_time_s: None,
                    max_age_s: None,
                    priority: None,
                    vlan_filtering: false,
                    default_pvid: None,
                    mac: i.mac.as_ref().map(|(m, _)| *m),
                    mtu: i.mtu,
                    sysctl: i.sysctl.clone(),
                };
                for (key, value, keyword, at) in &i.bridge_numbers {
                    if !b.stp && *key != "priority" {
                        report.add(
                            &at.file,
                            at.line,
                            keyword.clone(),
                            Kind::NoEffect,
                            "spanning tree is off: ports forward at once",
                        );
                        continue;
                    }
                    match *key {
                        "forward_delay_s" => b.forward_delay_s = Some(*value),
                        "hello_time_s" => b.hello_time_s = Some(*value),
                        "max_age_s" => b.max_age_s = Some(*value),
                        _ => b.priority = u16::try_from(*value).ok(),
                    }
                }
                host.bridge.push(b);
                origin("bridge", &i.at);
            }
            IfKind::Ethernet => {
                let enslaved = i.master.is_some() || in_bond.contains(&i.name.as_str());
                let bridged =
                    i.bridge.is_some() || net.ifaces.iter().any(|b| b.ports.contains(&i.name));
                if i.addresses.is_empty() && i.mtu.is_none() && i.sysctl.is_empty() {
                    continue;
                }
                let mut addresses = i.addresses.clone();
                if (enslaved || bridged) && !addresses.is_empty() {
                    report.add(
                        &i.at.file,
                        i.at.line,
                        "address",
                        Kind::NotCarried,
                        format!(
                            "{} is a {} port: its addresses belong on the {}",
                            i.name,
                            if enslaved { "bond" } else { "bridge" },
                            if enslaved { "bond" } else { "bridge" }
                        ),
                    );
                    addresses.clear();
                }
                host.ethernet.push(Ethernet {
                    name: i.name.clone(),
                    mtu: i.mtu,
                    up: true,
                    addresses,
                    sysctl: i.sysctl.clone(),
                });
                origin("ethernet", &i.at);
            }
        }
    }
    for (route, at) in &net.routes {
        host.route.push(route.clone());
        origin("route", at);
    }
    for (key, (value, at)) in &net.sysctl {
        host.sysctl.insert(key.clone(), value.clone());
        origins
            .entry(format!("sysctl.{key}"))
            .or_default()
            .push(at.clone());
    }
    (host, origins)
}

/// An address with its prefix from `IPADDR` + `PREFIX`/`NETMASK` (or a CIDR).
pub fn address(addr: &str, prefix: Option<&str>, netmask: Option<&str>) -> Result<IpNet, String> {
    if let Ok(net) = addr.parse::<IpNet>() {
        return Ok(net);
    }
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let len = match (prefix, netmask) {
        (Some(p), _) => p
            .parse::<u8>()
            .map_err(|_| format!("prefix {p:?} is not a number"))?,
        (None, Some(m)) => {
            let mask: IpAddr = m
                .parse()
                .map_err(|_| format!("netmask {m:?} is not an address"))?;
            ipnet::ip_mask_to_prefix(mask)
                .map_err(|_| format!("netmask {m:?} is not contiguous"))?
        }
        // initscripts take the class's mask; every host file here names one.
        (None, None) => {
            return Err(format!(
                "{addr} has no PREFIX or NETMASK (the classful default is not carried)"
            ))
        }
    };
    IpNet::new(ip, len).map_err(|_| format!("prefix /{len} is too long for {ip}"))
}
