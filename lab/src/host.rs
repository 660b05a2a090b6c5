//! Hosts and switches: the namespaces a lab builds, and the ends a veth link can join.

use std::ffi::{OsStr, OsString};
use std::fmt::{self, Display};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::address::{self, Address};
use crate::command;
use crate::link::{self, LinkInfo};
use crate::netns;
use crate::process::{Process, ProcessTable};

/// Attempts [`Host::ping`] makes before giving up.
const PING_ATTEMPTS: usize = 3;

/// Pause between ping attempts, so an instant failure (no route yet) is not retried at once.
const PING_PAUSE: Duration = Duration::from_millis(100);

/// A lab host: a named network namespace with `lo` up, made by [`crate::Lab::host`].
///
/// Cheap to clone; every clone names the same namespace. The namespace belongs to the lab:
/// once the [`crate::Lab`] is dropped, every method fails (or `ping` returns false).
#[derive(Debug, Clone)]
pub struct Host {
    ns: String,
    processes: Arc<ProcessTable>,
}

impl Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ns)
    }
}

fn collect_args<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter().map(|a| a.as_ref().to_owned()).collect()
}

impl Host {
    pub(crate) fn new(ns: String, processes: Arc<ProcessTable>) -> Self {
        Host { ns, processes }
    }

    /// The namespace name, `<prefix>-<name>` (what `ip netns` lists).
    pub fn name(&self) -> &str {
        &self.ns
    }

    /// The namespace's bind mount, `/run/netns/<name>`, for `setns(2)` or `nsenter --net=`.
    pub fn netns_path(&self) -> PathBuf {
        netns::path(&self.ns)
    }

    fn exec_command(&self, argv: Vec<OsString>) -> Result<Command> {
        if argv.is_empty() {
            bail!("no command given to run in {}", self.ns);
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).args(argv);
        Ok(cmd)
    }

    /// Runs `argv` inside the host (`ip netns exec NS argv...`) and returns its output,
    /// whatever its exit status. Fails only if the command cannot be started.
    pub fn exec<I, S>(&self, argv: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        command::output(&mut self.exec_command(collect_args(argv))?)
    }

    /// Runs `argv` inside the host and returns its stdout (lossily decoded).
    ///
    /// A non-zero exit is an error: a [`crate::CommandError`] naming the command, its status and
    /// its stderr.
    pub fn run<I, S>(&self, argv: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = command::checked(&mut self.exec_command(collect_args(argv))?)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `argv` in the background inside the host, in its own process group.
    ///
    /// The lab kills it (and its descendants) when dropped; see [`Process`].
    pub fn spawn<I, S>(&self, argv: I) -> Result<Process>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.processes.spawn(&self.ns, collect_args(argv))
    }

    /// Whether `addr` (IPv4 or IPv6, e.g. `"10.0.0.2"`, `"fd00::2"` or `"fe80::1%eth0"`)
    /// answers a ping from this host: up to three single pings with a one-second timeout.
    pub fn ping(&self, addr: impl Display) -> bool {
        let addr = addr.to_string();
        for attempt in 0..PING_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(PING_PAUSE);
            }
            let replied = self
                .exec(["ping", "-n", "-q", "-c", "1", "-W", "1", &addr])
                .is_ok_and(|out| out.status.success());
            if replied {
                return true;
            }
        }
        false
    }

    /// Waits until no IPv6 address in the host is tentative (duplicate address
    /// detection done, about a second after an address or link appears); false
    /// if some still are after `timeout`.
    pub fn wait_dad(&self, timeout: Duration) -> bool {
        crate::wait_until(timeout, Duration::from_millis(50), || {
            self.ip(["-6", "addr", "show", "tentative"])
                .is_ok_and(|out| out.trim().is_empty())
        })
    }

    /// Runs `ip ARGS` inside the host and returns its stdout; non-zero exit is an error.
    pub fn ip<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        command::ip(
            [OsStr::new("-n"), OsStr::new(&self.ns)]
                .into_iter()
                .map(OsStr::to_owned)
                .chain(collect_args(args)),
        )
    }

    /// Runs `ip -j ARGS` inside the host and parses its JSON; empty output (which some
    /// `ip` commands print when there is nothing to show) is an empty array.
    pub fn ip_json<I, S>(&self, args: I) -> Result<Value>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = collect_args(args);
        let out = self.ip(std::iter::once(OsString::from("-j")).chain(args.iter().cloned()))?;
        if out.trim().is_empty() {
            return Ok(Value::Array(Vec::new()));
        }
        serde_json::from_str(&out).with_context(|| {
            format!(
                "`ip -n {} -j {}` printed invalid JSON",
                self.ns,
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
    }

    /// Every interface in the host (`ip -d -j link show`).
    pub fn links(&self) -> Result<Vec<LinkInfo>> {
        link::parse_links(self.ip_json(["-d", "link", "show"])?)
            .with_context(|| format!("listing links in {}", self.ns))
    }

    /// One interface of the host; an error if it does not exist.
    pub fn link(&self, ifname: &str) -> Result<LinkInfo> {
        let links = link::parse_links(self.ip_json(["-d", "link", "show", "dev", ifname])?)?;
        links
            .into_iter()
            .next()
            .with_context(|| format!("no interface {ifname} in {}", self.ns))
    }

    /// The addresses on `ifname` (`ip -j addr show dev IFNAME`).
    pub fn addresses(&self, ifname: &str) -> Result<Vec<Address>> {
        address::parse_addresses(self.ip_json(["addr", "show", "dev", ifname])?)
            .with_context(|| format!("listing addresses of {ifname} in {}", self.ns))
    }

    /// Adds `cidr` (e.g. `"10.0.0.1/24"` or `"fd00::1/64"`) to `ifname`.
    ///
    /// IPv6 addresses are added with `nodad` so they are usable at once: the lab's links
    /// are private, and duplicate detection would only add a second of flakiness.
    pub fn add_address(&self, ifname: &str, cidr: impl Display) -> Result<()> {
        let cidr = cidr.to_string();
        let mut args = vec!["addr", "add", &cidr, "dev", ifname];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(args).map(drop)
    }
}

/// A lab switch: a namespace holding a bridge named `br0`, up, made by [`crate::Lab::switch`].
///
/// Links to a switch are enslaved to its bridge. The bridge runs no STP and no multicast
/// snooping, so it floods like a dumb switch from the first packet (VRRP adverts included).
#[derive(Debug, Clone)]
pub struct Switch {
    host: Host,
}

impl Switch {
    /// The bridge inside every switch namespace.
    pub const BRIDGE: &'static str = "br0";

    pub(crate) fn new(host: Host) -> Self {
        Switch { host }
    }

    /// The namespace name, `<prefix>-<name>`.
    pub fn name(&self) -> &str {
        self.host.name()
    }

    /// The bridge's name, [`Switch::BRIDGE`].
    pub fn bridge(&self) -> &str {
        Self::BRIDGE
    }

    /// The switch's namespace as a host, to run commands in it (e.g. `bridge fdb show`).
    pub fn host(&self) -> &Host {
        &self.host
    }
}

/// The root (current) namespace as one end of [`crate::Lab::link`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Root;

/// Where one end of a [`crate::Lab::link`] goes. Built from `&Host`, `&Switch` or [`Root`].
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    /// Into a host's namespace.
    Host(&'a Host),
    /// Into a switch's namespace, enslaved to its bridge.
    Switch(&'a Switch),
    /// Into the namespace the test runs in. The interface name must come from
    /// [`crate::Lab::ifname`], so it is unique and deleted with the lab.
    Root,
}

impl Endpoint<'_> {
    /// The namespace this end goes into, `None` for the root namespace.
    pub(crate) fn netns(&self) -> Option<&str> {
        match self {
            Endpoint::Host(h) => Some(h.name()),
            Endpoint::Switch(s) => Some(s.name()),
            Endpoint::Root => None,
        }
    }

    /// The bridge this end is enslaved to, if it goes into a switch.
    pub(crate) fn bridge(&self) -> Option<&str> {
        match self {
            Endpoint::Switch(s) => Some(s.bridge()),
            _ => None,
        }
    }

    /// A name for error messages.
    pub(crate) fn describe(&self) -> &str {
        self.netns().unwrap_or("the root namespace")
    }
}

impl<'a> From<&'a Host> for Endpoint<'a> {
    fn from(host: &'a Host) -> Self {
        Endpoint::Host(host)
    }
}

impl<'a> From<&'a Switch> for Endpoint<'a> {
    fn from(switch: &'a Switch) -> Self {
        Endpoint::Switch(switch)
    }
}

impl From<Root> for Endpoint<'_> {
    fn from(_: Root) -> Self {
        Endpoint::Root
    }
}
