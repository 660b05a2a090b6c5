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
use std::time::Duration;

use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::NetlinkMessage;
use rtnetlink::MulticastGroup;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::gratuitous::Announcer;
use super::link::{link_notification, Link};
use super::socket::{AdvertSocket, Datagram};
use super::virtual_address::{default_prefix_len, VirtualAddressSet};
use super::Error;
use crate::config::InstanceConfig;
use crate::machine::{Action, Counters, Event, Machine, State};
use crate::reception::{receive_ipv4, receive_ipv6, DropCounters, Received};
use crate::time::Timestamp;
use crate::wire::{AddressFamily, Endpoints, VrrpRepr};

/// Largest datagram read: an IPv4 header with options, the VRRP header, 255 IPv6
/// addresses, and room to spare.
const RECEIVE_BUFFER: usize = 8192;

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
    socket: AdvertSocket,
    virtual_addresses: VirtualAddressSet,
    announcer: Announcer,
    netlink: rtnetlink::Handle,
    ifindex: u32,
    /// RTNLGRP_LINK notifications.
    link_events: LinkEvents,
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
}

type LinkEvents = futures::channel::mpsc::UnboundedReceiver<(
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// What woke the loop.
enum Wake {
    Shutdown,
    Control(Control),
    /// The interface's link changed: up or not.
    Link(bool),
    Datagram(std::io::Result<Datagram>),
    Timer,
}

impl Instance {
    /// Looks the interface up, completes and validates the config, opens the socket
    /// and a netlink connection (its task is spawned on the current runtime).
    pub async fn new(spec: InstanceSpec) -> Result<Instance, Error> {
        let InstanceSpec {
            name,
            interface,
            mut config,
            prefix_lengths,
            unicast_peers,
            gratuitous_repeat,
        } = spec;
        let family = config.family();
        if let Some(peer) = unicast_peers
            .iter()
            .find(|p| AddressFamily::of(**p) != family)
        {
            return Err(Error::PeerFamilyMismatch(*peer));
        }
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| Error::socket("open netlink socket", &interface, e))?;
        tokio::spawn(connection);
        // Subscribed before the query, so no change falls between the two.
        let (events, _, link_events) = rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
            .map_err(|e| Error::socket("open netlink link notifications", &interface, e))?;
        tokio::spawn(events);
        let link = Link::query(&handle, &interface).await?;
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
        let addresses = config
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
        let virtual_addresses = VirtualAddressSet::new(handle.clone(), link.index, addresses)?;
        let socket = AdvertSocket::open(&interface, link.index, family, unicast_peers.is_empty())?;
        let announcer = Announcer {
            interface: interface.clone(),
            ifindex: link.index,
            mac,
            ipv6_source: match config.primary_address {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            },
        };
        let drops = DropCounters::default();
        let io = IoCounters::default();
        let status = Status {
            name: name.clone(),
            state: machine.state(),
            priority: machine.priority(),
            master_address: machine.master_address(),
            virtual_addresses_present: false,
            interface_up: machine.is_interface_up(),
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
            socket,
            virtual_addresses,
            announcer,
            netlink: handle,
            ifindex: link.index,
            link_events,
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
        let startup = if ready {
            vec![Event::Startup]
        } else {
            vec![Event::InterfaceDown, Event::Startup]
        };
        for event in startup {
            let actions = self.machine.handle(now(Instant::now()), event);
            self.execute(actions).await;
        }

        let mut buf = vec![0u8; RECEIVE_BUFFER];
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
                message = self.link_events.next(), if link_events_open => match message {
                    Some((message, _)) => match link_notification(&message, self.ifindex) {
                        Some(up) => Wake::Link(up),
                        None => continue,
                    },
                    None => {
                        tracing::warn!(instance = %self.name, "link notifications ended");
                        link_events_open = false;
                        continue;
                    }
                },
                datagram = self.socket.recv(&mut buf) => Wake::Datagram(datagram),
            };
            match wake {
                Wake::Shutdown => break,
                Wake::Control(Control::Priority(p)) => {
                    let actions = self
                        .machine
                        .handle(now(Instant::now()), Event::PriorityChanged(p));
                    self.execute(actions).await;
                }
                Wake::Link(up) => {
                    if up != self.link_up {
                        self.link_up = up;
                        tracing::info!(instance = %self.name, interface = %self.interface, up, "link changed");
                        if up {
                            // InterfaceUp once the primary address is usable.
                            self.wait_for_primary = Some(Instant::now() + DAD_WAIT);
                        } else {
                            self.wait_for_primary = None;
                            primary_poll_due = None;
                            let actions = self
                                .machine
                                .handle(now(Instant::now()), Event::InterfaceDown);
                            self.execute(actions).await;
                        }
                    }
                }
                Wake::Datagram(Ok(datagram)) => {
                    self.io.datagrams_received += 1;
                    if let Some(received) = self.validate(&buf, datagram) {
                        let actions = self
                            .machine
                            .handle(now(Instant::now()), Event::from(received));
                        self.execute(actions).await;
                    }
                }
                Wake::Datagram(Err(e)) => {
                    self.io.receive_errors += 1;
                    tracing::warn!(instance = %self.name, error = %e, "receive failed");
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
                State::Backup | State::Initialize => gratuitous_due = None,
            }
        }
        let actions = self.machine.handle(now(Instant::now()), Event::Shutdown);
        self.execute(actions).await;
        tracing::info!(instance = %self.name, "stopped");
        self.publish();
        self.status.borrow().clone()
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
                    let errors = self.virtual_addresses.add_all().await;
                    self.count_address_errors("adding virtual address", errors);
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
            match self.socket.send(&bytes, source, destination).await {
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
        let errors = self.virtual_addresses.remove_all().await;
        self.count_address_errors("removing virtual address", errors);
        self.virtual_addresses_present = false;
    }

    fn announce(&mut self) {
        let addresses: Vec<IpAddr> = self.config().virtual_addresses.iter().collect();
        match self.announcer.announce(addresses) {
            Ok(n) => self.io.announcements_sent += n as u64,
            Err(e) => self.count_address_errors("announcing virtual addresses", vec![e]),
        }
    }

    fn count_address_errors(&mut self, what: &str, errors: Vec<Error>) {
        for e in errors {
            self.io.address_errors += 1;
            tracing::error!(instance = %self.name, error = %e, "{what} failed");
        }
    }

    fn publish(&self) {
        let status = Status {
            name: self.name.clone(),
            state: self.machine.state(),
            priority: self.machine.priority(),
            master_address: self.machine.master_address(),
            virtual_addresses_present: self.virtual_addresses_present,
            interface_up: self.machine.is_interface_up(),
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
