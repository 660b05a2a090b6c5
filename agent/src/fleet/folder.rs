//! The two config folders of a fleet host, in `STATE/fleet/`: `config`, the last
//! good config, which the engine runs from (and which a host that boots without
//! etcd comes up with), and `staging`, where the etcd side writes what etcd holds
//! for the engine to validate with the same loader. A valid staging folder
//! becomes `config` by one atomic exchange of the two (`renameat2`
//! `RENAME_EXCHANGE`), so `config` is always one whole validated revision.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A host's config as etcd holds it: file (`host.toml`, `ve/ID.toml`) -> text.
pub type Files = BTreeMap<String, Vec<u8>>;

/// The file inside a folder that records the etcd revision of its content.
const REVISION: &str = "revision";

/// The fleet folders under a state folder.
#[derive(Debug, Clone)]
pub struct Folders {
    /// `STATE/fleet/config`.
    pub config: PathBuf,
    /// `STATE/fleet/staging`.
    pub staging: PathBuf,
}

impl Folders {
    /// The folders under `state`, made if missing. A host that never reached etcd
    /// starts from an empty config (nothing declared, nothing changed).
    pub fn prepare(state: &Path) -> std::io::Result<Folders> {
        let root = state.join("fleet");
        let folders = Folders {
            config: root.join("config"),
            staging: root.join("staging"),
        };
        for dir in [&folders.config, &folders.staging] {
            std::fs::create_dir_all(dir.join("ve"))?;
        }
        let host = folders.config.join("host.toml");
        if !host.exists() {
            write_atomic(&host, b"# no config from etcd yet\n")?;
        }
        Ok(folders)
    }

    /// The config the engine runs, with its revision (0: never from etcd).
    pub fn current(&self) -> std::io::Result<(i64, Files)> {
        read(&self.config)
    }

    /// Makes the staging folder hold exactly `files` at `revision`, writing only
    /// what differs (each file atomically).
    pub fn stage(&self, files: &Files, revision: i64) -> std::io::Result<()> {
        let (_, present) = read(&self.staging)?;
        for (rel, text) in files {
            if present.get(rel) != Some(text) {
                write_atomic(&self.staging.join(rel), text)?;
            }
        }
        for rel in present.keys().filter(|r| !files.contains_key(*r)) {
            match std::fs::remove_file(self.staging.join(rel)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        write_atomic(
            &self.staging.join(REVISION),
            format!("{revision}\n").as_bytes(),
        )
    }

    /// Makes the (validated) staging folder the config, atomically; the old
    /// config becomes the staging folder.
    pub fn promote(&self) -> std::io::Result<()> {
        match nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &self.staging,
            nix::fcntl::AT_FDCWD,
            &self.config,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        ) {
            Ok(()) => Ok(()),
            // A file system without the exchange: three renames, the config
            // missing only between the first two.
            Err(nix::errno::Errno::EINVAL) => {
                let old = self.config.with_extension("old");
                std::fs::rename(&self.config, &old)?;
                std::fs::rename(&self.staging, &self.config)?;
                std::fs::rename(&old, &self.staging)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The config files (`host.toml`, `ve/*.toml`) and revision of a folder.
pub fn read(dir: &Path) -> std::io::Result<(i64, Files)> {
    let mut files = Files::new();
    match std::fs::read(dir.join("host.toml")) {
        Ok(t) => {
            files.insert("host.toml".into(), t);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::fs::read_dir(dir.join("ve")) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = format!("ve/{name}");
                if super::options::file_of(&rel).is_some() {
                    files.insert(rel, std::fs::read(entry.path())?);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let revision = std::fs::read_to_string(dir.join(REVISION))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    Ok((revision, files))
}

/// Writes `path` through a temporary file and a rename, so a reader (or a crash)
/// sees the old content or the new, never a part.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_writes_only_what_differs_and_promotion_swaps_whole_folders() {
        let state = tempfile::tempdir().expect("tempdir");
        let f = Folders::prepare(state.path()).expect("prepares");
        assert_eq!(f.current().expect("reads").0, 0);
        let mut files = Files::new();
        files.insert("host.toml".into(), b"[sysctl]\n".to_vec());
        files.insert("ve/1.toml".into(), b"id = 1\n".to_vec());
        f.stage(&files, 7).expect("stages");
        f.promote().expect("promotes");
        assert_eq!(f.current().expect("reads"), (7, files.clone()));
        // The old config is the staging folder now; staging again makes it exact.
        files.remove("ve/1.toml");
        files.insert("ve/2.toml".into(), b"id = 2\n".to_vec());
        let kept = std::fs::metadata(f.staging.join("host.toml")).is_ok();
        assert!(kept);
        f.stage(&files, 9).expect("stages");
        assert_eq!(read(&f.staging).expect("reads"), (9, files.clone()));
        f.promote().expect("promotes");
        assert_eq!(f.current().expect("reads"), (9, files));
        assert!(!f.config.join("ve/1.toml").exists());
    }
}
