//! The tokio runner of one virtual router: socket + [`Machine`] + tracking + actions.
//!
//! - `setup`: from settings to a ready [`Instance`]: the interface looked up, the
//!   primary address picked, sockets, the virtual MAC, what a Master holds, tracking.
//! - `run`: the loop. It waits for whichever comes first: shutdown, a control
//!   request (an [`InstanceHandle`], the sync group), a link notification, a tracking
//!   reading, a datagram, or the machine's timer ([`Machine::poll_timeout`]), feeds
//!   the machine and publishes a [`Status`].
//! - `actions`: carrying out the machine's [`crate::Action`]s, the receive rules,
//!   notify hooks, status.
//!
//! Every protocol decision and timer stays in the machine, every tracking rule in
//! [`crate::track`]; these files move bytes, addresses and readings.

mod actions;
mod run;
mod setup;

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::address_worker::AddressWorker;
use super::notify::{Notifier, NotifyHooks};
use super::router::{Inbox, LinkChange, SharedSocket};
use super::track::Feeds;
use super::virtual_mac::VirtualMacLink;
use super::warning_limit::WarningLimit;
use crate::config::InstanceConfig;
use crate::machine::{Counters, Event, Machine, State};
use crate::reception::DropCounters;
use crate::sync_group::MemberReport;
use crate::wire::VirtualAddresses;

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
    /// Failed changes of addresses, routes, rules or filter entries, failed
    /// announcements.
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
    /// Tracked objects that fail: interface names, `script NAME`, `file PATH`,
    /// `process NAME`.
    pub tracked_down: Vec<String>,
    /// The virtual MAC interface, with `use_vmac`.
    pub vmac_interface: Option<String>,
    /// The sync group, for a member of one.
    pub sync_group: Option<String>,
    pub machine: Counters,
    pub drops: DropCounters,
    pub io: IoCounters,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Control {
    /// A new base priority (before tracking).
    Priority(u8),
    /// An event from the sync group.
    Group(Event),
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

    /// Sets the priority tracking starts from ([`crate::Event::PriorityChanged`]
    /// follows). False once the instance has stopped.
    pub fn set_priority(&self, priority: u8) -> bool {
        self.control.send(Control::Priority(priority)).is_ok()
    }

    /// Delivers a sync group's event.
    pub(crate) fn group_event(&self, event: Event) -> bool {
        self.control.send(Control::Group(event)).is_ok()
    }
}

/// Where a sync group member reports to.
#[derive(Debug, Clone)]
pub(crate) struct GroupLink {
    pub name: String,
    pub index: usize,
    pub reports: mpsc::UnboundedSender<(usize, MemberReport)>,
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
    /// Changes what a Master holds, announces.
    addresses: Option<AddressWorker>,
    netlink: rtnetlink::Handle,
    ifindex: u32,
    /// RTNLGRP_LINK notifications.
    link_changes: broadcast::Receiver<LinkChange>,
    feeds: Feeds,
    /// The last known index of each tracked interface, by tracker.
    tracked_links: Vec<Option<u32>>,
    /// Startup was delivered (it waits for unweighted scripts' first results).
    started: bool,
    hooks: NotifyHooks,
    notifier: Option<Notifier>,
    vmac: Option<Arc<VirtualMacLink>>,
    /// IFF_UP and IFF_RUNNING, as last reported.
    link_up: bool,
    /// Until when to wait for the primary address before [`Event::InterfaceUp`].
    wait_for_primary: Option<Instant>,
    unicast_peers: Vec<IpAddr>,
    status: watch::Sender<Status>,
    status_rx: watch::Receiver<Status>,
    control_tx: mpsc::UnboundedSender<Control>,
    control: mpsc::UnboundedReceiver<Control>,
    drops: DropCounters,
    io: IoCounters,
    virtual_addresses_present: bool,
    /// Warnings of adverts whose address list differs, by source and list.
    mismatch_warnings: WarningLimit<(IpAddr, VirtualAddresses)>,
    /// Warnings of failed sends, by destination and errno (a link that is
    /// down fails every advert; the counters keep the total).
    send_warnings: WarningLimit<(IpAddr, Option<i32>)>,
    /// Address errors of this task (the worker counts its own).
    io_address_errors: u64,
    group: Option<GroupLink>,
    /// The last [`MemberReport::Down`] sent.
    reported_down: bool,
}

impl Instance {
    /// The config as completed by setup (primary address filled in).
    pub fn config(&self) -> &InstanceConfig {
        self.machine.config()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn handle(&self) -> InstanceHandle {
        InstanceHandle {
            status: self.status_rx.clone(),
            control: self.control_tx.clone(),
        }
    }

    /// Makes this instance member `index` of a sync group reporting to `reports`.
    pub(crate) fn join_group(&mut self, link: GroupLink) {
        self.group = Some(link);
    }

    /// Gives up an instance that was set up but will not run: its virtual MAC
    /// interface goes.
    pub async fn discard(mut self) {
        if let Some(v) = self.vmac.take() {
            v.remove().await;
        }
    }
}
