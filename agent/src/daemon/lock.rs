//! One agent per state folder: an exclusive `flock` on `STATE/vznetd.lock`, held for
//! the agent's life and released by the kernel when it dies (even by SIGKILL), so a
//! stale lock never blocks a restart.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why the lock cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another agent holds it.
    #[error("another vznetd ({holder}) runs with state folder {}; stop it first", .dir.display())]
    Held {
        /// The state folder.
        dir: PathBuf,
        /// Who holds it, as its lock file says.
        holder: String,
    },
    /// The lock file cannot be opened or locked.
    #[error("lock file {}: {source}", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The held lock; released on drop (or by the kernel at exit).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock of `state_dir` or says who holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join("vznetd.lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on an fd this function owns.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    dir: state_dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "pid unknown".into()
                    } else {
                        format!("pid {holder}")
                    },
                });
            }
            return Err(io(e));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(StateLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = StateLock::acquire(dir.path()).expect("first lock");
        // flock locks belong to the open file description: a second open in the
        // same process conflicts just like another process would.
        match StateLock::acquire(dir.path()) {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(holder, format!("pid {}", std::process::id()))
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        StateLock::acquire(dir.path()).expect("free again after drop");
    }
}
