//! The virtual router state machine: RFC 5798 / RFC 9568 §6.4 for VRRPv3 and RFC 3768
//! §6.4 for VRRPv2.
//!
//! Sans I/O: [`Machine::handle`] takes `(now, event)` and returns [`Action`]s for the
//! shell to carry out, in order; [`Machine::poll_timeout`] says when to deliver the next
//! [`Event::Timeout`]. RFC 9568 renames Master to Active; this crate keeps the RFC 5798
//! names (Master, Master_Adver_Interval, Master_Down_Timer) that keepalived users know.

mod events;

use std::net::IpAddr;
use std::time::Duration;

use crate::config::{ConfigError, InstanceConfig, OWNER_PRIORITY};
use crate::time::Timestamp;

use crate::wire::{Centiseconds, V2Advert, V3Advert, Version, VirtualAddresses, VrrpRepr};
pub use events::{Action, Counters, Event, State, TransitionReason};

/// One virtual router.
#[derive(Debug, Clone)]
pub struct Machine {
    config: InstanceConfig,
    state: State,
    /// Effective priority: the configured one, moved by tracking.
    priority: u8,
    /// Master_Adver_Interval (§6.1): the Master's interval a Backup adopted (v3); for
    /// v2 and on startup, our own Advertisement_Interval.
    master_adver_interval: Centiseconds,
    adver_timer: Option<Timestamp>,
    master_down_timer: Option<Timestamp>,
    /// What the Master_Down_Timer firing will mean.
    down_reason: TransitionReason,
    started: bool,
    interface_up: bool,
    /// [`Event::FaultRaised`] without [`Event::FaultCleared`] since.
    fault: bool,
    /// [`Event::GroupFault`]`(true)` without `(false)` since.
    group_fault: bool,
    /// Sync group member: the Master_Down_Timer fired and the group has not agreed yet.
    wants_master: bool,
    /// The delayed round of announcements, while Master.
    gratuitous_delayed: Option<Timestamp>,
    /// The next refresh of the announcements, while Master.
    gratuitous_refresh: Option<Timestamp>,
    /// Preemption of a lower-priority Master waits until then (config.preempt_delay).
    preempt_hold_until: Timestamp,
    master_address: Option<IpAddr>,
    counters: Counters,
}

impl Machine {
    /// A machine in Initialize with its interface assumed up; send
    /// [`Event::InterfaceDown`] first if it is not.
    pub fn new(config: InstanceConfig) -> Result<Machine, ConfigError> {
        config.validate()?;
        Ok(Machine {
            priority: config.priority,
            master_adver_interval: config.advertisement_interval,
            config,
            state: State::Initialize,
            adver_timer: None,
            master_down_timer: None,
            down_reason: TransitionReason::MasterDown,
            started: false,
            interface_up: true,
            fault: false,
            group_fault: false,
            wants_master: false,
            gratuitous_delayed: None,
            gratuitous_refresh: None,
            preempt_hold_until: Timestamp::ZERO,
            master_address: None,
            counters: Counters::default(),
        })
    }

    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The effective priority.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    pub fn is_interface_up(&self) -> bool {
        self.interface_up
    }

    /// Whether a fault of this instance's own is raised ([`Event::FaultRaised`]).
    pub fn is_faulty(&self) -> bool {
        self.fault
    }

    /// Whether the instance is held in Fault, by its own fault or its sync group's.
    fn faulted(&self) -> bool {
        self.fault || self.group_fault
    }

    /// Whether this instance is down for a reason of its own: started, and its
    /// interface down or a fault raised. A sync group goes to Fault with it.
    pub fn is_down(&self) -> bool {
        self.started && (self.fault || !self.interface_up)
    }

    /// Sync group member: waiting for the group to agree to Master.
    pub fn wants_master(&self) -> bool {
        self.wants_master
    }

    /// The current Master as far as this router knows: itself when Master, the source
    /// of the last accepted advert when Backup, none in Initialize or before any advert.
    pub fn master_address(&self) -> Option<IpAddr> {
        self.master_address
    }

    pub fn master_adver_interval(&self) -> Centiseconds {
        self.master_adver_interval
    }

    /// Skew_Time (§6.1). VRRPv3: ((256 - Priority) * Master_Adver_Interval) / 256 in
    /// whole centiseconds (integer division, as the RFC's unit). VRRPv2 (RFC 3768
    /// §6.1): (256 - Priority) / 256 seconds, exact in nanoseconds.
    pub fn skew_time(&self) -> Duration {
        let weight = 256 - u32::from(self.priority);
        match self.config.version {
            // 1 s / 256 = 3_906_250 ns exactly.
            Version::V2 => Duration::from_nanos(u64::from(weight) * 3_906_250),
            Version::V3 => {
                let cs = weight * u32::from(self.master_adver_interval.0) / 256;
                Duration::from_millis(u64::from(cs) * 10)
            }
        }
    }

    /// Master_Down_Interval (§6.1): 3 * Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval.as_duration() * 3 + self.skew_time()
    }

    /// Adver_Timer deadline, while Master.
    pub fn adver_timer(&self) -> Option<Timestamp> {
        self.adver_timer
    }

    /// Master_Down_Timer deadline, while Backup.
    pub fn master_down_timer(&self) -> Option<Timestamp> {
        self.master_down_timer
    }

    /// When to deliver the next [`Event::Timeout`]; `None` while no timer runs.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.state {
            State::Initialize | State::Fault => None,
            State::Backup => self.master_down_timer,
            State::Master => [
                self.adver_timer,
                self.gratuitous_delayed,
                self.gratuitous_refresh,
            ]
            .into_iter()
            .flatten()
            .min(),
        }
    }

    /// Whether the shell should accept packets addressed to the virtual addresses:
    /// only a Master, and only if it is the owner or Accept_Mode is on (§6.4.3).
    pub fn accepts_virtual_address_traffic(&self) -> bool {
        self.state == State::Master && (self.config.is_owner() || self.config.accept_mode)
    }

    /// Feeds one event at time `now` and returns what to do.
    pub fn handle(&mut self, now: Timestamp, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Startup => {
                if !self.started {
                    self.started = true;
                    if self.interface_up {
                        self.start(now, TransitionReason::Startup, &mut actions);
                    }
                }
            }
            Event::Shutdown => {
                if self.started {
                    self.started = false;
                    // §6.4.3: a Master sends priority 0 so a Backup takes over after
                    // Skew_Time rather than Master_Down_Interval.
                    self.stop(
                        TransitionReason::Shutdown,
                        true,
                        State::Initialize,
                        &mut actions,
                    );
                }
            }
            Event::InterfaceUp => {
                if !self.interface_up {
                    self.interface_up = true;
                    if self.started {
                        self.start(now, TransitionReason::InterfaceUp, &mut actions);
                    }
                }
            }
            Event::InterfaceDown => {
                if self.interface_up {
                    self.interface_up = false;
                    self.stop(
                        TransitionReason::InterfaceDown,
                        false,
                        State::Initialize,
                        &mut actions,
                    );
                }
            }
            Event::PriorityChanged(priority) => {
                // §5.2.4: the owner's priority is 255, backups use 1..=254.
                if !self.config.is_owner() {
                    self.priority = priority.clamp(1, OWNER_PRIORITY - 1);
                }
            }
            Event::FaultRaised => {
                if !self.fault {
                    self.fault = true;
                    // The interface still carries adverts: priority 0 hands over after
                    // Skew_Time instead of Master_Down_Interval (§6.4.3).
                    self.stop(TransitionReason::Fault, true, State::Fault, &mut actions);
                }
            }
            Event::FaultCleared => {
                if self.fault {
                    self.fault = false;
                    self.restart_after_fault(now, &mut actions);
                }
            }
            Event::GroupFault(true) => {
                if !self.group_fault {
                    self.group_fault = true;
                    // keepalived's vrrp_sync_fault: a Master leaves with priority 0.
                    let reason = TransitionReason::GroupFault;
                    self.stop(reason, true, State::Fault, &mut actions);
                }
            }
            Event::GroupFault(false) => {
                if self.group_fault {
                    self.group_fault = false;
                    self.restart_after_fault(now, &mut actions);
                }
            }
            Event::GroupMaster => {
                if self.state == State::Backup {
                    // Its own timer fired first, or another member's did.
                    let reason = if self.wants_master {
                        self.down_reason
                    } else {
                        TransitionReason::SyncGroup
                    };
                    self.become_master(now, reason, &mut actions);
                }
            }
            Event::GroupBackup => {
                if self.state == State::Master {
                    self.yield_to_backup(now, TransitionReason::SyncGroup, &mut actions);
                }
            }
            Event::Timeout => self.timeout(now, &mut actions),
            Event::AdvertReceived { advert, source } => {
                self.receive(now, &advert, source, &mut actions)
            }
        }
        actions
    }

    /// Start again once neither the instance nor its sync group is faulted.
    fn restart_after_fault(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        if !self.faulted() && self.started && self.interface_up {
            self.start(now, TransitionReason::FaultCleared, actions);
        }
    }

    /// §6.4.1: leave Initialize.
    fn start(&mut self, now: Timestamp, reason: TransitionReason, actions: &mut Vec<Action>) {
        if !matches!(self.state, State::Initialize | State::Fault) {
            return;
        }
        if self.faulted() {
            if self.state != State::Fault {
                self.transition(State::Fault, TransitionReason::Fault, actions);
            }
            return;
        }
        if self.priority == OWNER_PRIORITY {
            self.become_master(now, reason, actions);
        } else {
            self.master_adver_interval = self.config.advertisement_interval;
            self.master_down_timer = Some(now + self.master_down_interval());
            self.down_reason = TransitionReason::MasterDown;
            self.preempt_hold_until = now + self.config.preempt_delay;
            self.master_address = None;
            self.transition(State::Backup, reason, actions);
        }
    }

    /// Back to Initialize (or into Fault), from Backup (§6.4.2: cancel the
    /// Master_Down_Timer) or from Master (§6.4.3: cancel the Adver_Timer, send
    /// priority 0 if the link allows).
    fn stop(
        &mut self,
        reason: TransitionReason,
        send_priority_zero: bool,
        to: State,
        actions: &mut Vec<Action>,
    ) {
        let was = self.state;
        if was == to || (was == State::Initialize && to == State::Fault) {
            return;
        }
        self.cancel_master_timers();
        self.master_down_timer = None;
        self.master_address = None;
        self.transition(to, reason, actions);
        if was == State::Master {
            if send_priority_zero {
                self.send_advert(0, actions);
            }
            actions.push(Action::RemoveVirtualAddresses);
        }
    }

    fn timeout(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        match self.state {
            State::Initialize | State::Fault => {}
            State::Backup => {
                if self.master_down_timer.is_some_and(|t| t <= now) {
                    self.master_down_timer_fired(now, actions);
                }
            }
            State::Master => {
                if self.adver_timer.is_some_and(|t| t <= now) {
                    // §6.4.3: send, and reset the Adver_Timer to Advertisement_Interval.
                    self.send_advert(self.priority, actions);
                    self.adver_timer = Some(now + self.config.advertisement_interval.as_duration());
                }
                self.gratuitous_timers(now, actions);
            }
        }
    }

    /// §6.4.2: "If the Master_Down_Timer fires", become Master; a sync group member
    /// asks its group first and keeps waiting a Master_Down_Interval at a time, as
    /// keepalived's vrrp_sync_can_goto_master does (Backup is preferred to thrashing).
    fn master_down_timer_fired(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        if !self.config.synchronized || self.config.is_owner() {
            self.become_master(now, self.down_reason, actions);
            return;
        }
        self.master_down_timer = Some(now + self.master_down_interval());
        if !self.wants_master {
            self.wants_master = true;
            actions.push(Action::WantsMaster(true));
        }
    }

    /// The delayed and periodic rounds of announcements of a Master.
    fn gratuitous_timers(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let g = self.config.gratuitous;
        if self.gratuitous_delayed.is_some_and(|t| t <= now) {
            self.gratuitous_delayed = None;
            actions.push(Action::SendGratuitous {
                count: g.master_repeat,
            });
        }
        if self.gratuitous_refresh.is_some_and(|t| t <= now) {
            self.gratuitous_refresh = g.refresh.map(|r| now + r);
            actions.push(Action::SendGratuitous {
                count: g.refresh_repeat,
            });
        }
    }

    /// Timers that run only while Master.
    fn cancel_master_timers(&mut self) {
        self.adver_timer = None;
        self.gratuitous_delayed = None;
        self.gratuitous_refresh = None;
    }

    /// Master to Backup, the virtual addresses released, waiting for a Master.
    fn yield_to_backup(
        &mut self,
        now: Timestamp,
        reason: TransitionReason,
        actions: &mut Vec<Action>,
    ) {
        self.cancel_master_timers();
        self.master_down_timer = Some(now + self.master_down_interval());
        self.down_reason = TransitionReason::MasterDown;
        self.master_address = None;
        self.transition(State::Backup, reason, actions);
        actions.push(Action::RemoveVirtualAddresses);
    }

    fn is_for_us(&self, advert: &VrrpRepr) -> bool {
        advert.vrid() == self.config.vrid
            && advert.version() == self.config.version
            && advert.family() == self.config.family()
            && advert.advert_interval().0 != 0
    }

    fn receive(
        &mut self,
        now: Timestamp,
        advert: &VrrpRepr,
        source: IpAddr,
        actions: &mut Vec<Action>,
    ) {
        self.counters.adverts_received = self.counters.adverts_received.saturating_add(1);
        if !self.is_for_us(advert) {
            self.counters.adverts_ignored = self.counters.adverts_ignored.saturating_add(1);
            return;
        }
        if advert.priority() == 0 {
            self.counters.priority_zero_received =
                self.counters.priority_zero_received.saturating_add(1);
        }
        match self.state {
            State::Initialize | State::Fault => {
                self.counters.adverts_ignored = self.counters.adverts_ignored.saturating_add(1);
            }
            State::Backup => self.receive_as_backup(now, advert, source, actions),
            State::Master => self.receive_as_master(now, advert, source, actions),
        }
    }

    /// §6.4.2, "If an ADVERTISEMENT is received".
    fn receive_as_backup(
        &mut self,
        now: Timestamp,
        advert: &VrrpRepr,
        source: IpAddr,
        actions: &mut Vec<Action>,
    ) {
        if advert.priority() == 0 {
            // The Master is leaving: take over after Skew_Time, so the highest
            // priority Backup goes first.
            self.master_down_timer = Some(now + self.skew_time());
            self.down_reason = TransitionReason::MasterReleased;
            return;
        }
        // The owner always preempts, whatever Preempt_Mode says (§6.1).
        let preempt = (self.config.preempt_mode || self.config.is_owner())
            && (now >= self.preempt_hold_until || self.config.is_owner());
        if !preempt || advert.priority() >= self.priority {
            if self.config.version == Version::V3 {
                // v3 Backups adopt the Master's interval (RFC 5798/9568 §6.4.2).
                self.master_adver_interval = advert.advert_interval();
            }
            self.master_down_timer = Some(now + self.master_down_interval());
            self.down_reason = TransitionReason::MasterDown;
            self.master_address = Some(source);
            if self.wants_master {
                // A Master is there after all: the group need not wait for us.
                self.wants_master = false;
                actions.push(Action::WantsMaster(false));
            }
        } else {
            self.counters.adverts_discarded = self.counters.adverts_discarded.saturating_add(1);
            self.down_reason = TransitionReason::Preempted;
        }
    }

    /// §6.4.3, "If an ADVERTISEMENT is received".
    fn receive_as_master(
        &mut self,
        now: Timestamp,
        advert: &VrrpRepr,
        source: IpAddr,
        actions: &mut Vec<Action>,
    ) {
        if advert.priority() == 0 {
            // Another Master is leaving; assert ourselves at once.
            self.send_advert(self.priority, actions);
            self.adver_timer = Some(now + self.config.advertisement_interval.as_duration());
            return;
        }
        let theirs = advert.priority();
        // Equal priorities: the greater primary address wins, compared as unsigned
        // integers in network byte order (what Ipv4Addr/Ipv6Addr's Ord does).
        if theirs > self.priority
            || (theirs == self.priority && source > self.config.primary_address)
        {
            if self.config.version == Version::V3 {
                self.master_adver_interval = advert.advert_interval();
            }
            let reason = TransitionReason::HigherPriorityAdvert {
                priority: theirs,
                source,
            };
            self.yield_to_backup(now, reason, actions);
            self.master_address = Some(source);
        } else {
            self.counters.adverts_discarded = self.counters.adverts_discarded.saturating_add(1);
            // RFC 9568 §6.4.3 (not RFC 5798, not RFC 3768): "Send an ADVERTISEMENT
            // immediately to assert the {Active} state to the sending VRRP Router and to
            // update any learning bridges". The Adver_Timer is left as it is. Strict
            // mode keeps to RFC 5798 (keepalived's lower_prio_no_advert).
            if self.config.version == Version::V3 && !self.config.strict {
                self.send_advert(self.priority, actions);
            }
        }
    }

    /// §6.4.1 (owner at startup) and §6.4.2 (Master_Down_Timer fired): send an advert,
    /// announce the addresses, set the Adver_Timer, become Master.
    fn become_master(
        &mut self,
        now: Timestamp,
        reason: TransitionReason,
        actions: &mut Vec<Action>,
    ) {
        let g = self.config.gratuitous;
        self.master_down_timer = None;
        self.adver_timer = Some(now + self.config.advertisement_interval.as_duration());
        self.gratuitous_delayed = g.master_delay.map(|d| now + d);
        self.gratuitous_refresh = g.refresh.map(|r| now + r);
        self.master_address = Some(self.config.primary_address);
        self.counters.master_transitions = self.counters.master_transitions.saturating_add(1);
        self.transition(State::Master, reason, actions);
        self.send_advert(self.priority, actions);
        actions.push(Action::AddVirtualAddresses);
        actions.push(Action::SendGratuitous {
            count: g.master_repeat,
        });
    }

    fn transition(&mut self, to: State, reason: TransitionReason, actions: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        if to != State::Backup {
            // The group learns of the state change itself.
            self.wants_master = false;
        }
        actions.push(Action::StateChanged { from, to, reason });
    }

    fn send_advert(&mut self, priority: u8, actions: &mut Vec<Action>) {
        self.counters.adverts_sent = self.counters.adverts_sent.saturating_add(1);
        if priority == 0 {
            self.counters.priority_zero_sent = self.counters.priority_zero_sent.saturating_add(1);
        }
        actions.push(Action::SendAdvert(self.advert(priority)));
    }

    /// The advert this router sends at `priority` (RFC 5798 §7.2: fill in the fields
    /// from the virtual router's configuration and state).
    pub fn advert(&self, priority: u8) -> VrrpRepr {
        let c = &self.config;
        match c.version {
            Version::V2 => VrrpRepr::V2(V2Advert {
                vrid: c.vrid,
                priority,
                adver_int: c.adver_int_secs(),
                auth: c.auth,
                addresses: match &c.virtual_addresses {
                    VirtualAddresses::V4(a) => a.clone(),
                    // validate() refuses VRRPv2 with IPv6.
                    VirtualAddresses::V6(_) => Vec::new(),
                },
            }),
            Version::V3 => VrrpRepr::V3(V3Advert {
                vrid: c.vrid,
                priority,
                max_adver_int: c.advertisement_interval,
                addresses: c.virtual_addresses.clone(),
            }),
        }
    }
}
