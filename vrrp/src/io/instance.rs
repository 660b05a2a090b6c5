//! The tokio runner of one virtual router: socket + [`Machine`] + actions.
//!
//! The loop waits for whichever comes first: shutdown, a control request from an
//! [`InstanceHandle`], a link notification, a datagram, or a timer (the machine's
//! [`Machine::poll_timeout`], the second round of announcements). It feeds
//! the machine, carries out the returned [`Action`]s in order and publishes a [`Status`].
//! Every decision stays in the machine; this file only moves bytes and addresses.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::gratuitous::Announcer;
use super::link::Link;
use super::notify::{state_name, Notification, Notifier, NotifyHooks};
use super::router::{Inbound, Inbox, LinkChange, Router, SharedSocket};
use super::socket::Datagram;
use super::virtual_address::{default_prefix_len, AddressJob, AddressWorker, VirtualAddressSet};
use super::virtual_mac::VirtualMacLink;
use super::Error;
use crate::config::{InstanceConfig, OWNER_PRIORITY};
use crate::machine::{Action, Counters, Event, Machine, State};
use crate::reception::{receive_ipv4, receive_ipv6, DropCounters, Received};
use crate::time::Timestamp;
use crate::wire::{AddressFamily, Endpoints, VrrpRepr};

/// Default delay of the second round of announcements after becoming Master.
///
/// Linux ignores a gratuitous ARP for an entry it confirmed less than `locktime` (1 s)
/// before, which is exactly what a host that was talking to the old Master has; the
/// second round lands after that. keepalived does the same with `garp_master_delay`
/// (5 s by default).
pub const DEFAULT_GRATUITOUS_REPEAT: Duration = Duration::from_secs(2);

/// How long [`Instance::run`] waits for a tentative IPv6 primary address to pass
/// duplicate address detection (1 s by default, after up to 1 s of random delay).
const DAD_WAIT: Duration = Duration::from_secs(5);
const DAD_POLL: Duration = Duration::from_millis(100);

/// Everything an [`Instance`] needs: the protocol config plus where and how to run it.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// A name for logs and status (keepalived's `vrrp_instance` name).
    pub name: String,
    /// The interface to run on.
    pub interface: String,
    /// The protocol parameters. An unspecified `primary_address` (0.0.0.0 or ::) is
    /// replaced by the interface's: its first IPv4 address that is not a virtual
    /// address, or its IPv6 link-local address.
    pub config: InstanceConfig,
    /// Prefix length of each virtual address on the interface; an address missing here
    /// gets a host prefix (/32, /128), as in keepalived.
    pub prefix_lengths: BTreeMap<IpAddr, u8>,
    /// Send adverts to these addresses instead of the multicast group, and accept
    /// adverts only from them (keepalived's `unicast_peer`). Empty: multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// When to announce the virtual addresses a second time after becoming Master;
    /// `None`: once only.
    pub gratuitous_repeat: Option<Duration>,
    /// Interfaces whose link this instance depends on (keepalived's
    /// `track_interface`).
    pub track: Vec<TrackedInterface>,
    /// Programs to run on state changes.
    pub notify: NotifyHooks,
    /// Carry the virtual addresses on a macvlan with the virtual router MAC
    /// (RFC 5798 §7.3) instead of the interface's own MAC.
    pub use_vmac: bool,
}

/// An interface an instance tracks.
///
/// `weight` 0: the interface down is a fault ([`State::Fault`]: no adverts, no virtual
/// addresses). Otherwise keepalived's rule: a negative weight is added to the priority
/// while the interface is down, a positive one while it is up. The sum is clamped to
/// 1..=254; the address owner's priority never moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedInterface {
    pub name: String,
    pub weight: i16,
}

impl InstanceSpec {
    /// A spec with host prefixes, multicast, and [`DEFAULT_GRATUITOUS_REPEAT`].
    pub fn new(
        name: impl Into<String>,
        interface: impl Into<String>,
        config: InstanceConfig,
    ) -> InstanceSpec {
        InstanceSpec {
            name: name.into(),
            interface: interface.into(),
            config,
            prefix_lengths: BTreeMap::new(),
            unicast_peers: Vec::new(),
            gratuitous_repeat: Some(DEFAULT_GRATUITOUS_REPEAT),
            track: Vec::new(),
            notify: NotifyHooks::default(),
            use_vmac: false,
        }
    }
}

/// What the shell itself counts, beside the machine's [`Counters`] and the receive
/// rules' [`DropCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Datagrams read from the socket.
    pub datagrams_received: u64,
    /// Adverts the kernel accepted (one per peer in unicast mode).
    pub adverts_sent: u64,
    pub send_errors: u64,
    pub receive_errors: u64,
    /// Unicast mode: adverts that passed the receive rules from a non-peer, dropped.
    pub not_from_peer: u64,
    /// Accepted adverts whose address list differs from ours (RFC 5798 §7.1: logged).
    pub address_list_mismatches: u64,
    /// Gratuitous ARPs and unsolicited NAs sent.
    pub announcements_sent: u64,
    /// Notify hooks started.
    pub notifications: u64,
    /// Failed additions or removals of virtual addresses, failed announcements.
    pub address_errors: u64,
}

/// A snapshot of an instance, published after every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub name: String,
    pub state: State,
    /// The effective priority.
    pub priority: u8,
    /// Ourselves when Master, the last accepted advert's source when Backup.
    pub master_address: Option<IpAddr>,
    /// Whether this instance has put the virtual addresses on the interface (failures
    /// aside: see [`IoCounters::address_errors`]).
    pub virtual_addresses_present: bool,
    /// The interface is up with carrier (and its IPv6 primary address usable).
    pub interface_up: bool,
    /// Tracked interfaces that are down.
    pub tracked_down: Vec<String>,
    /// The virtual MAC interface, with `use_vmac`.
    pub vmac_interface: Option<String>,
    pub machine: Counters,
    pub drops: DropCounters,
    pub io: IoCounters,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Priority(u8),
}

/// A cheap, clonable handle on a running (or not yet running) [`Instance`].
#[derive(Debug, Clone)]
pub struct InstanceHandle {
    status: watch::Receiver<Status>,
    control: mpsc::UnboundedSender<Control>,
}

impl InstanceHandle {
    /// The latest status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that wakes on every new status (intermediate ones may be skipped).
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Tracking changed the priority ([`Event::PriorityChanged`]). False once the
    /// instance has stopped.
    pub fn set_priority(&self, priority: u8) -> bool {
        self.control.send(Control::Priority(priority)).is_ok()
    }
}

/// One virtual router on one interface, ready to [`Instance::run`].
#[derive(Debug)]
pub struct Instance {
    name: String,
    interface: String,
    machine: Machine,
    /// Where adverts for this instance's VRID arrive.
    inbox: Inbox,
    /// Where adverts leave: the interface's socket, or the virtual MAC's.
    send_socket: Arc<SharedSocket>,
    /// Adds, removes and announces the virtual addresses.
    addresses: Option<AddressWorker>,
    netlink: rtnetlink::Handle,
    ifindex: u32,
    /// RTNLGRP_LINK notifications.
    link_changes: broadcast::Receiver<LinkChange>,
    tracked: Vec<Tracked>,
    /// The priority before tracking: the configured one, or a handle's.
    base_priority: u8,
    hooks: NotifyHooks,
    notifier: Option<Notifier>,
    vmac: Option<Arc<VirtualMacLink>>,
    /// IFF_UP and IFF_RUNNING, as last reported.
    link_up: bool,
    /// Until when to wait for the primary address before [`Event::InterfaceUp`].
    wait_for_primary: Option<Instant>,
    unicast_peers: Vec<IpAddr>,
    gratuitous_repeat: Option<Duration>,
    status: watch::Sender<Status>,
    status_rx: watch::Receiver<Status>,
    control_tx: mpsc::UnboundedSender<Control>,
    control: mpsc::UnboundedReceiver<Control>,
    drops: DropCounters,
    io: IoCounters,
    virtual_addresses_present: bool,
    /// The previous accepted advert's address list differed: log only changes.
    address_list_mismatch: bool,
    /// The actions just carried out announced the addresses.
    fresh_announcement: bool,
    /// Address errors of this task (the worker counts its own).
    io_address_errors: u64,
}

/// A tracked interface's last known state.
#[derive(Debug, Clone)]
struct Tracked {
    name: String,
    weight: i16,
    index: Option<u32>,
    up: bool,
}

/// What woke the loop.
enum Wake {
    Shutdown,
    Control(Control),
    Link(LinkChange),
    /// Link notifications were lost: query the links again.
    LinksLagged,
    Datagram(Inbound),
    Timer,
}

impl Instance {
    /// [`Instance::with_router`] on a [`Router`] of its own.
    pub async fn new(spec: InstanceSpec) -> Result<Instance, Error> {
        Instance::with_router(&Router::new()?, spec).await
    }

    /// Looks the interface up, completes and validates the config, and takes its share
    /// of `router`'s socket for the interface. Many instances should share one router.
    pub async fn with_router(router: &Router, spec: InstanceSpec) -> Result<Instance, Error> {
        let InstanceSpec {
            name,
            interface,
            mut config,
            prefix_lengths,
            unicast_peers,
            gratuitous_repeat,
            track,
            notify,
            use_vmac,
        } = spec;
        let family = config.family();
        if let Some(peer) = unicast_peers
            .iter()
            .find(|p| AddressFamily::of(**p) != family)
        {
            return Err(Error::PeerFamilyMismatch(*peer));
        }
        let handle = router.netlink().clone();
        // Subscribed before the query, so no change falls between the two.
        let link_changes = router.link_changes();
        let link = Link::query(&handle, &interface).await?;
        let mut tracked = Vec::new();
        for t in track {
            let (index, up) = match Link::query(&handle, &t.name).await {
                Ok(l) => (Some(l.index), l.up),
                Err(Error::InterfaceNotFound(_)) => (None, false),
                Err(e) => return Err(e),
            };
            tracked.push(Tracked {
                name: t.name,
                weight: t.weight,
                index,
                up,
            });
        }
        if config.primary_address.is_unspecified() {
            config.primary_address = link
                .primary_address(family, &config.virtual_addresses)
                .ok_or_else(|| Error::NoPrimaryAddress {
                    interface: interface.clone(),
                    family,
                })?;
        }
        let machine = Machine::new(config)?;
        let config = machine.config();
        let mac = link
            .hardware_address
            .ok_or_else(|| Error::NoHardwareAddress(interface.clone()))?;
        // The primary address belongs to the interface, not to VRRP: an owner's
        // virtual address that is also its own is never added nor removed.
        let addresses: Vec<(IpAddr, u8)> = config
            .virtual_addresses
            .iter()
            .filter(|a| *a != config.primary_address)
            .map(|a| {
                let len = prefix_lengths
                    .get(&a)
                    .copied()
                    .unwrap_or_else(|| default_prefix_len(a));
                (a, len)
            })
            .collect();
        let receive_socket =
            router.socket(&interface, link.index, family, unicast_peers.is_empty())?;
        let inbox = receive_socket.subscribe(config.vrid.get());
        // Refuses bad prefix lengths before anything is created in the kernel.
        VirtualAddressSet::new(handle.clone(), link.index, addresses.clone())?;
        let vmac = if use_vmac {
            let link_local = config
                .primary_address
                .is_ipv6()
                .then_some(config.primary_address);
            let v = VirtualMacLink::create(
                &handle,
                &interface,
                link.index,
                config.vrid,
                family,
                link_local,
            )
            .await?;
            tracing::info!(instance = %name, interface = %v.name, mac = %format_mac(&v.mac), "virtual MAC interface created");
            Some(Arc::new(v))
        } else {
            None
        };
        let vmac_socket = match &vmac {
            Some(v) => match router.socket(&v.name, v.index, family, false) {
                Ok(s) => Some(s),
                Err(e) => {
                    v.remove().await;
                    return Err(e);
                }
            },
            None => None,
        };
        let (addresses_on, send_socket, announcer) = match (&vmac, vmac_socket) {
            (Some(v), Some(socket)) => (
                v.index,
                socket,
                Announcer {
                    interface: v.name.clone(),
                    ifindex: v.index,
                    mac: v.mac,
                    ipv6_source: ipv6_source(config.primary_address),
                    arp: router.arp_socket(),
                },
            ),
            _ => (
                link.index,
                receive_socket,
                Announcer {
                    interface: interface.clone(),
                    ifindex: link.index,
                    mac,
                    ipv6_source: ipv6_source(config.primary_address),
                    arp: router.arp_socket(),
                },
            ),
        };
        let virtual_addresses = VirtualAddressSet::new(handle.clone(), addresses_on, addresses)?;
        let worker = AddressWorker::spawn(
            name.clone(),
            virtual_addresses,
            announcer,
            config.virtual_addresses.iter().collect(),
            vmac.clone(),
        );
        if vmac.is_none() && family == AddressFamily::Ipv4 && config.priority != OWNER_PRIORITY {
            allow_local_sources(&name, &interface);
        }
        let base_priority = config.priority;
        let notifier = (!notify.is_empty()).then(|| Notifier::spawn(name.clone(), notify.timeout));
        let drops = DropCounters::default();
        let io = IoCounters::default();
        let status = Status {
            name: name.clone(),
            state: machine.state(),
            priority: machine.priority(),
            master_address: machine.master_address(),
            virtual_addresses_present: false,
            interface_up: machine.is_interface_up(),
            tracked_down: Vec::new(),
            vmac_interface: vmac.as_ref().map(|v| v.name.clone()),
            machine: *machine.counters(),
            drops: drops.clone(),
            io,
        };
        let (status_tx, status_rx) = watch::channel(status);
        let (control_tx, control) = mpsc::unbounded_channel();
        Ok(Instance {
            name,
            interface,
            machine,
            inbox,
            send_socket,
            addresses: Some(worker),
            netlink: handle,
            ifindex: link.index,
            link_changes,
            tracked,
            base_priority,
            hooks: notify,
            notifier,
            vmac,
            link_up: link.up,
            wait_for_primary: None,
            unicast_peers,
            gratuitous_repeat,
            status: status_tx,
            status_rx,
            control_tx,
            control,
            drops,
            io,
            virtual_addresses_present: false,
            address_list_mismatch: false,
            fresh_announcement: false,
            io_address_errors: 0,
        })
    }

    /// The config as completed by [`Instance::new`] (primary address filled in).
    pub fn config(&self) -> &InstanceConfig {
        self.machine.config()
    }

    pub fn handle(&self) -> InstanceHandle {
        InstanceHandle {
            status: self.status_rx.clone(),
            control: self.control_tx.clone(),
        }
    }

    /// Runs until `shutdown` completes, then shuts down gracefully: a Master sends
    /// priority 0 (so a Backup takes over after Skew_Time, RFC 5798 §6.4.3) and
    /// removes the virtual addresses. Returns the final status.
    ///
    /// Virtual addresses left on the interface by an earlier run are removed first: a
    /// Backup must not hold them. The interface is watched over rtnetlink: losing
    /// IFF_UP or IFF_RUNNING is [`Event::InterfaceDown`], getting both back (and, for
    /// IPv6, the link-local address through duplicate address detection) is
    /// [`Event::InterfaceUp`]. Dropping the future instead of completing `shutdown`
    /// skips the graceful part and leaves the addresses as they are.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Status {
        let epoch = Instant::now();
        let now = |at: Instant| Timestamp::from_elapsed(at.saturating_duration_since(epoch));
        tracing::info!(
            instance = %self.name,
            interface = %self.interface,
            vrid = self.config().vrid.get(),
            version = %self.config().version,
            priority = self.config().priority,
            primary_address = %self.config().primary_address,
            link_up = self.link_up,
            "starting"
        );
        tokio::pin!(shutdown);
        self.remove_virtual_addresses().await;
        // The machine starts with its interface assumed up: tell it otherwise when the
        // link is down or the primary address not usable yet, and the loop delivers
        // InterfaceUp once it is.
        let mut ready = false;
        if self.link_up {
            self.wait_for_primary = Some(Instant::now() + DAD_WAIT);
            ready = self.primary_address_ready().await;
            if ready {
                self.wait_for_primary = None;
            } else {
                tracing::info!(
                    instance = %self.name,
                    primary_address = %self.config().primary_address,
                    "waiting for duplicate address detection of the primary address"
                );
            }
        }
        let mut startup = if ready {
            vec![]
        } else {
            vec![Event::InterfaceDown]
        };
        startup.extend(self.tracking_events());
        startup.push(Event::Startup);
        for event in startup {
            let actions = self.machine.handle(now(Instant::now()), event);
            self.execute(actions).await;
        }

        let mut control_open = true;
        let mut link_events_open = true;
        // The second round of announcements, while Master.
        let mut gratuitous_due: Option<Instant> = None;
        // While waiting for the IPv6 primary address: when to look again.
        let mut primary_poll_due: Option<Instant> = None;
        loop {
            self.publish();
            if self.wait_for_primary.is_some() && primary_poll_due.is_none() {
                primary_poll_due = Some(Instant::now());
            }
            let machine_due = self.machine.poll_timeout().map(|t| epoch + t.elapsed());
            let due = [machine_due, gratuitous_due, primary_poll_due]
                .into_iter()
                .flatten()
                .min();
            // Biased, timers before datagrams: a flood of packets must not delay the
            // adverts of a Master or the takeover of a Backup.
            let wake = tokio::select! {
                biased;
                () = &mut shutdown => Wake::Shutdown,
                () = sleep_until(due) => Wake::Timer,
                control = self.control.recv(), if control_open => match control {
                    Some(c) => Wake::Control(c),
                    None => {
                        control_open = false;
                        continue;
                    }
                },
                change = self.link_changes.recv(), if link_events_open => match change {
                    Ok(change) => Wake::Link(change),
                    Err(RecvError::Lagged(_)) => Wake::LinksLagged,
                    Err(RecvError::Closed) => {
                        tracing::warn!(instance = %self.name, "link notifications ended");
                        link_events_open = false;
                        continue;
                    }
                },
                inbound = self.inbox.recv() => match inbound {
                    Some(i) => Wake::Datagram(i),
                    None => {
                        tracing::error!(instance = %self.name, "receive socket closed");
                        break;
                    }
                },
            };
            match wake {
                Wake::Shutdown => break,
                Wake::Control(Control::Priority(p)) => {
                    self.base_priority = p;
                    for event in self.tracking_events() {
                        let actions = self.machine.handle(now(Instant::now()), event);
                        self.execute(actions).await;
                    }
                }
                Wake::LinksLagged => {
                    tracing::warn!(instance = %self.name, "link notifications lost; querying links again");
                    let mut changes = Vec::new();
                    let names: Vec<String> = std::iter::once(self.interface.clone())
                        .chain(self.tracked.iter().map(|t| t.name.clone()))
                        .collect();
                    for name in names {
                        match Link::query(&self.netlink, &name).await {
                            Ok(l) => changes.push(LinkChange {
                                index: l.index,
                                name: Some(name),
                                up: l.up,
                            }),
                            Err(Error::InterfaceNotFound(_)) => changes.push(LinkChange {
                                index: 0,
                                name: Some(name),
                                up: false,
                            }),
                            Err(e) => {
                                tracing::warn!(instance = %self.name, error = %e, "interface query failed")
                            }
                        }
                    }
                    for change in changes {
                        self.link_change(&change, &mut primary_poll_due, &now).await;
                    }
                }
                Wake::Link(change) => {
                    self.link_change(&change, &mut primary_poll_due, &now).await;
                }
                Wake::Datagram(inbound) => {
                    self.io.datagrams_received += 1;
                    if let Some(received) = self.validate(&inbound.bytes, inbound.datagram) {
                        let actions = self
                            .machine
                            .handle(now(Instant::now()), Event::from(received));
                        self.execute(actions).await;
                    }
                }
                Wake::Timer => {
                    let at = Instant::now();
                    if primary_poll_due.is_some_and(|d| d <= at) {
                        primary_poll_due = None;
                        if self.primary_address_ready().await {
                            self.wait_for_primary = None;
                            let actions =
                                self.machine.handle(now(Instant::now()), Event::InterfaceUp);
                            self.execute(actions).await;
                        } else {
                            primary_poll_due = Some(Instant::now() + DAD_POLL);
                        }
                    }
                    if gratuitous_due.is_some_and(|d| d <= at) {
                        gratuitous_due = None;
                        if self.machine.state() == State::Master {
                            self.announce();
                        }
                    }
                    if machine_due.is_some_and(|d| d <= at) {
                        let actions = self.machine.handle(now(at), Event::Timeout);
                        self.execute(actions).await;
                    }
                }
            }
            // Announce again after a delay when this wake made us Master.
            match self.machine.state() {
                State::Master => {
                    if self.take_fresh_announcement() {
                        gratuitous_due = self.gratuitous_repeat.map(|d| Instant::now() + d);
                    }
                }
                State::Backup | State::Initialize | State::Fault => gratuitous_due = None,
            }
        }
        let actions = self.machine.handle(now(Instant::now()), Event::Shutdown);
        self.execute(actions).await;
        if let Some(worker) = self.addresses.take() {
            worker.finish(Duration::from_secs(10)).await;
        }
        if let Some(v) = self.vmac.take() {
            v.remove().await;
        }
        tracing::info!(instance = %self.name, "stopped");
        self.publish();
        self.status.borrow().clone()
    }

    /// A link notification: the instance's own interface, or a tracked one.
    async fn link_change(
        &mut self,
        change: &LinkChange,
        primary_poll_due: &mut Option<Instant>,
        now: &impl Fn(Instant) -> Timestamp,
    ) {
        let mut tracking_changed = false;
        for t in &mut self.tracked {
            let same = match &change.name {
                Some(n) => *n == t.name,
                None => t.index == Some(change.index),
            };
            if !same {
                continue;
            }
            if change.index != 0 {
                t.index = Some(change.index);
            }
            if t.up != change.up {
                t.up = change.up;
                tracking_changed = true;
                tracing::info!(instance = %self.name, tracked = %t.name, up = change.up, weight = t.weight, "tracked interface changed");
            }
        }
        if tracking_changed {
            for event in self.tracking_events() {
                let actions = self.machine.handle(now(Instant::now()), event);
                self.execute(actions).await;
            }
        }
        if change.index != self.ifindex || change.up == self.link_up {
            return;
        }
        let up = change.up;
        self.link_up = up;
        tracing::info!(instance = %self.name, interface = %self.interface, up, "link changed");
        if up {
            // InterfaceUp once the primary address is usable.
            self.wait_for_primary = Some(Instant::now() + DAD_WAIT);
        } else {
            self.wait_for_primary = None;
            *primary_poll_due = None;
            let actions = self
                .machine
                .handle(now(Instant::now()), Event::InterfaceDown);
            self.execute(actions).await;
        }
    }

    /// The events that bring the machine in line with the tracked interfaces: a fault
    /// raised or cleared, a new effective priority.
    fn tracking_events(&self) -> Vec<Event> {
        let fault = self.tracked.iter().any(|t| t.weight == 0 && !t.up);
        let mut events = Vec::new();
        if fault != self.machine.is_faulty() {
            events.push(if fault {
                Event::FaultRaised
            } else {
                Event::FaultCleared
            });
        }
        let delta: i32 = self
            .tracked
            .iter()
            .filter(|t| (t.weight < 0 && !t.up) || (t.weight > 0 && t.up))
            .map(|t| i32::from(t.weight))
            .sum();
        let priority = (i32::from(self.base_priority) + delta).clamp(1, 254);
        let priority = u8::try_from(priority).unwrap_or(1);
        if !self.config().is_owner() && priority != self.machine.priority() {
            events.push(Event::PriorityChanged(priority));
        }
        events
    }

    /// Queues the notify hooks of a state change.
    fn notify(&mut self, from: State, to: State, reason: String) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let priority = self.machine.priority();
        let config = self.machine.config();
        let env = vec![
            ("VRRP_STATE".to_owned(), state_name(to).to_owned()),
            (
                "VRRP_PREVIOUS_STATE".to_owned(),
                state_name(from).to_owned(),
            ),
            ("VRRP_REASON".to_owned(), reason),
            ("VRRP_INSTANCE".to_owned(), self.name.clone()),
            ("VRRP_INTERFACE".to_owned(), self.interface.clone()),
            ("VRRP_VRID".to_owned(), config.vrid.get().to_string()),
            ("VRRP_PRIORITY".to_owned(), priority.to_string()),
            (
                "VRRP_VIRTUAL_IPS".to_owned(),
                config
                    .virtual_addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ];
        for argv in self.hooks.for_state(to, &self.name, priority) {
            self.io.notifications += 1;
            notifier.notify(Notification {
                argv,
                env: env.clone(),
            });
        }
    }

    /// Whether the primary address can be sent from, or waiting for it is over.
    ///
    /// An IPv6 link-local address is tentative for a second or two after the link
    /// comes up, and the kernel refuses to send from it; IPv4 has no such wait. The
    /// wait is bounded ([`DAD_WAIT`]): after it, send errors are counted instead.
    async fn primary_address_ready(&mut self) -> bool {
        let primary = self.config().primary_address;
        let Some(deadline) = self.wait_for_primary else {
            return true;
        };
        if primary.is_ipv4() {
            return true;
        }
        match Link::query(&self.netlink, &self.interface).await {
            Ok(link) if link.has_usable_address(primary) => return true,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(instance = %self.name, error = %e, "interface query failed")
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(instance = %self.name, %primary, "primary address still not usable; starting anyway");
            return true;
        }
        tracing::debug!(instance = %self.name, %primary, "waiting for duplicate address detection");
        false
    }

    /// Whether the last actions announced the addresses (clears the flag).
    fn take_fresh_announcement(&mut self) -> bool {
        std::mem::take(&mut self.fresh_announcement)
    }

    /// The receive rules of §7.1, plus the unicast peer filter.
    fn validate(&mut self, buf: &[u8], datagram: Datagram) -> Option<Received> {
        let config = self.machine.config();
        let lookup = |vrid| (vrid == config.vrid).then_some(config);
        let result = match datagram {
            Datagram::V4 { len } => receive_ipv4(buf.get(..len)?, lookup),
            Datagram::V6 {
                len,
                source,
                destination,
                hop_limit,
            } => receive_ipv6(buf.get(..len)?, source, destination, hop_limit, lookup),
        };
        let received = match result {
            Ok(r) => r,
            Err(discard) => {
                self.drops.record(discard.reason());
                tracing::debug!(instance = %self.name, reason = %discard, "advert discarded");
                return None;
            }
        };
        if !self.unicast_peers.is_empty() && !self.unicast_peers.contains(&received.source) {
            self.io.not_from_peer += 1;
            tracing::debug!(instance = %self.name, source = %received.source, "advert from a non-peer discarded");
            return None;
        }
        if received.address_list_mismatch {
            self.io.address_list_mismatches += 1;
            if !self.address_list_mismatch {
                // RFC 5798 §7.1: "log the event" of a misconfiguration, and go on.
                tracing::warn!(
                    instance = %self.name,
                    source = %received.source,
                    addresses = ?received.advert.addresses(),
                    "advert's virtual addresses differ from ours"
                );
            }
        }
        self.address_list_mismatch = received.address_list_mismatch;
        Some(received)
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::StateChanged { from, to, reason } => {
                    if let Some(v) = &self.vmac {
                        let result = if to == State::Master {
                            v.activate().await
                        } else {
                            Ok(())
                        };
                        if let Err(e) = result {
                            self.count_address_errors("bringing the virtual MAC up", vec![e]);
                        }
                    }
                    self.notify(from, to, format!("{reason:?}"));
                    tracing::info!(
                        instance = %self.name,
                        interface = %self.interface,
                        vrid = self.config().vrid.get(),
                        ?from,
                        ?to,
                        ?reason,
                        priority = self.machine.priority(),
                        master = ?self.machine.master_address(),
                        "state changed"
                    );
                }
                Action::SendAdvert(advert) => self.send_advert(&advert).await,
                Action::AddVirtualAddresses => {
                    self.address_job(AddressJob::Add);
                    self.virtual_addresses_present = true;
                }
                Action::RemoveVirtualAddresses => self.remove_virtual_addresses().await,
                Action::SendGratuitous => {
                    self.announce();
                    self.fresh_announcement = true;
                }
            }
        }
    }

    async fn send_advert(&mut self, advert: &VrrpRepr) {
        let config = self.machine.config();
        let source = config.primary_address;
        let destinations: Vec<IpAddr> = if self.unicast_peers.is_empty() {
            vec![config.advert_endpoints().destination()]
        } else {
            self.unicast_peers.clone()
        };
        for destination in destinations {
            let endpoints = endpoints(source, destination);
            let bytes = match endpoints.and_then(|e| {
                advert
                    .to_bytes(&e, config.v3_ipv4_checksum)
                    .map_err(|e| e.to_string())
            }) {
                Ok(b) => b,
                Err(e) => {
                    self.io.send_errors += 1;
                    tracing::error!(instance = %self.name, error = %e, "cannot emit advert");
                    continue;
                }
            };
            match self
                .send_socket
                .socket()
                .send(&bytes, source, destination)
                .await
            {
                Ok(()) => self.io.adverts_sent += 1,
                Err(e) => {
                    self.io.send_errors += 1;
                    tracing::warn!(
                        instance = %self.name,
                        %destination,
                        error = %e,
                        "sending advert failed"
                    );
                }
            }
        }
    }

    async fn remove_virtual_addresses(&mut self) {
        self.address_job(AddressJob::Remove);
        self.virtual_addresses_present = false;
    }

    fn announce(&mut self) {
        self.address_job(AddressJob::Announce);
    }

    fn address_job(&self, job: AddressJob) {
        if let Some(w) = &self.addresses {
            w.push(job);
        }
    }

    fn count_address_errors(&mut self, what: &str, errors: Vec<Error>) {
        for e in errors {
            self.io_address_errors += 1;
            tracing::error!(instance = %self.name, error = %e, "{what} failed");
        }
    }

    fn publish(&mut self) {
        if let Some(w) = &self.addresses {
            use std::sync::atomic::Ordering::Relaxed;
            self.io.announcements_sent = w.counters.announcements_sent.load(Relaxed);
            self.io.address_errors = self.io_address_errors + w.counters.errors.load(Relaxed);
        }
        let status = Status {
            name: self.name.clone(),
            state: self.machine.state(),
            priority: self.machine.priority(),
            master_address: self.machine.master_address(),
            virtual_addresses_present: self.virtual_addresses_present,
            interface_up: self.machine.is_interface_up(),
            tracked_down: self
                .tracked
                .iter()
                .filter(|t| !t.up)
                .map(|t| t.name.clone())
                .collect(),
            vmac_interface: self.vmac.as_ref().map(|v| v.name.clone()),
            machine: *self.machine.counters(),
            drops: self.drops.clone(),
            io: self.io,
        };
        self.status.send_if_modified(|s| {
            if *s == status {
                false
            } else {
                *s = status;
                true
            }
        });
    }
}

/// The endpoints of an advert from `source` to `destination`, for the checksum.
fn endpoints(source: IpAddr, destination: IpAddr) -> Result<Endpoints, String> {
    match (source, destination) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => Ok(Endpoints::V4 {
            source,
            destination,
        }),
        (IpAddr::V6(source), IpAddr::V6(destination)) => Ok(Endpoints::V6 {
            source,
            destination,
        }),
        _ => Err(format!(
            "{source} and {destination} are of different families"
        )),
    }
}

/// Sleeps until `due`, or forever.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn ipv6_source(primary: IpAddr) -> Option<std::net::Ipv6Addr> {
    match primary {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Sets `net.ipv4.conf.<interface>.accept_local` to 1.
///
/// A Backup that took over the address owner's address (its virtual address is the
/// owner's own) must still hear the owner's adverts when it returns, or both stay
/// Master: their source is then one of this host's addresses, and Linux drops such
/// packets as martians before any socket sees them, unless `accept_local` is set on the
/// interface. Nothing tells a Backup in advance whether a peer owns the address, so
/// every non-owner IPv4 instance sets it. The value is left as is at exit (other
/// instances may share the interface).
fn allow_local_sources(instance: &str, interface: &str) {
    let path = std::path::Path::new("/proc/sys/net/ipv4/conf")
        .join(interface)
        .join("accept_local");
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == "1" => {}
        _ => match std::fs::write(&path, "1") {
            Ok(()) => {
                tracing::info!(instance, %interface, "set net.ipv4.conf.{interface}.accept_local = 1 (to hear an address owner's adverts)")
            }
            Err(e) => {
                tracing::warn!(instance, %interface, error = %e, "cannot set accept_local; an address owner's adverts will be dropped as martians while this host holds its address")
            }
        },
    }
}
