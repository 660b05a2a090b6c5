//! Tracked processes: one task per process lists /proc once a [`SCAN_INTERVAL`] for
//! every `track_process` entry of the process at once, on the blocking pool.
//!
//! keepalived follows process creation and exit through the kernel's proc connector
//! instead; that needs the initial network namespace, and vznetd may run in another.
//! The price is up to a second of delay, on top of `fork_delay_ms` and
//! `terminate_delay_ms`.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::settings::TrackProcess;
use crate::time::Timestamp;
use crate::track::process::{matches, ProcessEntry, Quorum};

/// Time between two listings of /proc.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes of a command line read (keepalived reads as much as its longest pattern).
const CMDLINE_MAX: usize = 4096;

/// The entries being watched, and the scanning task.
#[derive(Debug, Default)]
pub struct ProcessTable {
    entries: Mutex<Vec<Weak<Entry>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for ProcessTable {
    fn drop(&mut self) {
        if let Some(t) = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
    }
}

#[derive(Debug)]
struct Entry {
    spec: TrackProcess,
    quorum: Mutex<Quorum>,
    tx: watch::Sender<Option<bool>>,
}

/// One watched entry: quorum held or not (`None` before the first listing). Stops
/// being counted when dropped.
#[derive(Debug, Clone)]
pub struct ProcessWatch {
    entry: Arc<Entry>,
}

impl ProcessWatch {
    pub fn subscribe(&self) -> watch::Receiver<Option<bool>> {
        self.entry.tx.subscribe()
    }
}

impl ProcessTable {
    /// Watches `spec` (sharing a watch with an equal entry), starting the scanner on
    /// first use.
    pub fn watch(self: &Arc<Self>, spec: &TrackProcess) -> ProcessWatch {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|e| e.strong_count() > 0);
        if let Some(entry) = entries
            .iter()
            .filter_map(Weak::upgrade)
            .find(|e| e.spec == *spec)
        {
            return ProcessWatch { entry };
        }
        let (tx, _) = watch::channel(None);
        let entry = Arc::new(Entry {
            spec: spec.clone(),
            quorum: Mutex::new(Quorum::new(spec)),
            tx,
        });
        entries.push(Arc::downgrade(&entry));
        drop(entries);
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.is_none() {
            *task = Some(tokio::spawn(scan_loop(Arc::downgrade(self))));
        }
        ProcessWatch { entry }
    }
}

async fn scan_loop(table: Weak<ProcessTable>) {
    let epoch = Instant::now();
    let now = || Timestamp::from_elapsed(epoch.elapsed());
    let mut next_scan = Instant::now();
    loop {
        let Some(t) = table.upgrade() else { return };
        let entries: Vec<Arc<Entry>> = t
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        drop(t);
        if Instant::now() >= next_scan {
            next_scan = Instant::now() + SCAN_INTERVAL;
            let cmdline = entries.iter().any(|e| e.spec.uses_command_line());
            let listing = tokio::task::spawn_blocking(move || list_processes(cmdline))
                .await
                .unwrap_or_default();
            for e in &entries {
                let count = listing.iter().filter(|p| matches(&e.spec, p)).count();
                let count = u32::try_from(count).unwrap_or(u32::MAX);
                let change = lock(&e.quorum).count(now(), count);
                publish(e, change);
            }
        } else {
            for e in &entries {
                let change = lock(&e.quorum).timeout(now());
                publish(e, change);
            }
        }
        // Wake for the next scan, or sooner for a delay running out.
        let delay_due = entries
            .iter()
            .filter_map(|e| lock(&e.quorum).poll_timeout())
            .min()
            .map(|t| epoch + t.elapsed());
        let wake = delay_due.map_or(next_scan, |d| d.min(next_scan));
        drop(entries);
        tokio::time::sleep_until(wake).await;
    }
}

fn lock(q: &Mutex<Quorum>) -> std::sync::MutexGuard<'_, Quorum> {
    q.lock().unwrap_or_else(PoisonError::into_inner)
}

fn publish(e: &Entry, change: Option<bool>) {
    if let Some(held) = change {
        tracing::info!(process = %e.spec.process, quorum = held, "tracked process quorum changed");
        e.tx.send_replace(Some(held));
    }
}

/// Every process in /proc with its name and state, and its command line if asked.
fn list_processes(with_cmdline: bool) -> Vec<ProcessEntry> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|d| d.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| read_process(pid, with_cmdline))
        .collect()
}

fn read_process(pid: u32, with_cmdline: bool) -> Option<ProcessEntry> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let (comm, zombie) = parse_stat(&stat)?;
    let cmdline = if with_cmdline {
        std::fs::read(format!("/proc/{pid}/cmdline")).ok().map(|b| {
            let b = &b[..b.len().min(CMDLINE_MAX)];
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
    } else {
        None
    };
    Some(ProcessEntry {
        pid,
        comm,
        cmdline,
        zombie,
    })
}

/// `PID (comm) S ...`: the name between the first `(` and the last `)` (a name may
/// hold parentheses), and whether the state is Z.
fn parse_stat(stat: &[u8]) -> Option<(String, bool)> {
    let open = stat.iter().position(|c| *c == b'(')?;
    let close = stat.iter().rposition(|c| *c == b')')?;
    let comm = String::from_utf8_lossy(stat.get(open + 1..close)?).into_owned();
    let state = stat.get(close + 2).copied();
    Some((comm, state == Some(b'Z')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_may_hold_parentheses_and_zombies_show() {
        assert_eq!(
            parse_stat(b"42 (my (odd) name) S 1 2 3"),
            Some(("my (odd) name".into(), false))
        );
        assert_eq!(parse_stat(b"7 (sh) Z 1"), Some(("sh".into(), true)));
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn lists_this_process() {
        let me = std::process::id();
        let all = list_processes(true);
        let p = all.iter().find(|p| p.pid == me).expect("own pid listed");
        assert!(!p.zombie);
        assert!(p.cmdline.as_ref().is_some_and(|c| !c.is_empty()));
    }
}

#[cfg(test)]
mod io_tests {
    use super::*;

    async fn quorum_becomes(rx: &mut watch::Receiver<Option<bool>>, want: bool) -> bool {
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|q| *q == Some(want)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    #[tokio::test]
    async fn quorum_follows_a_process_starting_and_ending() {
        // A copy of sleep under a name no other process has.
        let dir = tempfile::tempdir().expect("tempdir");
        let name = format!("vzs{}", std::process::id() % 1_000_000);
        let program = dir.path().join(&name);
        std::fs::copy("/bin/sleep", &program).expect("copy sleep");
        let table = Arc::new(ProcessTable::default());
        let watch = table.watch(&TrackProcess::new(name.clone()));
        let mut rx = watch.subscribe();
        assert!(quorum_becomes(&mut rx, false).await, "not running yet");
        let mut child = std::process::Command::new(&program)
            .arg("30")
            .spawn()
            .expect("spawn");
        assert!(quorum_becomes(&mut rx, true).await, "{name} started");
        // Matching the command line instead: the full path is argv[0].
        let mut full = TrackProcess::new(program.display().to_string());
        full.full_command = true;
        full.args = vec!["30".into()];
        let full_watch = table.watch(&full);
        let mut rx_full = full_watch.subscribe();
        assert!(quorum_becomes(&mut rx_full, true).await);
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert!(quorum_becomes(&mut rx, false).await, "{name} ended");
    }
}
