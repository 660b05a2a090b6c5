//! Per-VE nftables: the VE's own filter inside its netns (`[firewall]`), and on
//! the host, anti-spoofing on its bridged ports: a frame from a VE's port must
//! carry the VE's MAC as Ethernet and ARP sender, and one of its addresses as
//! IPv4/ARP sender (IPv6: its addresses, `::` and link-local).
//!
//! Each is one table, replaced whole in one transaction (add, delete, add
//! again: never fails on absence), so a change is atomic and a stop removes it
//! with one delete: `inet vznet_fw` in the VE, `bridge vznet_ve<ID>` on the host.
//! Documents are typed (the `nftables` crate); no string becomes nft syntax.

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
    schema::{Chain, NfListObject, Nftables, Rule, Table},
    stmt::{Match, Operator, Statement},
    types::{NfChainPolicy, NfChainType, NfFamily, NfHook},
};

/// The VE's filter table (inside its netns).
pub const VE_TABLE: &str = "vznet_fw";

/// The host table of VE `id`'s anti-spoofing rules.
pub fn host_table(id: u32) -> String {
    format!("vznet_ve{id}")
}

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

/// The host's anti-spoofing table for VE `id`: per port, at bridge prerouting,
/// drop what does not carry the VE's MAC and addresses. No ports: the table
/// is removed.
pub fn antispoof_ruleset(id: u32, ports: &[Port]) -> Nftables<'static> {
    let mut b = Batch::new();
    antispoof_into(&mut b, id, ports);
    b.to_nftables()
}

fn antispoof_into(b: &mut Batch<'static>, id: u32, ports: &[Port]) {
    let f = NfFamily::Bridge;
    let name = host_table(id);
    remove(b, f, &name);
    if ports.is_empty() {
        return;
    }
    b.add(table(f, &name));
    b.add(NfListObject::Chain(Chain {
        family: f,
        table: Cow::Owned(name.clone()),
        name: "prerouting".into(),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Prerouting),
        prio: Some(-200),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
    let drop = || Statement::Drop(None);
    for port in ports {
        let iif = || cmp(meta(MetaKey::Iifname), Operator::EQ, s(&port.host_name));
        let mac = s(&port.mac.to_string());
        let mut v4: Vec<Expression<'static>> = vec![s("0.0.0.0")];
        v4.extend(
            port.addrs
                .iter()
                .filter(|a| a.is_ipv4())
                .map(|a| s(&a.to_string())),
        );
        let link_local = Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(s("fe80::")),
            len: 10,
        }));
        let mut v6: Vec<Expression<'static>> = vec![s("::"), link_local];
        v6.extend(
            port.addrs
                .iter()
                .filter(|a| a.is_ipv6())
                .map(|a| s(&a.to_string())),
        );
        for check in [
            cmp(payload("ether", "saddr"), Operator::NEQ, mac.clone()),
            cmp(payload("arp", "saddr ether"), Operator::NEQ, mac),
            cmp(payload("arp", "saddr ip"), Operator::NEQ, set(v4.clone())),
            cmp(payload("ip", "saddr"), Operator::NEQ, set(v4)),
            cmp(payload("ip6", "saddr"), Operator::NEQ, set(v6)),
        ] {
            b.add(rule(f, &name, "prerouting", vec![iif(), check, drop()]));
        }
    }
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

/// Replaces the host's anti-spoofing tables of these VEs in one transaction
/// (a VE with no ports loses its table).
pub fn set_antispoof(ves: &[(u32, Vec<Port>)]) -> Result<()> {
    if ves.is_empty() {
        return Ok(());
    }
    let nft = nft::Nft::new(None).context("nftables on the host (or set anti_spoof = false)")?;
    let mut b = Batch::new();
    for (id, ports) in ves {
        antispoof_into(&mut b, *id, ports);
    }
    nft.apply(&b.to_nftables())
        .context("the VEs' anti-spoofing rules (host nftables)")
}

/// Removes the host's anti-spoofing tables of these VEs; without an
/// nftables backend there can be none.
pub fn remove_antispoof(ids: &[u32]) -> Result<()> {
    let Ok(nft) = nft::Nft::new(None) else {
        return Ok(());
    };
    let mut b = Batch::new();
    for id in ids {
        remove(&mut b, NfFamily::Bridge, &host_table(*id));
    }
    nft.apply(&b.to_nftables())
        .context("removing the VEs' anti-spoofing rules")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn antispoof_documents_name_the_port_mac_and_addresses() {
        let port = Port {
            host_name: "veth7.0".into(),
            mac: "02:00:00:00:00:07".parse().expect("mac"),
            addrs: vec!["10.0.0.7".parse().expect("ip")],
        };
        let json = serde_json::to_string(&antispoof_ruleset(7, &[port])).expect("json");
        for want in [
            "\"vznet_ve7\"",
            "\"bridge\"",
            "\"veth7.0\"",
            "02:00:00:00:00:07",
            "10.0.0.7",
            "saddr ether",
            "saddr ip",
            "\"!=\"",
        ] {
            assert!(json.contains(want), "{want} in {json}");
        }
        let empty = serde_json::to_string(&antispoof_ruleset(7, &[])).expect("json");
        assert!(
            empty.contains("delete") && !empty.contains("prerouting"),
            "{empty}"
        );
    }
}
