//! Sync groups, sans I/O (keepalived's `vrrp_sync_group`, not in the RFCs): member
//! instances that are Master together or not at all.
//!
//! A [`GroupSync`] hears what its members' machines do and answers with events for the
//! others, by keepalived 2.2.7's rules (`vrrp_sync.c`):
//!
//! - A member whose Master_Down_Timer fires does not become Master alone: it says so
//!   ([`crate::Action::WantsMaster`]) and waits. Once every member wants to, or one
//!   already is Master, they all become Master ([`Event::GroupMaster`]): Backup is
//!   preferred to thrashing.
//! - A member that becomes Master takes the others along.
//! - A Master that yields to a higher priority takes the other Masters to Backup
//!   ([`Event::GroupBackup`]).
//! - A member that is down (interface down, or a fault of its own) puts every other
//!   member in Fault ([`Event::GroupFault`]): a Master among them sends priority 0.
//!   They come back together once no member is down.

use crate::machine::{Event, State};

/// What a member reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberReport {
    /// Its machine changed state.
    State(State),
    /// [`crate::Action::WantsMaster`].
    WantsMaster(bool),
    /// [`crate::Machine::is_down`] changed.
    Down(bool),
}

#[derive(Debug, Clone, Copy)]
struct Member {
    state: State,
    wants_master: bool,
    down: bool,
    /// The last [`Event::GroupFault`] sent to it.
    group_fault: bool,
}

/// One sync group's coordination.
#[derive(Debug, Clone)]
pub struct GroupSync {
    members: Vec<Member>,
    state: State,
}

impl GroupSync {
    /// A group of `members` instances, all in Initialize.
    pub fn new(members: usize) -> GroupSync {
        GroupSync {
            members: vec![
                Member {
                    state: State::Initialize,
                    wants_master: false,
                    down: false,
                    group_fault: false,
                };
                members
            ],
            state: State::Initialize,
        }
    }

    /// The group's state: Fault while a member is down, else Master while one is,
    /// else Backup while one is, else Initialize.
    pub fn state(&self) -> State {
        self.state
    }

    /// Takes member `index`'s report; returns the events for members (by index) and
    /// the group's state change, if any, for its notify hooks.
    pub fn report(
        &mut self,
        index: usize,
        report: MemberReport,
    ) -> (Vec<(usize, Event)>, Option<State>) {
        let mut events = Vec::new();
        let Some(member) = self.members.get_mut(index) else {
            return (events, None);
        };
        match report {
            MemberReport::State(to) => {
                let from = std::mem::replace(&mut member.state, to);
                if to != State::Backup {
                    member.wants_master = false;
                }
                if to == State::Master {
                    self.all_to_master(&mut events);
                } else if from == State::Master && to == State::Backup {
                    for (i, m) in self.members.iter().enumerate() {
                        if i != index && m.state == State::Master {
                            events.push((i, Event::GroupBackup));
                        }
                    }
                }
            }
            MemberReport::WantsMaster(wants) => {
                member.wants_master = wants;
                let ready = self
                    .members
                    .iter()
                    .all(|m| m.state == State::Master || m.wants_master);
                let any_master = self.members.iter().any(|m| m.state == State::Master);
                if wants && (ready || any_master) {
                    self.all_to_master(&mut events);
                }
            }
            MemberReport::Down(down) => {
                member.down = down;
                self.group_faults(&mut events);
            }
        }
        (events, self.update_state())
    }

    /// Every Backup member becomes Master.
    fn all_to_master(&self, events: &mut Vec<(usize, Event)>) {
        for (i, m) in self.members.iter().enumerate() {
            if m.state == State::Backup {
                events.push((i, Event::GroupMaster));
            }
        }
    }

    /// Each member is in group fault while another member is down.
    fn group_faults(&mut self, events: &mut Vec<(usize, Event)>) {
        let down: Vec<bool> = self.members.iter().map(|m| m.down).collect();
        for (i, m) in self.members.iter_mut().enumerate() {
            let others_down = down.iter().enumerate().any(|(j, d)| j != i && *d);
            if others_down != m.group_fault {
                m.group_fault = others_down;
                events.push((i, Event::GroupFault(others_down)));
            }
        }
    }

    fn update_state(&mut self) -> Option<State> {
        let any = |s: State| self.members.iter().any(|m| m.state == s);
        let state = if self.members.iter().any(|m| m.down) {
            State::Fault
        } else if any(State::Master) {
            State::Master
        } else if any(State::Backup) {
            State::Backup
        } else if any(State::Fault) {
            State::Fault
        } else {
            State::Initialize
        };
        (state != self.state).then(|| {
            self.state = state;
            state
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup_pair() -> GroupSync {
        let mut g = GroupSync::new(2);
        g.report(0, MemberReport::State(State::Backup));
        g.report(1, MemberReport::State(State::Backup));
        g
    }

    #[test]
    fn master_waits_until_every_member_wants_it() {
        let mut g = backup_pair();
        assert_eq!(g.state(), State::Backup);
        assert_eq!(g.report(0, MemberReport::WantsMaster(true)), (vec![], None));
        let (events, _) = g.report(1, MemberReport::WantsMaster(true));
        assert_eq!(events, [(0, Event::GroupMaster), (1, Event::GroupMaster)]);
        let (events, state) = g.report(0, MemberReport::State(State::Master));
        assert_eq!(events, [(1, Event::GroupMaster)]);
        assert_eq!(state, Some(State::Master));
        let (events, state) = g.report(1, MemberReport::State(State::Master));
        assert_eq!((events, state), (vec![], None));
    }

    #[test]
    fn a_wish_withdrawn_blocks_the_group() {
        let mut g = backup_pair();
        g.report(0, MemberReport::WantsMaster(true));
        g.report(0, MemberReport::WantsMaster(false));
        assert_eq!(g.report(1, MemberReport::WantsMaster(true)).0, vec![]);
    }

    #[test]
    fn a_yielding_master_takes_the_others_to_backup() {
        let mut g = backup_pair();
        g.report(0, MemberReport::State(State::Master));
        g.report(1, MemberReport::State(State::Master));
        let (events, state) = g.report(1, MemberReport::State(State::Backup));
        assert_eq!(events, [(0, Event::GroupBackup)]);
        assert_eq!(state, None, "still Master until member 0 follows");
        let (_, state) = g.report(0, MemberReport::State(State::Backup));
        assert_eq!(state, Some(State::Backup));
    }

    #[test]
    fn a_member_down_faults_the_others_until_none_is() {
        let mut g = GroupSync::new(3);
        for i in 0..3 {
            g.report(i, MemberReport::State(State::Master));
        }
        let (events, state) = g.report(1, MemberReport::Down(true));
        assert_eq!(
            events,
            [(0, Event::GroupFault(true)), (2, Event::GroupFault(true))]
        );
        assert_eq!(state, Some(State::Fault));
        // A second member down: member 1 is now held by member 2.
        let (events, _) = g.report(2, MemberReport::Down(true));
        assert_eq!(events, [(1, Event::GroupFault(true))]);
        let (events, _) = g.report(1, MemberReport::Down(false));
        assert_eq!(events, [(2, Event::GroupFault(false))]);
        let (events, state) = g.report(2, MemberReport::Down(false));
        assert_eq!(
            events,
            [(0, Event::GroupFault(false)), (1, Event::GroupFault(false))]
        );
        assert_eq!(state, Some(State::Master));
    }
}
