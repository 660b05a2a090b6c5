//! The desired state: `host.toml` plus `ve/ID.toml` files, loaded, typed and
//! validated. Every error names file, line, column and key.

mod host;
pub mod lb;
mod link;
mod mac;
mod source;
pub mod validate;
mod ve;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use host::{HostConfig, Route, RouteDest, Vrrp, VrrpChecksum};
pub use host::{VrrpTrack, VrrpTrackWeighted};
pub use lb::{
    Backend as LbBackend, CheckKind, HealthCheck, LbProtocol, OnFailure, Scheduler, SorryServer,
    VirtualServer,
};
pub use link::{
    AdSelect, Bond, BondMode, Bridge, BridgePort, Dummy, Ethernet, LacpRate, Macvlan, MacvlanMode,
    NamedPort, PortOptions, Vlan, VlanProtocol, Vxlan, XmitHashPolicy,
};
pub use mac::{MacAddr, MacParseError};
pub use source::{KeyPath, Location, Seg, SourceFile};
pub use ve::{ByteSize, Firewall, FwPolicy, FwProto, FwRule, Hooks, Netif, VeConfig, Venet};

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
}

impl Config {
    /// Reads, parses and validates `dir/host.toml` and `dir/ve/*.toml`.
    pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let host_path = dir.join("host.toml");
        let (host, host_source) = match read(&host_path) {
            Ok(text) => {
                let source = SourceFile::new(&host_path, text);
                let host = parse::<HostConfig>(&source, &mut errors).unwrap_or_default();
                (host, source)
            }
            Err(e) => {
                errors.push(file_error(&host_path, e));
                (
                    HostConfig::default(),
                    SourceFile::new(&host_path, String::new()),
                )
            }
        };

        let mut ves = Vec::new();
        let ve_dir = dir.join("ve");
        match std::fs::read_dir(&ve_dir) {
            Ok(entries) => {
                let mut paths: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                paths.sort();
                for path in paths {
                    match read(&path) {
                        Ok(text) => {
                            let source = SourceFile::new(&path, text);
                            if let Some(ve) = parse::<VeConfig>(&source, &mut errors) {
                                ves.push(VeFile { ve, source });
                            }
                        }
                        Err(e) => errors.push(file_error(&path, e)),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(file_error(&ve_dir, e.to_string())),
        }
        ves.sort_by_key(|f| f.ve.id);

        let config = Config {
            dir: dir.to_path_buf(),
            host,
            host_source,
            ves,
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

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| e.to_string())
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
