//! The VE runtime harness shared by the `ve*` tests: a config folder and a
//! state folder in a lab host, `vznet` run inside it, and every VE a test
//! started stopped again even when the test fails.

#![allow(dead_code)]

use std::process::Output;

use anyhow::{Context, Result};
use lab::Host;

use crate::common::{snapshot, ConfigDir, VZNET};

/// A config folder (host.toml with bridge br0) and a state folder, used by
/// `vznet` run in `host`.
pub struct Runtime<'a> {
    pub host: &'a Host,
    pub cfg: ConfigDir,
    pub state: tempfile::TempDir,
    pub started: std::cell::RefCell<Vec<u32>>,
}

impl Runtime<'_> {
    pub fn vznet(&self, args: &[&str]) -> Result<Output> {
        Ok(std::process::Command::new("ip")
            .args(["netns", "exec", self.host.name(), VZNET])
            .args(["--config-dir"])
            .arg(self.cfg.path())
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()?)
    }

    /// vznetd's socket for this runtime (only answers when a test starts one).
    pub fn socket(&self) -> std::path::PathBuf {
        self.state.path().join("vznetd.sock")
    }

    /// Runs vznet and returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> Result<(i32, String, String)> {
        let out = self.vznet(args)?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Creates VE `id` from the busybox template and appends `extra` to its file.
    pub fn create(&self, id: u32, extra: &str) -> Result<std::path::PathBuf> {
        self.ok(&["ve", "create", &id.to_string(), "--template", "busybox"])?;
        let file = self.cfg.path().join(format!("ve/{id}.toml"));
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, text + extra)?;
        Ok(file)
    }

    /// The host pid of a running VE's init, from `ve list --json`.
    pub fn pid(&self, id: u32) -> Result<u32> {
        let json: serde_json::Value = serde_json::from_str(&self.ok(&["ve", "list", "--json"])?)?;
        json.as_array()
            .and_then(|a| a.iter().find(|v| v["veid"] == id))
            .and_then(|v| v["pid"].as_u64())
            .map(|p| p as u32)
            .with_context(|| format!("VE {id} has no pid: {json}"))
    }

    /// Runs a command in VE `id`, failing unless it exits 0; returns stdout.
    pub fn exec(&self, id: u32, argv: &[&str]) -> Result<String> {
        let mut args = vec!["ve", "exec"];
        let ids = id.to_string();
        args.push(&ids);
        args.push("--");
        args.extend_from_slice(argv);
        self.ok(&args)
    }

    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.vznet(args)?;
        anyhow::ensure!(
            out.status.success(),
            "vznet {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn start(&self, id: u32) -> Result<String> {
        self.started.borrow_mut().push(id);
        self.ok(&["ve", "start", &id.to_string()])
    }
}

impl Drop for Runtime<'_> {
    /// VEs live in namespaces of their own, outside the lab's: stop every VE
    /// of this state folder even when the test fails.
    fn drop(&mut self) {
        let _ = self.vznet(&["ve", "stop", "--all", "--timeout", "2"]);
    }
}

pub fn runtime<'a>(host: &'a Host) -> Result<Runtime<'a>> {
    let cfg = ConfigDir::new()?;
    cfg.host("[[bridge]]\nname = \"br0\"\naddresses = [\"10.60.0.1/24\"]\n")?;
    Ok(Runtime {
        host,
        cfg,
        state: tempfile::tempdir()?,
        started: Default::default(),
    })
}

pub fn netif(n: u32, gateway: &str) -> String {
    format!("\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"10.60.0.{}/24\"]\ngateway = \"{gateway}\"\nsysctl = {{ proxy_arp = 1 }}\n", 10 + n)
}

/// IPv4 routes of every table, without the `linkdown` flag: the kernel updates
/// it from the bridge's carrier through linkwatch, up to a second late.
pub fn routes(host: &Host) -> Result<String> {
    Ok(host
        .ip(["-4", "route", "show", "table", "all"])?
        .replace(" linkdown", ""))
}

/// [`snapshot`] without route `linkdown` flags (see [`routes`]).
pub fn settled(host: &Host) -> Result<String> {
    Ok(snapshot(host)?.replace("\"linkdown\"", ""))
}

pub fn link_names(host: &Host) -> Result<Vec<String>> {
    let mut names: Vec<String> = host.links()?.into_iter().map(|l| l.name).collect();
    names.sort();
    Ok(names)
}

/// A VE with a netif on br0 (no gateway: venet addresses add a default route).
pub fn plain_netif(ip: &str) -> String {
    format!("\n# the VE's only netif\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"{ip}/24\"]\n")
}

/// ICMP echo requests a netns has received (`InEchos` of /proc/net/snmp, as
/// read by a process in that netns).
pub fn in_echos(snmp: &str) -> Result<u64> {
    let mut lines = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        anyhow::bail!("no Icmp lines in {snmp}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "InEchos")
        .and_then(|(_, v)| v.parse().ok())
        .context("no InEchos")
}

pub fn mac_netif(n: u32) -> String {
    format!(
        "\n[[netif]]\nname = \"eth0\"\nmac = \"02:00:00:00:00:{n:02x}\"\nbridge = \"br0\"\naddresses = [\"10.60.0.{n}/24\"]\n"
    )
}
