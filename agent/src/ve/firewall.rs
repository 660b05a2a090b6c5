//! The VE's own packet filter (`[firewall]`), inside its netns: one table,
//! `inet vznet_fw`, replaced whole in one transaction. Documents are typed
//! (`nft::matching`); no string becomes nft syntax. The host's side (anti-
//! spoofing on the VEs' ports) is `antispoof.rs`.

use anyhow::{Context, Result};
use netcfg::model::{FwPolicy, FwProto, VeConfig};
use nft::matching::{
    anonymous_set, drop_table, is, meta, number, payload, prefix, rule, table, value,
};
use nft::schema::{
    batch::Batch,
    expr::{Expression, MetaKey, NamedExpression, CT},
    schema::{Chain, NfListObject, Nftables},
    stmt::{Match, Operator, Statement},
    types::{NfChainPolicy, NfChainType, NfFamily, NfHook},
};

/// The VE's filter table (inside its netns).
pub const VE_TABLE: &str = "vznet_fw";

fn net(n: &ipnet::IpNet) -> Expression<'static> {
    if n.prefix_len() == n.max_prefix_len() {
        value(n.addr().to_string())
    } else {
        prefix(n.network().to_string(), u32::from(n.prefix_len()))
    }
}

/// The VE's filter: established/related and loopback accepted, then each
/// `allow` rule, then the `input` policy.
pub fn ve_ruleset(fw: &netcfg::model::Firewall) -> Nftables<'static> {
    let f = NfFamily::INet;
    let mut b = Batch::new();
    drop_table(&mut b, f, VE_TABLE);
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
            Statement::Match(Match {
                left: ct_state,
                right: anonymous_set(vec![value("established"), value("related")]),
                op: Operator::IN,
            }),
            accept(),
        ],
    ));
    b.add(rule(
        f,
        VE_TABLE,
        "input",
        vec![is(meta(MetaKey::Iifname), value("lo")), accept()],
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
            sources.push(Some(is(
                payload("ip", "saddr"),
                anonymous_set(v4.iter().map(|n| net(n)).collect()),
            )));
        }
        if !v6.is_empty() {
            sources.push(Some(is(
                payload("ip6", "saddr"),
                anonymous_set(v6.iter().map(|n| net(n)).collect()),
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
                expr.push(is(meta(MetaKey::L4proto), value(p)));
            }
            if !r.ports.is_empty() {
                let proto = if r.proto == FwProto::Udp {
                    "udp"
                } else {
                    "tcp"
                };
                expr.push(is(
                    payload(proto, "dport"),
                    anonymous_set(r.ports.iter().map(|p| number(u32::from(*p))).collect()),
                ));
            }
            expr.push(accept());
            b.add(rule(f, VE_TABLE, "input", expr));
        }
    }
    b.to_nftables()
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
