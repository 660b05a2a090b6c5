//! The nftables documents: a static skeleton (one table, its chains, rules and
//! maps) and element edits. Pure: builds documents, runs nothing.
//!
//! Per virtual server `N`, one rule in chain `services`:
//!
//! ```text
//! ip daddr VIP tcp dport PORT
//!     ct mark set numgen random mod M offset SLOT_BASE     # or jhash / numgen inc
//!     ct mark set ct mark map @slots_N                     # slot -> backend id
//!     dnat ip to ct mark map @addr4 : ct mark map @port    # backend id -> address, port
//! ```
//!
//! A backend change edits elements of `slots_N` (and of `addr4`/`port` when a
//! backend appears or goes), in one transaction. The conntrack mark then names
//! the connection's backend, so `forward` can reset a failed backend's
//! connections (`ct mark @reset`) and `postrouting` can masquerade
//! (`ct mark @masquerade`) with set edits only. (nft 1.0.6's JSON cannot declare
//! an integer-keyed map nor a map to an address and port, hence the mark hops.)

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;

use netcfg::model::{LbProtocol, Scheduler};
use nft::schema::{
    batch::Batch,
    expr::{
        Expression, JHash, Map as MapExpr, NamedExpression, NgMode, Numgen, Payload, PayloadField,
        CT,
    },
    schema::{
        Chain, Element, Map, NfCmd, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue, Table,
    },
    stmt::{JumpTarget, Mangle, Match, NATFamily, Operator, Reject, RejectType, Statement, NAT},
    types::{NfChainPolicy, NfChainType, NfFamily, NfHook},
};

/// The table vznet owns.
pub const TABLE: &str = "vznet_lb";
/// Slot keys are `SLOT_BASE + slot`.
pub const SLOT_BASE: u32 = 0x7a5e_0000;
/// Backend ids are `BACKEND_BASE + n`; the conntrack mark of a balanced
/// connection is its backend's id.
pub const BACKEND_BASE: u32 = 0x7a5f_0000;

const FAMILY: NfFamily = NfFamily::INet;

/// The fixed part of one virtual server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceShape {
    /// Index in the table (`slots_N`).
    pub index: usize,
    /// Service address.
    pub vip: IpAddr,
    /// Service port.
    pub port: u16,
    /// tcp or udp.
    pub protocol: LbProtocol,
    /// How a slot is picked.
    pub scheduler: Scheduler,
    /// `source-hash` seed.
    pub seed: u32,
    /// Slot count (prime).
    pub slots: u32,
}

/// A backend as the maps hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendEntry {
    /// `BACKEND_BASE + n`.
    pub id: u32,
    /// Address.
    pub address: IpAddr,
    /// Port.
    pub port: u16,
}

fn s(v: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(v.to_string()))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn lookup(key: Expression<'static>, map: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Map(Box::new(MapExpr {
        key,
        data: s(&format!("@{map}")),
    })))
}

fn slots_map(index: usize) -> String {
    format!("slots_{index}")
}

fn ip_family(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

fn addr_map(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "addr4"
    } else {
        "addr6"
    }
}

fn map(name: &str, key: SetType, value: SetType) -> NfListObject<'static> {
    NfListObject::Map(Box::new(Map {
        family: FAMILY,
        table: TABLE.into(),
        name: Cow::Owned(name.to_string()),
        set_type: SetTypeValue::Single(key),
        map: SetTypeValue::Single(value),
        ..Map::default()
    }))
}

fn mark_set(name: &str) -> NfListObject<'static> {
    NfListObject::Set(Box::new(Set {
        family: FAMILY,
        table: TABLE.into(),
        name: Cow::Owned(name.to_string()),
        set_type: SetTypeValue::Single(SetType::Mark),
        flags: None::<HashSet<SetFlag>>,
        ..Set::default()
    }))
}

fn base_chain(name: &str, kind: NfChainType, hook: NfHook, prio: i32) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: Cow::Owned(name.to_string()),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    })
}

fn rule(
    chain: &str,
    expr: Vec<Statement<'static>>,
    comment: Option<String>,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: FAMILY,
        table: TABLE.into(),
        chain: Cow::Owned(chain.to_string()),
        expr: expr.into(),
        handle: None,
        index: None,
        comment: comment.map(Cow::Owned),
    })
}

fn table() -> NfListObject<'static> {
    NfListObject::Table(Table {
        family: FAMILY,
        name: TABLE.into(),
        handle: None,
    })
}

/// The chain holding one rule per virtual server (for listing).
pub fn services_chain() -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: "services".into(),
        ..Chain::default()
    })
}

/// Removes the table if it is there (add-then-delete never fails on absence).
pub fn remove(batch: &mut Batch<'static>) {
    batch.add(table());
    batch.delete(table());
}

/// The whole skeleton, replacing any previous table, with empty maps.
pub fn skeleton(batch: &mut Batch<'static>, services: &[ServiceShape]) {
    remove(batch);
    batch.add(table());
    batch.add(map("addr4", SetType::Mark, SetType::Ipv4Addr));
    batch.add(map("addr6", SetType::Mark, SetType::Ipv6Addr));
    batch.add(map("port", SetType::Mark, SetType::InetService));
    batch.add(mark_set("reset"));
    batch.add(mark_set("masquerade"));
    for svc in services {
        batch.add(map(&slots_map(svc.index), SetType::Mark, SetType::Mark));
    }
    // dstnat priority -100, srcnat 100, filter 0.
    batch.add(base_chain(
        "prerouting",
        NfChainType::NAT,
        NfHook::Prerouting,
        -100,
    ));
    batch.add(base_chain("output", NfChainType::NAT, NfHook::Output, -100));
    batch.add(base_chain(
        "postrouting",
        NfChainType::NAT,
        NfHook::Postrouting,
        100,
    ));
    batch.add(base_chain(
        "forward",
        NfChainType::Filter,
        NfHook::Forward,
        0,
    ));
    batch.add(services_chain());
    for hook in ["prerouting", "output"] {
        batch.add(rule(
            hook,
            vec![Statement::Jump(JumpTarget {
                target: "services".into(),
            })],
            None,
        ));
    }
    for svc in services {
        batch.add(service_rule(svc));
    }
    let dnatted = Statement::Match(Match {
        left: ct("status"),
        right: s("dnat"),
        op: Operator::IN,
    });
    batch.add(rule(
        "postrouting",
        vec![
            dnatted.clone(),
            eq(ct("mark"), s("@masquerade")),
            Statement::Masquerade(None),
        ],
        None,
    ));
    batch.add(rule(
        "forward",
        vec![
            dnatted,
            eq(
                Expression::Named(NamedExpression::Meta(nft::schema::expr::Meta {
                    key: nft::schema::expr::MetaKey::L4proto,
                })),
                s("tcp"),
            ),
            eq(ct("mark"), s("@reset")),
            Statement::Reject(Some(Reject::new(Some(RejectType::TCPReset), None))),
        ],
        None,
    ));
}

fn service_rule(svc: &ServiceShape) -> NfListObject<'static> {
    let fam = ip_family(svc.vip);
    let pick = match svc.scheduler {
        Scheduler::WeightedRandom | Scheduler::RoundRobin => {
            Expression::Named(NamedExpression::Numgen(Numgen {
                mode: if svc.scheduler == Scheduler::RoundRobin {
                    NgMode::Inc
                } else {
                    NgMode::Random
                },
                ng_mod: svc.slots,
                offset: Some(SLOT_BASE),
            }))
        }
        Scheduler::SourceHash => Expression::Named(NamedExpression::JHash(JHash {
            hash_mod: svc.slots,
            offset: Some(SLOT_BASE),
            expr: Box::new(payload(fam, "saddr")),
            seed: Some(svc.seed),
        })),
    };
    let expr = vec![
        eq(payload(fam, "daddr"), s(&svc.vip.to_string())),
        eq(
            payload(svc.protocol.as_str(), "dport"),
            Expression::Number(u32::from(svc.port)),
        ),
        Statement::Mangle(Mangle {
            key: ct("mark"),
            value: pick,
        }),
        Statement::Mangle(Mangle {
            key: ct("mark"),
            value: lookup(ct("mark"), &slots_map(svc.index)),
        }),
        Statement::DNAT(Some(NAT {
            addr: Some(lookup(ct("mark"), addr_map(svc.vip))),
            family: Some(if svc.vip.is_ipv4() {
                NATFamily::IP
            } else {
                NATFamily::IP6
            }),
            port: Some(lookup(ct("mark"), "port")),
            flags: None,
        })),
    ];
    rule(
        "services",
        expr,
        Some(format!("vznet virtual server {}", svc.index)),
    )
}

fn element(name: &str, elem: Vec<Expression<'static>>) -> NfListObject<'static> {
    NfListObject::Element(Element {
        family: FAMILY,
        table: TABLE.into(),
        name: Cow::Owned(name.to_string()),
        elem: elem.into(),
    })
}

fn pair(k: u32, v: Expression<'static>) -> Expression<'static> {
    Expression::List(vec![Expression::Number(k), v])
}

/// Adds backends to the address and port maps.
pub fn add_backends(batch: &mut Batch<'static>, entries: &[BackendEntry]) {
    for fam in [true, false] {
        let elems: Vec<_> = entries
            .iter()
            .filter(|e| e.address.is_ipv4() == fam)
            .map(|e| pair(e.id, s(&e.address.to_string())))
            .collect();
        if !elems.is_empty() {
            batch.add(element(if fam { "addr4" } else { "addr6" }, elems));
        }
    }
    if !entries.is_empty() {
        let ports = entries
            .iter()
            .map(|e| pair(e.id, Expression::Number(u32::from(e.port))))
            .collect();
        batch.add(element("port", ports));
    }
}

/// Removes backends from the address and port maps.
pub fn delete_backends(batch: &mut Batch<'static>, entries: &[BackendEntry]) {
    for fam in [true, false] {
        let ids: Vec<_> = entries
            .iter()
            .filter(|e| e.address.is_ipv4() == fam)
            .map(|e| Expression::Number(e.id))
            .collect();
        if !ids.is_empty() {
            batch.delete(element(if fam { "addr4" } else { "addr6" }, ids));
        }
    }
    if !entries.is_empty() {
        let ids = entries.iter().map(|e| Expression::Number(e.id)).collect();
        batch.delete(element("port", ids));
    }
}

/// Rewrites slots of service `index`: `(slot, old id, new id)`. A changed slot is
/// a delete and an add in the same transaction.
pub fn set_slots(
    batch: &mut Batch<'static>,
    index: usize,
    changes: &[(u32, Option<u32>, Option<u32>)],
) {
    let name = slots_map(index);
    let deletes: Vec<_> = changes
        .iter()
        .filter(|(_, old, _)| old.is_some())
        .map(|(slot, _, _)| Expression::Number(SLOT_BASE + slot))
        .collect();
    let adds: Vec<_> = changes
        .iter()
        .filter_map(|(slot, _, new)| new.map(|id| pair(SLOT_BASE + slot, Expression::Number(id))))
        .collect();
    if !deletes.is_empty() {
        batch.delete(element(&name, deletes));
    }
    if !adds.is_empty() {
        batch.add(element(&name, adds));
    }
}

/// Adds or removes backend ids in the `reset` or `masquerade` set.
pub fn mark_set_edit(batch: &mut Batch<'static>, set: &str, add: bool, ids: &[u32]) {
    if ids.is_empty() {
        return;
    }
    let elems = ids.iter().map(|id| Expression::Number(*id)).collect();
    let obj = element(set, elems);
    if add {
        batch.add(obj);
    } else {
        batch.add_cmd(NfCmd::Delete(obj));
    }
}
