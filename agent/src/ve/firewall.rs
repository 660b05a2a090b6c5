//! Per-VE nftables: the VE's own filter inside its netns (`[firewall]`), and on
//! the host, anti-spoofing on its bridged ports: a frame from a VE's port must
//! carry the VE's MAC as Ethernet and ARP sender, and one of its addresses as
//! IPv4/ARP sender (IPv6: its addresses, `::` and link-local).
//!
//! The VE's filter is one table (`inet vznet_fw` in the VE), replaced whole in
//! one transaction. The host's anti-spoofing is one shared table, `bridge
//! vznet_antispoof`, with static rules over four sets keyed by port name
//! (`ports`, `macs`, `addr4`, `addr6`): starting, changing or stopping a VE
//! edits only set elements. Per-VE tables were the first design; libnftables
//! 1.0.6 loads every rule of every table into its cache on each transaction, so
//! 1000 VE tables made any nftables change on the host (the load balancer's
//! included) take 0.6 s and 0.5 GB. Documents are typed (the `nftables`
//! crate); no string becomes nft syntax.

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};
use netcfg::model::{FwPolicy, FwProto, MacAddr, VeConfig};
use nft::schema::{
    batch::Batch,
    expr::{
        Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem, CT,
    },
    schema::{
        Chain, Element, NfCmd, NfListObject, Nftables, Rule, Set, SetType, SetTypeValue, Table,
    },
    stmt::{Match, Operator, Statement},
    types::{NfChainPolicy, NfChainType, NfFamily, NfHook},
};

/// The VE's filter table (inside its netns).
pub const VE_TABLE: &str = "vznet_fw";

/// The host's anti-spoofing table (bridge family).
pub const ANTISPOOF_TABLE: &str = "vznet_antispoof";

/// One bridged port of a VE: host-side name, the VE end's MAC, the VE's addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    /// Host-side interface (the bridge port).
    pub host_name: String,
    /// The VE end's MAC.
    pub mac: MacAddr,
    /// The VE's addresses (any of them may leave by any of its ports).
    pub addrs: Vec<IpAddr>,
}

fn s(v: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(v.to_string()))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn cmp(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn set(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

fn prefix(net: &ipnet::IpNet) -> Expression<'static> {
    if net.prefix_len() == net.max_prefix_len() {
        return s(&net.addr().to_string());
    }
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(&net.network().to_string())),
        len: u32::from(net.prefix_len()),
    }))
}

fn table(family: NfFamily, name: &str) -> NfListObject<'static> {
    NfListObject::Table(Table {
        family,
        name: Cow::Owned(name.to_string()),
        handle: None,
    })
}

fn rule(
    family: NfFamily,
    table: &str,
    chain: &str,
    expr: Vec<Statement<'static>>,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family,
        table: Cow::Owned(table.to_string()),
        chain: Cow::Owned(chain.to_string()),
        expr: expr.into(),
        handle: None,
        index: None,
        comment: None,
    })
}

/// Deletes a table if it is there (add-then-delete never fails on absence).
fn remove(batch: &mut Batch<'static>, family: NfFamily, name: &str) {
    batch.add(table(family, name));
    batch.delete(table(family, name));
}

/// The VE's filter: established/related and loopback accepted, then each
/// `allow` rule, then the `input` policy.
pub fn ve_ruleset(fw: &netcfg::model::Firewall) -> Nftables<'static> {
    let f = NfFamily::INet;
    let mut b = Batch::new();
    remove(&mut b, f, VE_TABLE);
    b.add(table(f, VE_TABLE));
    b.add(NfListObject::Chain(Chain {
        family: f,
        table: VE_TABLE.into(),
        name: "input".into(),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Input),
        prio: Some(0),
        policy: Some(match fw.input {
            FwPolicy::Accept => NfChainPolicy::Accept,
            FwPolicy::Drop => NfChainPolicy::Drop,
        }),
        ..Chain::default()
    }));
    let accept = || Statement::Accept(None);
    let ct_state = Expression::Named(NamedExpression::CT(CT {
        key: "state".into(),
        family: None,
        dir: None,
    }));
    b.add(rule(
        f,
        VE_TABLE,
        "input",
        vec![
            cmp(
                ct_state,
                Operator::IN,
                set(vec![s("established"), s("related")]),
            ),
            accept(),
        ],
    ));
    b.add(rule(
        f,
        VE_TABLE,
        "input",
        vec![cmp(meta(MetaKey::Iifname), Operator::EQ, s("lo")), accept()],
    ));
    for r in &fw.allow {
        // One rule per address family of `from` (nft matches ip and ip6
        // source addresses with different expressions).
        let v4: Vec<_> = r.from.iter().filter(|n| n.addr().is_ipv4()).collect();
        let v6: Vec<_> = r.from.iter().filter(|n| n.addr().is_ipv6()).collect();
        let mut sources: Vec<Option<Statement<'static>>> = Vec::new();
        if r.from.is_empty() {
            sources.push(None);
        }
        if !v4.is_empty() {
            sources.push(Some(cmp(
                payload("ip", "saddr"),
                Operator::EQ,
                set(v4.iter().map(|n| prefix(n)).collect()),
            )));
        }
        if !v6.is_empty() {
            sources.push(Some(cmp(
                payload("ip6", "saddr"),
                Operator::EQ,
                set(v6.iter().map(|n| prefix(n)).collect()),
            )));
        }
        for src in sources {
            let mut expr: Vec<Statement<'static>> = src.into_iter().collect();
            let l4 = match r.proto {
                FwProto::Any => None,
                FwProto::Tcp => Some("tcp"),
                FwProto::Udp => Some("udp"),
                FwProto::Icmp => Some("icmp"),
                FwProto::Icmpv6 => Some("ipv6-icmp"),
            };
            if let Some(p) = l4 {
                expr.push(cmp(meta(MetaKey::L4proto), Operator::EQ, s(p)));
            }
            if !r.ports.is_empty() {
                let proto = if r.proto == FwProto::Udp {
                    "udp"
                } else {
                    "tcp"
                };
                expr.push(cmp(
                    payload(proto, "dport"),
                    Operator::EQ,
                    set(r
                        .ports
                        .iter()
                        .map(|p| Expression::Number(u32::from(*p)))
                        .collect()),
                ));
            }
            expr.push(accept());
            b.add(rule(f, VE_TABLE, "input", expr));
        }
    }
    b.to_nftables()
}

const BRIDGE: NfFamily = NfFamily::Bridge;

fn set_decl(name: &str, key: SetTypeValue<'static>) -> NfListObject<'static> {
    NfListObject::Set(Box::new(Set {
        family: BRIDGE,
        table: ANTISPOOF_TABLE.into(),
        name: Cow::Owned(name.to_string()),
        set_type: key,
        ..Set::default()
    }))
}

fn concat(a: Expression<'static>, b: Expression<'static>) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(vec![a, b]))
}

fn at(set: &str) -> Expression<'static> {
    s(&format!("@{set}"))
}

/// The shared table: sets and the static rules that read them. `add` of a
/// table, set or chain is a no-op when it exists; the rules are added only
/// when the chain lacks them.
fn antispoof_skeleton(b: &mut Batch<'static>, with_rules: bool) {
    b.add(table(BRIDGE, ANTISPOOF_TABLE));
    b.add(set_decl("ports", SetTypeValue::Single(SetType::Ifname)));
    for (name, t) in [
        ("macs", SetType::EtherAddr),
        ("addr4", SetType::Ipv4Addr),
        ("addr6", SetType::Ipv6Addr),
    ] {
        b.add(set_decl(
            name,
            SetTypeValue::Concatenated(vec![SetType::Ifname, t].into()),
        ));
    }
    b.add(NfListObject::Chain(Chain {
        family: BRIDGE,
        table: ANTISPOOF_TABLE.into(),
        name: "prerouting".into(),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Prerouting),
        prio: Some(-200),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
    if !with_rules {
        return;
    }
    let iif = || meta(MetaKey::Iifname);
    let guarded = || cmp(iif(), Operator::EQ, at("ports"));
    let not_in =
        |value: Expression<'static>, set: &str| cmp(concat(iif(), value), Operator::NEQ, at(set));
    let link_local = Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s("fe80::")),
        len: 10,
    }));
    let rules = [
        vec![
            guarded(),
            not_in(payload("ether", "saddr"), "macs"),
            Statement::Drop(None),
        ],
        vec![
            guarded(),
            not_in(payload("arp", "saddr ether"), "macs"),
            Statement::Drop(None),
        ],
        vec![
            guarded(),
            not_in(payload("arp", "saddr ip"), "addr4"),
            Statement::Drop(None),
        ],
        vec![
            guarded(),
            not_in(payload("ip", "saddr"), "addr4"),
            Statement::Drop(None),
        ],
        // Unspecified and link-local IPv6 sources (DAD, router and neighbour
        // discovery) pass; the MAC rules above have already run.
        vec![
            guarded(),
            cmp(
                payload("ip6", "saddr"),
                Operator::EQ,
                set(vec![s("::"), link_local]),
            ),
            Statement::Accept(None),
        ],
        vec![
            guarded(),
            not_in(payload("ip6", "saddr"), "addr6"),
            Statement::Drop(None),
        ],
    ];
    for r in rules {
        b.add(rule(BRIDGE, ANTISPOOF_TABLE, "prerouting", r));
    }
}

/// Rules in the shared table's chain (0 when it is not there).
const ANTISPOOF_RULES: usize = 6;

/// The elements a port contributes: (set, element).
fn port_elements(port: &Port) -> Vec<(&'static str, Expression<'static>)> {
    let name = || s(&port.host_name);
    let mut out = vec![
        ("ports", name()),
        ("macs", concat(name(), s(&port.mac.to_string()))),
        ("addr4", concat(name(), s("0.0.0.0"))),
    ];
    for a in &port.addrs {
        let set = if a.is_ipv4() { "addr4" } else { "addr6" };
        out.push((set, concat(name(), s(&a.to_string()))));
    }
    out
}

fn element(set: &str, elems: Vec<Expression<'static>>) -> NfListObject<'static> {
    NfListObject::Element(Element {
        family: BRIDGE,
        table: ANTISPOOF_TABLE.into(),
        name: Cow::Owned(set.to_string()),
        elem: elems.into(),
    })
}

/// An element of one of the sets: (set, port name, element).
type SetElement = (&'static str, String, Expression<'static>);

/// What the kernel's sets hold now, as (set, port name, element), read back
/// from libnftables' JSON; and how many rules the chain has.
fn antispoof_state(nft: &nft::Nft) -> Result<(Vec<SetElement>, usize)> {
    let mut list = Batch::new();
    list.add_cmd(NfCmd::List(table(BRIDGE, ANTISPOOF_TABLE)));
    let Ok(v) = nft.query(&list.to_nftables()) else {
        return Ok((Vec::new(), 0));
    };
    let mut elems = Vec::new();
    let mut rules = 0;
    for obj in v["nftables"].as_array().into_iter().flatten() {
        if obj.get("rule").is_some() {
            rules += 1;
        }
        let Some(set) = obj.get("set") else { continue };
        let name = match set["name"].as_str() {
            Some("ports") => "ports",
            Some("macs") => "macs",
            Some("addr4") => "addr4",
            Some("addr6") => "addr6",
            _ => continue,
        };
        for e in set["elem"].as_array().into_iter().flatten() {
            if let Some(port) = e.as_str() {
                elems.push((name, port.to_string(), s(port)));
            } else if let Some([port, value]) = e["concat"].as_array().map(Vec::as_slice) {
                let (Some(port), Some(value)) = (port.as_str(), value.as_str()) else {
                    continue;
                };
                elems.push((name, port.to_string(), concat(s(port), s(value))));
            }
        }
    }
    Ok((elems, rules))
}

/// One transaction: the skeleton if needed, then for every listed VE its ports'
/// old elements out and new ones in, and elements of ports that no longer exist
/// on the host swept out.
fn antispoof_edit(nft: &nft::Nft, ves: &[(u32, Vec<Port>)]) -> Result<()> {
    let (current, rules) = antispoof_state(nft)?;
    if rules == 0 && ves.iter().all(|(_, p)| p.is_empty()) {
        return Ok(());
    }
    let mut b = Batch::new();
    if rules != ANTISPOOF_RULES {
        if rules > 0 {
            b.add_cmd(NfCmd::Flush(nft::schema::schema::FlushObject::Chain(
                Chain {
                    family: BRIDGE,
                    table: ANTISPOOF_TABLE.into(),
                    name: "prerouting".into(),
                    ..Chain::default()
                },
            )));
        }
        antispoof_skeleton(&mut b, true);
    }
    let replaced: Vec<&str> = ves
        .iter()
        .flat_map(|(_, ports)| ports.iter().map(|p| p.host_name.as_str()))
        .collect();
    let mut gone: std::collections::BTreeMap<&str, Vec<Expression<'static>>> = Default::default();
    for (set, port, e) in current {
        let exists = nix::net::if_::if_nametoindex(port.as_str()).is_ok();
        if !exists || replaced.contains(&port.as_str()) {
            gone.entry(set).or_default().push(e);
        }
    }
    for (set, elems) in gone {
        b.delete(element(set, elems));
    }
    let mut new: std::collections::BTreeMap<&str, Vec<Expression<'static>>> = Default::default();
    for (_, ports) in ves {
        for p in ports {
            for (set, e) in port_elements(p) {
                new.entry(set).or_default().push(e);
            }
        }
    }
    for (set, elems) in new {
        b.add(element(set, elems));
    }
    nft.apply(&b.to_nftables())
        .context("the VEs' anti-spoofing rules (host nftables)")
}

/// The bridged ports of a running VE, with the MACs its ends really have
/// (read in its netns when the file sets none).
pub fn ports(ve: &VeConfig, netns: &Path) -> Result<Vec<Port>> {
    let bridged: Vec<(usize, &netcfg::model::Netif)> = ve
        .netif
        .iter()
        .enumerate()
        .filter(|(_, n)| n.bridge.is_some())
        .collect();
    if bridged.is_empty() {
        return Ok(Vec::new());
    }
    let need_lookup = bridged.iter().any(|(_, n)| n.mac.is_none());
    let links = if need_lookup {
        read_links(netns)?
    } else {
        Vec::new()
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
        let mac = match netif.mac {
            Some(m) => m,
            None => links
                .iter()
                .find(|l| l.name == netif.name)
                .and_then(|l| l.mac)
                .with_context(|| format!("VE {}: no MAC for {} in its netns", ve.id, netif.name))?,
        };
        out.push(Port {
            host_name: ve.host_ifname(n),
            mac,
            addrs: own.clone(),
        });
    }
    Ok(out)
}

fn read_links(netns: &Path) -> Result<Vec<netcfg::kernel::state::LinkState>> {
    let file = netcfg::kernel::netns::open(netns)
        .with_context(|| format!("opening {}", netns.display()))?;
    let fd = netcfg::kernel::netns::route_sockets(vec![file])?
        .pop()
        .context("no netlink socket")??;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let h = netcfg::kernel::netns::handle(fd)?;
        Ok(netcfg::kernel::state::read_links(&h).await?)
    })
}

/// Applies a running VE's `[firewall]` inside its netns (`pid`: its init).
pub fn apply_ve_firewall(ve: &VeConfig, pid: u32) -> Result<()> {
    let Some(fw) = &ve.firewall else {
        return Ok(());
    };
    let netns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
    let nft = nft::Nft::new(Some(&netns)).context("nftables in the VE")?;
    nft.apply(&ve_ruleset(fw))
        .with_context(|| format!("VE {}'s firewall", ve.id))
}

/// The anti-spoofing ports of a running VE (none when `anti_spoof = false`).
pub fn antispoof_ports(ve: &VeConfig, pid: u32) -> Result<Vec<Port>> {
    if !ve.anti_spoof {
        return Ok(Vec::new());
    }
    ports(ve, Path::new(&format!("/proc/{pid}/ns/net")))
}

/// Puts these VEs' ports into the host's anti-spoofing sets (replacing what
/// their ports had), in one transaction.
pub fn set_antispoof(ves: &[(u32, Vec<Port>)]) -> Result<()> {
    if ves.is_empty() {
        return Ok(());
    }
    let nft = nft::Nft::new(None).context("nftables on the host (or set anti_spoof = false)")?;
    antispoof_edit(&nft, ves)
}

/// Takes the elements of ports that no longer exist (stopped VEs' host ends)
/// out of the host's anti-spoofing sets; without an nftables backend there
/// can be none.
pub fn sweep_antispoof() -> Result<()> {
    let Ok(nft) = nft::Nft::new(None) else {
        return Ok(());
    };
    antispoof_edit(&nft, &[]).context("removing stopped VEs' anti-spoofing elements")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_contributes_its_name_mac_and_addresses() {
        let port = Port {
            host_name: "veth7.0".into(),
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
        ] {
            assert!(json.contains(want), "{want} in {json}");
        }
        let sets: Vec<&str> = port_elements(&port).iter().map(|(s, _)| *s).collect();
        assert_eq!(sets, ["ports", "macs", "addr4", "addr4", "addr6"]);
        let mut b = Batch::new();
        antispoof_skeleton(&mut b, true);
        let skeleton = serde_json::to_string(&b.to_nftables()).expect("json");
        assert_eq!(skeleton.matches("\"rule\"").count(), ANTISPOOF_RULES);
        assert!(skeleton.contains("\"!=\"") && skeleton.contains("saddr ether"));
    }
}
