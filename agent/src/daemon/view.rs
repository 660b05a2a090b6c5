//! The agent's view of the kernel: the state of the host netns and of every VE netns
//! the config names, kept current from netlink events (one socket for all of them),
//! so that an event costs a plan against memory instead of a dump of every namespace.
//!
//! Reads happen only where the view may be wrong: a namespace that is new to it, one
//! whose events were lost (overrun) or whose routes may have gone silently (a link
//! went down or away), the sysctls of links that were made again; and everything at
//! start and at each periodic pass (the safety net).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::PathBuf;

use netcfg::apply::Engine;
use netcfg::desired::Desired;
use netcfg::kernel::events::{self, Batch, Delta, EventSocket, Stale};
use netcfg::model::netns_path;
use netcfg::op::NsName;
use netcfg::plan::Observed;
use netcfg::unit::interface_of_sysctl;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracked {
    inode: u64,
    nsid: Option<i32>,
}

/// The kernel as the agent knows it.
#[derive(Debug)]
pub struct KernelView {
    /// The state plans are made against.
    pub observed: Observed,
    namespaces: BTreeMap<String, Tracked>,
    by_nsid: HashMap<i32, String>,
    stale: BTreeSet<NsName>,
    stale_links: BTreeSet<String>,
    /// Namespaces with new link states whose references (a VLAN's lower link)
    /// are still ifindexes.
    unresolved: BTreeSet<NsName>,
    all_sysctls: bool,
    /// Events applied.
    pub events: u64,
}

impl KernelView {
    /// An empty view: everything is read before the first plan.
    pub fn new() -> KernelView {
        let mut v = KernelView {
            observed: Observed::default(),
            namespaces: BTreeMap::new(),
            by_nsid: HashMap::new(),
            stale: BTreeSet::new(),
            stale_links: BTreeSet::new(),
            unresolved: BTreeSet::new(),
            all_sysctls: true,
            events: 0,
        };
        v.stale.insert(None);
        v
    }

    /// Follows the VE namespaces of `desired`: new ones (or ones made again under
    /// the same name) are read before the next plan; ones that went are dropped
    /// (their VEs' links are then planned into an empty namespace and fail by name).
    pub fn track(&mut self, desired: &Desired) {
        let mut names: BTreeSet<&str> = desired.ve_ends.iter().map(|e| e.ns.as_str()).collect();
        names.extend(desired.routes.keys().flatten().map(String::as_str));
        self.namespaces.retain(|n, _| names.contains(n.as_str()));
        self.observed.ves.retain(|n, _| names.contains(n.as_str()));
        for name in names {
            let file = match std::fs::File::open(netns_path(name)) {
                Ok(f) => f,
                Err(_) => {
                    // Gone (`ip netns del`) or not there yet: nothing to read.
                    self.namespaces.remove(name);
                    self.observed.ves.remove(name);
                    continue;
                }
            };
            let inode = {
                use std::os::unix::fs::MetadataExt;
                file.metadata().map(|m| m.ino()).unwrap_or(0)
            };
            if self.namespaces.get(name).is_some_and(|t| t.inode == inode) {
                continue;
            }
            let nsid = match events::nsid(&file) {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(netns = name, error = %e, "no netns id: its events are not seen; the periodic read covers it");
                    None
                }
            };
            self.namespaces
                .insert(name.to_string(), Tracked { inode, nsid });
            self.stale.insert(Some(name.to_string()));
        }
        self.by_nsid = self
            .namespaces
            .iter()
            .filter_map(|(n, t)| t.nsid.map(|id| (id, n.clone())))
            .collect();
    }

    /// Everything is read again before the next plan.
    pub fn mark_all_stale(&mut self) {
        self.stale.insert(None);
        for n in self.namespaces.keys() {
            self.stale.insert(Some(n.clone()));
        }
        self.all_sysctls = true;
    }

    /// These namespaces are read again before the next plan.
    pub fn mark_stale(&mut self, namespaces: impl IntoIterator<Item = NsName>) {
        self.stale.extend(namespaces);
    }

    /// Applies events to the view; returns how many changes they carried.
    pub fn absorb(&mut self, batches: Vec<Batch>) -> usize {
        let mut n = 0;
        for batch in batches {
            let ns: NsName = match batch.nsid {
                None => None,
                Some(id) => match self.by_nsid.get(&id) {
                    Some(name) => Some(name.clone()),
                    // A netns the config does not name.
                    None => continue,
                },
            };
            for delta in &batch.deltas {
                n += 1;
                if let (None, Delta::Link(link)) = (&ns, delta) {
                    let known = self
                        .observed
                        .host
                        .link_by_index(link.index)
                        .is_some_and(|l| l.name == link.name);
                    if !known {
                        // A link made (again): its sysctls are the kernel's defaults.
                        self.stale_links.insert(link.name.clone());
                    }
                }
                if let Delta::Link(_) = delta {
                    self.unresolved.insert(ns.clone());
                }
                let state = match &ns {
                    None => Some(&mut self.observed.host),
                    Some(name) => self.observed.ves.get_mut(name),
                };
                let stale = match state {
                    Some(st) => st.apply(delta),
                    None => Stale::All,
                };
                match stale {
                    Stale::No => {}
                    Stale::Routes => {
                        self.stale.insert(ns.clone());
                    }
                    Stale::All if matches!(delta, Delta::Overrun) => self.mark_all_stale(),
                    Stale::All => {
                        self.stale.insert(ns.clone());
                    }
                }
            }
        }
        self.events += n as u64;
        n
    }

    /// Names the links that new link states refer to by ifindex.
    pub fn resolve(&mut self) {
        for ns in std::mem::take(&mut self.unresolved) {
            let state = match &ns {
                None => Some(&mut self.observed.host),
                Some(name) => self.observed.ves.get_mut(name),
            };
            if let Some(st) = state {
                st.resolve();
            }
        }
    }

    /// True when a plan needs reads first.
    pub fn is_stale(&self) -> bool {
        !self.stale.is_empty() || !self.stale_links.is_empty() || self.all_sysctls
    }

    /// Reads what is stale. Returns the namespaces that could not be read.
    pub fn refresh(
        &mut self,
        engine: &Engine,
        desired: &Desired,
        all_sysctls: bool,
    ) -> Vec<(NsName, io::Error)> {
        let which: Vec<NsName> = std::mem::take(&mut self.stale).into_iter().collect();
        let all = all_sysctls || std::mem::take(&mut self.all_sysctls);
        let links = std::mem::take(&mut self.stale_links);
        let paths: Vec<PathBuf> = desired
            .sysctls
            .iter()
            .map(|(p, _)| p)
            .filter(|p| all || interface_of_sysctl(p).is_some_and(|i| links.contains(i)))
            .cloned()
            .collect();
        let (fresh, failed) = engine.observe_some(&which, &paths);
        for ns in &which {
            match ns {
                None => {
                    if !failed.iter().any(|(f, _)| f.is_none()) {
                        self.observed.host = fresh.host.clone();
                    }
                }
                Some(name) => match fresh.ves.get(name) {
                    Some(st) => {
                        self.observed.ves.insert(name.clone(), st.clone());
                    }
                    None => {
                        self.observed.ves.remove(name);
                    }
                },
            }
        }
        if all {
            self.observed.sysctls = fresh.sysctls;
        } else {
            self.observed.sysctls.extend(fresh.sysctls);
        }
        for (ns, _) in &failed {
            self.stale.insert(ns.clone());
        }
        failed
    }

    /// Takes the state an apply verified against (fresh where it touched things).
    pub fn accept(&mut self, observed: Observed) {
        self.observed = observed;
    }
}

/// Subscribes to kernel events (the caller's netns and every netns with an id in it)
/// on a task of the current runtime that forwards them over a bounded channel: while
/// the engine is busy, events wait in the socket, and if it overruns the view is read
/// again.
pub fn subscribe() -> io::Result<mpsc::Receiver<Vec<Batch>>> {
    let socket = EventSocket::new()?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let batches = match socket.recv().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "reading kernel events");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    vec![Batch {
                        nsid: None,
                        deltas: vec![Delta::Overrun],
                    }]
                }
            };
            if tx.send(batches).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
