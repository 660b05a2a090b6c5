//! Anti-spoofing on the host: a VE sends only from what is its own.
//!
//! - Bridged ports (`[[netif]]` with a bridge), table `bridge vznet_antispoof`
//!   at prerouting: the Ethernet and ARP sender MAC must be the VE end's, the
//!   ARP sender and IPv4 source one of the VE's addresses (or 0.0.0.0, for
//!   DHCP and ARP probes), the IPv6 source one of its addresses, `::` (DAD),
//!   or the link-local address its MAC makes (EUI-64) or one its file lists.
//! - Routed links (`[venet]`), table `inet vznet_antispoof` at prerouting
//!   before conntrack: the IPv4 and IPv6 source must be one of the VE's
//!   addresses, `::`, or the link-local address of its `venet0`'s MAC (or a
//!   listed one). A routed link is a plain veth, not a bridge port, so the
//!   bridge family never sees it.
//!
//! So a VE that takes another's address (IPv4, global or link-local IPv6) or
//! MAC reaches nobody: not the other VEs, not the host, not the world.
//!
//! Each table has static rules over sets keyed by port name (`ports`, and
//! `port . value` in `macs`, `addr4`, `addr6`): starting, changing or stopping
//! a VE edits only set elements, in one transaction for both tables. Per-VE
//! tables were the first design; libnftables 1.0.6 loads every rule of every
//! table into its cache on each transaction, so 1000 VE tables made any
//! nftables change on the host (the load balancer's included) take 0.6 s and
//! 0.5 GB. Documents are typed (`nft::matching`); no string becomes nft syntax.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, Result};
use netcfg::model::validate::VENET_IFNAME;
use netcfg::model::{MacAddr, VeConfig};
use nft::matching::{
    anonymous_set, concat, elements, filter_chain, is, isnt, meta, named_set, named_set_of,
    payload, rule, set_ref, table, value,
};
use nft::schema::{
    batch::Batch,
    expr::{Expression, MetaKey},
    schema::{Chain, NfCmd, NfListObject},
    stmt::Statement,
    types::{NfFamily, NfHook},
};

/// The host's anti-spoofing tables' name (one per family).
pub const TABLE: &str = "vznet_antispoof";

/// Every rule carries this comment; a chain whose rules do not (an older
/// vznet's) is rebuilt.
const VERSION: &str = "vznet antispoof 2";

const CHAIN: &str = "prerouting";

/// How a VE's port reaches the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A bridge port: checked in the bridge family, MACs included.
    Bridged,
    /// A routed (venet) link: checked in the inet family.
    Routed,
}

impl PortKind {
    fn family(self) -> NfFamily {
        match self {
            PortKind::Bridged => NfFamily::Bridge,
            PortKind::Routed => NfFamily::INet,
        }
    }
}

/// One port of a VE on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    /// Host-side interface.
    pub host_name: String,
    /// Bridged or routed.
    pub kind: PortKind,
    /// The VE end's MAC.
    pub mac: MacAddr,
    /// The VE's addresses (any of them may leave by any of its ports).
    pub addrs: Vec<IpAddr>,
}

/// The IPv6 link-local address a MAC makes (modified EUI-64, RFC 4291
/// appendix A): what the kernel gives an interface by default.
pub fn link_local(mac: &MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

/// The sets of a family's table and their key types.
fn sets(family: NfFamily) -> Vec<(&'static str, Vec<nft::schema::schema::SetType>)> {
    use nft::schema::schema::SetType;
    let mut out = vec![
        ("ports", vec![SetType::Ifname]),
        ("addr4", vec![SetType::Ifname, SetType::Ipv4Addr]),
        ("addr6", vec![SetType::Ifname, SetType::Ipv6Addr]),
    ];
    if family == NfFamily::Bridge {
        out.push(("macs", vec![SetType::Ifname, SetType::EtherAddr]));
    }
    out
}

/// The static rules of a family's chain.
fn rules(family: NfFamily) -> Vec<Vec<Statement<'static>>> {
    let iif = || meta(MetaKey::Iifname);
    let guarded = || is(iif(), set_ref("ports"));
    let not_in = |v: Expression<'static>, set: &str| isnt(concat(vec![iif(), v]), set_ref(set));
    let drop = || Statement::Drop(None);
    let mut out = Vec::new();
    if family == NfFamily::Bridge {
        out.push(vec![
            guarded(),
            not_in(payload("ether", "saddr"), "macs"),
            drop(),
        ]);
        out.push(vec![
            guarded(),
            not_in(payload("arp", "saddr ether"), "macs"),
            drop(),
        ]);
        out.push(vec![
            guarded(),
            not_in(payload("arp", "saddr ip"), "addr4"),
            drop(),
        ]);
    }
    out.push(vec![
        guarded(),
        not_in(payload("ip", "saddr"), "addr4"),
        drop(),
    ]);
    // Duplicate address detection sends from the unspecified address; every
    // other IPv6 source, link-local ones included, must be the VE's.
    out.push(vec![
        guarded(),
        is(payload("ip6", "saddr"), anonymous_set(vec![value("::")])),
        Statement::Accept(None),
    ]);
    out.push(vec![
        guarded(),
        not_in(payload("ip6", "saddr"), "addr6"),
        drop(),
    ]);
    out
}

/// Adds a family's table, sets, chain and (with `with_rules`) rules.
fn skeleton(b: &mut Batch<'static>, family: NfFamily, with_rules: bool) {
    b.add(table(family, TABLE));
    for (name, kinds) in sets(family) {
        if kinds.len() == 1 {
            b.add(named_set(family, TABLE, name, kinds[0]));
        } else {
            b.add(named_set_of(family, TABLE, name, kinds));
        }
    }
    // Bridge: before the bridge's own filter; inet: raw, before conntrack,
    // so a spoofed packet never makes a connection entry.
    let priority = if family == NfFamily::Bridge {
        -200
    } else {
        -300
    };
    b.add(filter_chain(
        family,
        TABLE,
        CHAIN,
        NfHook::Prerouting,
        priority,
    ));
    if with_rules {
        for r in rules(family) {
            let mut obj = rule(family, TABLE, CHAIN, r);
            if let NfListObject::Rule(r) = &mut obj {
                r.comment = Some(VERSION.into());
            }
            b.add(obj);
        }
    }
}

/// The elements a port contributes: (set, element).
fn port_elements(port: &Port) -> Vec<(&'static str, Expression<'static>)> {
    let name = || value(port.host_name.clone());
    let mut out = vec![("ports", name())];
    if port.kind == PortKind::Bridged {
        out.push(("macs", concat(vec![name(), value(port.mac.to_string())])));
        out.push(("addr4", concat(vec![name(), value("0.0.0.0")])));
    }
    let ll = IpAddr::V6(link_local(&port.mac));
    let mut addrs = port.addrs.clone();
    if !addrs.contains(&ll) {
        addrs.push(ll);
    }
    for a in addrs {
        let set = if a.is_ipv4() { "addr4" } else { "addr6" };
        out.push((set, concat(vec![name(), value(a.to_string())])));
    }
    out
}

/// An element of one of a table's sets: (set, port name, element).
type SetElement = (&'static str, String, Expression<'static>);

/// What a family's table holds now: its elements, and how many of its rules
/// are this version's and how many are not (`None`: no table).
fn state(nft: &nft::Nft, family: NfFamily) -> (Vec<SetElement>, Option<(usize, usize)>) {
    let mut list = Batch::new();
    list.add_cmd(NfCmd::List(table(family, TABLE)));
    let Ok(v) = nft.query(&list.to_nftables()) else {
        return (Vec::new(), None);
    };
    let mut elems = Vec::new();
    let (mut ours, mut others) = (0, 0);
    let known: Vec<&'static str> = sets(family).into_iter().map(|(n, _)| n).collect();
    for obj in v["nftables"].as_array().into_iter().flatten() {
        if let Some(r) = obj.get("rule") {
            if r["comment"].as_str() == Some(VERSION) {
                ours += 1;
            } else {
                others += 1;
            }
        }
        let Some(set) = obj.get("set") else { continue };
        let Some(name) = known.iter().find(|n| set["name"].as_str() == Some(**n)) else {
            continue;
        };
        for e in set["elem"].as_array().into_iter().flatten() {
            if let Some(port) = e.as_str() {
                elems.push((*name, port.to_string(), value(port)));
            } else if let Some([port, v]) = e["concat"].as_array().map(Vec::as_slice) {
                let (Some(port), Some(v)) = (port.as_str(), v.as_str()) else {
                    continue;
                };
                elems.push((*name, port.to_string(), concat(vec![value(port), value(v)])));
            }
        }
    }
    (elems, Some((ours, others)))
}

/// One transaction: per family, the skeleton if needed, then the listed
/// VEs' ports' old elements out and new ones in, and elements of ports that
/// no longer exist on the host swept out.
fn edit(nft: &nft::Nft, ves: &[(u32, Vec<Port>)]) -> Result<()> {
    let ports: Vec<&Port> = ves.iter().flat_map(|(_, p)| p.iter()).collect();
    let mut b = Batch::new();
    let mut any = false;
    for family in [NfFamily::Bridge, NfFamily::INet] {
        let mine: Vec<&&Port> = ports.iter().filter(|p| p.kind.family() == family).collect();
        let (current, rules) = state(nft, family);
        if rules.is_none() && mine.is_empty() {
            continue;
        }
        if rules != Some((rules_len(family), 0)) {
            if rules.is_some_and(|(ours, others)| ours + others > 0) {
                b.add_cmd(NfCmd::Flush(nft::schema::schema::FlushObject::Chain(
                    Chain {
                        family,
                        table: TABLE.into(),
                        name: CHAIN.into(),
                        ..Chain::default()
                    },
                )));
            }
            skeleton(&mut b, family, true);
            any = true;
        }
        let replaced: Vec<&str> = ports.iter().map(|p| p.host_name.as_str()).collect();
        let mut gone: BTreeMap<&str, Vec<Expression<'static>>> = BTreeMap::new();
        for (set, port, e) in current {
            let exists = nix::net::if_::if_nametoindex(port.as_str()).is_ok();
            if !exists || replaced.contains(&port.as_str()) {
                gone.entry(set).or_default().push(e);
            }
        }
        let mut new: BTreeMap<&str, Vec<Expression<'static>>> = BTreeMap::new();
        for p in mine {
            for (set, e) in port_elements(p) {
                new.entry(set).or_default().push(e);
            }
        }
        for (set, items) in gone {
            b.delete(elements(family, TABLE, set, items));
            any = true;
        }
        for (set, items) in new {
            b.add(elements(family, TABLE, set, items));
            any = true;
        }
    }
    if !any {
        return Ok(());
    }
    nft.apply(&b.to_nftables())
        .context("the VEs' anti-spoofing rules (host nftables)")
}

fn rules_len(family: NfFamily) -> usize {
    rules(family).len()
}

/// The ports of a running VE (none with `anti_spoof = false`): its bridged
/// netifs and its venet link, with the MACs their VE ends really have (read
/// in its netns, `/proc/PID/ns/net`, when the file sets none).
pub fn ports(ve: &VeConfig, pid: u32) -> Result<Vec<Port>> {
    if !ve.anti_spoof {
        return Ok(Vec::new());
    }
    let bridged: Vec<(usize, &netcfg::model::Netif)> = ve
        .netif
        .iter()
        .enumerate()
        .filter(|(_, n)| n.bridge.is_some())
        .collect();
    if bridged.is_empty() && ve.venet.is_none() {
        return Ok(Vec::new());
    }
    let need_lookup = ve.venet.is_some() || bridged.iter().any(|(_, n)| n.mac.is_none());
    let netns = format!("/proc/{pid}/ns/net");
    let links = if need_lookup {
        netcfg::kernel::ve::links_in(Path::new(&netns))
            .with_context(|| format!("VE {}'s links", ve.id))?
    } else {
        Vec::new()
    };
    let mac_of = |name: &str| {
        links
            .iter()
            .find(|l| l.name == name)
            .and_then(|l| l.mac)
            .with_context(|| format!("VE {}: no MAC for {name} in its netns", ve.id))
    };
    // The VE's own addresses: those of every netif and its venet ones (a reply
    // from a venet address may leave by a bridged port).
    let mut own: Vec<IpAddr> = ve
        .netif
        .iter()
        .flat_map(|n| n.addresses.iter().map(ipnet::IpNet::addr))
        .collect();
    if let Some(v) = &ve.venet {
        own.extend(v.addresses.iter().copied());
    }
    let mut out = Vec::new();
    for (n, netif) in bridged {
        out.push(Port {
            host_name: ve.host_ifname(n),
            kind: PortKind::Bridged,
            mac: match netif.mac {
                Some(m) => m,
                None => mac_of(&netif.name)?,
            },
            addrs: own.clone(),
        });
    }
    if ve.venet.is_some() {
        out.push(Port {
            host_name: ve.venet_host_ifname(),
            kind: PortKind::Routed,
            mac: mac_of(VENET_IFNAME)?,
            addrs: own,
        });
    }
    Ok(out)
}

/// Puts these VEs' ports into the host's anti-spoofing sets (replacing what
/// their ports had), in one transaction.
pub fn set(ves: &[(u32, Vec<Port>)]) -> Result<()> {
    if ves.iter().all(|(_, p)| p.is_empty()) {
        return Ok(());
    }
    let nft = nft::Nft::new(None).context("nftables on the host (or set anti_spoof = false)")?;
    edit(&nft, ves)
}

/// Takes the elements of ports that no longer exist (stopped VEs' host ends)
/// out of the host's anti-spoofing sets; without an nftables backend there
/// can be none.
pub fn sweep() -> Result<()> {
    let Ok(nft) = nft::Nft::new(None) else {
        return Ok(());
    };
    edit(&nft, &[]).context("removing stopped VEs' anti-spoofing elements")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_addresses_follow_the_mac_as_the_kernel_makes_them() {
        let mac: MacAddr = "02:00:00:00:00:3e".parse().expect("mac");
        assert_eq!(
            link_local(&mac),
            "fe80::ff:fe00:3e".parse::<Ipv6Addr>().expect("ip")
        );
        let mac: MacAddr = "00:0c:29:86:7e:54".parse().expect("mac");
        assert_eq!(
            link_local(&mac),
            "fe80::20c:29ff:fe86:7e54".parse::<Ipv6Addr>().expect("ip")
        );
    }

    #[test]
    fn a_port_contributes_its_name_mac_addresses_and_link_local() {
        let port = Port {
            host_name: "veth7.0".into(),
            kind: PortKind::Bridged,
            mac: "02:00:00:00:00:07".parse().expect("mac"),
            addrs: vec![
                "10.0.0.7".parse().expect("ip"),
                "fd00::7".parse().expect("ip"),
            ],
        };
        let json = serde_json::to_string(&port_elements(&port)).expect("json");
        for want in [
            "veth7.0",
            "02:00:00:00:00:07",
            "0.0.0.0",
            "10.0.0.7",
            "fd00::7",
            "fe80::ff:fe00:7",
        ] {
            assert!(json.contains(want), "{want} in {json}");
        }
        let sets: Vec<&str> = port_elements(&port).iter().map(|(s, _)| *s).collect();
        assert_eq!(sets, ["ports", "macs", "addr4", "addr4", "addr6", "addr6"]);
        // Routed: no MAC set, no 0.0.0.0.
        let routed = Port {
            kind: PortKind::Routed,
            host_name: "venet7".into(),
            ..port
        };
        let sets: Vec<&str> = port_elements(&routed).iter().map(|(s, _)| *s).collect();
        assert_eq!(sets, ["ports", "addr4", "addr6", "addr6"]);
        for family in [NfFamily::Bridge, NfFamily::INet] {
            let mut b = Batch::new();
            skeleton(&mut b, family, true);
            let text = serde_json::to_string(&b.to_nftables()).expect("json");
            assert_eq!(text.matches("\"rule\"").count(), rules_len(family));
            assert_eq!(text.matches(VERSION).count(), rules_len(family));
            // No blanket link-local exemption any more.
            assert!(!text.contains("fe80"), "{text}");
        }
    }
}
