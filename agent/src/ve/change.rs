//! `vznet ve set`: changes to a VE's network, applied to its typed config (the
//! live state of a running VE), to its file with comments and layout kept
//! (`--save`), and recorded in a live overlay.
//!
//! The overlay (`STATE/run/ID.live.toml`) is how a change made without `--save`
//! survives: the config files stay as they are, and every loader of the config
//! (`vznet`, `vznetd`) merges the overlay into the VE's file for as long as the
//! VE runs, so vznetd's drift repair keeps the live state instead of reverting
//! it. The overlay names the init (pid and start time) it belongs to: a stale
//! one (the VE died, or runs again) is ignored, and `stop` and `start` remove it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use netcfg::model::{MacAddr, Netif, VeConfig, Venet};
use netcfg::op::Op;
use serde::{Deserialize, Serialize};
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

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
}

impl Change {
    /// The object it is about: a later change to the same object replaces it.
    fn object(&self) -> String {
        match self {
            Change::NetifAdd { netif } => format!("netif {}", netif.name),
            Change::NetifDel { name } => format!("netif {name}"),
            Change::IpAdd { ip } | Change::IpDel { ip } => format!("ip {ip}"),
        }
    }

    /// The command-line form, for messages.
    pub fn arg(&self) -> String {
        match self {
            Change::NetifAdd { netif } => format!("--netif-add {}", netif.name),
            Change::NetifDel { name } => format!("--netif-del {name}"),
            Change::IpAdd { ip } => format!("--ipadd {ip}"),
            Change::IpDel { ip } => format!("--ipdel {ip}"),
        }
    }

    /// Why it cannot apply to `ve` as it is now, if it cannot.
    pub fn check(&self, ve: &VeConfig) -> Result<()> {
        let has_netif = |n: &str| ve.netif.iter().any(|i| i.name == n);
        let has_ip = |ip: &IpAddr| ve.venet.as_ref().is_some_and(|v| v.addresses.contains(ip));
        match self {
            Change::NetifAdd { netif } if has_netif(&netif.name) => bail!(
                "{}: VE {} already has an interface {:?} (--netif-del it first)",
                self.arg(),
                ve.id,
                netif.name
            ),
            Change::NetifDel { name } if !has_netif(name) => {
                bail!("{}: VE {} has no interface {name:?}", self.arg(), ve.id)
            }
            Change::IpAdd { ip } if has_ip(ip) => {
                bail!("{}: VE {} has {ip} already", self.arg(), ve.id)
            }
            Change::IpDel { ip } if !has_ip(ip) => {
                bail!("{}: VE {} has no venet address {ip}", self.arg(), ve.id)
            }
            _ => Ok(()),
        }
    }

    /// Applies to the typed config. Idempotent: the files may have changed under
    /// an overlay since it was written.
    pub fn apply(&self, ve: &mut VeConfig) {
        match self {
            Change::NetifAdd { netif } => {
                let mut netif = netif.clone();
                let pos = ve.netif.iter().position(|i| i.name == netif.name);
                let n = pos.unwrap_or(ve.netif.len());
                // Pinned: a later --netif-del of an earlier netif must not rename it.
                netif
                    .host_name
                    .get_or_insert_with(|| format!("veth{}.{n}", ve.id));
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
                            .get_or_insert_with(|| format!("veth{}.{n}", ve.id));
                    }
                    ve.netif.remove(p);
                }
            }
            Change::IpAdd { ip } => {
                let v = ve.venet.get_or_insert_with(|| Venet {
                    addresses: Vec::new(),
                    host_name: None,
                });
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
        }
    }

    /// Applies to a VE file's document, keeping its comments and layout.
    pub fn edit(&self, doc: &mut DocumentMut, id: u32) -> Result<()> {
        match self {
            Change::NetifAdd { netif } => {
                let n = netifs(doc).map_or(0, |a| a.len());
                let mut t = Table::new();
                t.insert("name", value(netif.name.as_str()));
                if let Some(m) = netif.mac {
                    t.insert("mac", value(m.to_string()));
                }
                let host = netif
                    .host_name
                    .clone()
                    .unwrap_or_else(|| format!("veth{id}.{n}"));
                t.insert("host_name", value(host));
                if let Some(m) = netif.host_mac {
                    t.insert("host_mac", value(m.to_string()));
                }
                if let Some(b) = &netif.bridge {
                    t.insert("bridge", value(b.as_str()));
                }
                if !netif.addresses.is_empty() {
                    let a: Array = netif.addresses.iter().map(ToString::to_string).collect();
                    t.insert("addresses", value(a));
                }
                if let Some(gw) = netif.gateway {
                    t.insert("gateway", value(gw.to_string()));
                }
                match doc.get_mut("netif") {
                    Some(Item::ArrayOfTables(a)) => a.push(t),
                    None => {
                        let mut a = ArrayOfTables::new();
                        a.push(t);
                        doc.insert("netif", Item::ArrayOfTables(a));
                    }
                    Some(_) => bail!("`netif` is not an array of tables ([[netif]])"),
                }
            }
            Change::NetifDel { name } => {
                let Some(Item::ArrayOfTables(a)) = doc.get_mut("netif") else {
                    return Ok(());
                };
                let pos = a
                    .iter()
                    .position(|t| t.get("name").and_then(Item::as_str) == Some(name.as_str()));
                if let Some(p) = pos {
                    for n in p + 1..a.len() {
                        if let Some(t) = a.get_mut(n) {
                            if !t.contains_key("host_name") {
                                t.insert("host_name", value(format!("veth{id}.{n}")));
                            }
                        }
                    }
                    a.remove(p);
                    if a.is_empty() {
                        doc.remove("netif");
                    }
                }
            }
            Change::IpAdd { ip } => {
                if doc.get("venet").is_none() {
                    doc.insert("venet", Item::Table(Table::new()));
                }
                let venet = doc
                    .get_mut("venet")
                    .and_then(Item::as_table_like_mut)
                    .context("`venet` is not a table")?;
                if venet.get("addresses").is_none() {
                    venet.insert("addresses", value(Array::new()));
                }
                let addrs = venet
                    .get_mut("addresses")
                    .and_then(Item::as_array_mut)
                    .context("`venet.addresses` is not an array")?;
                let s = ip.to_string();
                if !addrs.iter().any(|a| a.as_str() == Some(s.as_str())) {
                    addrs.push(s);
                }
            }
            Change::IpDel { ip } => {
                let s = ip.to_string();
                let Some(venet) = doc.get_mut("venet").and_then(Item::as_table_like_mut) else {
                    return Ok(());
                };
                let empty = match venet.get_mut("addresses").and_then(Item::as_array_mut) {
                    Some(addrs) => {
                        addrs.retain(|a| {
                            a.as_str()
                                .and_then(|a| a.parse::<IpAddr>().ok())
                                .is_none_or(|a| a.to_string() != s)
                        });
                        addrs.is_empty()
                    }
                    None => true,
                };
                if empty {
                    doc.remove("venet");
                }
            }
        }
        Ok(())
    }
}

fn netifs(doc: &DocumentMut) -> Option<&ArrayOfTables> {
    doc.get("netif").and_then(Item::as_array_of_tables)
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
    let alias = netcfg::desired::ve_alias(after.id, "");
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
            Op::LinkAdd { name, alias: a, .. } | Op::LinkDel { name, alias: a, .. } => {
                named(name) || a.starts_with(&alias)
            }
            Op::SetMaster { name, .. }
            | Op::SetUp { name, .. }
            | Op::SetMac { name, .. }
            | Op::SetStp { name, .. } => named(name),
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
        addresses: Vec::new(),
        gateway: None,
        gateway6: None,
        sysctl: Default::default(),
    })
}

impl Overlay {
    /// An empty overlay for the init `pid`.
    pub fn new(pid: u32) -> Overlay {
        Overlay {
            pid,
            start: super::runtime::start_time(pid).unwrap_or(0),
            change: Vec::new(),
        }
    }
}

/// The live overlay of a running VE.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overlay {
    /// Host pid of the init it belongs to.
    pub pid: u32,
    /// That process's start time (clock ticks since boot).
    pub start: u64,
    /// Changes, oldest first.
    #[serde(default)]
    pub change: Vec<Change>,
}

/// `STATE/run/ID.live.toml`.
pub fn overlay_file(state: &Path, id: u32) -> PathBuf {
    state.join("run").join(format!("{id}.live.toml"))
}

impl Overlay {
    /// The overlay of VE `id` if it belongs to the init `pid` now running.
    pub fn read(state: &Path, id: u32, pid: u32) -> Result<Option<Overlay>> {
        let path = overlay_file(state, id);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let o: Overlay =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let current = o.pid == pid && super::runtime::start_time(pid) == Some(o.start);
        Ok(current.then_some(o))
    }

    /// Records `changes`, replacing earlier changes to the same objects; with
    /// `saved`, the changes went to the file, and only the replacement happens.
    pub fn record(&mut self, changes: &[Change], saved: bool) {
        for c in changes {
            let obj = c.object();
            self.change.retain(|old| old.object() != obj);
            if !saved {
                self.change.push(c.clone());
            }
        }
    }

    /// Writes it atomically (vznetd may read it at any time); an empty overlay
    /// removes the file.
    pub fn write(&self, state: &Path, id: u32) -> Result<()> {
        let path = overlay_file(state, id);
        if self.change.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("removing {}", path.display()))
                }
                _ => Ok(()),
            };
        }
        let text = format!(
            "# Live changes to VE {id} (vznet ve set without --save), merged into\n\
             # ve/{id}.toml while this VE runs; removed when it stops.\n{}",
            toml::to_string(self).context("encoding the overlay")?
        );
        write_atomic(&path, &text)
    }
}

/// Writes `path` by renaming a sibling temporary file over it.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
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

    fn changes() -> Vec<Change> {
        vec![
            Change::NetifAdd {
                netif: parse_netif("eth2,02:00:00:00:00:07,,02:00:00:00:01:07,br0")
                    .expect("test input"),
            },
            Change::NetifDel {
                name: "eth0".into(),
            },
            Change::IpAdd {
                ip: "10.9.0.8".parse().expect("test input"),
            },
            Change::IpDel {
                ip: "10.9.0.7".parse().expect("test input"),
            },
            Change::IpDel {
                ip: "10.9.0.8".parse().expect("test input"),
            },
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
        assert!(
            typed.venet.is_none(),
            "the last venet address took [venet] with it"
        );
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
    fn checks_refuse_what_would_do_nothing() {
        let ve: VeConfig = toml::from_str(FILE).expect("test input");
        let add_eth0 = Change::NetifAdd {
            netif: parse_netif("eth0").expect("test input"),
        };
        assert!(add_eth0
            .check(&ve)
            .expect_err("must fail")
            .to_string()
            .contains("already has"));
        let del = Change::IpDel {
            ip: "10.1.1.1".parse().expect("test input"),
        };
        assert!(del
            .check(&ve)
            .expect_err("must fail")
            .to_string()
            .contains("--ipdel 10.1.1.1"));
    }

    #[test]
    fn the_overlay_keeps_the_last_change_per_object_and_round_trips() {
        let mut o = Overlay::default();
        let ip: IpAddr = "10.1.1.1".parse().expect("test input");
        o.record(&[Change::IpAdd { ip }], false);
        o.record(&[Change::IpDel { ip }], false);
        assert_eq!(o.change, vec![Change::IpDel { ip }]);
        o.record(&[Change::IpAdd { ip }], true);
        assert!(o.change.is_empty(), "a saved change needs no overlay entry");
        o.record(&changes(), false);
        let back: Overlay =
            toml::from_str(&toml::to_string(&o).expect("test input")).expect("test input");
        assert_eq!(back, o);
    }
}
