//! A fleet in the lab: an etcd cluster and hosts running vznetd from it, each in
//! its own namespace. Two switches: `mgmt` (10.81.0.0/24: etcd members .11 up,
//! the hosts' `eth1` .101 up, an `admin` host .2 that runs `vznet fleet`) and
//! `data` (10.80.0.0/24: the hosts' `eth0`, which their configs bridge, and a
//! `client` .10). The hosts reach etcd over `eth1`, which no config touches, so a
//! host's own config never cuts it off from etcd; `partition` does, on purpose.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use crate::etcd::Etcd;
use crate::{wait_until, Host, Lab, Process, Switch};

/// The commands under test: argv prefixes for vznetd and vznet.
#[derive(Debug, Clone)]
pub struct Tools {
    /// e.g. `["/path/vznetd"]` or `["/path/lab", "vznetd"]`.
    pub vznetd: Vec<String>,
    /// e.g. `["/path/vznet"]` or `["/path/lab", "vznet"]`.
    pub vznet: Vec<String>,
}

/// One host of the fleet.
#[derive(Debug)]
pub struct FleetHost {
    /// Its name in the fleet (`h0`, `h1`, ...).
    pub name: String,
    /// Its namespace.
    pub host: Host,
    /// Its address on the data switch (`10.80.0.1`, ...), for its config.
    pub data_addr: String,
    /// State folder (fleet cache, lock).
    pub state: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
    /// The agent, while it runs.
    pub agent: Option<Process>,
}

/// The fleet.
#[derive(Debug)]
pub struct Fleet {
    /// The etcd cluster.
    pub etcd: Etcd,
    /// Management switch.
    pub mgmt: Switch,
    /// Data switch.
    pub data: Switch,
    /// Runs `vznet fleet`.
    pub admin: Host,
    /// On the data switch: 10.80.0.10/24.
    pub client: Host,
    /// The hosts.
    pub hosts: Vec<FleetHost>,
    tools: Tools,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// Builds the switches, `members` etcd members, `hosts` hosts (agents not
    /// started) and the admin and client hosts.
    pub fn new(lab: &Lab, members: usize, hosts: usize, tools: Tools) -> Result<Fleet> {
        ensure!(
            (1..=50).contains(&members) && hosts <= 80,
            "1-50 members, at most 80 hosts"
        );
        let mgmt = lab.switch("mgmt")?;
        let data = lab.switch("data")?;
        let admin = lab.host("admin")?;
        lab.link(&admin, "eth1", &mgmt, "padmin")?;
        admin.add_address("eth1", "10.81.0.2/24")?;
        let client = lab.host("client")?;
        lab.link(&client, "eth0", &data, "pclient")?;
        client.add_address("eth0", "10.80.0.10/24")?;
        let mut etcd_hosts = Vec::new();
        for i in 0..members {
            let h = lab.host(&format!("etcd{i}"))?;
            lab.link(&h, "eth1", &mgmt, &format!("pe{i}"))?;
            h.add_address("eth1", format!("10.81.0.{}/24", 11 + i))?;
            etcd_hosts.push((h, format!("10.81.0.{}", 11 + i)));
        }
        let dir = tempfile::tempdir()?;
        let mut fleet_hosts = Vec::new();
        for i in 0..hosts {
            let name = format!("h{i}");
            let h = lab.host(&name)?;
            lab.link(&h, "eth1", &mgmt, &format!("pm{i}"))?;
            h.add_address("eth1", format!("10.81.0.{}/24", 101 + i))?;
            lab.link(&h, "eth0", &data, &format!("pd{i}"))?;
            let state = dir.path().join(&name);
            std::fs::create_dir_all(&state)?;
            fleet_hosts.push(FleetHost {
                name,
                host: h,
                data_addr: format!("10.80.0.{}", 1 + i),
                socket: state.join("vznetd.sock"),
                state,
                agent: None,
            });
        }
        let pairs: Vec<(&Host, &str)> = etcd_hosts.iter().map(|(h, a)| (h, a.as_str())).collect();
        let etcd = Etcd::start(lab.prefix(), &pairs)?;
        Ok(Fleet {
            etcd,
            mgmt,
            data,
            admin,
            client,
            hosts: fleet_hosts,
            tools,
            _dir: dir,
        })
    }

    /// Starts host `i`'s vznetd (`extra` flags after the fleet ones) and waits
    /// for its control socket.
    pub fn start_agent(&mut self, i: usize, extra: &[&str]) -> Result<()> {
        let eps = self.etcd.endpoints();
        let h = &mut self.hosts[i];
        let mut argv = self.tools.vznetd.clone();
        argv.extend(
            [
                "--etcd",
                &eps,
                "--host",
                &h.name,
                "--state-dir",
                &h.state.display().to_string(),
                "--socket",
                &h.socket.display().to_string(),
                "--agent-config",
                &h.state.join("vznetd.toml").display().to_string(),
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        argv.extend(extra.iter().map(|s| s.to_string()));
        let _ = std::fs::remove_file(&h.socket);
        let p = h.host.spawn(argv)?;
        let socket = h.socket.clone();
        ensure!(
            wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
                std::os::unix::net::UnixStream::connect(&socket).is_ok()
            }),
            "vznetd of {} did not start: {}",
            h.name,
            p.stderr().unwrap_or_default()
        );
        h.agent = Some(p);
        Ok(())
    }

    /// Stops host `i`'s vznetd with SIGTERM (it revokes its status lease).
    pub fn stop_agent(&mut self, i: usize) -> Result<()> {
        if let Some(p) = self.hosts[i].agent.take() {
            p.terminate(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Runs `vznet fleet --etcd ... ARGS` in the admin host.
    pub fn fleet(&self, args: &[&str]) -> Result<Output> {
        let eps = self.etcd.endpoints();
        let mut argv: Vec<String> = self.tools.vznet.clone();
        argv.extend(["fleet", "--etcd", &eps, "--agent-config", "/nonexistent"].map(String::from));
        argv.extend(args.iter().map(|s| s.to_string()));
        self.admin.exec(argv).context("running vznet fleet")
    }

    /// Like [`Fleet::fleet`], failing unless it exits 0; returns stdout.
    pub fn fleet_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.fleet(args)?;
        ensure!(
            out.status.success(),
            "vznet fleet {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `vznet ARGS --socket SOCKET` in host `i` (its agent answers).
    pub fn vznet(&self, i: usize, args: &[&str]) -> Result<Output> {
        let h = &self.hosts[i];
        let mut argv: Vec<String> = self.tools.vznet.clone();
        argv.extend(args.iter().map(|s| s.to_string()));
        argv.extend(["--socket".to_string(), h.socket.display().to_string()]);
        h.host.exec(argv).context("running vznet")
    }

    /// `fleet status --json`, by host name.
    pub fn status(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        let out = self.fleet_ok(&["--json", "status"])?;
        let lines: Vec<serde_json::Value> = serde_json::from_str(&out)?;
        Ok(lines
            .into_iter()
            .filter_map(|l| Some((l["host"].as_str()?.to_string(), l)))
            .collect())
    }

    /// The revision host `i` runs, from its status in etcd (None: no status).
    pub fn applied(&self, i: usize) -> Option<i64> {
        let s = self.status().ok()?;
        s.get(&self.hosts[i].name)?["report"]["revision"].as_i64()
    }

    /// Waits until host `i` runs `revision` or later.
    pub fn wait_applied(&self, i: usize, revision: i64, timeout: Duration) -> Result<()> {
        let mut seen = None;
        let ok = wait_until(timeout, Duration::from_millis(50), || {
            seen = self.applied(i);
            seen.is_some_and(|r| r >= revision)
        });
        ensure!(
            ok,
            "{} does not run revision {revision} after {timeout:?} (runs {seen:?}): {}",
            self.hosts[i].name,
            self.hosts[i]
                .agent
                .as_ref()
                .and_then(|p| p.stderr().ok())
                .unwrap_or_default()
        );
        Ok(())
    }

    /// Writes a config folder (host.toml plus `(id, text)` VE files) for pushing.
    pub fn folder(&self, name: &str, host_toml: &str, ves: &[(u32, String)]) -> Result<PathBuf> {
        let dir = self._dir.path().join("push").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ve"))?;
        std::fs::write(dir.join("host.toml"), host_toml)?;
        for (id, text) in ves {
            std::fs::write(dir.join(format!("ve/{id}.toml")), text)?;
        }
        Ok(dir)
    }

    /// Pushes a folder to host `i`; returns the revision.
    pub fn push(&self, i: usize, dir: &std::path::Path) -> Result<i64> {
        let out = self.fleet_ok(&[
            "--json",
            "push",
            &dir.display().to_string(),
            "--host",
            &self.hosts[i].name,
        ])?;
        let v: serde_json::Value = serde_json::from_str(out.trim())?;
        v["revision"].as_i64().context("push without a revision")
    }

    /// Cuts host `i` off from etcd (its management link down); the data side
    /// stays.
    pub fn partition(&self, i: usize) -> Result<()> {
        self.hosts[i]
            .host
            .ip(["link", "set", "eth1", "down"])
            .map(drop)
    }

    /// Ends [`Fleet::partition`].
    pub fn heal(&self, i: usize) -> Result<()> {
        self.hosts[i]
            .host
            .ip(["link", "set", "eth1", "up"])
            .map(drop)
    }
}

/// A host.toml for the data switch: `br0` bridging `eth0` with the host's data
/// address, forwarding on, then `extra`.
pub fn host_toml(addr: &str, extra: &str) -> String {
    format!(
        "[sysctl]\n\"net.ipv4.ip_forward\" = 1\n\n[[bridge]]\nname = \"br0\"\nports = [\"eth0\"]\naddresses = [\"{addr}/24\"]\n{extra}"
    )
}

/// A [`host_toml`] whose VRRP instance (VIP 10.80.0.100) follows VE `id`: +50
/// while the VE's venet link is on this host, so the host that holds the VE is
/// the clients' gateway to it (clients route the VEs' subnet via the VIP).
pub fn gateway_toml(addr: &str, id: u32, extra: &str) -> String {
    host_toml(
        addr,
        &format!(
            r#"
[[vrrp]]
name = "VI_VE{id}"
interface = "br0"
vrid = 60
priority = 100
advert_interval_ms = 100
virtual_ips = ["10.80.0.100/24"]
track = [{{ interface = "venet{id}", weight = 50 }}]
{extra}"#
        ),
    )
}

/// A routed VE in namespace `netns` with one venet address.
pub fn routed_ve(id: u32, netns: &str, addr: &str) -> String {
    format!("id = {id}\nnetns = \"{netns}\"\n[venet]\naddresses = [\"{addr}\"]\n")
}

/// The longest run of lost replies in `ping` output (`icmp_seq=N` lines) of
/// `sent` requests.
pub fn longest_loss(ping_output: &str, sent: u64) -> u64 {
    let mut seqs: Vec<u64> = ping_output
        .lines()
        .filter_map(|l| {
            l.split("icmp_seq=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    let mut worst = 0;
    let mut prev = 0;
    for s in seqs.iter().copied().chain(std::iter::once(sent + 1)) {
        worst = worst.max(s.saturating_sub(prev + 1));
        prev = s;
    }
    worst
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_longest_loss_counts_missing_sequence_numbers_including_the_tail() {
        let out = "icmp_seq=1 \nicmp_seq=2 \nicmp_seq=6 \nicmp_seq=7 \n";
        assert_eq!(super::longest_loss(out, 7), 3);
        assert_eq!(super::longest_loss(out, 12), 5);
        assert_eq!(super::longest_loss("", 4), 4);
    }
}
