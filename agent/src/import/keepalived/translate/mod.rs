//! keepalived's parsed configuration into vznet's settings: `[[vrrp]]`,
//! `[[vrrp_script]]`, `[[vrrp_sync_group]]`, `[[virtual_server]]`, `[[route]]` and
//! `[[rule]]`,
//! with keepalived 2.2.7's defaults written out where vznet's differ, and a report
//! item for every keyword that is not carried over.
//!
//! Each module takes one family of blocks: `global` (`global_defs`, which sets
//! defaults for the others), `tracked` (scripts, tracked files and processes),
//! `track` (the blocks that track them), `sync_group`, `instance`
//! (`vrrp_instance`), `address`, `route` and `rule` (their lines), `lb` and
//! `lb_check` (`virtual_server` and its checkers), `command` (scripts and
//! hooks); `keywords` says why the rest is not carried.

mod address;
mod command;
mod global;
mod instance;
mod keywords;
mod lb;
mod lb_check;
mod route;
mod rule;
mod sync_group;
mod track;
mod tracked;
mod value;

use std::collections::BTreeMap;

use netcfg::model::{Route, Rule, VirtualServer};
use vrrp::settings::{Instance, Script, SyncGroup};

use keywords::Scope;

use super::lexer::Location;
use super::parser::Node;
use crate::import::report::{Kind, Report};

/// An imported object and the line of the keepalived block it comes from.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    /// The block's first line.
    pub at: Location,
    /// What keepalived called it (`vrrp_instance VI_1`).
    pub origin: String,
    /// The vznet object.
    pub value: T,
}

/// Everything the import carries over.
#[derive(Debug, Default, Clone)]
pub struct Imported {
    /// `[[vrrp_script]]`.
    pub vrrp_script: Vec<Sourced<Script>>,
    /// `[[vrrp]]`.
    pub vrrp: Vec<Sourced<Instance>>,
    /// `[[vrrp_sync_group]]`.
    pub vrrp_sync_group: Vec<Sourced<SyncGroup>>,
    /// `[[virtual_server]]`.
    pub virtual_server: Vec<Sourced<VirtualServer>>,
    /// `[[route]]` (keepalived's `static_routes`).
    pub route: Vec<Sourced<Route>>,
    /// `[[rule]]` (keepalived's `static_rules`).
    pub rule: Vec<Sourced<Rule>>,
}

/// What the translation of one config knows while it works.
pub(super) struct Ctx<'a> {
    report: &'a mut Report,
    globals: global::Globals,
    defs: tracked::Definitions,
    /// Sync group of each instance, for keepalived's rules on members' weights.
    membership: BTreeMap<String, sync_group::Membership>,
}

impl Ctx<'_> {
    fn add(&mut self, node: &Node, keyword: &str, kind: Kind, why: impl Into<String>) {
        self.report
            .add(&node.at.file, node.at.line, keyword, kind, why);
    }

    /// `node`'s keyword is lost.
    fn lost(&mut self, node: &Node, why: impl Into<String>) {
        let k = node.keyword().to_string();
        self.add(node, &k, Kind::NotCarried, why);
    }

    /// `node`'s keyword is carried, done differently.
    fn changed(&mut self, node: &Node, why: impl Into<String>) {
        let k = node.keyword().to_string();
        self.add(node, &k, Kind::Changed, why);
    }

    /// keepalived does nothing with `node`'s keyword here.
    fn no_effect(&mut self, node: &Node, why: impl Into<String>) {
        let k = node.keyword().to_string();
        self.add(node, &k, Kind::NoEffect, why);
    }

    /// An option `key` of `node`'s line that keepalived ignores here.
    fn attr(&mut self, node: &Node, key: &str, why: impl Into<String>) {
        self.add(node, key, Kind::NoEffect, why);
    }

    /// An option `key` of `node`'s line that is lost.
    fn attr_lost(&mut self, node: &Node, key: &str, why: impl Into<String>) {
        self.add(node, key, Kind::NotCarried, why);
    }

    /// A value line whose first word should be an address.
    fn invalid_address(&mut self, node: &Node) {
        self.no_effect(
            node,
            format!(
                "{:?} is not an address (keepalived skips the line too)",
                node.keyword()
            ),
        );
    }

    /// A keyword the import does not translate: keepalived's with no vznet
    /// counterpart (lost, with why), or not keepalived's at all (ignored by both).
    fn unsupported(&mut self, node: &Node, scope: Scope) {
        if node.keyword() == "smtp_alert" && !self.globals.smtp_server {
            self.no_effect(node, global::NO_SMTP_SERVER);
            return;
        }
        match keywords::reason(scope, node.keyword()) {
            Some(why) => self.lost(node, why),
            None => self.unknown(node, scope),
        }
    }

    /// A keyword keepalived does not know here.
    fn unknown(&mut self, node: &Node, scope: Scope) {
        self.no_effect(
            node,
            format!(
                "not a keepalived keyword in {} (keepalived ignores it too)",
                scope.name()
            ),
        );
    }

    /// A required argument that is missing or invalid: keepalived ignores the line.
    fn invalid(&mut self, node: &Node, what: &str) {
        let value = node.words.get(1..).unwrap_or_default().join(" ");
        self.no_effect(
            node,
            format!("{what} {value:?} is not valid (keepalived ignores the line too)"),
        );
    }
}

/// Translates the top-level keywords of a keepalived config.
pub fn translate(tree: &[Node], report: &mut Report) -> Imported {
    let globals = global::read(tree, report);
    let mut ctx = Ctx {
        report,
        globals,
        defs: tracked::Definitions::default(),
        membership: BTreeMap::new(),
    };
    let mut out = Imported::default();
    // Definitions first: instances and groups refer to them wherever they are.
    tracked::definitions(&mut ctx, tree, &mut out);
    ctx.membership = sync_group::membership(&mut ctx, tree);
    let groups = lb::groups(&mut ctx, tree);
    for node in tree {
        match node.keyword() {
            "global_defs"
            | "vrrp_script"
            | "track_file"
            | "vrrp_track_file"
            | "vrrp_track_process"
            | "virtual_server_group" => {}
            "SSL" => lb::ssl(&mut ctx, node),
            "vrrp_instance" => {
                if let Some(i) = instance::instance(&mut ctx, node) {
                    out.vrrp.push(i);
                }
            }
            "vrrp_sync_group" => {
                if let Some(g) = sync_group::sync_group(&mut ctx, node) {
                    out.vrrp_sync_group.push(g);
                }
            }
            "virtual_server" => {
                if let Some(vs) = lb::virtual_server(&mut ctx, node, &groups) {
                    out.virtual_server.push(vs);
                }
            }
            "static_routes" => route::static_routes(&mut ctx, node, &mut out.route),
            "static_rules" => rule::static_rules(&mut ctx, node, &mut out.rule),
            _ => global::root_keyword(&mut ctx, node),
        }
    }
    sync_group::finish(&mut ctx, &mut out);
    out
}
