//! `global_defs`: the defaults it sets for VRRP instances and scripts, and a report
//! item for each of its keys that vznet does not have (e-mail, SNMP, process
//! tuning, ...). Also the keywords keepalived accepts at the top level.

use vrrp::Version;

use super::super::parser::Node;
use super::keywords::{self, Scope};
use super::value;
use crate::import::report::{Kind, Report};

/// What `global_defs` sets for the rest of the config.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    /// `vrrp_version` (keepalived's default: 2 for IPv4 instances).
    pub vrrp_version: Option<Version>,
    /// `vrrp_strict`: every instance strict unless it says otherwise.
    pub vrrp_strict: bool,
    /// `vrrp_garp_master_delay`, in ms.
    pub garp_master_delay_ms: Option<u64>,
    /// `vrrp_garp_master_repeat`.
    pub garp_master_repeat: Option<u32>,
    /// `vrrp_garp_master_refresh`, in ms.
    pub garp_master_refresh_ms: Option<u64>,
    /// `vrrp_garp_master_refresh_repeat`.
    pub garp_master_refresh_repeat: Option<u32>,
    /// `script_user USER [GROUP]`.
    pub script_user: Option<(String, Option<String>)>,
    /// Whether an `smtp_server` is set: without one keepalived sends no e-mail,
    /// and its alert keywords do nothing.
    pub smtp_server: bool,
}

/// The e-mail keywords of `global_defs`.
const EMAIL_KEYWORDS: &[&str] = &[
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "no_email_faults",
    "no_checker_emails",
];

/// Why an alert keyword does nothing when no `smtp_server` is set.
pub const NO_SMTP_SERVER: &str = "no smtp_server is set, so keepalived sends no e-mail either";

/// Keywords keepalived reads at the top level besides the blocks.
const ROOT_KEYWORDS: &[&str] = &[
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "use_pid_dir",
    "instance",
    "child_wait_time",
    "linkbeat_use_polling",
    "static_ipaddress",
    "track_group",
    "garp_group",
    "linkbeat_interfaces",
    "interface_up_down_delays",
    "bfd_instance",
];

/// Reads every `global_defs` block (a later one overrides an earlier one, as in
/// keepalived) and reports its keys that are not carried.
pub fn read(tree: &[Node], report: &mut Report) -> Globals {
    let mut g = Globals::default();
    let mut router_ids: Vec<&Node> = Vec::new();
    g.smtp_server = tree
        .iter()
        .filter(|n| n.keyword() == "global_defs")
        .any(|b| b.children().iter().any(|c| c.keyword() == "smtp_server"));
    for block in tree.iter().filter(|n| n.keyword() == "global_defs") {
        for node in block.children() {
            let mut r = Reporter { report, node };
            match node.keyword() {
                "router_id" => router_ids.push(node),
                "vrrp_version" => match node.arg(1).and_then(|v| value::int(v, 2, 3)) {
                    Some(2) => g.vrrp_version = Some(Version::V2),
                    Some(_) => g.vrrp_version = Some(Version::V3),
                    None => r.invalid("version"),
                },
                "vrrp_strict" => g.vrrp_strict = true,
                "vrrp_garp_master_delay" => match seconds(node) {
                    Some(ms) => g.garp_master_delay_ms = Some(ms),
                    None => r.invalid("delay"),
                },
                "vrrp_garp_master_refresh" => match seconds(node) {
                    Some(ms) => g.garp_master_refresh_ms = Some(ms),
                    None => r.invalid("refresh"),
                },
                "vrrp_garp_master_repeat" => match repeat(node) {
                    Some(n) => g.garp_master_repeat = Some(n),
                    None => r.invalid("repeat"),
                },
                "vrrp_garp_master_refresh_repeat" => match repeat(node) {
                    Some(n) => g.garp_master_refresh_repeat = Some(n),
                    None => r.invalid("repeat"),
                },
                // vznet always hears only the unicast peers it names.
                "vrrp_check_unicast_src" => {}
                "script_user" => match node.arg(1) {
                    Some(user) => {
                        g.script_user = Some((user.to_string(), node.arg(2).map(str::to_string)))
                    }
                    None => r.invalid("user"),
                },
                k if EMAIL_KEYWORDS.contains(&k) && !g.smtp_server => {
                    r.add(Kind::NoEffect, NO_SMTP_SERVER.into())
                }
                k => match keywords::reason(Scope::Global, k) {
                    Some(why) => r.add(Kind::NotCarried, why.to_string()),
                    None => r.add(
                        Kind::NoEffect,
                        "not a keepalived keyword in global_defs (keepalived ignores it too)"
                            .into(),
                    ),
                },
            }
        }
    }
    for node in router_ids {
        let (kind, why) = if g.smtp_server {
            (
                Kind::NotCarried,
                "names this host in keepalived's e-mail alerts, which vznet does not send",
            )
        } else {
            (
                Kind::NoEffect,
                "names this host only in e-mail alerts and SNMP, which this config does not use",
            )
        };
        Reporter { report, node }.add(kind, why.into());
    }
    g
}

/// A top-level keyword that is not a block the import translates.
pub(super) fn root_keyword(ctx: &mut super::Ctx<'_>, node: &Node) {
    if ROOT_KEYWORDS.contains(&node.keyword()) {
        ctx.unsupported(node, Scope::Global);
    } else {
        ctx.unknown(node, Scope::Global);
    }
}

struct Reporter<'a, 'n> {
    report: &'a mut Report,
    node: &'n Node,
}

impl Reporter<'_, '_> {
    fn add(&mut self, kind: Kind, why: String) {
        let n = self.node;
        self.report
            .add(&n.at.file, n.at.line, n.keyword(), kind, why);
    }

    fn invalid(&mut self, what: &str) {
        let value = self.node.words.get(1..).unwrap_or_default().join(" ");
        self.add(
            Kind::NoEffect,
            format!("{what} {value:?} is not valid (keepalived ignores the line too)"),
        );
    }
}

/// Whole seconds (keepalived's garp timers), in ms.
pub fn seconds(node: &Node) -> Option<u64> {
    node.arg(1)
        .and_then(|v| value::unsigned(v, 0, u64::from(u32::MAX) / 1_000_000))
        .map(|s| s * 1000)
}

/// A repeat count; keepalived turns 0 into 1.
pub fn repeat(node: &Node) -> Option<u32> {
    node.arg(1)
        .and_then(|v| value::unsigned(v, 0, u64::from(u32::MAX)))
        .map(|n| u32::try_from(n.max(1)).unwrap_or(u32::MAX))
}
