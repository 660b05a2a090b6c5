//! Small builders for the expressions, statements and objects most rules need
//! (`ip daddr @set drop`, `meta l4proto 112 accept`), so callers write rules rather
//! than JSON trees. Everything is typed; strings become nft values, never syntax.

use std::borrow::Cow;

use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, SetItem};
use nftables::schema::{Chain, NfListObject, Rule, Set, SetType, SetTypeValue, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

/// A string value: an address, a keyword (`"nd-neighbor-solicit"`), an interface name.
pub fn value(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

/// A number value.
pub fn number(n: u32) -> Expression<'static> {
    Expression::Number(n)
}

/// `protocol field`: `ip daddr`, `icmpv6 type`.
pub fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

/// `meta KEY`: `meta l4proto`, `meta iifname`.
pub fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

/// A reference to a named set: `@name`.
pub fn set_ref(name: &str) -> Expression<'static> {
    value(format!("@{name}"))
}

/// An anonymous set: `{ a, b }`.
pub fn anonymous_set(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

/// `left == right` (or `in` for sets), as a match statement.
pub fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

/// `left != right` (`not in` for sets), as a match statement.
pub fn isnt(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

/// A concatenation: `iifname . ip saddr`, or an element `"veth1" . 10.0.0.1`.
pub fn concat(parts: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(parts))
}

/// A prefix: `fe80::/10`.
pub fn prefix(addr: impl Into<String>, len: u32) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(nftables::expr::Prefix {
        addr: Box::new(value(addr)),
        len,
    }))
}

/// A table.
pub fn table(family: NfFamily, name: &str) -> NfListObject<'static> {
    NfListObject::Table(Table {
        family,
        name: Cow::Owned(name.to_owned()),
        handle: None,
    })
}

/// Adds `table` to `batch` empty: deleted first if it exists (add then delete never
/// fails on absence), then created again.
pub fn fresh_table(batch: &mut Batch<'static>, family: NfFamily, name: &str) {
    batch.add(table(family, name));
    batch.delete(table(family, name));
    batch.add(table(family, name));
}

/// Deletes `table` if it exists.
pub fn drop_table(batch: &mut Batch<'static>, family: NfFamily, name: &str) {
    batch.add(table(family, name));
    batch.delete(table(family, name));
}

/// A named set of one type.
pub fn named_set(
    family: NfFamily,
    table: &str,
    name: &str,
    kind: SetType,
) -> NfListObject<'static> {
    NfListObject::Set(Box::new(Set {
        family,
        table: Cow::Owned(table.to_owned()),
        name: Cow::Owned(name.to_owned()),
        set_type: SetTypeValue::Single(kind),
        ..Set::default()
    }))
}

/// A named set keyed by a concatenation of types (`ifname . ipv4_addr`).
pub fn named_set_of(
    family: NfFamily,
    table: &str,
    name: &str,
    kinds: Vec<SetType>,
) -> NfListObject<'static> {
    NfListObject::Set(Box::new(Set {
        family,
        table: Cow::Owned(table.to_owned()),
        name: Cow::Owned(name.to_owned()),
        set_type: SetTypeValue::Concatenated(kinds.into()),
        ..Set::default()
    }))
}

/// A base chain on `hook` with `priority`, policy accept.
pub fn filter_chain(
    family: NfFamily,
    table: &str,
    name: &str,
    hook: NfHook,
    priority: i32,
) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family,
        table: Cow::Owned(table.to_owned()),
        name: Cow::Owned(name.to_owned()),
        _type: Some(NfChainType::Filter),
        hook: Some(hook),
        prio: Some(priority),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    })
}

/// A rule at the end of `chain`.
pub fn rule(
    family: NfFamily,
    table: &str,
    chain: &str,
    statements: Vec<Statement<'static>>,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family,
        table: Cow::Owned(table.to_owned()),
        chain: Cow::Owned(chain.to_owned()),
        expr: statements.into(),
        handle: None,
        index: None,
        comment: None,
    })
}

/// Elements of the named set `set`.
pub fn elements(
    family: NfFamily,
    table: &str,
    set: &str,
    items: Vec<Expression<'static>>,
) -> NfListObject<'static> {
    NfListObject::Element(nftables::schema::Element {
        family,
        table: Cow::Owned(table.to_owned()),
        name: Cow::Owned(set.to_owned()),
        elem: items.into(),
    })
}
