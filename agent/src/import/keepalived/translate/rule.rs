//! The lines of `virtual_rules` and `static_rules`, read as keepalived's
//! `alloc_rule` reads them: a virtual rule becomes one of the instance's
//! `virtual_rules`, a static rule a `[[rule]]` netcfg keeps in place.

use ipnet::IpNet;
use netcfg::model::{Fwmark, RouteTable, Rule, Selector};
use vrrp::settings::VirtualRule;

use super::super::parser::Node;
use super::address::{address, table};
use super::{value, Ctx, Sourced};

/// A rule line's parts.
#[derive(Debug, Default)]
struct ParsedRule {
    from: Option<IpNet>,
    to: Option<IpNet>,
    table: Option<u32>,
    priority: Option<u32>,
    iif: Option<String>,
    oif: Option<String>,
    /// The mark and its mask, if any.
    fwmark: Option<(u32, Option<u32>)>,
    /// `inet` (4) or `inet6` (6).
    family: Option<u8>,
    /// Keywords no vznet rule has.
    unsupported: Vec<String>,
}

/// Reads a rule line; `None` (reported) when keepalived skips it.
fn parse(ctx: &mut Ctx<'_>, line: &Node) -> Option<ParsedRule> {
    let mut rule = ParsedRule::default();
    let w = &line.words;
    let mut i = 0;
    while i < w.len() {
        let key = w[i].as_str();
        if let Some(family) = match key {
            "inet" => Some(4),
            "inet6" => Some(6),
            _ => None,
        } {
            rule.family = Some(family);
            i += 1;
            continue;
        }
        if matches!(key, "no_track" | "not" | "l3mdev") {
            if key != "no_track" {
                rule.unsupported.push(key.into());
            }
            i += 1;
            continue;
        }
        let Some(arg) = w.get(i + 1).map(String::as_str) else {
            ctx.no_effect(
                line,
                format!("{key} without a value (keepalived skips the rule too)"),
            );
            return None;
        };
        let number =
            || value::unsigned(arg, 0, u64::from(u32::MAX)).and_then(|v| u32::try_from(v).ok());
        match key {
            "from" | "to" => {
                let net = match arg {
                    "all" | "any" | "default" => None,
                    a => {
                        match address(a) {
                            Some(n) => Some(n),
                            None => {
                                ctx.no_effect(line, format!("{key} {a:?} is not an address (keepalived skips the rule too)"));
                                return None;
                            }
                        }
                    }
                };
                if key == "from" {
                    rule.from = net;
                } else {
                    rule.to = net;
                }
            }
            "table" | "lookup" => match table(arg) {
                Some(t) => rule.table = Some(t),
                None => rule
                    .unsupported
                    .push(format!("table {arg} (give its number)")),
            },
            "preference" | "order" | "priority" => rule.priority = number(),
            "iif" | "dev" => rule.iif = Some(arg.to_string()),
            "oif" => rule.oif = Some(arg.to_string()),
            "fwmark" => {
                let (mark, mask) = match arg.split_once('/') {
                    Some((m, k)) => (m, Some(k)),
                    None => (arg, None),
                };
                let num = |s: &str| {
                    super::super::words::parse_c_long(s).and_then(|v| u32::try_from(v).ok())
                };
                match (num(mark), mask.map(num)) {
                    (Some(m), None) => rule.fwmark = Some((m, None)),
                    (Some(m), Some(Some(k))) => rule.fwmark = Some((m, Some(k))),
                    _ => {
                        ctx.no_effect(
                            line,
                            format!("fwmark {arg:?} is not valid (keepalived skips the rule too)"),
                        );
                        return None;
                    }
                }
            }
            other => rule.unsupported.push(other.into()),
        }
        i += 2;
    }
    Some(rule)
}

/// Reports what a rule uses that vznet's rules lack; `false` when it is not carried.
fn carried(ctx: &mut Ctx<'_>, line: &Node, rule: &ParsedRule, what: &str) -> bool {
    if !rule.unsupported.is_empty() {
        ctx.lost(
            line,
            format!(
                "the rule uses {}, which vznet's {what} do not have: rule not carried",
                rule.unsupported.join(", ")
            ),
        );
        return false;
    }
    if rule.table.is_none() {
        ctx.lost(line, format!("vznet's {what} look up a table; this rule has none (goto, nop or a type): rule not carried"));
        return false;
    }
    true
}

/// One `virtual_rules` line.
pub(super) fn virtual_rule(ctx: &mut Ctx<'_>, line: &Node) -> Option<VirtualRule> {
    let rule = parse(ctx, line)?;
    let mut rule = rule;
    if rule.fwmark.is_some_and(|(_, mask)| mask.is_some()) {
        rule.unsupported.push("fwmark with a mask".into());
    }
    if !carried(ctx, line, &rule, "virtual_rules") {
        return None;
    }
    Some(VirtualRule {
        from: rule.from,
        to: rule.to,
        table: rule.table?,
        priority: rule.priority,
        iif: rule.iif,
        oif: rule.oif,
        fwmark: rule.fwmark.map(|(m, _)| m),
        family: rule.family,
    })
}

/// `static_rules { ... }`: rules that stay while keepalived runs, carried as
/// netcfg's `[[rule]]`.
pub(super) fn static_rules(ctx: &mut Ctx<'_>, block: &Node, out: &mut Vec<Sourced<Rule>>) {
    let mut any = false;
    for line in block.children() {
        let Some(rule) = parse(ctx, line) else {
            continue;
        };
        if !carried(ctx, line, &rule, "[[rule]] tables") {
            continue;
        }
        let Some(priority) = rule.priority else {
            ctx.lost(line, "vznet's [[rule]] needs a priority (keepalived lets the kernel number the rule): give it preference N");
            continue;
        };
        if rule.from.is_none() && rule.to.is_none() {
            let family = if rule.family == Some(6) {
                "IPv6"
            } else {
                "IPv4"
            };
            ctx.changed(line, format!("a [[rule]] without addresses applies to IPv4 and IPv6; keepalived's applies to {family} only"));
        }
        out.push(Sourced {
            at: line.at.clone(),
            origin: "static_rules".into(),
            value: Rule {
                priority,
                from: rule.from.map(|n| Selector(n.trunc())),
                to: rule.to.map(|n| Selector(n.trunc())),
                iif: rule.iif,
                oif: rule.oif,
                fwmark: rule.fwmark.map(|(mark, mask)| Fwmark {
                    mark,
                    mask: mask.unwrap_or(u32::MAX),
                }),
                table: RouteTable(rule.table.unwrap_or(254)),
            },
        });
        any = true;
    }
    if any {
        ctx.changed(block, "carried as [[rule]] tables, which netcfg keeps in place also while vznetd is stopped (keepalived removes its static rules when it stops)");
    }
}
