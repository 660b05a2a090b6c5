//! Where tracking readings come from: scripts run, files watched, /proc listed. One
//! source per distinct script, file or process entry of the process, shared by every
//! instance tracking it (keepalived runs a script once for all its trackers), and
//! gone with the last of them.
//!
//! An instance turns its [`Tracked`] list into a [`Feeds`]: the sans-IO
//! [`Tracking`] with current readings, and one small task per source forwarding every
//! change as `(tracker index, Reading)`. Interfaces are read from the instance's own
//! link notifications instead.

pub mod file;
pub mod process;
pub mod script;

use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::{mpsc, watch};

use super::Error;
use crate::settings::{Script, Tracked};
use crate::track::script::ScriptState;
use crate::track::{Reading, Tracker, TrackerKind, Tracking};
use file::FileWatch;
use process::ProcessTable;
use script::ScriptRunner;

/// Sources shared by the instances of one process.
#[derive(Debug, Default)]
pub struct Sources {
    scripts: Registry<Script, ScriptRunner>,
    files: Registry<PathBuf, FileWatch>,
    processes: Arc<ProcessTable>,
}

/// Shared values by key, alive while someone holds them.
#[derive(Debug)]
struct Registry<K, V> {
    map: Mutex<HashMap<K, Weak<V>>>,
}

impl<K, V> Default for Registry<K, V> {
    fn default() -> Self {
        Registry {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V> Registry<K, V> {
    fn get(&self, key: &K) -> Option<Arc<V>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, v| v.strong_count() > 0);
        map.get(key).and_then(Weak::upgrade)
    }

    fn insert(&self, key: K, value: &Arc<V>) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert(key, Arc::downgrade(value));
    }
}

impl Sources {
    /// The runner of `script`, started on first use.
    pub fn script(&self, script: &Script) -> Result<Arc<ScriptRunner>, Error> {
        if let Some(r) = self.scripts.get(script) {
            return Ok(r);
        }
        let r = Arc::new(ScriptRunner::spawn(script)?);
        self.scripts.insert(script.clone(), &r);
        Ok(r)
    }

    /// The watch of `path`, started on first use.
    pub async fn file(&self, path: &Path) -> Result<Arc<FileWatch>, Error> {
        if let Some(w) = self.files.get(&path.to_path_buf()) {
            return Ok(w);
        }
        let w = Arc::new(FileWatch::spawn(path).await?);
        self.files.insert(path.to_path_buf(), &w);
        Ok(w)
    }
}

/// An instance's tracking: the arithmetic, and the readings flowing in.
#[derive(Debug)]
pub struct Feeds {
    pub tracking: Tracking,
    /// `(tracker index, interface name)` of tracked interfaces.
    pub interfaces: Vec<(usize, String)>,
    /// Readings of scripts, files and processes.
    pub updates: mpsc::UnboundedReceiver<(usize, Reading)>,
    /// The sources, held while the instance runs.
    _held: Vec<Box<dyn std::any::Any + Send + Sync>>,
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Feeds {
    fn drop(&mut self) {
        for f in &self.forwarders {
            f.abort();
        }
    }
}

fn script_reading(s: &ScriptState) -> Reading {
    match s {
        ScriptState::Pending => Reading::Pending,
        ScriptState::Good => Reading::Up(true),
        ScriptState::Failed => Reading::Up(false),
    }
}

fn process_reading(q: &Option<bool>) -> Reading {
    match q {
        None => Reading::Pending,
        Some(held) => Reading::Up(*held),
    }
}

fn file_reading(v: &i64) -> Reading {
    Reading::Value(*v)
}

/// Sends the current value, then every change, until either end goes.
fn forward<T: Send + Sync + 'static>(
    mut rx: watch::Receiver<T>,
    index: usize,
    tx: mpsc::UnboundedSender<(usize, Reading)>,
    reading: fn(&T) -> Reading,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let r = reading(&rx.borrow_and_update());
            if tx.send((index, r)).is_err() || rx.changed().await.is_err() {
                return;
            }
        }
    })
}

impl Feeds {
    /// Subscribes to the sources of `tracked` (starting them if needed); every tracker
    /// starts with its source's current reading, interfaces down until told.
    pub async fn new(
        sources: &Sources,
        base_priority: u8,
        tracked: &[Tracked<'_>],
    ) -> Result<Feeds, Error> {
        let (tx, updates) = mpsc::unbounded_channel();
        let mut trackers = Vec::new();
        let mut interfaces = Vec::new();
        let mut held: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        let mut forwarders = Vec::new();
        for (index, t) in tracked.iter().enumerate() {
            let (kind, name, weight, reverse, reading) = match *t {
                Tracked::Interface(i) => {
                    interfaces.push((index, i.interface.clone()));
                    let r = Reading::Up(false);
                    (
                        TrackerKind::Interface,
                        i.interface.clone(),
                        i.weight,
                        i.reverse,
                        r,
                    )
                }
                Tracked::Script {
                    script,
                    weight,
                    reverse,
                } => {
                    let runner = sources.script(script)?;
                    let rx = runner.subscribe();
                    let r = script_reading(&rx.borrow());
                    forwarders.push(forward(rx, index, tx.clone(), script_reading));
                    held.push(Box::new(runner));
                    (TrackerKind::Script, script.name.clone(), weight, reverse, r)
                }
                Tracked::File(f) => {
                    if let Some(v) = f.init_value {
                        file::init_file(&f.file, v, f.init_overwrite).await?;
                    }
                    let watch = sources.file(&f.file).await?;
                    let rx = watch.subscribe();
                    let r = file_reading(&rx.borrow());
                    forwarders.push(forward(rx, index, tx.clone(), file_reading));
                    held.push(Box::new(watch));
                    let name = f.file.display().to_string();
                    (TrackerKind::File, name, f.weight, f.reverse, r)
                }
                Tracked::Process(p) => {
                    let watch = sources.processes.watch(p);
                    let rx = watch.subscribe();
                    let r = process_reading(&rx.borrow());
                    forwarders.push(forward(rx, index, tx.clone(), process_reading));
                    held.push(Box::new(watch));
                    (
                        TrackerKind::Process,
                        p.process.clone(),
                        p.weight,
                        p.reverse,
                        r,
                    )
                }
            };
            trackers.push(Tracker {
                kind,
                name,
                weight,
                reverse,
                reading,
            });
        }
        Ok(Feeds {
            tracking: Tracking::new(base_priority, trackers),
            interfaces,
            updates,
            _held: held,
            forwarders,
        })
    }
}
