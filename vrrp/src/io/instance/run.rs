//! The loop of a running instance.

use std::future::Future;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::{Control, Instance, Status};
use crate::io::link::Link;
use crate::io::router::{Inbound, LinkChange};
use crate::io::Error;
use crate::machine::Event;
use crate::sync_group::MemberReport;
use crate::time::Timestamp;
use crate::track::Reading;

/// How long [`Instance::run`] waits for a tentative IPv6 primary address to pass
/// duplicate address detection (1 s by default, after up to 1 s of random delay).
const DAD_WAIT: Duration = Duration::from_secs(5);
const DAD_POLL: Duration = Duration::from_millis(100);
/// How long the stop hooks may take at shutdown.
const STOP_HOOKS_WAIT: Duration = Duration::from_secs(10);

/// What woke the loop.
enum Wake {
    Shutdown,
    Control(Control),
    Link(LinkChange),
    /// Link notifications were lost: query the links again.
    LinksLagged,
    Datagram(Inbound),
    Tracker(usize, Reading),
    Timer,
}

/// Turns the loop's clock into the machine's.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn at(self, t: Instant) -> Timestamp {
        Timestamp::from_elapsed(t.saturating_duration_since(self.0))
    }

    fn now(self) -> Timestamp {
        self.at(Instant::now())
    }

    fn instant(self, t: Timestamp) -> Instant {
        self.0 + t.elapsed()
    }
}

impl Instance {
    /// Runs until `shutdown` completes, then shuts down gracefully: a Master sends
    /// priority 0 (so a Backup takes over after Skew_Time, RFC 5798 §6.4.3) and
    /// gives back what it holds, then the stop hooks run. Returns the final status.
    ///
    /// Virtual addresses left on the interface by an earlier run are removed first: a
    /// Backup must not hold them. The interface is watched over rtnetlink: losing
    /// IFF_UP or IFF_RUNNING is [`Event::InterfaceDown`], getting both back (and, for
    /// IPv6, the link-local address through duplicate address detection) is
    /// [`Event::InterfaceUp`]. Startup waits for the first result of every
    /// unweighted script, as keepalived does. Dropping the future instead of
    /// completing `shutdown` skips the graceful part and leaves the addresses as they
    /// are.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Status {
        let clock = Clock(Instant::now());
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
        self.remove_virtual_addresses();
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
        if !ready {
            self.handle_event(clock.now(), Event::InterfaceDown).await;
        }
        self.sync_tracking(clock.now()).await;

        let mut control_open = true;
        let mut link_events_open = true;
        let mut trackers_open = true;
        // While waiting for the IPv6 primary address: when to look again.
        let mut primary_poll_due: Option<Instant> = None;
        loop {
            self.publish();
            if self.wait_for_primary.is_some() && primary_poll_due.is_none() {
                primary_poll_due = Some(Instant::now());
            }
            let machine_due = self.machine.poll_timeout().map(|t| clock.instant(t));
            let due = [machine_due, primary_poll_due].into_iter().flatten().min();
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
                update = self.feeds.updates.recv(), if trackers_open => match update {
                    Some((index, reading)) => Wake::Tracker(index, reading),
                    None => {
                        trackers_open = false;
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
                    self.feeds.tracking.base = p;
                    self.sync_tracking(clock.now()).await;
                }
                Wake::Control(Control::Group(event)) => {
                    self.handle_event(clock.now(), event).await;
                }
                Wake::LinksLagged => {
                    tracing::warn!(instance = %self.name, "link notifications lost; querying links again");
                    for change in self.query_links().await {
                        self.link_change(&change, &mut primary_poll_due, clock)
                            .await;
                    }
                }
                Wake::Link(change) => {
                    self.link_change(&change, &mut primary_poll_due, clock)
                        .await;
                }
                Wake::Tracker(index, reading) => {
                    if self.feeds.tracking.set(index, reading) {
                        self.log_tracker(index);
                        self.sync_tracking(clock.now()).await;
                    }
                }
                Wake::Datagram(inbound) => {
                    self.io.datagrams_received += 1;
                    if let Some(received) = self.validate(&inbound.bytes, inbound.datagram) {
                        self.handle_event(clock.now(), Event::from(received)).await;
                    }
                }
                Wake::Timer => {
                    let at = Instant::now();
                    if primary_poll_due.is_some_and(|d| d <= at) {
                        primary_poll_due = None;
                        if self.primary_address_ready().await {
                            self.wait_for_primary = None;
                            self.handle_event(clock.now(), Event::InterfaceUp).await;
                        } else {
                            primary_poll_due = Some(Instant::now() + DAD_POLL);
                        }
                    }
                    if machine_due.is_some_and(|d| d <= at) {
                        self.handle_event(clock.at(at), Event::Timeout).await;
                    }
                }
            }
        }
        self.handle_event(clock.now(), Event::Shutdown).await;
        self.notify_stop();
        if let Some(worker) = self.addresses.take() {
            worker.finish(Duration::from_secs(10)).await;
        }
        if let Some(v) = self.vmac.take() {
            v.remove().await;
        }
        if let Some(n) = self.notifier.take() {
            n.finish(STOP_HOOKS_WAIT).await;
        }
        tracing::info!(instance = %self.name, "stopped");
        self.publish();
        self.status.borrow().clone()
    }

    /// Feeds one event to the machine and carries out its actions.
    pub(super) async fn handle_event(&mut self, now: Timestamp, event: Event) {
        let actions = self.machine.handle(now, event);
        self.execute(actions).await;
        self.report_down();
    }

    /// Brings the machine in line with the tracking verdict, and delivers Startup
    /// once no unweighted script is waiting for its first result.
    async fn sync_tracking(&mut self, now: Timestamp) {
        for event in self.feeds.tracking.events(&self.machine) {
            self.handle_event(now, event).await;
        }
        if !self.started && !self.feeds.tracking.verdict().pending {
            self.started = true;
            self.handle_event(now, Event::Startup).await;
        }
    }

    fn log_tracker(&self, index: usize) {
        if let Some(t) = self.feeds.tracking.trackers.get(index) {
            tracing::info!(
                instance = %self.name,
                kind = ?t.kind,
                tracked = %t.name,
                reading = ?t.reading,
                effect = ?t.effect(),
                "tracked object changed"
            );
        }
    }

    /// Tells the sync group when this member goes down or comes back.
    fn report_down(&mut self) {
        let down = self.machine.is_down();
        if down != self.reported_down {
            self.reported_down = down;
            self.report(MemberReport::Down(down));
        }
    }

    pub(super) fn report(&self, report: MemberReport) {
        if let Some(g) = &self.group {
            // The group task ends only after its members.
            let _ = g.reports.send((g.index, report));
        }
    }

    /// The state of the instance's own and tracked interfaces, queried.
    async fn query_links(&self) -> Vec<LinkChange> {
        let mut changes = Vec::new();
        let names = std::iter::once(self.interface.clone())
            .chain(self.feeds.interfaces.iter().map(|(_, n)| n.clone()));
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
        changes
    }

    /// A link notification: the instance's own interface, or a tracked one.
    async fn link_change(
        &mut self,
        change: &LinkChange,
        primary_poll_due: &mut Option<Instant>,
        clock: Clock,
    ) {
        let mut tracking_changed = false;
        for (index, name) in self.feeds.interfaces.clone() {
            let same = match &change.name {
                Some(n) => *n == name,
                None => self.tracked_links[index] == Some(change.index),
            };
            if !same {
                continue;
            }
            if change.index != 0 {
                self.tracked_links[index] = Some(change.index);
            }
            if self.feeds.tracking.set(index, Reading::Up(change.up)) {
                tracking_changed = true;
                self.log_tracker(index);
            }
        }
        if tracking_changed {
            self.sync_tracking(clock.now()).await;
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
            self.handle_event(clock.now(), Event::InterfaceDown).await;
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
}

/// Sleeps until `due`, or forever.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
