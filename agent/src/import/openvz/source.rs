//! The OpenVZ host's file tree: `--root` plus the paths the host uses, shown in
//! reports as the host names them (`/etc/vz/conf/112.conf`), so that a copy of
//! a host's /etc imports with the same report as the host itself.

use std::path::{Path, PathBuf};

use crate::import::report::{Kind, Report};

/// The largest file read: host network files are a few KiB.
const MAX_FILE: u64 = 1 << 20;

/// The root the host's files are under.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    /// How many files were read.
    read: std::cell::Cell<usize>,
}

impl Root {
    /// Files under `dir` (`/` for this host).
    pub fn new(dir: &Path) -> Root {
        Root {
            dir: dir.to_path_buf(),
            read: std::cell::Cell::new(0),
        }
    }

    /// `rel` as the host names it: `/etc/...`.
    pub fn shown(&self, rel: &str) -> PathBuf {
        Path::new("/").join(rel.trim_start_matches('/'))
    }

    /// The names in folder `rel`, sorted; none when it does not exist.
    pub fn list(&self, rel: &str) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.dir.join(rel))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_file())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// How many files were read so far.
    pub fn files_read(&self) -> usize {
        self.read.get()
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The text of `rel` and its shown path; None when it does not exist (or
    /// cannot be read, which is reported).
    pub fn read(&self, rel: &str, report: &mut Report) -> Option<(String, PathBuf)> {
        let shown = self.shown(rel);
        let path = self.dir.join(rel.trim_start_matches('/'));
        let result = std::fs::metadata(&path).and_then(|m| {
            if m.len() > MAX_FILE {
                return Err(std::io::Error::other(format!(
                    "{} bytes: larger than any network file",
                    m.len()
                )));
            }
            std::fs::read(&path)
        });
        match result {
            Ok(bytes) => {
                report.file_read(&shown);
                self.read.set(self.read.get() + 1);
                Some((String::from_utf8_lossy(&bytes).into_owned(), shown))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                report.add(
                    &shown,
                    1,
                    "file",
                    Kind::NotCarried,
                    format!("cannot read it: {e}"),
                );
                None
            }
        }
    }
}
