//! Shared by the end-to-end tests: a config folder and the vznet command run in a
//! lab host's netns.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result};
use lab::Host;

/// The vznet binary built for these tests.
pub const VZNET: &str = env!("CARGO_BIN_EXE_vznet-under-test");

/// The vznetd binary built for these tests.
pub const VZNETD: &str = env!("CARGO_BIN_EXE_vznetd-under-test");

/// Starts vznetd in `host` for `cfg` (state under `state`, control socket at
/// `socket`, then `extra` flags) and waits until its socket answers.
pub fn spawn_vznetd(
    host: &Host,
    cfg: &ConfigDir,
    state: &Path,
    socket: &Path,
    extra: &[&str],
) -> Result<lab::Process> {
    let mut argv = vec![
        VZNETD.to_string(),
        "--config-dir".into(),
        cfg.path().display().to_string(),
        "--state-dir".into(),
        state.display().to_string(),
        "--socket".into(),
        socket.display().to_string(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let p = host.spawn(argv)?;
    anyhow::ensure!(
        lab::wait_until(
            std::time::Duration::from_secs(20),
            std::time::Duration::from_millis(20),
            || std::os::unix::net::UnixStream::connect(socket).is_ok()
        ),
        "vznetd did not start: {}",
        p.stderr().unwrap_or_default()
    );
    Ok(p)
}

/// A config folder.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> Result<ConfigDir> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("ve"))?;
        Ok(ConfigDir { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn host(&self, toml: &str) -> Result<()> {
        Ok(std::fs::write(self.path().join("host.toml"), toml)?)
    }

    pub fn ve(&self, id: u32, toml: &str) -> Result<()> {
        Ok(std::fs::write(
            self.path().join(format!("ve/{id}.toml")),
            toml,
        )?)
    }
}

/// Runs `vznet ARGS --config-dir DIR` in `host`'s netns.
pub fn vznet(host: &Host, cfg: &ConfigDir, args: &[&str]) -> Result<Output> {
    let out = Command::new("ip")
        .args(["netns", "exec", host.name(), VZNET])
        .args(args)
        .arg("--config-dir")
        .arg(cfg.path())
        .output()
        .context("running vznet")?;
    Ok(out)
}

/// Like [`vznet`], failing unless it exits 0; returns stdout.
pub fn vznet_ok(host: &Host, cfg: &ConfigDir, args: &[&str]) -> Result<String> {
    let out = vznet(host, cfg, args)?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    anyhow::ensure!(
        out.status.success(),
        "vznet {args:?} failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// Everything a test compares before and after: links (without counters), addresses
/// and routes, as `ip -j` prints them.
pub fn snapshot(host: &Host) -> Result<String> {
    let mut links = host.ip_json(["-d", "link", "show"])?;
    if let Some(arr) = links.as_array_mut() {
        for l in arr.iter_mut() {
            if let Some(o) = l.as_object_mut() {
                // Counters, operational flags and offload limits (a bridge
                // recomputes them as ports come and go) move on their own.
                for k in [
                    "tso_max_size",
                    "tso_max_segs",
                    "gso_max_size",
                    "gso_max_segs",
                    "gro_max_size",
                    "gso_ipv4_max_size",
                    "gro_ipv4_max_size",
                    "stats64",
                    "operstate",
                    "linkinfo",
                    "flags",
                    "txqlen",
                    "promiscuity",
                    "allmulti",
                    "carrier_changes",
                    "carrier_up_count",
                    "carrier_down_count",
                ] {
                    o.remove(k);
                }
            }
        }
    }
    let mut addrs = host.ip_json(["addr", "show"])?;
    if let Some(arr) = addrs.as_array_mut() {
        for a in arr.iter_mut() {
            if let Some(o) = a.as_object_mut() {
                o.retain(|k, _| k == "ifname" || k == "addr_info");
                if let Some(infos) = o.get_mut("addr_info").and_then(|v| v.as_array_mut()) {
                    for i in infos.iter_mut() {
                        if let Some(io) = i.as_object_mut() {
                            io.retain(|k, _| k == "local" || k == "prefixlen");
                        }
                    }
                    // Re-added addresses come back in another order; the order of
                    // addresses in different subnets means nothing.
                    infos.sort_by_key(|i| i.to_string());
                }
            }
        }
    }
    let mut routes = host.ip_json(["route", "show", "table", "all"])?;
    if let Some(arr) = routes.as_array_mut() {
        // The kernel's local route for an IPv6 link-local address comes and goes
        // with duplicate address detection on its own.
        arr.retain(|r| {
            !(r["table"] == "local" && r["dst"].as_str().is_some_and(|d| d.starts_with("fe80:")))
        });
    }
    Ok(format!("{links}\n{addrs}\n{routes}"))
}

/// The value of a sysctl in `host`'s netns.
pub fn sysctl(host: &Host, key: &str) -> Result<String> {
    Ok(host
        .run(["cat", &format!("/proc/sys/{}", key)])?
        .trim()
        .to_string())
}

/// A `host.toml` for a host that forwards IPv4 and IPv6, with its addresses
/// (192.168.NET.1/24 and fdNET::1/64) on bridge br0, whose one port is `lan0`
/// (a bridge without ports has no carrier, and IPv6 addresses there stay
/// tentative). See [`lan_peer`].
pub fn forwarding_host(net: u8) -> String {
    format!(
        r#"
[sysctl]
"net.ipv4.ip_forward" = 1
"net.ipv6.conf.all.forwarding" = 1

[[bridge]]
name = "br0"
ports = ["lan0"]
addresses = ["192.168.{net}.1/24", "fd{net}::1/64"]
"#
    )
}

/// A LAN host behind `host`'s `lan0` (its eth0), for [`forwarding_host`].
pub fn lan_peer(lab: &lab::Lab, host: &Host) -> Result<Host> {
    let lan = lab.host("lan")?;
    lab.link(host, "lan0", &lan, "eth0")?;
    Ok(lan)
}
