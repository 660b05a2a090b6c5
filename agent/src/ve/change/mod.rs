//! `vznet ve set`: changes to a VE, applied to its typed config (the live
//! state of a running VE), to its file with comments and layout kept
//! (`--save`, [`edit`]), and recorded in the live overlay
//! ([`super::overlay`]).

mod edit;

use std::net::IpAddr;

use anyhow::{bail, Result};
use ipnet::IpNet;
use netcfg::model::{MacAddr, Netif, VeConfig, Venet};
use netcfg::op::Op;
use serde::{Deserialize, Serialize};

/// One change, as `vzctl set` makes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    /// `--netif-add IF,MAC,HOST_IF,HOST_MAC,BRIDGE`
    NetifAdd {
        /// The interface.
        netif: Netif,
    },
    /// `--netif-del IF`
    NetifDel {
        /// Its name inside the VE.
        name: String,
    },
    /// `--ipadd IP`: a venet (routed) address.
    IpAdd {
        /// The address.
        ip: IpAddr,
    },
    /// `--ipdel IP`
    IpDel {
        /// The address.
        ip: IpAddr,
    },
    /// `--ipdel all`: every venet address.
    IpDelAll,
    /// `--ifname IF --ipadd IP/LEN`: an address of a bridged netif.
    NetifIpAdd {
        /// The netif's name inside the VE.
        netif: String,
        /// The address with its prefix length.
        net: IpNet,
    },
    /// `--ifname IF --ipdel IP`
    NetifIpDel {
        /// The netif.
        netif: String,
        /// The address (any prefix length).
        ip: IpAddr,
    },
    /// `--ifname IF --ipdel all`
    NetifIpDelAll {
        /// The netif.
        netif: String,
    },
    /// `--ifname IF --gateway IP|none`: the netif's default gateway of one
    /// family (`none`: of both).
    Gateway {
        /// The netif.
        netif: String,
        /// IPv6 (else IPv4).
        #[serde(default)]
        ipv6: bool,
        /// The default gateway, or none.
        gateway: Option<IpAddr>,
    },
    /// `--hostname NAME`
    Hostname {
        /// The new name.
        hostname: String,
    },
    /// `--nameserver IP` (all of them, replacing the list)
    Nameservers {
        /// The servers.
        nameservers: Vec<IpAddr>,
    },
    /// `--searchdomain D` (all of them, replacing the list)
    Search {
        /// The domains.
        domains: Vec<String>,
    },
    /// `--onboot yes|no`
    Onboot {
        /// Start at boot.
        onboot: bool,
    },
    /// `--bootorder N|none`
    BootOrder {
        /// The order (higher first), or unset.
        boot_order: Option<u32>,
    },
}

impl Change {
    /// The object it is about: a later change to the same object replaces it.
    pub(crate) fn object(&self) -> String {
        match self {
            Change::NetifAdd { netif } => format!("netif {}", netif.name),
            Change::NetifDel { name } => format!("netif {name}"),
            Change::IpAdd { ip } | Change::IpDel { ip } => format!("ip {ip}"),
            Change::IpDelAll => "ip all".into(),
            Change::NetifIpAdd { netif, net } => format!("netif {netif} ip {}", net.addr()),
            Change::NetifIpDel { netif, ip } => format!("netif {netif} ip {ip}"),
            Change::NetifIpDelAll { netif } => format!("netif {netif} ip all"),
            Change::Gateway { netif, ipv6, .. } => {
                format!("netif {netif} gateway{}", if *ipv6 { "6" } else { "" })
            }
            Change::Hostname { .. } => "hostname".into(),
            Change::Nameservers { .. } => "nameservers".into(),
            Change::Search { .. } => "search".into(),
            Change::Onboot { .. } => "onboot".into(),
            Change::BootOrder { .. } => "boot_order".into(),
        }
    }

    /// The command-line form, for messages.
    pub fn arg(&self) -> String {
        match self {
            Change::NetifAdd { netif } => format!("--netif-add {}", netif.name),
            Change::NetifDel { name } => format!("--netif-del {name}"),
            Change::IpAdd { ip } => format!("--ipadd {ip}"),
            Change::IpDel { ip } => format!("--ipdel {ip}"),
            Change::IpDelAll => "--ipdel all".into(),
            Change::NetifIpAdd { netif, net } => format!("--ifname {netif} --ipadd {net}"),
            Change::NetifIpDel { netif, ip } => format!("--ifname {netif} --ipdel {ip}"),
            Change::NetifIpDelAll { netif } => format!("--ifname {netif} --ipdel all"),
            Change::Gateway { netif, gateway, .. } => format!(
                "--ifname {netif} --gateway {}",
                gateway.map_or_else(|| "none".into(), |g| g.to_string())
            ),
            Change::Hostname { hostname } => format!("--hostname {hostname}"),
            Change::Nameservers { nameservers } => nameservers
                .iter()
                .map(|n| format!("--nameserver {n}"))
                .collect::<Vec<_>>()
                .join(" "),
            Change::Search { domains } => domains
                .iter()
                .map(|d| format!("--searchdomain {d}"))
                .collect::<Vec<_>>()
                .join(" "),
            Change::Onboot { onboot } => {
                format!("--onboot {}", if *onboot { "yes" } else { "no" })
            }
            Change::BootOrder { boot_order } => format!(
                "--bootorder {}",
                boot_order.map_or_else(|| "none".into(), |n| n.to_string())
            ),
        }
    }

    /// Changes the VE's network (links, addresses, routes) rather than only
    /// its files or how it boots.
    pub fn is_network(&self) -> bool {
        !matches!(
            self,
            Change::Hostname { .. }
                | Change::Nameservers { .. }
                | Change::Search { .. }
                | Change::Onboot { .. }
                | Change::BootOrder { .. }
        )
    }

    /// Kept in the VE file only (meaningless for a running VE alone).
    pub fn is_file_only(&self) -> bool {
        matches!(self, Change::Onboot { .. } | Change::BootOrder { .. })
    }

    /// Why it cannot apply to `ve` as it is now, if it cannot.
    pub fn check(&self, ve: &VeConfig) -> Result<()> {
        let netif = |n: &str| ve.netif.iter().find(|i| i.name == n);
        let has_ip = |ip: &IpAddr| ve.venet.as_ref().is_some_and(|v| v.addresses.contains(ip));
        let no_netif = |n: &str| -> Result<()> {
            bail!("{}: VE {} has no interface {n:?}", self.arg(), ve.id)
        };
        match self {
            Change::NetifAdd { netif: n } if netif(&n.name).is_some() => bail!(
                "{}: VE {} already has an interface {:?} (--netif-del it first)",
                self.arg(),
                ve.id,
                n.name
            ),
            Change::NetifDel { name } if netif(name).is_none() => no_netif(name),
            Change::IpAdd { ip } if has_ip(ip) => {
                bail!("{}: VE {} has {ip} already", self.arg(), ve.id)
            }
            Change::IpDel { ip } if !has_ip(ip) => {
                bail!("{}: VE {} has no venet address {ip}", self.arg(), ve.id)
            }
            Change::NetifIpAdd { netif: n, net } => match netif(n) {
                None => no_netif(n),
                Some(i) if i.addresses.iter().any(|a| a.addr() == net.addr()) => {
                    bail!("{}: {n} has {} already", self.arg(), net.addr())
                }
                Some(_) => Ok(()),
            },
            Change::NetifIpDel { netif: n, ip } => match netif(n) {
                None => no_netif(n),
                Some(i) if !i.addresses.iter().any(|a| a.addr() == *ip) => {
                    bail!("{}: {n} has no address {ip}", self.arg())
                }
                Some(_) => Ok(()),
            },
            Change::NetifIpDelAll { netif: n } | Change::Gateway { netif: n, .. }
                if netif(n).is_none() =>
            {
                no_netif(n)
            }
            Change::Hostname { hostname } => netcfg::model::check_hostname(hostname)
                .map_err(|e| anyhow::anyhow!("--hostname: {e}")),
            Change::Search { domains } => {
                for d in domains {
                    netcfg::model::check_domain(d)
                        .map_err(|e| anyhow::anyhow!("--searchdomain: {e}"))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Applies to the typed config. Idempotent, and a change about something
    /// that is not there does nothing: the files may have changed under an
    /// overlay since it was written.
    pub fn apply(&self, ve: &mut VeConfig) {
        let id = ve.id;
        fn netif<'a>(ve: &'a mut VeConfig, n: &str) -> Option<&'a mut Netif> {
            ve.netif.iter_mut().find(|i| i.name == n)
        }
        match self {
            Change::NetifAdd { netif } => {
                let mut netif = netif.clone();
                let pos = ve.netif.iter().position(|i| i.name == netif.name);
                let n = pos.unwrap_or(ve.netif.len());
                // Pinned: a later --netif-del of an earlier netif must not rename it.
                netif
                    .host_name
                    .get_or_insert_with(|| format!("veth{id}.{n}"));
                match pos {
                    Some(p) => ve.netif[p] = netif,
                    None => ve.netif.push(netif),
                }
            }
            Change::NetifDel { name } => {
                if let Some(p) = ve.netif.iter().position(|i| &i.name == name) {
                    for (n, later) in ve.netif.iter_mut().enumerate().skip(p + 1) {
                        later
                            .host_name
                            .get_or_insert_with(|| format!("veth{id}.{n}"));
                    }
                    ve.netif.remove(p);
                }
            }
            Change::IpAdd { ip } => {
                let v = ve.venet.get_or_insert_with(Venet::default);
                if !v.addresses.contains(ip) {
                    v.addresses.push(*ip);
                }
            }
            Change::IpDel { ip } => {
                if let Some(v) = &mut ve.venet {
                    v.addresses.retain(|a| a != ip);
                    if v.addresses.is_empty() {
                        ve.venet = None;
                    }
                }
            }
            Change::IpDelAll => ve.venet = None,
            Change::NetifIpAdd { netif: n, net } => {
                if let Some(i) = netif(ve, n) {
                    if !i.addresses.iter().any(|a| a.addr() == net.addr()) {
                        i.addresses.push(*net);
                    }
                }
            }
            Change::NetifIpDel { netif: n, ip } => {
                if let Some(i) = netif(ve, n) {
                    i.addresses.retain(|a| a.addr() != *ip);
                }
            }
            Change::NetifIpDelAll { netif: n } => {
                if let Some(i) = netif(ve, n) {
                    i.addresses.clear();
                }
            }
            Change::Gateway {
                netif: n,
                ipv6,
                gateway,
            } => {
                if let Some(i) = netif(ve, n) {
                    (i.gateway, i.gateway6) = gateways(i.gateway, i.gateway6, *ipv6, *gateway);
                }
            }
            Change::Hostname { hostname } => ve.hostname = Some(hostname.clone()),
            Change::Nameservers { nameservers } => ve.nameservers = nameservers.clone(),
            Change::Search { domains } => ve.search = domains.clone(),
            Change::Onboot { onboot } => ve.onboot = *onboot,
            Change::BootOrder { boot_order } => ve.boot_order = *boot_order,
        }
    }
}

/// A netif's `(gateway, gateway6)` after its default gateway of one family is
/// set to `new` (or removed). `gateway` may hold either family, `gateway6`
/// only IPv6 beside an IPv4 `gateway`.
pub fn gateways(
    gateway: Option<IpAddr>,
    gateway6: Option<IpAddr>,
    ipv6: bool,
    new: Option<IpAddr>,
) -> (Option<IpAddr>, Option<IpAddr>) {
    let v4 = gateway.filter(IpAddr::is_ipv4);
    let v6 = gateway.filter(IpAddr::is_ipv6).or(gateway6);
    let (v4, v6) = if ipv6 { (v4, new) } else { (new, v6) };
    match (v4, v6) {
        (Some(a), b) => (Some(a), b),
        (None, b) => (b, None),
    }
}

/// Selects the ops of a plan that belong to one VE, before and after a change:
/// everything in its netns, and on the host its links (by name or ownership
/// alias), their addresses, sysctls and routes, and the proxy neighbour entries
/// of its venet addresses.
pub fn scope(before: &VeConfig, after: &VeConfig) -> impl Fn(&Op) -> bool {
    let ns = after.netns.clone().or_else(|| before.netns.clone());
    let mut names: Vec<String> = Vec::new();
    let mut venet_addrs = Vec::new();
    for ve in [before, after] {
        names.extend((0..ve.netif.len()).map(|n| ve.host_ifname(n)));
        if let Some(v) = &ve.venet {
            names.push(ve.venet_host_ifname());
            venet_addrs.extend(v.addresses.iter().copied());
        }
    }
    let id = after.id;
    move |op: &Op| {
        if op.ns().is_some() {
            return op.ns() == ns.as_deref();
        }
        let named = |n: &str| names.iter().any(|x| x == n);
        match op {
            Op::Sysctl { path, .. } => names.iter().any(|h| {
                ["ipv4/conf", "ipv6/conf", "ipv4/neigh", "ipv6/neigh"]
                    .iter()
                    .any(|tree| path.starts_with(format!("/proc/sys/net/{tree}/{h}")))
            }),
            Op::LinkAdd { link, .. } | Op::LinkDel { link, .. } => {
                named(&link.name) || netcfg::unit::ve_of_alias(&link.alias) == Some(id)
            }
            Op::SetMaster { name, .. }
            | Op::SetUp { name, .. }
            | Op::SetMac { name, .. }
            | Op::SetMtu { name, .. }
            | Op::LinkSet { name, .. }
            | Op::PortSet { name, .. } => named(name),
            Op::AddrAdd { dev, .. } | Op::AddrDel { dev, .. } => named(dev),
            Op::RouteAdd { route, .. } | Op::RouteDel { route, .. } => {
                route.dev.as_deref().is_some_and(named)
            }
            Op::ProxyAdd { proxy } | Op::ProxyDel { proxy } => venet_addrs.contains(&proxy.addr),
            Op::RuleAdd { .. } | Op::RuleDel { .. } => false,
        }
    }
}

/// Parses `IF,MAC,HOST_IF,HOST_MAC,BRIDGE` (fields after IF may be empty or left
/// out, as with `vzctl set --netif_add`).
pub fn parse_netif(s: &str) -> Result<Netif, String> {
    let f: Vec<&str> = s.split(',').map(str::trim).collect();
    if f.len() > 5 {
        return Err(format!(
            "{s:?} has {} fields; expected IF,MAC,HOST_IF,HOST_MAC,BRIDGE",
            f.len()
        ));
    }
    let get = |i: usize| f.get(i).copied().filter(|x| !x.is_empty());
    let name = get(0).ok_or("the interface name (first field) is empty")?;
    netcfg::model::validate::check_ifname(name).map_err(|e| format!("IF: {e}"))?;
    let mac = |i: usize, what: &str| -> Result<Option<MacAddr>, String> {
        get(i)
            .map(|m| {
                m.parse::<MacAddr>()
                    .map_err(|e| format!("{what} {m:?}: {e}"))
                    .and_then(|mac| {
                        if mac.is_multicast() {
                            Err(format!("{what} {m:?} is a multicast address"))
                        } else {
                            Ok(mac)
                        }
                    })
            })
            .transpose()
    };
    let host_name = get(2).map(str::to_string);
    if let Some(h) = &host_name {
        netcfg::model::validate::check_ifname(h).map_err(|e| format!("HOST_IF: {e}"))?;
    }
    Ok(Netif {
        name: name.to_string(),
        mac: mac(1, "MAC")?,
        host_name,
        host_mac: mac(3, "HOST_MAC")?,
        bridge: get(4).map(str::to_string),
        ..Netif::default()
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use toml_edit::DocumentMut;

    use super::*;

    pub(crate) const FILE: &str = "\
# VE 7: the web server
id = 7
hostname = \"web\"   # keep me

[[netif]]
name = \"eth0\"      # first
bridge = \"br0\"
addresses = [\"10.0.0.7/24\"]

[[netif]]
name = \"eth1\"

[venet]
addresses = [\"10.9.0.7\"]   # routed
";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test input")
    }

    pub(crate) fn changes() -> Vec<Change> {
        vec![
            Change::NetifAdd {
                netif: parse_netif("eth2,02:00:00:00:00:07,,02:00:00:00:01:07,br0")
                    .expect("test input"),
            },
            Change::NetifIpAdd {
                netif: "eth1".into(),
                net: "10.1.0.7/16".parse().expect("test input"),
            },
            Change::Gateway {
                netif: "eth1".into(),
                ipv6: false,
                gateway: Some(ip("10.1.0.1")),
            },
            Change::NetifDel {
                name: "eth0".into(),
            },
            Change::IpAdd { ip: ip("10.9.0.8") },
            Change::IpDel { ip: ip("10.9.0.7") },
            Change::IpDel { ip: ip("10.9.0.8") },
            Change::IpAdd { ip: ip("10.9.0.9") },
            Change::IpDelAll,
            Change::NetifIpAdd {
                netif: "eth2".into(),
                net: "fd00::7/64".parse().expect("test input"),
            },
            Change::NetifIpDel {
                netif: "eth1".into(),
                ip: ip("10.1.0.7"),
            },
            Change::NetifIpAdd {
                netif: "eth1".into(),
                net: "10.1.0.8/16".parse().expect("test input"),
            },
            Change::Hostname {
                hostname: "www.example.org".into(),
            },
            Change::Nameservers {
                nameservers: vec![ip("10.0.0.53"), ip("fd00::53")],
            },
            Change::Search {
                domains: vec!["example.org".into()],
            },
            Change::Onboot { onboot: true },
            Change::BootOrder {
                boot_order: Some(10),
            },
            Change::Gateway {
                netif: "eth1".into(),
                ipv6: false,
                gateway: None,
            },
            Change::NetifIpDelAll {
                netif: "eth2".into(),
            },
            Change::BootOrder { boot_order: None },
        ]
    }

    #[test]
    fn file_edits_and_typed_changes_agree_and_comments_stay() {
        let mut typed: VeConfig = toml::from_str(FILE).expect("test input");
        let mut doc: DocumentMut = FILE.parse().expect("test input");
        for (n, c) in changes().iter().enumerate() {
            c.apply(&mut typed);
            c.edit(&mut doc, 7).expect("test input");
            let text = doc.to_string();
            let reparsed: VeConfig = toml::from_str(&text).expect("test input");
            assert_eq!(reparsed, typed, "after change {n} ({c:?}):\n{text}");
        }
        let text = doc.to_string();
        for kept in ["# VE 7: the web server", "# keep me"] {
            assert!(text.contains(kept), "{text}");
        }
        // eth1 kept its host name although it moved to position 0.
        assert_eq!(typed.host_ifname(0), "veth7.1");
        // The new netif's default host name is pinned to its position at add time.
        assert_eq!(typed.host_ifname(1), "veth7.2");
        assert!(typed.venet.is_none(), "--ipdel all took [venet] with it");
        assert_eq!(
            typed.netif[0].addresses,
            ["10.1.0.8/16".parse().expect("net")]
        );
        assert!(typed.netif[0].gateway.is_none() && typed.netif[1].addresses.is_empty());
        assert_eq!(typed.hostname.as_deref(), Some("www.example.org"));
        assert!(typed.onboot && typed.boot_order.is_none());
    }

    #[test]
    fn a_gateway_of_one_family_leaves_the_other() {
        let (v4, v6, v6b) = (
            Some(ip("10.0.0.1")),
            Some(ip("fd00::1")),
            Some(ip("fd00::2")),
        );
        // IPv4 in `gateway`, IPv6 beside it in `gateway6`.
        assert_eq!(gateways(None, None, true, v6), (v6, None));
        assert_eq!(gateways(v6, None, false, v4), (v4, v6));
        assert_eq!(gateways(v4, v6, true, v6b), (v4, v6b));
        // Removing IPv4 moves IPv6 into `gateway`; removing IPv6 keeps IPv4.
        assert_eq!(gateways(v4, v6, false, None), (v6, None));
        assert_eq!(gateways(v4, v6, true, None), (v4, None));
        assert_eq!(gateways(v6, None, true, None), (None, None));
    }

    #[test]
    fn netif_arguments_name_the_bad_field() {
        let n = parse_netif("eth1").expect("test input");
        assert_eq!((n.name.as_str(), n.mac, n.bridge), ("eth1", None, None));
        for (arg, want) in [
            ("eth1,zz:00", "MAC \"zz:00\""),
            (
                "eth1,,,01:00:5e:00:00:01",
                "HOST_MAC \"01:00:5e:00:00:01\" is a multicast",
            ),
            (",02:00:00:00:00:01", "interface name"),
            ("eth1,,a-very-long-host-ifname", "HOST_IF"),
            ("a,b,c,d,e,f", "6 fields"),
        ] {
            let e = parse_netif(arg).expect_err("must fail");
            assert!(e.contains(want), "{arg}: {e}");
        }
    }

    #[test]
    fn checks_refuse_what_would_do_nothing_or_is_not_there() {
        let ve: VeConfig = toml::from_str(FILE).expect("test input");
        for (c, want) in [
            (
                Change::NetifAdd {
                    netif: parse_netif("eth0").expect("test input"),
                },
                "already has",
            ),
            (Change::IpDel { ip: ip("10.1.1.1") }, "--ipdel 10.1.1.1"),
            (
                Change::NetifIpAdd {
                    netif: "eth0".into(),
                    net: "10.0.0.7/16".parse().expect("net"),
                },
                "eth0 has 10.0.0.7 already",
            ),
            (
                Change::NetifIpDel {
                    netif: "eth1".into(),
                    ip: ip("10.0.0.7"),
                },
                "eth1 has no address 10.0.0.7",
            ),
            (
                Change::Gateway {
                    netif: "eth9".into(),
                    ipv6: false,
                    gateway: None,
                },
                "has no interface \"eth9\"",
            ),
            (
                Change::Hostname {
                    hostname: "bad_name".into(),
                },
                "--hostname",
            ),
            (
                Change::Search {
                    domains: vec!["-x.example".into()],
                },
                "--searchdomain",
            ),
        ] {
            let e = c.check(&ve).expect_err("must fail").to_string();
            assert!(e.contains(want), "{c:?}: {e}");
        }
    }
}
