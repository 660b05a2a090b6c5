//! Changing a fleet's config in etcd: a host's whole folder pushed in one
//! transaction that fails if anyone changed the host's keys since the revision
//! the pusher read, and a VE moved from one host to another in one transaction.
//! Both validate the result with the same loader the agents use before writing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use netcfg::model::{Config, ConfigErrors};

use super::etcd::{Client, Compare, EtcdError, Op, Range, Target};
use super::folder::{self, Files};
use super::options::{self, Keys};
use super::report::HostReport;

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The config it would make is invalid; nothing was written.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// Someone changed the host's keys since the revision read; nothing was
    /// written. Each line names a key and what happened to it.
    #[error("changed since revision {base}:\n{}", changes.join("\n"))]
    Conflict {
        /// The revision the change was based on.
        base: i64,
        /// What changed since.
        changes: Vec<String>,
    },
    /// Not possible as asked (a VE that is not on the source host, ...).
    #[error("{0}")]
    Refused(String),
    /// etcd did not answer, or refused.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// Reading the folder, or validating it.
    #[error("{0}")]
    Io(String),
}

/// A host's config keys as read: file -> (text, mod_revision).
#[derive(Debug, Clone, Default)]
pub struct HostKeys {
    /// The store's revision at the read.
    pub revision: i64,
    /// The files.
    pub files: BTreeMap<String, (Vec<u8>, i64)>,
}

impl HostKeys {
    fn of(range: Range, prefix: &str) -> HostKeys {
        let files = range
            .kvs
            .into_iter()
            .filter_map(|kv| {
                let key = String::from_utf8(kv.key).ok()?;
                let rel = options::file_of(key.strip_prefix(prefix)?)?.to_string();
                Some((rel, (kv.value, kv.mod_revision)))
            })
            .collect();
        HostKeys {
            revision: range.revision,
            files,
        }
    }

    /// The files' texts.
    pub fn texts(&self) -> Files {
        self.files
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }
}

/// Reads a host's config keys (as of `revision`, 0: now).
pub async fn read_host(
    client: &mut Client,
    keys: &Keys,
    host: &str,
    revision: i64,
) -> Result<HostKeys, EtcdError> {
    let prefix = keys.host(host);
    let range = client.range_prefix_at(prefix.as_bytes(), revision).await?;
    Ok(HostKeys::of(range, &prefix))
}

/// Validates `files` as a config folder (in a scratch folder, with the loader the
/// agents use; links are not looked for here: the folder is another host's).
pub fn validate(files: &Files) -> Result<(), ChangeError> {
    let dir = tempfile::tempdir().map_err(|e| ChangeError::Io(e.to_string()))?;
    std::fs::create_dir_all(dir.path().join("ve")).map_err(|e| ChangeError::Io(e.to_string()))?;
    for (rel, text) in files {
        folder::write_atomic(&dir.path().join(rel), text)
            .map_err(|e| ChangeError::Io(e.to_string()))?;
    }
    if !files.contains_key("host.toml") {
        folder::write_atomic(&dir.path().join("host.toml"), b"")
            .map_err(|e| ChangeError::Io(e.to_string()))?;
    }
    Config::load_for_other_host(dir.path())
        .map(drop)
        .map_err(|e| ChangeError::Invalid(relocate(e, dir.path())))
}

/// Errors name the file relative to the folder (`ve/112.toml:3:1`).
fn relocate(mut e: ConfigErrors, dir: &Path) -> ConfigErrors {
    for err in &mut e.0 {
        if let Ok(rel) = err.location.file.strip_prefix(dir) {
            err.location.file = rel.to_path_buf();
        }
    }
    e
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct Pushed {
    /// Files written (created or changed).
    pub written: Vec<String>,
    /// Files deleted.
    pub deleted: Vec<String>,
    /// The revision of the transaction (the revision read when nothing changed).
    pub revision: i64,
}

/// The differences between two reads of a host, as lines.
fn differences(before: &HostKeys, after: &HostKeys) -> Vec<String> {
    let mut out = Vec::new();
    for (rel, (text, rev)) in &after.files {
        match before.files.get(rel) {
            None => out.push(format!("{rel}: created at revision {rev}")),
            Some((old, _)) if old != text => out.push(format!("{rel}: changed at revision {rev}")),
            _ => {}
        }
    }
    for rel in before
        .files
        .keys()
        .filter(|r| !after.files.contains_key(*r))
    {
        out.push(format!("{rel}: deleted"));
    }
    out
}

/// Pushes `files` as the whole config of `host`, in one transaction that fails if
/// any of the host's keys changed after `base` (0: the revision read here).
pub async fn push(
    client: &mut Client,
    keys: &Keys,
    host: &str,
    files: &Files,
    base: i64,
) -> Result<Pushed, ChangeError> {
    validate(files)?;
    let now = read_host(client, keys, host, 0).await?;
    let base = if base > 0 { base } else { now.revision };
    if base < now.revision {
        // What the pusher saw, against now: any difference is someone else's.
        let then = match read_host(client, keys, host, base).await {
            Ok(t) => t,
            Err(EtcdError::Compacted(_)) => {
                return Err(ChangeError::Refused(format!(
                    "revision {base} is compacted in etcd: get the host's config again"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let changes = differences(&then, &now);
        if !changes.is_empty() {
            return Err(ChangeError::Conflict { base, changes });
        }
    }
    let prefix = keys.host(host);
    let mut ops = Vec::new();
    let mut pushed = Pushed {
        revision: now.revision,
        ..Pushed::default()
    };
    for (rel, text) in files {
        if now.files.get(rel).map(|(t, _)| t) != Some(text) {
            ops.push(Op::Put {
                key: format!("{prefix}{rel}").into_bytes(),
                value: text.clone(),
                lease: 0,
            });
            pushed.written.push(rel.clone());
        }
    }
    for rel in now.files.keys().filter(|r| !files.contains_key(*r)) {
        ops.push(Op::Delete {
            key: format!("{prefix}{rel}").into_bytes(),
        });
        pushed.deleted.push(rel.clone());
    }
    if ops.is_empty() {
        return Ok(pushed);
    }
    // Nothing under the prefix newer than the read, and nothing read gone since.
    let mut compare = vec![Compare {
        key: prefix.clone().into_bytes(),
        range_end: Some(super::etcd::prefix_end(prefix.as_bytes())),
        target: Target::ModLess(now.revision + 1),
    }];
    compare.extend(now.files.iter().map(|(rel, (_, rev))| Compare {
        key: format!("{prefix}{rel}").into_bytes(),
        range_end: None,
        target: Target::ModEqual(*rev),
    }));
    let (ok, revision) = client.txn(&compare, &ops).await?;
    if !ok {
        let after = read_host(client, keys, host, 0).await?;
        return Err(ChangeError::Conflict {
            base,
            changes: differences(&now, &after),
        });
    }
    pushed.revision = revision;
    Ok(pushed)
}

/// Pushes a config folder (`host.toml`, `ve/*.toml`).
pub async fn push_folder(
    client: &mut Client,
    keys: &Keys,
    host: &str,
    dir: &Path,
    base: i64,
) -> Result<Pushed, ChangeError> {
    let (_, files) =
        folder::read(dir).map_err(|e| ChangeError::Io(format!("{}: {e}", dir.display())))?;
    if !files.contains_key("host.toml") {
        return Err(ChangeError::Io(format!("{}: no host.toml", dir.display())));
    }
    push(client, keys, host, &files, base).await
}

/// Moves `ve/ID.toml` from host `from` to host `to` in one transaction: it
/// leaves `from`'s keys and enters `to`'s, or nothing happens. Both resulting
/// configs are validated first. Returns the transaction's revision.
pub async fn move_ve(
    client: &mut Client,
    keys: &Keys,
    id: u32,
    from: &str,
    to: &str,
) -> Result<i64, ChangeError> {
    if from == to {
        return Err(ChangeError::Refused(
            "--from and --to are the same host".into(),
        ));
    }
    let rel = format!("ve/{id}.toml");
    let source = read_host(client, keys, from, 0).await?;
    let target = read_host(client, keys, to, 0).await?;
    let Some((text, rev)) = source.files.get(&rel).cloned() else {
        return Err(ChangeError::Refused(format!("host {from} has no {rel}")));
    };
    if target.files.contains_key(&rel) {
        return Err(ChangeError::Refused(format!(
            "host {to} has a {rel} already"
        )));
    }
    let mut left = source.texts();
    left.remove(&rel);
    validate(&left)?;
    let mut entered = target.texts();
    entered.insert(rel.clone(), text.clone());
    validate(&entered)?;
    let from_key = format!("{}{rel}", keys.host(from)).into_bytes();
    let to_key = format!("{}{rel}", keys.host(to)).into_bytes();
    let compare = [
        Compare {
            key: from_key.clone(),
            range_end: None,
            target: Target::ModEqual(rev),
        },
        Compare {
            key: to_key.clone(),
            range_end: None,
            target: Target::CreateEqual(0),
        },
    ];
    let ops = [
        Op::Delete { key: from_key },
        Op::Put {
            key: to_key,
            value: text,
            lease: 0,
        },
    ];
    let (ok, revision) = client.txn(&compare, &ops).await?;
    if !ok {
        return Err(ChangeError::Conflict {
            base: source.revision.max(target.revision),
            changes: vec![format!(
                "{rel} changed on {from} or appeared on {to} while moving; nothing was moved"
            )],
        });
    }
    Ok(revision)
}

/// Every host's published status.
pub async fn reports(
    client: &mut Client,
    keys: &Keys,
) -> Result<BTreeMap<String, HostReport>, EtcdError> {
    let prefix = keys.statuses();
    let range = client.range_prefix(prefix.as_bytes()).await?;
    Ok(range
        .kvs
        .into_iter()
        .filter_map(|kv| {
            let key = String::from_utf8(kv.key).ok()?;
            let host = key.strip_prefix(&prefix)?.to_string();
            let report: HostReport = serde_json::from_slice(&kv.value).ok()?;
            Some((host, report))
        })
        .collect())
}

/// How a host answered a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Running the revision (or a later one).
    Applied(i64),
    /// Rejected it (the errors).
    Rejected(String),
}

/// Waits until each of `hosts` reports `revision` (or later) applied or rejected,
/// polling every `poll`; hosts that have not answered by `timeout` are missing
/// from the result.
pub async fn wait(
    client: &mut Client,
    keys: &Keys,
    hosts: &[&str],
    revision: i64,
    timeout: Duration,
    poll: Duration,
) -> Result<BTreeMap<String, Outcome>, EtcdError> {
    let deadline = Instant::now() + timeout;
    let mut out = BTreeMap::new();
    loop {
        let reports = reports(client, keys).await?;
        for host in hosts {
            let Some(r) = reports.get(*host) else {
                continue;
            };
            if r.revision >= revision {
                out.insert(host.to_string(), Outcome::Applied(r.revision));
            } else if let Some(rej) = r.rejected.as_ref().filter(|j| j.revision >= revision) {
                out.insert(host.to_string(), Outcome::Rejected(rej.error.clone()));
            }
        }
        if out.len() == hosts.len() || Instant::now() >= deadline {
            return Ok(out);
        }
        tokio::time::sleep(poll).await;
    }
}
