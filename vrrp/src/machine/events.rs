//! The machine's vocabulary: its states, the events it takes, the actions it returns,
//! why it changed state, what it counts.

use std::net::IpAddr;

use crate::reception::Received;
use crate::wire::VrrpRepr;

/// The three states of RFC 5798 §6.4, plus Fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    /// Not in the RFCs (keepalived's FAULT): started, interface up, but something the
    /// instance depends on (a tracked interface) is down. Like Initialize it neither
    /// sends nor holds the virtual addresses; unlike it, it says why.
    Fault,
}

/// An input to the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The instance is enabled (RFC 5798 §6.4.1).
    Startup,
    /// The instance is disabled: a Master sends priority 0 first (§6.4.3).
    Shutdown,
    /// An advert that passed the receive rules (see [`crate::reception`]).
    AdvertReceived { advert: VrrpRepr, source: IpAddr },
    /// The deadline from [`super::Machine::poll_timeout`] may have passed.
    Timeout,
    /// The interface came up: a started instance starts up again.
    InterfaceUp,
    /// The interface went down: the instance falls back to Initialize without sending
    /// (it cannot), dropping the virtual addresses if it was Master.
    InterfaceDown,
    /// Tracking changed the effective priority. Clamped to 1..=254 (§5.2.4: backups
    /// use 1..=254); ignored by the address owner, whose priority stays 255.
    PriorityChanged(u8),
    /// Something the instance depends on failed (a tracked interface went down): a
    /// Master sends priority 0 (its own interface still works) and drops the
    /// addresses; a Backup stops; both go to [`State::Fault`].
    FaultRaised,
    /// The fault is gone: the instance starts again, as at Startup.
    FaultCleared,
    /// Sync groups (keepalived's `vrrp_sync_group`, not in the RFCs): every member
    /// wants to be Master, or one already is: a Backup becomes Master now.
    GroupMaster,
    /// Another member of the sync group left Master for Backup: so does a Master here,
    /// without priority 0 (the other side's Master is already there).
    GroupBackup,
    /// Another member of the sync group is down (`true`: this one goes to Fault,
    /// sending priority 0 if Master) or back up (`false`).
    GroupFault(bool),
}

impl From<Received> for Event {
    fn from(r: Received) -> Event {
        Event::AdvertReceived {
            advert: r.advert,
            source: r.source,
        }
    }
}

/// Why the state changed: the fields a log line needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionReason {
    /// Startup event (§6.4.1).
    Startup,
    /// The interface came back up and the instance started again.
    InterfaceUp,
    /// Shutdown event.
    Shutdown,
    /// The interface went down.
    InterfaceDown,
    /// A fault was raised ([`Event::FaultRaised`]).
    Fault,
    /// The fault was cleared and the instance started again.
    FaultCleared,
    /// Master_Down_Timer fired: no advert from a Master for Master_Down_Interval.
    MasterDown,
    /// The Master sent priority 0 and Skew_Time passed (§6.4.2).
    MasterReleased,
    /// Preempt_Mode: adverts of a lower-priority Master were discarded until the
    /// Master_Down_Timer fired (§6.4.2).
    Preempted,
    /// The sync group moved this member ([`Event::GroupMaster`], [`Event::GroupBackup`]).
    SyncGroup,
    /// Another member of the sync group is down ([`Event::GroupFault`]).
    GroupFault,
    /// A Master saw an advert of higher priority, or of equal priority from a greater
    /// primary address (§6.4.3).
    HigherPriorityAdvert { priority: u8, source: IpAddr },
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Log it, notify, update status. Always first among the actions of a transition.
    StateChanged {
        from: State,
        to: State,
        reason: TransitionReason,
    },
    /// Emit the advert with [`VrrpRepr::emit`] towards
    /// [`crate::InstanceConfig::advert_endpoints`], checksum per the config, TTL/hop limit 255.
    SendAdvert(VrrpRepr),
    /// Configure the instance's virtual addresses on the interface.
    AddVirtualAddresses,
    /// Remove the instance's virtual addresses from the interface.
    RemoveVirtualAddresses,
    /// Announce the virtual addresses `count` times each: a gratuitous ARP per IPv4
    /// address, or an unsolicited Neighbor Advertisement (R and O set, S clear) to
    /// all-nodes per IPv6 address (§6.4.1, §6.4.2); again after
    /// [`crate::config::Gratuitous::master_delay`] and every
    /// [`crate::config::Gratuitous::refresh`].
    SendGratuitous { count: u32 },
    /// Sync group member ([`crate::InstanceConfig::synchronized`]): whether this Backup's
    /// Master_Down_Timer fired and it waits for the group to agree
    /// ([`Event::GroupMaster`]). `false` once a Master's advert arrives again.
    WantsMaster(bool),
}

/// Per-instance statistics (cf. the VRRP MIB, RFC 6527).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Adverts handed to the shell to send, priority 0 included.
    pub adverts_sent: u64,
    /// Adverts delivered to the machine.
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    /// Adverts the §6.4 rules discard (a lower priority than ours, with preemption).
    pub adverts_discarded: u64,
    /// Adverts not meant for this instance (other VRID, version or family, interval 0)
    /// or arriving while in Initialize.
    pub adverts_ignored: u64,
    /// Transitions to Master.
    pub master_transitions: u64,
}
