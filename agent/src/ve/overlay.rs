//! The live overlay of `vznet ve set` without `--save`
//! (`STATE/run/ID.live.toml`): how a change made without `--save` survives.
//! The config files stay as they are, and every loader of the config
//! (`vznet`, `vznetd`) merges the overlay into the VE's file for as long as the
//! VE runs, so vznetd's drift repair keeps the live state instead of reverting
//! it. The overlay names the init (pid and start time) it belongs to: a stale
//! one (the VE died, or runs again) is ignored, and `stop` and `start` remove it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::change::Change;

impl Overlay {
    /// An empty overlay for the init `pid`.
    pub fn new(pid: u32) -> Overlay {
        Overlay {
            pid,
            start: super::runtime::start_time(pid).unwrap_or(0),
            change: Vec::new(),
        }
    }
}

/// The live overlay of a running VE.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overlay {
    /// Host pid of the init it belongs to.
    pub pid: u32,
    /// That process's start time (clock ticks since boot).
    pub start: u64,
    /// Changes, oldest first.
    #[serde(default)]
    pub change: Vec<Change>,
}

/// `STATE/run/ID.live.toml`.
pub fn overlay_file(state: &Path, id: u32) -> PathBuf {
    state.join("run").join(format!("{id}.live.toml"))
}

impl Overlay {
    /// The overlay of VE `id` if it belongs to the init `pid` now running.
    pub fn read(state: &Path, id: u32, pid: u32) -> Result<Option<Overlay>> {
        let path = overlay_file(state, id);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let o: Overlay =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let current = o.pid == pid && super::runtime::start_time(pid) == Some(o.start);
        Ok(current.then_some(o))
    }

    /// Records `changes`, replacing earlier changes to the same objects; with
    /// `saved`, the changes went to the file, and only the replacement happens.
    pub fn record(&mut self, changes: &[Change], saved: bool) {
        for c in changes {
            let obj = c.object();
            self.change.retain(|old| old.object() != obj);
            if !saved {
                self.change.push(c.clone());
            }
        }
    }

    /// Writes it atomically (vznetd may read it at any time); an empty overlay
    /// removes the file.
    pub fn write(&self, state: &Path, id: u32) -> Result<()> {
        let path = overlay_file(state, id);
        if self.change.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("removing {}", path.display()))
                }
                _ => Ok(()),
            };
        }
        let text = format!(
            "# Live changes to VE {id} (vznet ve set without --save), merged into\n\
             # ve/{id}.toml while this VE runs; removed when it stops.\n{}",
            toml::to_string(self).context("encoding the overlay")?
        );
        write_atomic(&path, &text)
    }
}

/// Writes `path` by renaming a sibling temporary file over it.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::ve::change::tests::changes;

    #[test]
    fn the_overlay_keeps_the_last_change_per_object_and_round_trips() {
        let mut o = Overlay::default();
        let ip: IpAddr = "10.1.1.1".parse().expect("test input");
        o.record(&[Change::IpAdd { ip }], false);
        o.record(&[Change::IpDel { ip }], false);
        assert_eq!(o.change, vec![Change::IpDel { ip }]);
        o.record(&[Change::IpAdd { ip }], true);
        assert!(o.change.is_empty(), "a saved change needs no overlay entry");
        o.record(&changes(), false);
        let back: Overlay =
            toml::from_str(&toml::to_string(&o).expect("test input")).expect("test input");
        assert_eq!(back, o);
    }
}
