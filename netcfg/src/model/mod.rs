//! The desired state: `host.toml` plus `ve/ID.toml` files, loaded, typed and
//! validated. Every error names file, line, column and key.

mod host;
pub mod lb;
mod link;
mod mac;
mod routing;
mod source;
pub mod sysctl;
pub mod validate;
mod ve;
mod vrrp_config;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use host::{HostConfig, Route, RouteDest};
pub use lb::{
    Backend as LbBackend, CheckKind, HealthCheck, LbProtocol, OnFailure, Scheduler, SorryServer,
    VirtualServer,
};
pub use link::{
    AdSelect, Bond, BondMode, Bridge, BridgePort, Dummy, Ethernet, LacpRate, Macvlan, MacvlanMode,
    NamedPort, PortOptions, Vlan, VlanProtocol, Vxlan, XmitHashPolicy,
};
pub use mac::{MacAddr, MacParseError};
pub use routing::{table_id, Fwmark, HostVenet, RouteTable, Rule, Selector};
pub use source::{KeyPath, Location, Seg, SourceFile};
pub use ve::{
    check_domain, check_hostname, ByteSize, Firewall, FwPolicy, FwProto, FwRule, Hooks, Netif,
    VeConfig, Venet, MAX_NAMESERVERS,
};

/// A sysctl value as written: an integer or a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SysctlValue {
    /// `1`
    Int(i64),
    /// `"4096 87380 6291456"`
    Str(String),
}

impl fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysctlValue::Int(i) => write!(f, "{i}"),
            SysctlValue::Str(s) => f.write_str(s),
        }
    }
}

/// One problem in the config, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where.
    pub location: Location,
    /// Which key (`bridge[0].ports[1]`); empty for file-level errors.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.key, self.message)
        }
    }
}

/// All problems found in a config folder (never empty).
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, e) in self.0.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A VE file with its source.
#[derive(Debug)]
pub struct VeFile {
    /// The typed content.
    pub ve: VeConfig,
    /// The file, for error locations.
    pub source: SourceFile,
}

/// A whole config folder, typed and validated.
#[derive(Debug)]
pub struct Config {
    /// The folder.
    pub dir: PathBuf,
    /// `host.toml`.
    pub host: HostConfig,
    /// `host.toml`'s source.
    pub host_source: SourceFile,
    /// `ve/*.toml`, sorted by id.
    pub ves: Vec<VeFile>,
    /// Files in the folder that look like configs but are not read (`ve/101.TOML`,
    /// `ve/101.toml.bak`): reported, never fatal.
    pub warnings: Vec<ConfigError>,
}

/// The largest config file vznet reads. A host.toml with a thousand virtual
/// servers is far smaller; anything bigger is a mistake (or /dev/zero).
pub const MAX_FILE: u64 = 4 << 20;

/// Parsed files by path, reused while a file's identity and times are unchanged:
/// a long-running agent re-reads a folder of 1000 VE files in a few milliseconds.
#[derive(Debug, Default)]
pub struct LoadCache {
    files: std::collections::HashMap<PathBuf, (FileStamp, Parsed)>,
}

/// What identifies a version of a file: device, inode, size, mtime and ctime (any
/// write changes ctime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

#[derive(Debug, Clone)]
enum Parsed {
    Host(Box<HostConfig>, SourceFile),
    Ve(Box<VeConfig>, SourceFile),
}

impl Config {
    /// Reads, parses and validates `dir/host.toml` and `dir/ve/*.toml`.
    pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
        Config::load_cached(dir, &mut LoadCache::default())
    }

    /// [`Config::load`], reusing files parsed before that have not changed.
    /// Validation always runs on the whole folder.
    pub fn load_cached(dir: &Path, cache: &mut LoadCache) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut seen: Vec<PathBuf> = Vec::new();
        let host_path = dir.join("host.toml");
        seen.push(host_path.clone());
        let (host, host_source) = match load_file(&host_path, cache, true, &mut errors) {
            Some(Parsed::Host(host, source)) => (*host, source),
            _ => (
                HostConfig::default(),
                SourceFile::new(&host_path, String::new()),
            ),
        };

        let mut ves = Vec::new();
        let mut warnings = Vec::new();
        let ve_dir = dir.join("ve");
        match std::fs::read_dir(&ve_dir) {
            Ok(entries) => {
                let mut paths: Vec<PathBuf> = Vec::new();
                for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                    match path.extension().and_then(|x| x.to_str()) {
                        Some("toml") => paths.push(path),
                        _ => {
                            if let Some(why) = skipped_lookalike(&path) {
                                warnings.push(ConfigError {
                                    location: Location {
                                        file: path.clone(),
                                        line: 1,
                                        column: 1,
                                    },
                                    key: String::new(),
                                    message: why,
                                });
                            }
                        }
                    }
                }
                paths.sort();
                for path in paths {
                    seen.push(path.clone());
                    if let Some(Parsed::Ve(ve, source)) =
                        load_file(&path, cache, false, &mut errors)
                    {
                        ves.push(VeFile { ve: *ve, source });
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(file_error(&ve_dir, e.to_string())),
        }
        cache.files.retain(|p, _| seen.contains(p));
        ves.sort_by_key(|f| f.ve.id);

        let config = Config {
            dir: dir.to_path_buf(),
            host,
            host_source,
            ves,
            warnings,
        };
        if errors.is_empty() {
            validate::validate(&config, &mut errors);
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Validates again after a caller changed the typed config (the VE runtime
    /// merges live changes of running VEs into it).
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        validate::validate(self, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The VE with this id.
    pub fn ve(&self, id: u32) -> Option<&VeConfig> {
        self.ves.iter().map(|f| &f.ve).find(|v| v.id == id)
    }
}

impl VeConfig {
    /// The netns this VE's interfaces live in, as a path, if it names one.
    pub fn netns_path(&self) -> Option<PathBuf> {
        self.netns.as_deref().map(netns_path)
    }

    /// The host-side name of netif number `n`.
    pub fn host_ifname(&self, n: usize) -> String {
        self.netif
            .get(n)
            .and_then(|i| i.host_name.clone())
            .unwrap_or_else(|| format!("veth{}.{n}", self.id))
    }

    /// The host-side name of the venet link.
    pub fn venet_host_ifname(&self) -> String {
        self.venet
            .as_ref()
            .and_then(|v| v.host_name.clone())
            .unwrap_or_else(|| format!("venet{}", self.id))
    }
}

/// `/run/netns/NAME` for a bare name, the path itself for an absolute path.
pub fn netns_path(netns: &str) -> PathBuf {
    if netns.starts_with('/') {
        PathBuf::from(netns)
    } else {
        Path::new("/run/netns").join(netns)
    }
}

/// Why a file in `ve/` that is not read would have been meant as a VE file.
fn skipped_lookalike(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".toml") {
        return Some(
            "skipped: VE files must end in \".toml\" (lower case); rename it to read it".into(),
        );
    }
    if lower.contains(".toml") {
        return Some(
            "skipped: only files ending in \".toml\" are read (a backup or editor file?)".into(),
        );
    }
    None
}

/// Reads and parses `path`, or takes it from `cache` if it has not changed.
fn load_file(
    path: &Path,
    cache: &mut LoadCache,
    host: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<Parsed> {
    let (file, stamp) = match open(path) {
        Ok(v) => v,
        Err(e) => {
            errors.push(file_error(path, e));
            return None;
        }
    };
    if let Some((s, parsed)) = cache.files.get(path) {
        if *s == stamp {
            return Some(parsed.clone());
        }
    }
    let text = match read_text(file) {
        Ok(t) => t,
        Err(e) => {
            errors.push(file_error(path, e));
            return None;
        }
    };
    let source = SourceFile::new(path, text);
    let parsed = if host {
        parse::<HostConfig>(&source, errors).map(|h| Parsed::Host(Box::new(h), source))
    } else {
        parse::<VeConfig>(&source, errors).map(|v| Parsed::Ve(Box::new(v), source))
    }?;
    cache
        .files
        .insert(path.to_path_buf(), (stamp, parsed.clone()));
    Some(parsed)
}

/// Opens a config file: only a regular file (a symlink to one is fine), never more
/// than [`MAX_FILE`] bytes, never blocking (a FIFO is refused, not waited on).
fn open(path: &Path) -> Result<(std::fs::File, FileStamp), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let ft = meta.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if ft.is_dir() {
            "a folder"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(format!("{what}, not a regular file"));
    }
    if meta.len() > MAX_FILE {
        return Err(format!(
            "{} bytes, more than the {MAX_FILE} a config file may have",
            meta.len()
        ));
    }
    Ok((file, FileStamp::of(&meta)))
}

/// The text of an opened config file, at most [`MAX_FILE`] bytes (it may grow after
/// the check).
fn read_text(file: std::fs::File) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!(
            "more than the {MAX_FILE} bytes a config file may have"
        ));
    }
    Ok(text)
}

fn file_error(path: &Path, message: String) -> ConfigError {
    ConfigError {
        location: Location {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
        },
        key: String::new(),
        message: format!("cannot read: {message}"),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    source: &SourceFile,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match toml::from_str::<T>(source.text()) {
        Ok(v) => Some(v),
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            errors.push(ConfigError {
                location: source.location(offset),
                key: source.path_at(offset).to_string(),
                message: e.message().trim().to_string(),
            });
            None
        }
    }
}
