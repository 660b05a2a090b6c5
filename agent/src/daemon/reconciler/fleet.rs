//! The engine's side of a fleet host: a revision staged by the etcd side is
//! validated with the same loader as any config folder; a valid one is promoted
//! (atomically becomes the config folder the engine runs from, which is also the
//! cache a host boots with) and applied like a reload; an invalid one is
//! rejected with every error located in its etcd key, and the running config is
//! kept.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use netcfg::model::LoadCache;
use tokio::sync::mpsc;

use super::{error_text, load, Cause, Reconciler};
use crate::control::AgentError;
use crate::fleet::{Folders, Handoff, Verdict};

/// What the engine holds of the fleet side.
#[derive(Debug)]
pub struct Hook {
    folders: Folders,
    handoffs: mpsc::Receiver<Handoff>,
    /// Parsed files of each physical staging folder (the two folders swap names
    /// at each promotion), so an unchanged VE file is not parsed again.
    caches: BTreeMap<u64, LoadCache>,
}

impl Hook {
    /// The hook for these folders and handoffs.
    pub fn new(folders: Folders, handoffs: mpsc::Receiver<Handoff>) -> Hook {
        Hook {
            folders,
            handoffs,
            caches: BTreeMap::new(),
        }
    }

    fn cache(&mut self, folder: &Path) -> &mut LoadCache {
        let ino = std::fs::metadata(folder).map_or(0, |m| m.ino());
        if !self.caches.contains_key(&ino) && self.caches.len() >= 2 {
            self.caches.clear();
        }
        self.caches.entry(ino).or_default()
    }
}

/// The next handoff, if this is a fleet host (never, otherwise).
pub(super) async fn next(hook: &mut Option<Hook>) -> Option<Handoff> {
    match hook {
        Some(h) => h.handoffs.recv().await,
        None => std::future::pending().await,
    }
}

/// Config errors name the etcd key (`etcd:PREFIX/hosts/NAME/ve/112.toml:3:1`),
/// not the staging folder.
fn relocate(e: AgentError, staging: &Path, origin: &str) -> AgentError {
    match e {
        AgentError::InvalidConfig { mut errors } => {
            for err in &mut errors {
                if let Ok(rel) = err.file.strip_prefix(staging) {
                    err.file = PathBuf::from(format!("{origin}{}", rel.display()));
                }
            }
            AgentError::InvalidConfig { errors }
        }
        other => other,
    }
}

impl Reconciler {
    /// Runs this agent's config from etcd.
    pub fn attach_fleet(&mut self, hook: Hook) {
        self.fleet = Some(hook);
    }

    /// Validates a staged revision; promotes and applies it, or rejects it.
    pub(super) async fn adopt(&mut self, handoff: Handoff) {
        let Some(mut hook) = self.fleet.take() else {
            return;
        };
        let staging = hook.folders.staging.clone();
        let loaded = load(&staging, &self.state_dir, hook.cache(&staging));
        let verdict = match loaded {
            Err(e) => {
                let text = error_text(&relocate(e, &staging, &handoff.origin));
                tracing::error!(revision = handoff.revision, error = %text, "config from etcd rejected; keeping the running one");
                self.status.config_error = Some(text.clone());
                self.publish();
                Verdict::Rejected(text)
            }
            Ok(loaded) => match hook.folders.promote() {
                Err(e) => {
                    let text = format!("cannot make {} the config folder: {e}", staging.display());
                    tracing::error!(error = %text, "config from etcd not applied");
                    Verdict::Rejected(text)
                }
                Ok(()) => {
                    tracing::info!(
                        revision = handoff.revision,
                        "config from etcd validated; applying"
                    );
                    // Failing units are reported in status and retried as usual.
                    let _ = self.switch(loaded, Cause::Fleet).await;
                    Verdict::Applied
                }
            },
        };
        self.fleet = Some(hook);
        let _ = handoff.reply.send(verdict);
    }
}
