//! The lab: one test's topology, and its teardown.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};

use anyhow::{anyhow, bail, Context, Result};

use crate::command;
use crate::host::{Endpoint, Host, Switch};
use crate::link;
use crate::marker;
use crate::name::{self, IFNAME_MAX, IFNAME_SUFFIX_MAX};
use crate::netns;
use crate::process::ProcessTable;
use crate::sweep::{self, SweepReport};

/// Sweeps once per process, on the first `Lab::new`: enough to clear a crashed run's
/// leftovers without every lab rescanning every marker.
static SWEEP_ONCE: Once = Once::new();

/// Where a lab keeps the output of the processes it spawned.
pub(crate) fn log_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join("vznet-lab").join(prefix)
}

/// One test's topology: hosts and switches (network namespaces) joined by veth links.
///
/// Every name the lab makes carries its prefix (see [`Lab::prefix`]), unique across the
/// parallel processes of a test run. Dropping the lab tears everything down: it kills the
/// processes it spawned, deletes the root-namespace links it made or adopted, then deletes
/// its namespaces (killing anything still inside). Teardown carries on past failures,
/// printing each to stderr; [`Lab::close`] does the same but returns them.
///
/// Teardown runs on drop, so it runs when a test panics as long as panics unwind: tests
/// must not be built with `panic = "abort"`. If the process dies without unwinding
/// (SIGKILL, abort), a later [`Lab::sweep_stale`] removes what it left.
///
/// `Lab` is `Send + Sync`: hosts may be built from several threads.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    test_name: String,
    processes: Arc<ProcessTable>,
    namespaces: Mutex<Vec<String>>,
    root_links: Mutex<Vec<String>>,
    closed: bool,
}

/// A registry, even if a panicking thread poisoned it: teardown must still run.
fn lock(names: &Mutex<Vec<String>>) -> MutexGuard<'_, Vec<String>> {
    names.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lab {
    /// Starts an empty lab for `test_name` (recorded for humans reading leftovers).
    ///
    /// Reserves a fresh prefix by creating `/run/vznet-lab/<prefix>.pid` exclusively, so
    /// prefixes are unique across processes. The first lab of a process also sweeps the
    /// leftovers of dead processes (see [`Lab::sweep_stale`]); a failed sweep is only
    /// reported on stderr. Needs root.
    pub fn new(test_name: &str) -> Result<Lab> {
        SWEEP_ONCE.call_once(|| {
            if let Err(e) = sweep::sweep_stale() {
                eprintln!("lab: sweeping stale labs: {e:#}");
            }
        });
        let prefix = marker::reserve(test_name)
            .with_context(|| format!("starting a lab for {test_name:?}"))?;
        let processes = Arc::new(ProcessTable::new(log_dir(&prefix)));
        Ok(Lab {
            prefix,
            test_name: test_name.to_owned(),
            processes,
            namespaces: Mutex::new(Vec::new()),
            root_links: Mutex::new(Vec::new()),
            closed: false,
        })
    }

    /// The lab's unique prefix: `vz` and six base-36 characters, e.g. `vz0k3x9a`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The test name given to [`Lab::new`].
    pub fn test_name(&self) -> &str {
        &self.test_name
    }

    /// A root-namespace interface name unique to this lab: the prefix followed by `suffix`.
    ///
    /// Linux caps interface names at 15 bytes and the prefix takes 8, so `suffix` may be at
    /// most 7 bytes (e.g. `ifname("br104")` gives `vz0k3x9abr104`); longer is an error.
    /// Use these names for every interface a test creates in the root namespace.
    pub fn ifname(&self, suffix: &str) -> Result<String> {
        if suffix.is_empty() {
            bail!("interface suffix is empty");
        }
        if suffix.len() > IFNAME_SUFFIX_MAX {
            bail!(
                "interface suffix {suffix:?} is {} bytes: after the lab prefix {} the name would \
                 be {} bytes, but Linux allows {IFNAME_MAX}, so suffixes may be at most \
                 {IFNAME_SUFFIX_MAX}",
                suffix.len(),
                self.prefix,
                self.prefix.len() + suffix.len()
            );
        }
        let name = format!("{}{suffix}", self.prefix);
        name::check_ifname(&name)?;
        Ok(name)
    }

    /// A new host: namespace `<prefix>-<name>` with `lo` up.
    ///
    /// `name` is ASCII letters, digits, `-`, `_` or `.`; reusing a name is an error.
    pub fn host(&self, name: &str) -> Result<Host> {
        name::check_host_name(name)?;
        let ns = format!("{}-{name}", self.prefix);
        netns::add(&ns).with_context(|| format!("creating host {name}"))?;
        lock(&self.namespaces).push(ns.clone());
        let host = Host::new(ns, Arc::clone(&self.processes));
        host.ip(["link", "set", "dev", "lo", "up"])
            .with_context(|| format!("bringing up lo in {host}"))?;
        Ok(host)
    }

    /// A new switch: a host (namespace `<prefix>-<name>`) holding bridge `br0`, up, with
    /// STP and multicast snooping off.
    pub fn switch(&self, name: &str) -> Result<Switch> {
        let host = self.host(name)?;
        host.ip([
            "link",
            "add",
            "name",
            Switch::BRIDGE,
            "up",
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])
        .with_context(|| format!("creating the bridge of switch {name}"))?;
        Ok(Switch::new(host))
    }

    /// Joins `a` and `b` with a veth pair named `a_if` at `a` and `b_if` at `b`, and brings
    /// both ends up. An end in a [`Switch`] is enslaved to its bridge.
    ///
    /// Ends are `&Host`, `&Switch` or [`crate::Root`] (the namespace the test runs in). A
    /// root end must be named with [`Lab::ifname`], so it is unique across parallel tests;
    /// the lab deletes it on drop. Both ends may be in the same namespace if their names
    /// differ. The pair is created directly in its namespaces, never passing through root.
    pub fn link<'a, 'b>(
        &self,
        a: impl Into<Endpoint<'a>>,
        a_if: &str,
        b: impl Into<Endpoint<'b>>,
        b_if: &str,
    ) -> Result<()> {
        let (a, b): (Endpoint<'_>, Endpoint<'_>) = (a.into(), b.into());
        let ends = [(a, a_if), (b, b_if)];
        for (end, ifname) in ends {
            name::check_ifname(ifname)?;
            if end.netns().is_none() {
                self.check_root_name(ifname)?;
            }
        }
        if a.netns() == b.netns() && a_if == b_if {
            bail!("both ends of a link in {} are named {a_if}", a.describe());
        }
        let what = || {
            format!(
                "linking {a_if} in {} to {b_if} in {}",
                a.describe(),
                b.describe()
            )
        };

        let mut add = vec!["link", "add", "name", a_if];
        add.extend(a.netns().map(|ns| ["netns", ns]).into_iter().flatten());
        add.extend(["type", "veth", "peer", "name", b_if]);
        add.extend(b.netns().map(|ns| ["netns", ns]).into_iter().flatten());
        command::ip(add).with_context(what)?;
        for (end, ifname) in ends {
            if end.netns().is_none() {
                lock(&self.root_links).push(ifname.to_owned());
            }
        }

        for (end, ifname) in ends {
            let mut set: Vec<&str> = end
                .netns()
                .map(|ns| ["-n", ns])
                .into_iter()
                .flatten()
                .collect();
            set.extend(["link", "set", "dev", ifname]);
            set.extend(end.bridge().map(|br| ["master", br]).into_iter().flatten());
            set.push("up");
            command::ip(set).with_context(what)?;
        }
        Ok(())
    }

    /// Registers root-namespace interface `name` (from [`Lab::ifname`]) for deletion on
    /// drop: for interfaces the code under test creates, such as a bridge a config names.
    pub fn adopt_root_link(&self, name: &str) -> Result<()> {
        name::check_ifname(name)?;
        self.check_root_name(name)?;
        lock(&self.root_links).push(name.to_owned());
        Ok(())
    }

    fn check_root_name(&self, ifname: &str) -> Result<()> {
        if ifname.starts_with(&self.prefix) {
            Ok(())
        } else {
            bail!(
                "root-namespace interface {ifname:?} does not start with the lab prefix {}: \
                 name it with Lab::ifname so parallel tests cannot collide",
                self.prefix
            )
        }
    }

    /// Deletes what labs of *dead* processes left behind: their namespaces (killing any
    /// process inside), root-namespace links, logs and markers.
    ///
    /// A lab is dead when the pid in its marker no longer runs, or now belongs to a process
    /// with another start time. Live labs, in this process or others, are never touched.
    /// Sweeps are serialised by a lock file. Errors come after every stale lab was tried.
    pub fn sweep_stale() -> Result<SweepReport> {
        sweep::sweep_stale()
    }

    /// Tears the lab down now and reports every step that failed (drop only prints them).
    pub fn close(mut self) -> Result<()> {
        let errors = self.teardown();
        if errors.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
        Err(anyhow!(
            "tearing down lab {} ({}): {}",
            self.prefix,
            self.test_name,
            lines.join("; ")
        ))
    }

    /// Undoes everything, carrying on past failures; idempotent.
    fn teardown(&mut self) -> Vec<anyhow::Error> {
        if std::mem::replace(&mut self.closed, true) {
            return Vec::new();
        }
        if std::thread::panicking() {
            self.processes.print_log_tails();
        }
        let mut errors = self.processes.kill_all();
        // Root links first: deleting them is synchronous, whereas a veth whose peer sits in a
        // deleted namespace only goes when the kernel gets round to freeing that namespace.
        for name in std::mem::take(&mut *lock(&self.root_links)) {
            if let Err(e) = link::delete_root(&name) {
                errors.push(e.context(format!("deleting root-namespace link {name}")));
            }
        }
        for ns in std::mem::take(&mut *lock(&self.namespaces)).iter().rev() {
            if let Err(e) = netns::delete(ns) {
                errors.push(e.context(format!("deleting namespace {ns}")));
            }
        }
        if let Err(e) = self.processes.remove_logs() {
            errors.push(e);
        }
        if errors.is_empty() {
            if let Err(e) = marker::remove(&self.prefix) {
                errors.push(e);
            }
        } else {
            // The marker lets a sweep retry once this process has exited.
            eprintln!(
                "lab {}: keeping {} for a later sweep",
                self.prefix,
                marker::path(&self.prefix).display()
            );
        }
        errors
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("lab {} ({}): teardown: {e:#}", self.prefix, self.test_name);
        }
    }
}
