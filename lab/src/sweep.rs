//! Sweeping what crashed test processes left behind.

use anyhow::{anyhow, Result};

use crate::lab::log_dir;
use crate::link;
use crate::marker;
use crate::netns;
use crate::process::remove_dir;

/// What [`crate::Lab::sweep_stale`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Prefixes of the dead labs whose leftovers are now all gone.
    pub labs: Vec<String>,
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
    /// Root-namespace interfaces deleted.
    pub links: Vec<String>,
}

pub(crate) fn sweep_stale() -> Result<SweepReport> {
    let _lock = marker::sweep_lock()?;
    let mut report = SweepReport::default();
    let stale = marker::stale_prefixes();
    if stale.is_empty() {
        return Ok(report);
    }
    let mut errors = Vec::new();
    let namespaces = netns::list();
    let root_links = link::root_names().unwrap_or_else(|e| {
        errors.push(e.context("listing root-namespace links"));
        Vec::new()
    });
    // Without the link list we cannot know a lab is fully gone, so keep every marker.
    let links_known = errors.is_empty();

    for prefix in stale {
        let before = errors.len();
        let ns_prefix = format!("{prefix}-");
        for ns in namespaces.iter().filter(|n| n.starts_with(&ns_prefix)) {
            match netns::delete(ns) {
                Ok(()) => report.namespaces.push(ns.clone()),
                Err(e) => errors.push(e.context(format!("deleting stale namespace {ns}"))),
            }
        }
        for name in root_links.iter().filter(|n| n.starts_with(&prefix)) {
            match link::delete_root(name) {
                Ok(()) => report.links.push(name.clone()),
                Err(e) => errors.push(e.context(format!("deleting stale link {name}"))),
            }
        }
        if let Err(e) = remove_dir(&log_dir(&prefix)) {
            errors.push(e);
        }
        if links_known && errors.len() == before {
            match marker::remove(&prefix) {
                Ok(()) => report.labs.push(prefix),
                Err(e) => errors.push(e),
            }
        }
    }

    if errors.is_empty() {
        Ok(report)
    } else {
        let lines: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
        Err(anyhow!("sweeping stale labs: {}", lines.join("; ")))
    }
}
