//! The soak's world: a host running vznetd with a bridge, bridged VEs, a routed
//! VE, a VRRP instance and a load-balanced virtual server; a peer running a second
//! vznetd with the same VRRP instance; an observer on the LAN; all in namespaces of
//! one lab.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lab::{Host, Lab, Process};

/// The VRID of the instance both agents run.
pub const VRID: u8 = 62;
/// Advert interval of that instance.
pub const ADVERT_MS: u64 = 100;
/// The host's VRRP priority when it should be master, and when it should not;
/// the peer's sits between.
pub const PRIORITY_HIGH: u32 = 150;
pub const PRIORITY_LOW: u32 = 50;
const PRIORITY_PEER: u32 = 100;
/// First bridged VE id; the routed VE's id.
pub const FIRST_VE: u32 = 3000;
pub const VENET_VE: u32 = 3900;
/// The bridged VEs that serve the virtual server (never deleted by the churn:
/// a process inside a netns keeps it alive after `ip netns del`).
pub const BACKENDS: u32 = 2;
/// The bridged VE whose address the valid reloads move.
const BACKEND_PORT: u16 = 8080;

/// What the config says now (the churn changes it).
#[derive(Debug, Clone)]
pub struct Wanted {
    /// The host's VRRP priority.
    pub priority: u32,
    /// Whether the last bridged VE carries its second address.
    pub moved: bool,
}

/// Everything the soak runs in.
pub struct World {
    pub lab: Lab,
    pub host: Host,
    pub peer: Host,
    pub observer: Host,
    /// The bridged VEs, by index (id = FIRST_VE + index).
    pub ves: Vec<Host>,
    pub venet: Host,
    scratch: tempfile::TempDir,
}

impl World {
    /// Builds the namespaces and writes both agents' configs.
    pub fn build(ves: u32, wanted: &Wanted) -> Result<World> {
        let lab = Lab::new("soak")?;
        let sw = lab.switch("sw")?;
        let host = lab.host("host")?;
        let peer = lab.host("peer")?;
        let observer = lab.host("obs")?;
        lab.link(&host, "up0", &sw, "p1")?;
        lab.link(&peer, "eth0", &sw, "p2")?;
        lab.link(&observer, "eth0", &sw, "p3")?;
        peer.add_address("eth0", "10.61.0.2/16")?;
        observer.add_address("eth0", "10.61.0.3/16")?;
        let mut hosts = Vec::new();
        for i in 0..ves {
            hosts.push(lab.host(&format!("ve{i}"))?);
        }
        let venet = lab.host("venet")?;
        let scratch = tempfile::tempdir()?;
        let world = World {
            lab,
            host,
            peer,
            observer,
            ves: hosts,
            venet,
            scratch,
        };
        std::fs::create_dir_all(world.config_dir().join("ve"))?;
        std::fs::create_dir_all(world.peer_dir().join("ve"))?;
        for i in 0..ves {
            world.write_ve(i, wanted)?;
        }
        std::fs::write(
            world.config_dir().join(format!("ve/{VENET_VE}.toml")),
            format!(
                "id = {VENET_VE}\nnetns = \"{}\"\n[venet]\naddresses = [\"10.62.0.5\"]\n",
                world.venet.name()
            ),
        )?;
        world.write_host(wanted)?;
        std::fs::write(
            world.peer_dir().join("host.toml"),
            vrrp_table("eth0", PRIORITY_PEER),
        )?;
        Ok(world)
    }

    /// The host agent's config folder.
    pub fn config_dir(&self) -> PathBuf {
        self.scratch.path().join("host/cfg")
    }

    /// The host agent's state folder.
    pub fn state_dir(&self) -> PathBuf {
        self.scratch.path().join("host/state")
    }

    /// The host agent's socket.
    pub fn socket(&self) -> PathBuf {
        self.scratch.path().join("host/vznetd.sock")
    }

    /// The peer agent's config folder.
    pub fn peer_dir(&self) -> PathBuf {
        self.scratch.path().join("peer/cfg")
    }

    /// The peer agent's socket.
    pub fn peer_socket(&self) -> PathBuf {
        self.scratch.path().join("peer/vznetd.sock")
    }

    /// Starts the host's vznetd.
    pub fn start_host_agent(&self) -> Result<Process> {
        start_agent(
            &self.host,
            &self.config_dir(),
            &self.state_dir(),
            &self.socket(),
        )
    }

    /// Starts the peer's vznetd.
    pub fn start_peer_agent(&self) -> Result<Process> {
        start_agent(
            &self.peer,
            &self.peer_dir(),
            &self.scratch.path().join("peer/state"),
            &self.peer_socket(),
        )
    }

    /// Starts backend `i`'s server inside its VE.
    pub fn start_backend(&self, i: u32) -> Result<Process> {
        let me = std::env::current_exe().context("finding the lab binary")?;
        // Until it binds: its VE's address may be away for a moment (the churn
        // deletes VE links), and a backend that failed to start is not "up".
        let serve = format!(
            "until '{}' backend b{i} {}:{BACKEND_PORT}; do sleep 0.1; done",
            me.display(),
            ve_address(i, false)
        );
        self.ves[i as usize].spawn(["sh", "-c", &serve])
    }

    /// Writes host.toml for `wanted`.
    pub fn write_host(&self, wanted: &Wanted) -> Result<()> {
        std::fs::write(self.config_dir().join("host.toml"), host_toml(wanted))?;
        Ok(())
    }

    /// Writes a host.toml that is invalid (a priority that is not a number) and
    /// would otherwise move the bridge's address: applying any of it shows.
    pub fn write_invalid_host(&self, wanted: &Wanted) -> Result<()> {
        let text = host_toml(wanted)
            .replace(BRIDGE_CIDR, "10.61.0.9/16")
            .replace(
                &format!("priority = {}", wanted.priority),
                "priority = \"high\"",
            );
        std::fs::write(self.config_dir().join("host.toml"), text)?;
        Ok(())
    }

    /// Writes bridged VE `i`'s file.
    pub fn write_ve(&self, i: u32, wanted: &Wanted) -> Result<()> {
        let id = FIRST_VE + i;
        let moved = wanted.moved && i + 1 == self.ves.len() as u32;
        std::fs::write(
            self.config_dir().join(format!("ve/{id}.toml")),
            format!(
                "id = {id}\nnetns = \"{}\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"{}/16\"]\ngateway = \"10.61.0.1\"\n",
                self.ves[i as usize].name(),
                ve_address(i, moved)
            ),
        )?;
        Ok(())
    }

    /// The last bridged VE's index (the one reloads move).
    pub fn moving_ve(&self) -> u32 {
        self.ves.len() as u32 - 1
    }
}

/// The bridge's address.
pub const BRIDGE_CIDR: &str = "10.61.0.1/16";

/// Bridged VE `i`'s address (its second one when `moved`).
pub fn ve_address(i: u32, moved: bool) -> String {
    let base = if moved { 200 } else { 10 };
    format!("10.61.1.{}", base + i)
}

fn host_toml(wanted: &Wanted) -> String {
    let backends: Vec<String> = (0..BACKENDS)
        .map(|i| format!("{{ ve = {}, port = {BACKEND_PORT} }}", FIRST_VE + i))
        .collect();
    format!(
        r#"[sysctl]
"net.ipv4.ip_forward" = 1

[[bridge]]
name = "br0"
ports = ["up0"]
addresses = ["{BRIDGE_CIDR}"]

{vrrp}
[[virtual_server]]
name = "web"
vip = "10.61.0.100"
port = {BACKEND_PORT}
protocol = "tcp"
check = {{ kind = "http", path = "/", interval_ms = 300, timeout_ms = 250, fall = 2, rise = 2 }}
backends = [ {backends} ]
"#,
        vrrp = vrrp_table("br0", wanted.priority),
        backends = backends.join(", ")
    )
}

fn vrrp_table(interface: &str, priority: u32) -> String {
    format!(
        "[[vrrp]]\nname = \"VI_soak\"\ninterface = \"{interface}\"\nvrid = {VRID}\npriority = {priority}\nversion = 3\nadvert_interval_ms = {ADVERT_MS}\nvirtual_ips = [\"10.61.0.100/16\"]\n"
    )
}

/// Starts this binary as vznetd (the agent users run) in `host`.
fn start_agent(host: &Host, cfg: &Path, state: &Path, socket: &Path) -> Result<Process> {
    let me = std::env::current_exe().context("finding the lab binary")?;
    let agent = host.spawn([
        me.display().to_string(),
        "vznetd".into(),
        "--config-dir".into(),
        cfg.display().to_string(),
        "--state-dir".into(),
        state.display().to_string(),
        "--socket".into(),
        socket.display().to_string(),
    ])?;
    anyhow::ensure!(
        lab::wait_until(
            std::time::Duration::from_secs(30),
            std::time::Duration::from_millis(20),
            || std::os::unix::net::UnixStream::connect(socket).is_ok()
        ),
        "vznetd did not start in {host}: {}",
        agent.stderr().unwrap_or_default()
    );
    Ok(agent)
}
