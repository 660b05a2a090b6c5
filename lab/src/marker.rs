//! Marker files: `/run/vznet-lab/<prefix>.pid` records which process owns a prefix.
//!
//! A lab creates its marker with `O_EXCL` before it makes any namespace or link, and removes
//! it only after everything it made is gone. So the marker both reserves the prefix across
//! processes and tells a later sweep whether leftovers belong to a live process (keep) or a
//! dead one (delete). The owner is identified by pid *and* its start time from
//! `/proc/PID/stat`, so a recycled pid does not keep a dead lab's leftovers alive.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::name;

/// Where markers and the sweep lock live. `/run` is cleared at boot, like `/run/netns`.
pub(crate) const RUN_DIR: &str = "/run/vznet-lab";

/// How long a marker may stay unreadable before a sweep assumes its writer died.
///
/// A marker is created empty and written immediately, so only a crash in that window leaves
/// it unreadable; a sweep must not mistake a marker being written for a stale one.
const UNREADABLE_GRACE: Duration = Duration::from_secs(10);

/// How many candidate prefixes to try before giving up.
const RESERVE_ATTEMPTS: usize = 100;

/// Who owns a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) pid: u32,
    /// Clock ticks since boot at which `pid` started (field 22 of `/proc/PID/stat`).
    pub(crate) start_time: u64,
    /// The test that made the lab, for humans reading leftovers.
    pub(crate) test: String,
}

impl Marker {
    /// A marker naming the calling process.
    pub(crate) fn current(test: &str) -> Result<Self> {
        let pid = std::process::id();
        let start_time = process_start_time(pid)
            .with_context(|| format!("cannot read the start time of pid {pid} from /proc"))?;
        let test = test.replace(['\n', '\r'], " ");
        Ok(Marker {
            pid,
            start_time,
            test,
        })
    }

    pub(crate) fn render(&self) -> String {
        format!(
            "pid {}\nstart_time {}\ntest {}\n",
            self.pid, self.start_time, self.test
        )
    }

    pub(crate) fn parse(text: &str) -> Result<Self> {
        let (mut pid, mut start_time, mut test) = (None, None, String::new());
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "pid" => pid = Some(value.parse::<u32>().context("bad pid")?),
                "start_time" => start_time = Some(value.parse::<u64>().context("bad start_time")?),
                "test" => test = value.to_owned(),
                _ => {}
            }
        }
        match (pid, start_time) {
            (Some(pid), Some(start_time)) => Ok(Marker {
                pid,
                start_time,
                test,
            }),
            _ => bail!("marker lacks a pid or start_time line"),
        }
    }

    /// Whether the process that wrote this marker still runs (zombies count as dead).
    pub(crate) fn owner_alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }
}

/// The start time of a live process, or `None` if it is gone or a zombie.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the
    // last ')'. The rest starts at field 3 (state); start time is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z" | &"X" | &"x")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// The marker file for `prefix`.
pub(crate) fn path(prefix: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{prefix}.pid"))
}

fn ensure_run_dir() -> Result<()> {
    fs::create_dir_all(RUN_DIR)
        .with_context(|| format!("cannot create {RUN_DIR} (the lab must run as root)"))
}

/// Picks a prefix no other lab holds, and records this process as its owner.
pub(crate) fn reserve(test: &str) -> Result<String> {
    let marker = Marker::current(test)?;
    ensure_run_dir()?;
    for _ in 0..RESERVE_ATTEMPTS {
        let prefix = name::candidate_prefix();
        if !create(&prefix, &marker)? {
            continue;
        }
        // Leftovers without a marker would clash with our names: pick another prefix.
        if names_in_use(&prefix) {
            remove(&prefix)?;
            continue;
        }
        return Ok(prefix);
    }
    bail!("no free lab prefix after {RESERVE_ATTEMPTS} attempts; is {RUN_DIR} full of markers?")
}

/// Atomically creates the marker for `prefix`; `Ok(false)` if it already exists.
pub(crate) fn create(prefix: &str, marker: &Marker) -> Result<bool> {
    let path = path(prefix);
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    if let Err(e) = file.write_all(marker.render().as_bytes()) {
        let _ = fs::remove_file(&path);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(true)
}

/// Removes the marker for `prefix`; a missing marker is not an error.
pub(crate) fn remove(prefix: &str) -> Result<()> {
    let path = path(prefix);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Whether a namespace or root-namespace interface already carries `prefix`.
fn names_in_use(prefix: &str) -> bool {
    let ns_prefix = format!("{prefix}-");
    entries("/run/netns").any(|n| n.starts_with(&ns_prefix))
        || entries("/sys/class/net").any(|n| n.starts_with(prefix))
}

/// File names in `dir`; a missing or unreadable directory has none.
pub(crate) fn entries(dir: &str) -> impl Iterator<Item = String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
}

/// Prefixes whose owner is gone: dead, or never finished writing its marker.
pub(crate) fn stale_prefixes() -> Vec<String> {
    let mut stale: Vec<String> = entries(RUN_DIR)
        .filter_map(|f| f.strip_suffix(".pid").map(str::to_owned))
        .filter(|p| name::is_prefix(p))
        .filter(|p| is_stale(&path(p)))
        .collect();
    stale.sort();
    stale
}

fn is_stale(marker: &Path) -> bool {
    match fs::read_to_string(marker).map(|t| Marker::parse(&t)) {
        Ok(Ok(m)) => !m.owner_alive(),
        // Vanished meanwhile: its owner cleaned up, nothing to sweep.
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        _ => fs::metadata(marker)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > UNREADABLE_GRACE),
    }
}

/// Serialises sweeps across processes; the kernel drops the lock if its holder dies.
pub(crate) fn sweep_lock() -> Result<Flock<File>> {
    ensure_run_dir()?;
    let path = Path::new(RUN_DIR).join("sweep.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .with_context(|| format!("cannot lock {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips() {
        let m = Marker {
            pid: 42,
            start_time: 123_456,
            test: "two hosts ping".to_owned(),
        };
        assert_eq!(Marker::parse(&m.render()).expect("parses"), m);
        assert!(Marker::parse("").is_err());
        assert!(Marker::parse("pid x\nstart_time 1\n").is_err());
    }

    #[test]
    fn this_process_is_alive_and_an_exited_child_is_not() {
        let me = Marker::current("t").expect("own marker");
        assert!(me.owner_alive());
        let recycled = Marker {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert!(
            !recycled.owner_alive(),
            "a different start time is another process"
        );

        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("reap true");
        assert_eq!(process_start_time(pid), None);
    }
}
