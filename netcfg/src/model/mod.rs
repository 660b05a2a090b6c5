//! The desired state: `host.toml` plus `ve/ID.toml` files, loaded, typed and
//! validated. Every error names file, line, column and key.

mod address;
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
pub use validate::Scope;
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
        Config::load_scoped(dir, cache, Scope::ThisHost)
    }

    /// [`Config::load_cached`] as vznetd reads the folder: a VE whose network
    /// namespace is missing is not running, not a config error ([`Scope::Agent`]).
    pub fn load_for_agent(dir: &Path, cache: &mut LoadCache) -> Result<Config, ConfigErrors> {
        Config::load_scoped(dir, cache, Scope::Agent)
    }

    /// [`Config::load`] of a folder meant for another host (`vznet fleet push`):
    /// links the config uses are not looked for in this host's kernel.
    pub fn load_for_other_host(dir: &Path) -> Result<Config, ConfigErrors> {
        Config::load_scoped(dir, &mut LoadCache::default(), Scope::OtherHost)
    }

    fn load_scoped(
        dir: &Path,
        cache: &mut LoadCache,
        scope: Scope,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut seen: Vec<PathBuf> = Vec::new();
        let host_path = dir.join("host.toml");
        seen.push(host_path.clone());
        let host = load_file(&host_path, cache, true, &mut errors);
        let mut ves = Vec::new();
        let mut warnings = Vec::new();
        let ve_dir = dir.join("ve");
        match std::fs::read_dir(&ve_dir) {
            Ok(entries) => {
                let mut paths: Vec<PathBuf> = Vec::new();
                for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                    if let Some(w) = ve_file(&path, &mut paths) {
                        warnings.push(w);
                    }
                }
                paths.sort();
                for path in paths {
                    seen.push(path.clone());
                    ves.extend(load_file(&path, cache, false, &mut errors));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(file_error(&ve_dir, e.to_string())),
        }
        cache.files.retain(|p, _| seen.contains(p));
        Config::assemble(dir, host, ves, warnings, errors, scope)
    }

    /// The folder `dir` as if `host.toml` held `host` and `ve/` held `ve_files`
    /// (file name, bytes), with nothing read from disk: parsed, checked and
    /// validated as [`Config::load`] does. The config fuzz target's entry point.
    pub fn from_bytes(
        dir: &Path,
        host: &[u8],
        ve_files: &[(&str, &[u8])],
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let host = parse_bytes(&dir.join("host.toml"), host, true, &mut errors);
        let mut warnings = Vec::new();
        let mut paths = Vec::new();
        for (name, _) in ve_files {
            if let Some(w) = ve_file(&dir.join("ve").join(name), &mut paths) {
                warnings.push(w);
            }
        }
        paths.sort();
        paths.dedup();
        let mut ves = Vec::new();
        for path in paths {
            let bytes = ve_files
                .iter()
                .find(|(name, _)| {
                    path.file_name()
                        .is_some_and(|n| n == std::ffi::OsStr::new(name))
                })
                .map_or(&[][..], |(_, b)| *b);
            ves.extend(parse_bytes(&path, bytes, false, &mut errors));
        }
        Config::assemble(dir, host, ves, warnings, errors, Scope::ThisHost)
    }

    /// The parsed files as one config, validated when every file parsed.
    fn assemble(
        dir: &Path,
        host: Option<Parsed>,
        ves: Vec<Parsed>,
        warnings: Vec<ConfigError>,
        mut errors: Vec<ConfigError>,
        scope: Scope,
    ) -> Result<Config, ConfigErrors> {
        let (host, host_source) = match host {
            Some(Parsed::Host(host, source)) => (*host, source),
            _ => (
                HostConfig::default(),
                SourceFile::new(&dir.join("host.toml"), String::new()),
            ),
        };
        let mut ves: Vec<VeFile> = ves
            .into_iter()
            .filter_map(|p| match p {
                Parsed::Ve(ve, source) => Some(VeFile { ve: *ve, source }),
                Parsed::Host(..) => None,
            })
            .collect();
        ves.sort_by_key(|f| f.ve.id);
        let config = Config {
            dir: dir.to_path_buf(),
            host,
            host_source,
            ves,
            warnings,
        };
        if errors.is_empty() {
            validate::validate(&config, scope, &mut errors);
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
        self.validate_for(Scope::ThisHost)
    }

    /// [`Config::validate`] for the host `scope` names: tables translated for
    /// another host (`vznet import`) are not held to this host's links.
    pub fn validate_for(&self, scope: Scope) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        validate::validate(self, scope, &mut errors);
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

/// The warnings for files of `dir/ve` that look like configs but are not read
/// (what [`Config::warnings`] holds), for a caller whose load failed.
pub fn skipped_files(dir: &Path) -> Vec<ConfigError> {
    let mut read = Vec::new();
    let mut out: Vec<ConfigError> = std::fs::read_dir(dir.join("ve"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().and_then(|e| ve_file(&e.path(), &mut read)))
        .collect();
    out.sort_by(|a, b| a.location.file.cmp(&b.location.file));
    out
}

/// Sorts a file of `ve/` into `read` (names ending in `.toml`), or returns the
/// warning for a file that looks like one but is not read.
fn ve_file(path: &Path, read: &mut Vec<PathBuf>) -> Option<ConfigError> {
    if path.extension().and_then(|x| x.to_str()) == Some("toml") {
        read.push(path.to_path_buf());
        return None;
    }
    skipped_lookalike(path).map(|why| ConfigError {
        location: Location {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
        },
        key: String::new(),
        message: why,
    })
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
    let bytes = match read_bytes(file) {
        Ok(b) => b,
        Err(e) => {
            errors.push(file_error(path, e));
            return None;
        }
    };
    let parsed = parse_bytes(path, &bytes, host, errors)?;
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

/// The bytes of an opened config file, at most [`MAX_FILE`] (it may grow after
/// the check).
fn read_bytes(file: std::fs::File) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// A config file's bytes, parsed: at most [`MAX_FILE`] of them, UTF-8, TOML of
/// the file's type.
fn parse_bytes(
    path: &Path,
    bytes: &[u8],
    host: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<Parsed> {
    if bytes.len() as u64 > MAX_FILE {
        let why = format!("more than the {MAX_FILE} bytes a config file may have");
        errors.push(file_error(path, why));
        return None;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.to_string(),
        Err(e) => {
            let at = e.valid_up_to();
            let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
            errors.push(ConfigError {
                location: Location {
                    file: path.to_path_buf(),
                    line,
                    column: 1,
                },
                key: String::new(),
                message: format!("not UTF-8 text (byte {at} of the file)"),
            });
            return None;
        }
    };
    let source = SourceFile::new(path, text);
    if host {
        parse::<HostConfig>(&source, errors).map(|h| Parsed::Host(Box::new(h), source))
    } else {
        parse::<VeConfig>(&source, errors).map(|v| Parsed::Ve(Box::new(v), source))
    }
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
