//! keepalived as a lab peer: where it is installed, and a foreground start in a
//! host with its own config and pid files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::{Host, Process};

/// Debian's keepalived binary, or an error with the install command.
pub fn keepalived_path() -> Result<PathBuf> {
    for dir in ["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"] {
        let p = PathBuf::from(dir).join("keepalived");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("keepalived is not installed: `apt-get install -y keepalived` (Debian's 2.2.7)")
}

/// Starts keepalived (VRRP only, foreground, logging to the console) in `host`
/// with `config`, writing the config and its pid files into `dir`.
///
/// `dir` must be fresh for every start: keepalived refuses to start while the pid
/// in an old pid file names a process, and a SIGKILLed VRRP child may linger as a
/// zombie.
pub fn spawn_keepalived(host: &Host, dir: &Path, config: &str) -> Result<Process> {
    spawn_keepalived_with(host, dir, config, &[])
}

/// As [`spawn_keepalived`], with more options (`--config-id=r2`).
pub fn spawn_keepalived_with(
    host: &Host,
    dir: &Path,
    config: &str,
    options: &[&str],
) -> Result<Process> {
    std::fs::create_dir_all(dir)?;
    let conf = dir.join("keepalived.conf");
    std::fs::write(&conf, config)?;
    let path = |name: &str| dir.join(name).display().to_string();
    let mut argv = vec![
        keepalived_path()?.display().to_string(),
        "--dont-fork".into(),
        "--log-console".into(),
        "--log-detail".into(),
        "--no-syslog".into(),
        "--vrrp".into(),
        "--use-file".into(),
        conf.display().to_string(),
        format!("--pid={}", path("keepalived.pid")),
        format!("--vrrp_pid={}", path("vrrp.pid")),
        format!("--checkers_pid={}", path("checkers.pid")),
        format!("--bfd_pid={}", path("bfd.pid")),
    ];
    argv.extend(options.iter().map(|o| o.to_string()));
    host.spawn(argv)
}
