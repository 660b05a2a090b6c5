//! The config source: the host's keys in etcd, read whole, then watched from the
//! next revision. Each change is staged and handed to the engine, which validates
//! the whole folder and either promotes and applies it or rejects it (the last
//! good config keeps running).
//!
//! etcd unreachable: nothing changes on the host (the engine keeps repairing the
//! last good config); the source retries with backoff and resumes the watch from
//! the last revision it saw, or reads everything again when etcd has compacted
//! that revision away.

use std::sync::Arc;

use tokio::sync::{oneshot, Notify};
use tokio_rustls::rustls::ClientConfig;

use super::etcd::{Client, EtcdError, Event, KeyValue};
use super::{options, Backoff, Context, Files, Handoff, Verdict, ATTEMPT_TIMEOUT};
use crate::status::Rejected;

/// What the source knows.
struct Source {
    ctx: Arc<Context>,
    prefix: String,
    /// What etcd holds, as of `revision`.
    files: Files,
    revision: i64,
    /// What the engine runs.
    applied: Files,
    /// The last rejected content, not handed again until it changes.
    rejected: Option<Files>,
    changed: Arc<Notify>,
    /// The publisher could not reach etcd: the watch may hang on a dead path.
    lost: Arc<Notify>,
}

/// Runs until the agent stops.
pub async fn run(
    ctx: Arc<Context>,
    tls: Option<Arc<ClientConfig>>,
    changed: Arc<Notify>,
    lost: Arc<Notify>,
) {
    let (revision, applied) = match ctx.folders.current() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reading the cached fleet config");
            (0, Files::new())
        }
    };
    let mut source = Source {
        prefix: ctx.fleet.keys.host(&ctx.host),
        files: applied.clone(),
        revision,
        applied,
        rejected: None,
        changed,
        lost,
        ctx: ctx.clone(),
    };
    let ves = super::report::ve_ids(&source.applied);
    source.update(|s| {
        s.host = ctx.host.clone();
        s.revision = revision;
        s.seen_revision = revision;
        s.ves = ves;
    });
    let mut client = Client::new(ctx.fleet.endpoints.clone(), tls, ATTEMPT_TIMEOUT);
    let mut backoff = Backoff::new();
    // A full read at start: the cache may be older than etcd's history.
    let mut full = true;
    let mut failing = false;
    loop {
        let err = source.sync(&mut client, &mut full, &mut backoff).await;
        match err {
            EtcdError::Compacted(r) => {
                tracing::warn!(
                    compacted = r,
                    from = source.revision + 1,
                    "etcd compacted the revisions to watch from; reading everything again"
                );
                full = true;
            }
            e => {
                let wait = backoff.step();
                if !failing {
                    tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64, "etcd unreachable; keeping the last good config, retrying with backoff");
                } else {
                    tracing::debug!(error = %e, "etcd still unreachable");
                }
                failing = true;
                source.update(|s| {
                    s.endpoint = None;
                    s.etcd_error = Some(e.to_string());
                });
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        failing = false;
    }
}

impl Source {
    fn update(&self, f: impl FnOnce(&mut crate::status::FleetStatus)) {
        if let Ok(mut s) = self.ctx.status.lock() {
            f(&mut s);
        }
        self.changed.notify_one();
    }

    /// Reads (if `full`) and watches until something fails; returns why.
    async fn sync(
        &mut self,
        client: &mut Client,
        full: &mut bool,
        backoff: &mut Backoff,
    ) -> EtcdError {
        if *full {
            let range = match client.range_prefix(self.prefix.as_bytes()).await {
                Ok(r) => r,
                Err(e) => return e,
            };
            *full = false;
            let mut ignored = Vec::new();
            self.files = Files::new();
            for kv in &range.kvs {
                if let Some(rel) = self.entry(kv, &mut ignored) {
                    self.files.insert(rel, kv.value.clone());
                }
            }
            self.revision = range.revision;
            self.update(|s| {
                s.full_reads += 1;
                s.ignored_keys = ignored;
            });
            self.hand_over().await;
        }
        let mut watch = match client
            .watch(self.prefix.as_bytes(), self.revision + 1)
            .await
        {
            Ok(w) => w,
            Err(e) => return e,
        };
        let endpoint = client.endpoint().map(ToString::to_string);
        tracing::info!(
            endpoint = endpoint.as_deref().unwrap_or("-"),
            from = self.revision + 1,
            "watching the host's config in etcd"
        );
        backoff.reset();
        self.update(|s| {
            if s.etcd_error.take().is_some() {
                s.reconnects += 1;
            }
            s.endpoint = endpoint;
        });
        loop {
            let next = tokio::select! {
                n = watch.next() => n,
                _ = self.lost.notified() => {
                    return EtcdError::Unreachable("lease renewal failed; the watch may be cut off".into())
                }
            };
            let (_, events) = match next {
                Ok(b) => b,
                Err(e) => return e,
            };
            let mut ignored = Vec::new();
            for event in events {
                match event {
                    Event::Put(kv) => {
                        self.revision = self.revision.max(kv.mod_revision);
                        if let Some(rel) = self.entry(&kv, &mut ignored) {
                            self.files.insert(rel, kv.value);
                        }
                    }
                    Event::Delete(key, revision) => {
                        self.revision = self.revision.max(revision);
                        if let Some(rel) = self.rel(&key) {
                            self.files.remove(&rel);
                        }
                    }
                }
            }
            if !ignored.is_empty() {
                self.update(|s| {
                    s.ignored_keys.extend(ignored);
                    s.ignored_keys.sort();
                    s.ignored_keys.dedup();
                });
            }
            self.hand_over().await;
        }
    }

    /// The file a key names, relative to the host's prefix.
    fn rel(&self, key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        let rel = key.strip_prefix(&self.prefix)?;
        options::file_of(rel).map(str::to_string)
    }

    fn entry(&self, kv: &KeyValue, ignored: &mut Vec<String>) -> Option<String> {
        match self.rel(&kv.key) {
            Some(rel) => Some(rel),
            None => {
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                tracing::warn!(%key, "ignoring a key that is not host.toml or ve/NAME.toml");
                ignored.push(key);
                None
            }
        }
    }

    /// Hands what etcd holds to the engine, unless the engine runs it already or
    /// rejected exactly this before.
    async fn hand_over(&mut self) {
        let revision = self.revision;
        if self.files.is_empty() {
            // Nothing under the host's prefix: not configured in etcd (yet).
            // The running config stays; an empty host.toml clears a host.
            self.update(|s| {
                s.seen_revision = revision;
                s.rejected = None;
            });
            return;
        }
        if self.files == self.applied {
            self.update(|s| {
                s.revision = revision;
                s.seen_revision = revision;
                s.rejected = None;
            });
            return;
        }
        if self.rejected.as_ref() == Some(&self.files) {
            self.update(|s| s.seen_revision = revision);
            return;
        }
        if let Err(e) = self.ctx.folders.stage(&self.files, revision) {
            tracing::error!(error = %e, folder = %self.ctx.folders.staging.display(), "cannot stage the config from etcd");
            self.update(|s| {
                s.seen_revision = revision;
                s.rejected = Some(Rejected {
                    revision,
                    error: format!("staging {}: {e}", self.ctx.folders.staging.display()),
                });
            });
            return;
        }
        let (reply, verdict) = oneshot::channel();
        let handoff = Handoff {
            revision,
            origin: format!("etcd:{}", self.prefix),
            reply,
        };
        if self.ctx.to_engine.send(handoff).await.is_err() {
            return;
        }
        let Ok(verdict) = verdict.await else {
            return;
        };
        match verdict {
            Verdict::Applied => {
                tracing::info!(revision, "config from etcd applied");
                self.applied = self.files.clone();
                self.rejected = None;
                let ves = super::report::ve_ids(&self.applied);
                self.update(|s| {
                    s.ves = ves;
                    s.revision = revision;
                    s.seen_revision = revision;
                    s.rejected = None;
                });
            }
            Verdict::Rejected(error) => {
                tracing::debug!(revision, "rejection recorded");
                self.rejected = Some(self.files.clone());
                self.update(|s| {
                    s.seen_revision = revision;
                    s.rejected = Some(Rejected { revision, error });
                });
            }
        }
    }
}
