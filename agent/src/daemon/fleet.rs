//! Whether this agent runs its config from etcd, and starting the fleet thread.

use std::path::Path;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::Options;
use crate::fleet::options::{self, Tls};
use crate::fleet::{Fleet, FleetThread, Folders, Handoff, Keys};

/// The fleet settings and host name, from the flags over `vznetd.toml`; `None`
/// when no etcd endpoint is given (the config folder is the source).
pub fn resolve(opts: &Options) -> anyhow::Result<Option<(Fleet, String)>> {
    let file = options::File::read(&opts.agent_config)?;
    let endpoints = if opts.etcd.is_empty() {
        file.etcd.clone()
    } else {
        opts.etcd.clone()
    };
    if endpoints.is_empty() {
        return Ok(None);
    }
    let endpoints = options::parse_endpoints(&endpoints).context("--etcd")?;
    let host = opts.host.clone().or(file.host.clone()).ok_or_else(|| {
        anyhow::anyhow!(
            "--etcd needs --host NAME (or host in {})",
            opts.agent_config.display()
        )
    })?;
    options::check_host_name(&host)?;
    let prefix = opts
        .etcd_prefix
        .clone()
        .or(file.etcd_prefix.clone())
        .unwrap_or_else(|| options::DEFAULT_PREFIX.into());
    let tls = Tls {
        ca: opts.etcd_ca.clone().or(file.etcd_ca.clone()),
        cert: opts.etcd_cert.clone().or(file.etcd_cert.clone()),
        key: opts.etcd_key.clone().or(file.etcd_key.clone()),
    };
    let fleet = Fleet {
        endpoints,
        tls,
        keys: Keys::new(&prefix),
        status_ttl_s: file.status_ttl_s.unwrap_or(options::DEFAULT_STATUS_TTL),
    };
    // Fail at start on unreadable TLS files, not at the first connection.
    fleet.tls.for_endpoints(&fleet.endpoints)?;
    Ok(Some((fleet, host)))
}

/// Starts the fleet thread; its state joins the control thread's status.
pub fn start(
    fleet: Fleet,
    host: String,
    folders: Folders,
    state_dir: &Path,
    to_engine: mpsc::Sender<Handoff>,
    shared: &mut super::control::Shared,
) -> anyhow::Result<FleetThread> {
    let status = crate::fleet::SharedFleet::default();
    shared.fleet = Some(status.clone());
    tracing::info!(
        host = %host,
        endpoints = %fleet.endpoints.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        "config from etcd"
    );
    crate::fleet::spawn(crate::fleet::Context {
        fleet,
        host,
        folders,
        state_dir: state_dir.to_path_buf(),
        to_engine,
        status,
        agent: shared.clone(),
    })
    .context("starting the fleet thread")
}
