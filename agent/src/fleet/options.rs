//! Where the fleet is: etcd endpoints, TLS files, the key prefix and this host's
//! name, from `vznetd.toml` and the command line (flags win), and the key layout
//! under the prefix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::http::Url;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/vznet/v1";

/// The default lease of a host's status, in seconds: a host that dies disappears
/// from `vznet fleet status` this long after its last renewal.
pub const DEFAULT_STATUS_TTL: u64 = 10;

/// `vznetd.toml`: the agent's own settings (not the host's network).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// etcd endpoints.
    #[serde(default)]
    pub etcd: Vec<String>,
    /// This host's name in the fleet.
    pub host: Option<String>,
    /// Key prefix.
    pub etcd_prefix: Option<String>,
    /// CA bundle that signed the etcd servers' certificates (https endpoints).
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM).
    pub etcd_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub etcd_key: Option<PathBuf>,
    /// Lease of the status key, seconds.
    pub status_ttl_s: Option<u64>,
}

impl File {
    /// Reads `path`; a missing file is an empty one.
    pub fn read(path: &Path) -> anyhow::Result<File> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        };
        let source = netcfg::model::SourceFile::new(path, text.clone());
        toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| source.location(s.start))
                .map_or_else(|| path.display().to_string(), |l| l.to_string());
            anyhow::anyhow!("{at}: {}", e.message())
        })
    }
}

/// TLS files for https endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// CA bundle.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
}

/// Resolved fleet settings.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Endpoints, tried in turn.
    pub endpoints: Vec<Url>,
    /// TLS files.
    pub tls: Tls,
    /// Key layout.
    pub keys: Keys,
    /// Lease of the status key, seconds.
    pub status_ttl_s: u64,
}

/// Splits `a,b` lists and parses each endpoint.
pub fn parse_endpoints(list: &[String]) -> anyhow::Result<Vec<Url>> {
    let urls: Vec<Url> = list
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Url>().map_err(anyhow::Error::msg))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(!urls.is_empty(), "no etcd endpoint given");
    Ok(urls)
}

/// A host name usable in keys and file names.
pub fn check_host_name(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && name != "."
            && name != "..",
        "host name {name:?}: use letters, digits, '-', '_' and '.' (at most 253)"
    );
    Ok(())
}

impl Tls {
    /// The rustls config for https endpoints: the CA bundle (required) and the
    /// client certificate, if any.
    pub fn client_config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        let ca = self
            .ca
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("https etcd endpoints need etcd_ca (--etcd-ca)"))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?
        {
            roots
                .add(cert.map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
                builder.with_client_auth_cert(chain, key)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => anyhow::bail!("etcd_cert and etcd_key go together"),
        };
        Ok(Arc::new(config))
    }

    /// The config when any endpoint is https.
    pub fn for_endpoints(&self, urls: &[Url]) -> anyhow::Result<Option<Arc<ClientConfig>>> {
        if urls.iter().any(|u| u.tls) {
            self.client_config().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The key layout under a prefix:
/// `PREFIX/hosts/NAME/host.toml`, `PREFIX/hosts/NAME/ve/ID.toml` (the same TOML as
/// on disk) and `PREFIX/status/NAME` (JSON, under the agent's lease).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The layout under `prefix` (`/vznet/v1`).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// `PREFIX/hosts/`.
    pub fn hosts(&self) -> String {
        format!("{}/hosts/", self.prefix)
    }

    /// `PREFIX/hosts/NAME/`: every key of a host's config.
    pub fn host(&self, name: &str) -> String {
        format!("{}/hosts/{name}/", self.prefix)
    }

    /// `PREFIX/status/`.
    pub fn statuses(&self) -> String {
        format!("{}/status/", self.prefix)
    }

    /// `PREFIX/status/NAME`.
    pub fn status(&self, name: &str) -> String {
        format!("{}/status/{name}", self.prefix)
    }
}

/// The file a key under a host's prefix stands for: `host.toml` or
/// `ve/NAME.toml`, never anything that could leave the folder. Other keys are
/// not config (`None`).
pub fn file_of(rel: &str) -> Option<&str> {
    if rel == "host.toml" {
        return Some(rel);
    }
    let name = rel.strip_prefix("ve/")?;
    let ok = name.ends_with(".toml")
        && name.len() > ".toml".len()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then_some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_toml_and_ve_files_are_config_and_none_leaves_the_folder() {
        assert_eq!(file_of("host.toml"), Some("host.toml"));
        assert_eq!(file_of("ve/112.toml"), Some("ve/112.toml"));
        for bad in [
            "ve/../x.toml",
            "ve/a/b.toml",
            "ve/.toml",
            "ve/..toml",
            "notes.txt",
            "ve/112.toml.bak",
            "/etc/passwd",
        ] {
            assert_eq!(file_of(bad), None, "{bad}");
        }
        let k = Keys::new("/vznet/v1/");
        assert_eq!(k.host("a"), "/vznet/v1/hosts/a/");
        assert_eq!(k.status("a"), "/vznet/v1/status/a");
        assert!(check_host_name("h-1.example").is_ok());
        assert!(check_host_name("../x").is_err());
        assert!(check_host_name("a/b").is_err());
    }

    #[test]
    fn the_agent_file_names_line_and_column_of_an_unknown_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("vznetd.toml");
        std::fs::write(
            &p,
            "host = \"a\"\netcd = [\"http://10.0.0.1:2379\"]\nbogus = 1\n",
        )
        .expect("writes");
        let e = File::read(&p).expect_err("unknown key").to_string();
        assert!(e.contains("vznetd.toml:3:1"), "{e}");
        std::fs::write(&p, "host = \"a\"\netcd = [\"http://10.0.0.1:2379\"]\n").expect("writes");
        let f = File::read(&p).expect("reads");
        assert_eq!(f.host.as_deref(), Some("a"));
        assert!(File::read(&dir.path().join("none.toml")).is_ok());
    }
}
