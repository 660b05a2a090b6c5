//! Adding and removing an instance's virtual addresses over rtnetlink.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::address::AddressHeaderFlags;
use rtnetlink::AddressMessageBuilder;

use super::Error;

/// Prefix length a virtual address gets when none is configured: a host route, as in
/// keepalived.
pub fn default_prefix_len(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The virtual addresses of one instance, with their prefix lengths, on one interface.
#[derive(Debug, Clone)]
pub struct VirtualAddressSet {
    handle: rtnetlink::Handle,
    ifindex: u32,
    addresses: Vec<(IpAddr, u8)>,
}

impl VirtualAddressSet {
    /// `addresses` are `(address, prefix length)` pairs; the lengths must fit the family.
    pub fn new(
        handle: rtnetlink::Handle,
        ifindex: u32,
        addresses: Vec<(IpAddr, u8)>,
    ) -> Result<VirtualAddressSet, Error> {
        for &(address, prefix_len) in &addresses {
            if prefix_len > default_prefix_len(address) {
                return Err(Error::InvalidPrefixLength {
                    address,
                    prefix_len,
                });
            }
        }
        Ok(VirtualAddressSet {
            handle,
            ifindex,
            addresses,
        })
    }

    pub fn addresses(&self) -> &[(IpAddr, u8)] {
        &self.addresses
    }

    /// Adds every address; one already there is fine. IPv6 addresses skip duplicate
    /// address detection (IFA_F_NODAD): the VRRP election already decided who owns
    /// them, and a tentative address would not answer for a second or more.
    ///
    /// Tries every address and returns the errors of those that failed.
    pub async fn add_all(&self) -> Vec<Error> {
        let mut errors = Vec::new();
        for &(address, prefix_len) in &self.addresses {
            let mut request = self.handle.address().add(self.ifindex, address, prefix_len);
            if address.is_ipv6() {
                request.message_mut().header.flags |= AddressHeaderFlags::Nodad;
            }
            match request.execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => errors.push(Error::Netlink {
                    op: format!("add {address}/{prefix_len}"),
                    source: e,
                }),
            }
        }
        errors
    }

    /// Removes every address; one already gone is fine. Returns the failures.
    pub async fn remove_all(&self) -> Vec<Error> {
        let mut errors = Vec::new();
        for &(address, prefix_len) in &self.addresses {
            let message = match address {
                IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                    .index(self.ifindex)
                    .address(a, prefix_len)
                    .build(),
                IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                    .index(self.ifindex)
                    .address(a, prefix_len)
                    .build(),
            };
            match self.handle.address().del(message).execute().await {
                Ok(()) => {}
                // IPv4 answers EADDRNOTAVAIL, IPv6 ENOENT (or ENODEV once the
                // interface is gone, taking its addresses with it).
                Err(e)
                    if matches!(
                        errno(&e),
                        Some(libc::EADDRNOTAVAIL | libc::ENOENT | libc::ENODEV)
                    ) => {}
                Err(e) => errors.push(Error::Netlink {
                    op: format!("remove {address}/{prefix_len}"),
                    source: e,
                }),
            }
        }
        errors
    }
}

/// The errno of a netlink NACK.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// What the [`AddressWorker`] does, in the order asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressJob {
    /// Add the virtual addresses.
    Add,
    /// Remove them, then take the virtual MAC interface (if any) down.
    Remove,
    /// Announce them (gratuitous ARP, unsolicited NA).
    Announce,
}

/// Counters the worker keeps for the instance's status.
#[derive(Debug, Default)]
pub struct AddressCounters {
    pub announcements_sent: std::sync::atomic::AtomicU64,
    pub errors: std::sync::atomic::AtomicU64,
}

/// Carries out address changes and announcements on a task of its own, one after the
/// other: the protocol never waits for netlink (with a thousand instances changing
/// state at once, the kernel's answers queue up for seconds, and an instance waiting
/// for them would miss its own adverts).
#[derive(Debug)]
pub struct AddressWorker {
    jobs: tokio::sync::mpsc::UnboundedSender<AddressJob>,
    task: tokio::task::JoinHandle<()>,
    pub counters: std::sync::Arc<AddressCounters>,
}

impl AddressWorker {
    pub fn spawn(
        instance: String,
        set: VirtualAddressSet,
        announcer: super::gratuitous::Announcer,
        announced: Vec<IpAddr>,
        vmac: Option<std::sync::Arc<super::virtual_mac::VirtualMacLink>>,
    ) -> AddressWorker {
        use std::sync::atomic::Ordering::Relaxed;
        let counters = std::sync::Arc::new(AddressCounters::default());
        let c = counters.clone();
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let fail = |what: &str, e: &Error| {
                c.errors.fetch_add(1, Relaxed);
                tracing::error!(instance = %instance, error = %e, "{what} failed");
            };
            while let Some(job) = rx.recv().await {
                match job {
                    AddressJob::Add => {
                        for e in set.add_all().await {
                            fail("adding virtual address", &e);
                        }
                        tracing::debug!(instance = %instance, "virtual addresses added");
                    }
                    AddressJob::Remove => {
                        for e in set.remove_all().await {
                            fail("removing virtual address", &e);
                        }
                        if let Some(v) = &vmac {
                            if let Err(e) = v.deactivate().await {
                                fail("taking the virtual MAC interface down", &e);
                            }
                        }
                    }
                    AddressJob::Announce => match announcer.announce(announced.iter().copied()) {
                        Ok(n) => {
                            c.announcements_sent.fetch_add(n as u64, Relaxed);
                            tracing::debug!(instance = %instance, sent = n, "virtual addresses announced");
                        }
                        Err(e) => fail("announcing virtual addresses", &e),
                    },
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
