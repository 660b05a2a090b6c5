//! Policy routing rules (`ip rule`) vznet owns: the desired set from `[[rule]]`,
//! the kernel's rules as read back, the diff, and the netlink messages.
//!
//! Ownership is the rule's protocol (FRA_PROTOCOL, Linux 4.17+): vznet's rules
//! carry 249, like its routes, and no other rule is ever changed.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;
use serde::{Deserialize, Serialize};

use crate::kernel::state::RTPROT_VZNET;
use crate::model::Config;
use crate::op::Op;

/// One rule of one address family, as vznet installs it: every selector given
/// must match, then `table` is looked up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// IPv6 (else IPv4).
    pub ipv6: bool,
    /// Order, lower first.
    pub priority: u32,
    /// Source prefix.
    pub from: Option<IpNet>,
    /// Destination prefix.
    pub to: Option<IpNet>,
    /// Input interface name.
    pub iif: Option<String>,
    /// Output interface name.
    pub oif: Option<String>,
    /// Firewall mark.
    pub fwmark: Option<u32>,
    /// Its mask (with `fwmark`).
    pub fwmask: Option<u32>,
    /// Table to look up.
    pub table: u32,
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = if self.ipv6 { "ipv6" } else { "ipv4" };
        write!(f, "{family} {}: from ", self.priority)?;
        match self.from {
            Some(n) => write!(f, "{n}")?,
            None => f.write_str("all")?,
        }
        if let Some(n) = self.to {
            write!(f, " to {n}")?;
        }
        if let Some(i) = &self.iif {
            write!(f, " iif {i}")?;
        }
        if let Some(o) = &self.oif {
            write!(f, " oif {o}")?;
        }
        if let Some(m) = self.fwmark {
            let mark = crate::model::Fwmark {
                mark: m,
                mask: self.fwmask.unwrap_or(u32::MAX),
            };
            write!(f, " fwmark {mark}")?;
        }
        write!(f, " lookup {}", crate::model::RouteTable(self.table))
    }
}

impl RuleSpec {
    /// The kernel's rules for a config rule: one per address family it covers.
    fn of(rule: &crate::model::Rule) -> Vec<RuleSpec> {
        rule.families()
            .into_iter()
            .map(|ipv4| RuleSpec {
                ipv6: !ipv4,
                priority: rule.priority,
                from: rule.from.map(|s| s.0),
                to: rule.to.map(|s| s.0),
                iif: rule.iif.clone(),
                oif: rule.oif.clone(),
                // A mark of 0 with a full mask is no match at all (validation
                // refuses it); the kernel reports a mask only with a mark or a mask.
                fwmark: rule.fwmark.map(|m| m.mark),
                fwmask: rule.fwmark.map(|m| m.mask),
                table: rule.table.0,
            })
            .collect()
    }

    /// The RTM_NEWRULE/RTM_DELRULE message for this rule, marked as vznet's.
    pub fn message(&self) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header.family = if self.ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        m.header.action = RuleAction::ToTable;
        // The header's table is 8 bits; FRA_TABLE carries any id and wins.
        m.header.table = u8::try_from(self.table).unwrap_or(0);
        let attrs = &mut m.attributes;
        attrs.push(RuleAttribute::Table(self.table));
        attrs.push(RuleAttribute::Priority(self.priority));
        attrs.push(RuleAttribute::Protocol(RouteProtocol::from(RTPROT_VZNET)));
        if let Some(n) = self.from {
            m.header.src_len = n.prefix_len();
            attrs.push(RuleAttribute::Source(n.addr()));
        }
        if let Some(n) = self.to {
            m.header.dst_len = n.prefix_len();
            attrs.push(RuleAttribute::Destination(n.addr()));
        }
        if let Some(i) = &self.iif {
            attrs.push(RuleAttribute::Iifname(i.clone()));
        }
        if let Some(o) = &self.oif {
            attrs.push(RuleAttribute::Oifname(o.clone()));
        }
        if let Some(mark) = self.fwmark {
            attrs.push(RuleAttribute::FwMark(mark));
            attrs.push(RuleAttribute::FwMask(self.fwmask.unwrap_or(u32::MAX)));
        }
        m
    }
}

/// A rule as the kernel reports it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleState {
    /// What it matches and where it sends.
    pub spec: RuleSpec,
    /// FRA_PROTOCOL: who made it.
    pub protocol: u8,
}

impl RuleState {
    /// Decodes a table-lookup rule; `None` for other actions (goto, blackhole...),
    /// which vznet never makes.
    pub(crate) fn from_message(msg: &RuleMessage) -> Option<RuleState> {
        if msg.header.action != RuleAction::ToTable {
            return None;
        }
        let ipv6 = match msg.header.family {
            AddressFamily::Inet => false,
            AddressFamily::Inet6 => true,
            _ => return None,
        };
        let prefix = |a: &IpAddr, len: u8| IpNet::new(*a, len).ok();
        let mut spec = RuleSpec {
            ipv6,
            priority: 0,
            from: None,
            to: None,
            iif: None,
            oif: None,
            fwmark: None,
            fwmask: None,
            table: u32::from(msg.header.table),
        };
        let mut protocol = 0;
        for attr in &msg.attributes {
            match attr {
                RuleAttribute::Table(t) => spec.table = *t,
                RuleAttribute::Priority(p) => spec.priority = *p,
                RuleAttribute::Source(a) => spec.from = prefix(a, msg.header.src_len),
                RuleAttribute::Destination(a) => spec.to = prefix(a, msg.header.dst_len),
                RuleAttribute::Iifname(i) => spec.iif = Some(i.clone()),
                RuleAttribute::Oifname(o) => spec.oif = Some(o.clone()),
                RuleAttribute::FwMark(m) => spec.fwmark = Some(*m),
                RuleAttribute::FwMask(m) => spec.fwmask = Some(*m),
                RuleAttribute::Protocol(p) => protocol = u8::from(*p),
                _ => {}
            }
        }
        // The kernel reports a mask with a zero mark ("fwmark 0/0xff") as the
        // mask alone.
        if spec.fwmask.is_some() && spec.fwmark.is_none() {
            spec.fwmark = Some(0);
        }
        Some(RuleState { spec, protocol })
    }

    /// True when vznet made this rule.
    pub fn is_managed(&self) -> bool {
        self.protocol == RTPROT_VZNET
    }
}

/// The rules the config asks for, in file order.
pub fn desired(config: &Config) -> Vec<RuleSpec> {
    config.host.rule.iter().flat_map(RuleSpec::of).collect()
}

/// Ops that make vznet's rules in the host netns exactly `want`.
pub fn plan(ops: &mut Vec<Op>, want: &[RuleSpec], have: &[RuleState]) {
    let mut unmatched: Vec<&RuleSpec> = want.iter().collect();
    for h in have.iter().filter(|h| h.is_managed()) {
        match unmatched.iter().position(|w| **w == h.spec) {
            Some(i) => {
                unmatched.swap_remove(i);
            }
            // Not (or no longer) configured, or a second copy of one that is.
            None => ops.push(Op::RuleDel {
                rule: h.spec.clone(),
            }),
        }
    }
    let mut added: Vec<&RuleSpec> = Vec::new();
    for w in want {
        if unmatched.contains(&w) && !added.contains(&w) {
            added.push(w);
            ops.push(Op::RuleAdd { rule: w.clone() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(priority: u32, table: u32) -> RuleSpec {
        RuleSpec {
            ipv6: false,
            priority,
            from: Some("10.1.0.0/16".parse().expect("cidr")),
            to: None,
            iif: None,
            oif: None,
            fwmark: None,
            fwmask: None,
            table,
        }
    }

    fn state(spec: RuleSpec, protocol: u8) -> RuleState {
        RuleState { spec, protocol }
    }

    #[test]
    fn only_vznets_rules_are_removed_and_missing_ones_added() {
        let want = vec![spec(100, 10), spec(200, 20)];
        let have = vec![
            state(spec(100, 10), RTPROT_VZNET),
            state(spec(300, 30), RTPROT_VZNET),
            // The admin's own rule, identical in all but protocol, stays.
            state(spec(400, 40), 3),
        ];
        let mut ops = Vec::new();
        plan(&mut ops, &want, &have);
        let text: Vec<String> = ops.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "- rule ipv4 300: from 10.1.0.0/16 lookup 30",
                "+ rule ipv4 200: from 10.1.0.0/16 lookup 20"
            ]
        );
    }

    #[test]
    fn a_matching_kernel_needs_nothing_and_a_duplicate_goes() {
        let want = vec![spec(100, 10)];
        let mut ops = Vec::new();
        plan(&mut ops, &want, &[state(spec(100, 10), RTPROT_VZNET)]);
        assert!(ops.is_empty(), "{ops:?}");
        plan(
            &mut ops,
            &want,
            &[
                state(spec(100, 10), RTPROT_VZNET),
                state(spec(100, 10), RTPROT_VZNET),
            ],
        );
        assert_eq!(ops.len(), 1);
        assert!(matches!(ops[0], Op::RuleDel { .. }));
    }

    #[test]
    fn messages_read_back_as_the_same_rule() {
        let mut s = spec(1000, 100_000);
        s.ipv6 = true;
        s.from = Some("fd00:1::/64".parse().expect("cidr"));
        s.to = Some("fd00:2::1/128".parse().expect("cidr"));
        s.iif = Some("br0".into());
        s.oif = Some("eth1".into());
        s.fwmark = Some(0x10);
        s.fwmask = Some(0xff);
        let back = RuleState::from_message(&s.message()).expect("decodes");
        assert_eq!(back.spec, s);
        assert!(back.is_managed());
        assert_eq!(
            s.to_string(),
            "ipv6 1000: from fd00:1::/64 to fd00:2::1/128 iif br0 oif eth1 fwmark 0x10/0xff lookup 100000"
        );
        let mut m = spec(5, 254).message();
        m.header.action = RuleAction::Blackhole;
        assert!(RuleState::from_message(&m).is_none());
    }
}
