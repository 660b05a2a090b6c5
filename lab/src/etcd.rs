//! A real etcd cluster (Debian's `etcd-server` 3.4) in lab hosts: one member per
//! host, listening on that host's lab address only, data in a temporary folder
//! removed on drop. Each member runs in its own namespace, so the standard ports
//! never collide between parallel tests.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{wait_until, Host, Process};

/// Client port.
pub const CLIENT_PORT: u16 = 2379;
/// Peer port.
const PEER_PORT: u16 = 2380;

/// Debian's etcd binary, or an error with the install command.
pub fn etcd_path() -> Result<PathBuf> {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = PathBuf::from(dir).join("etcd");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("etcd is not installed: `apt-get install -y etcd-server etcd-client` (Debian's 3.4)")
}

#[derive(Debug)]
struct Member {
    name: String,
    host: Host,
    addr: String,
    process: Option<Process>,
}

/// A running cluster.
#[derive(Debug)]
pub struct Etcd {
    members: Vec<Member>,
    cluster: String,
    token: String,
    data: tempfile::TempDir,
}

impl Etcd {
    /// Starts one member in each `(host, address)` (the address must be on one of
    /// the host's links) and waits until the cluster answers.
    pub fn start(token: &str, members: &[(&Host, &str)]) -> Result<Etcd> {
        etcd_path()?;
        let cluster = members
            .iter()
            .enumerate()
            .map(|(i, (_, a))| format!("m{i}=http://{a}:{PEER_PORT}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members: members
                .iter()
                .enumerate()
                .map(|(i, (h, a))| Member {
                    name: format!("m{i}"),
                    host: (*h).clone(),
                    addr: a.to_string(),
                    process: None,
                })
                .collect(),
            cluster,
            token: token.to_string(),
            data: tempfile::tempdir().context("etcd data folder")?,
        };
        for i in 0..etcd.members.len() {
            etcd.spawn(i, "new")?;
        }
        etcd.wait_healthy(Duration::from_secs(30))?;
        Ok(etcd)
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<()> {
        let m = &self.members[i];
        let dir = self.data.path().join(&m.name);
        let client = format!("http://{}:{CLIENT_PORT}", m.addr);
        let peer = format!("http://{}:{PEER_PORT}", m.addr);
        let p = m.host.spawn([
            etcd_path()?.display().to_string(),
            "--name".into(),
            m.name.clone(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer,
            "--initial-cluster".into(),
            self.cluster.clone(),
            "--initial-cluster-token".into(),
            self.token.clone(),
            "--initial-cluster-state".into(),
            state.into(),
            // Lab links have no latency: elect in half a second, not in seconds.
            "--heartbeat-interval".into(),
            "50".into(),
            "--election-timeout".into(),
            "500".into(),
            "--logger".into(),
            "zap".into(),
            "--log-level".into(),
            "warn".into(),
        ])?;
        self.members[i].process = Some(p);
        Ok(())
    }

    /// `http://A:2379,http://B:2379,...`.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://{}:{CLIENT_PORT}", m.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Runs `etcdctl ARGS` against the cluster from member `from`'s host.
    pub fn ctl(&self, from: usize, args: &[&str]) -> Result<String> {
        let eps = self.endpoints();
        let mut argv = vec!["etcdctl", "--endpoints", &eps];
        argv.extend(args);
        self.members[from].host.run(argv)
    }

    /// Waits until every running member reports healthy.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        let mut last = String::new();
        let ok = wait_until(timeout, Duration::from_millis(100), || {
            self.members
                .iter()
                .filter(|m| m.process.is_some())
                .all(|m| {
                    let ep = format!("http://{}:{CLIENT_PORT}", m.addr);
                    match m
                        .host
                        .run(["etcdctl", "--endpoints", &ep, "endpoint", "health"])
                    {
                        Ok(_) => true,
                        Err(e) => {
                            last = format!("{e:#}");
                            false
                        }
                    }
                })
        });
        if !ok {
            let logs: Vec<String> = self
                .members
                .iter()
                .filter_map(|m| m.process.as_ref()?.stderr().ok())
                .collect();
            bail!(
                "etcd not healthy after {timeout:?}: {last}\n{}",
                logs.join("\n")
            );
        }
        Ok(())
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(p) = self.members[i].process.take() {
            p.kill()?;
        }
        Ok(())
    }

    /// Starts member `i` again on its data (after [`Etcd::kill`]).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.spawn(i, "existing")?;
        self.wait_healthy(Duration::from_secs(30))
    }

    /// The revision of the store now.
    pub fn revision(&self) -> Result<i64> {
        let out = self.ctl(
            0,
            &[
                "get",
                "/",
                "--prefix",
                "--keys-only",
                "--limit",
                "1",
                "-w",
                "json",
            ],
        )?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        v["header"]["revision"]
            .as_i64()
            .context("no revision in etcdctl's answer")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Stopped before their data goes; the lab kills stragglers too.
        for m in &mut self.members {
            if let Some(p) = m.process.take() {
                let _ = p.kill();
            }
        }
    }
}
