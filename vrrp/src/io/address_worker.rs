//! What a Master holds in the kernel (filter entries, addresses, routes, rules) and its
//! announcements, changed on a task of its own, one job after the other: the protocol
//! never waits for netlink or nftables (with a thousand instances changing state at
//! once, the kernel's answers queue up for seconds, and an instance waiting for them
//! would miss its own adverts).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::accept_filter::AcceptFilter;
use super::gratuitous::Announcer;
use super::virtual_address::VirtualAddressSet;
use super::virtual_mac::VirtualMacLink;
use super::virtual_route::VirtualRouteSet;
use super::Error;

/// What the [`AddressWorker`] does, in the order asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressJob {
    /// Take the addresses, routes and rules (Accept_Mode off: filter first).
    Add,
    /// Give them back, then take the virtual MAC interface (if any) down.
    Remove,
    /// Announce the addresses, each this many times.
    Announce(u32),
}

/// Counters the worker keeps for the instance's status.
#[derive(Debug, Default)]
pub struct AddressCounters {
    pub announcements_sent: AtomicU64,
    pub errors: AtomicU64,
}

/// Everything the worker changes for one instance.
#[derive(Debug)]
pub struct Holdings {
    pub addresses: VirtualAddressSet,
    pub routes: VirtualRouteSet,
    /// Set when Accept_Mode is off: traffic to these addresses is dropped while held.
    pub filter: Option<(AcceptFilter, Vec<IpAddr>)>,
    /// Where to announce which addresses.
    pub announcers: Vec<(Announcer, Vec<IpAddr>)>,
    pub vmac: Option<Arc<VirtualMacLink>>,
}

/// The task that carries out [`AddressJob`]s.
#[derive(Debug)]
pub struct AddressWorker {
    jobs: tokio::sync::mpsc::UnboundedSender<AddressJob>,
    task: tokio::task::JoinHandle<()>,
    pub counters: Arc<AddressCounters>,
}

impl AddressWorker {
    pub fn spawn(instance: String, holdings: Holdings) -> AddressWorker {
        let counters = Arc::new(AddressCounters::default());
        let c = counters.clone();
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let fail = |what: &str, errors: Vec<Error>| {
                for e in errors {
                    c.errors.fetch_add(1, Relaxed);
                    tracing::error!(instance = %instance, error = %e, "{what} failed");
                }
            };
            while let Some(job) = rx.recv().await {
                match job {
                    AddressJob::Add => {
                        if let Some((filter, addrs)) = &holdings.filter {
                            let r = filter.drop_traffic_to(addrs.clone()).await;
                            fail(
                                "filtering traffic to the virtual addresses",
                                r.err().into_iter().collect(),
                            );
                        }
                        fail("adding virtual address", holdings.addresses.add_all().await);
                        fail(
                            "adding virtual route or rule",
                            holdings.routes.add_all().await,
                        );
                        tracing::debug!(instance = %instance, "virtual addresses added");
                    }
                    AddressJob::Remove => {
                        fail(
                            "removing virtual route or rule",
                            holdings.routes.remove_all().await,
                        );
                        fail(
                            "removing virtual address",
                            holdings.addresses.remove_all().await,
                        );
                        if let Some((filter, addrs)) = &holdings.filter {
                            let r = filter.accept_traffic_to(addrs.clone()).await;
                            fail(
                                "unfiltering the virtual addresses",
                                r.err().into_iter().collect(),
                            );
                        }
                        if let Some(v) = &holdings.vmac {
                            let r = v.deactivate().await;
                            fail(
                                "taking the virtual MAC interface down",
                                r.err().into_iter().collect(),
                            );
                        }
                    }
                    AddressJob::Announce(count) => {
                        for (announcer, addrs) in &holdings.announcers {
                            for _ in 0..count {
                                match announcer.announce(addrs.iter().copied()) {
                                    Ok(n) => {
                                        c.announcements_sent.fetch_add(n as u64, Relaxed);
                                    }
                                    Err(e) => fail("announcing virtual addresses", vec![e]),
                                }
                            }
                        }
                        tracing::debug!(instance = %instance, count, "virtual addresses announced");
                    }
                }
            }
        });
        AddressWorker {
            jobs,
            task,
            counters,
        }
    }

    /// Queues a job; never waits.
    pub fn push(&self, job: AddressJob) {
        // The task ends only when this sender is gone.
        let _ = self.jobs.send(job);
    }

    /// Lets the queued jobs finish, for at most `timeout`.
    pub async fn finish(self, timeout: std::time::Duration) {
        drop(self.jobs);
        let _ = tokio::time::timeout(timeout, self.task).await;
    }
}
