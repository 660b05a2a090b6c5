//! Watching a tracked file: read at start, then again whenever inotify says it was
//! written, moved in, moved away or removed (keepalived watches the file's folder the
//! same way, so a file replaced by `mv` is seen). A missing file reads as 0.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::io::Error;
use crate::track::file::parse_value;

/// A watched file; the task stops when the last clone of its handle goes.
#[derive(Debug)]
pub struct FileWatch {
    value: watch::Receiver<i64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The inotify descriptor, for [`AsyncFd`].
struct Watcher(Inotify);

impl AsRawFd for Watcher {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl AsFd for Watcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl FileWatch {
    /// Reads `path` and watches its folder.
    pub async fn spawn(path: &Path) -> Result<FileWatch, Error> {
        let fail = |reason: String| Error::TrackFile {
            path: path.to_path_buf(),
            reason,
        };
        let dir = path
            .parent()
            .ok_or_else(|| fail("no parent folder".into()))?
            .to_path_buf();
        let name = path
            .file_name()
            .ok_or_else(|| fail("no file name".into()))?
            .to_os_string();
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| fail(format!("inotify: {e}")))?;
        inotify
            .add_watch(
                &dir,
                AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_DELETE,
            )
            .map_err(|e| fail(format!("watching {}: {e}", dir.display())))?;
        // SAFETY: the Inotify owns its descriptor, keeps it open until dropped and is
        // never swapped for another while inside the AsyncFd.
        let fd = unsafe { AsyncFd::register(Watcher(inotify)) }.map_err(|e| fail(e.to_string()))?;
        let first = read_value(path).await.unwrap_or(0);
        let (tx, value) = watch::channel(first);
        let task = tokio::spawn(watch_file(fd, path.to_path_buf(), name, tx));
        Ok(FileWatch { value, task })
    }

    /// The file's number from now on.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.value.clone()
    }
}

/// The file's number; `None` when keepalived would ignore the content (out of range).
async fn read_value(path: &Path) -> Option<i64> {
    match tokio::fs::read(path).await {
        Ok(bytes) => parse_value(&bytes),
        Err(_) => Some(0),
    }
}

async fn watch_file(fd: AsyncFd<Watcher>, path: PathBuf, name: OsString, tx: watch::Sender<i64>) {
    loop {
        let mut guard = match fd.readable().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "inotify failed; tracked file no longer watched");
                return;
            }
        };
        let events = match guard.try_io(|inner| {
            inner
                .get_ref()
                .0
                .read_events()
                .map_err(std::io::Error::from)
        }) {
            Ok(Ok(events)) => events,
            Ok(Err(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "reading inotify events failed");
                continue;
            }
            Err(_would_block) => continue,
        };
        if !events
            .iter()
            .any(|e| e.name.as_deref() == Some(name.as_os_str()))
        {
            continue;
        }
        match read_value(&path).await {
            Some(v) => {
                if *tx.borrow() != v {
                    tracing::info!(file = %path.display(), value = v, "tracked file changed");
                }
                tx.send_if_modified(|old| std::mem::replace(old, v) != v);
            }
            None => {
                tracing::warn!(file = %path.display(), "tracked file holds a number out of range; ignored")
            }
        }
    }
}

/// Writes `value` into `path` if it does not exist, or always with `overwrite`
/// (keepalived's `init_file`).
pub async fn init_file(path: &Path, value: i64, overwrite: bool) -> Result<(), Error> {
    if !overwrite && tokio::fs::try_exists(path).await.unwrap_or(false) {
        return Ok(());
    }
    tokio::fs::write(path, format!("{value}\n"))
        .await
        .map_err(|e| Error::TrackFile {
            path: path.to_path_buf(),
            reason: format!("writing its initial value: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn value_becomes(rx: &mut watch::Receiver<i64>, want: i64) -> bool {
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|v| *v == want))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    #[tokio::test]
    async fn writes_moves_and_removals_are_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("prio");
        init_file(&path, 7, false).await.expect("init");
        init_file(&path, 9, false).await.expect("init again");
        let watch = FileWatch::spawn(&path).await.expect("watch");
        let mut rx = watch.subscribe();
        assert_eq!(*rx.borrow(), 7, "init_file does not overwrite");
        std::fs::write(&path, "-20\n").expect("write");
        assert!(value_becomes(&mut rx, -20).await);
        let other = dir.path().join("next");
        std::fs::write(&other, "0x10").expect("write");
        std::fs::rename(&other, &path).expect("rename");
        assert!(value_becomes(&mut rx, 16).await, "replaced by mv");
        std::fs::remove_file(&path).expect("remove");
        assert!(value_becomes(&mut rx, 0).await, "missing reads as 0");
        init_file(&path, 3, true).await.expect("overwrite");
        assert!(value_becomes(&mut rx, 3).await);
    }
}
