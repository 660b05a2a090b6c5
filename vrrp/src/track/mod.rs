//! Tracking, sans I/O: what tracked interfaces, scripts, files and processes do to an
//! instance, by keepalived 2.2.7's rules (`vrrp_track.c`, `track_file.c`).
//!
//! - [`Tracking`]: the trackers of one instance and their last readings; its
//!   [`Tracking::verdict`] says whether the instance is in Fault, still waiting for a
//!   first result, or at which effective priority it runs, and
//!   [`Tracking::events`] turns that into [`crate::Event`]s for the machine.
//! - [`script`]: a `[[vrrp_script]]`'s schedule, timeout and rise/fall counting.
//! - [`mod@file`]: the number a tracked file holds.
//! - [`process`]: which processes match, and quorum with its delays.
//!
//! The shell only reads the world (runs the script, reads the file, lists /proc) and
//! feeds the readings in.

pub mod file;
pub mod process;
pub mod script;

use crate::config::OWNER_PRIORITY;
use crate::machine::{Event, Machine};

/// What one tracked object last looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// No result yet (a script before its first run ends).
    Pending,
    /// Interface up, script succeeding, process quorum held (`true`), or not.
    Up(bool),
    /// The number in a tracked file.
    Value(i64),
}

/// The kind of a tracked object, for status and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackerKind {
    Interface,
    Script,
    File,
    Process,
}

/// One tracked object of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    pub kind: TrackerKind,
    /// Interface, script name, file path or process name.
    pub name: String,
    /// 0: unweighted (a failure is a fault); else the priority change.
    pub weight: i32,
    /// keepalived's `reverse`: the weight's sign (and, unweighted, the failing case)
    /// is swapped.
    pub reverse: bool,
    pub reading: Reading,
}

/// What a tracker does to its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Holds the instance in Fault.
    Fault,
    /// Holds the instance before startup (an unweighted script without a result).
    Pending,
    /// Adds this to the priority (0: nothing).
    Priority(i32),
}

/// keepalived's limit for a tracked file's contribution: at -254 or below the
/// instance faults, above 253 it is cut to 253 (`process_update_vrrp_track_file_status`).
const FILE_FAULT: i64 = -254;
const FILE_MAX: i64 = 253;

impl Tracker {
    /// keepalived's `weight_multiplier`.
    fn multiplier(&self) -> i64 {
        if self.reverse {
            -1
        } else {
            1
        }
    }

    /// This tracker's effect, per keepalived:
    ///
    /// - up/down trackers (interfaces, scripts, processes): unweighted, the failing
    ///   case is a fault (the good case with `reverse`); weighted, a positive weight
    ///   counts while good, a negative one while failing, times -1 with `reverse`
    ///   (`initialise_track_script_state`, `process_script_update_priority`);
    /// - files: unweighted, a non-zero number is a fault (zero with `reverse`);
    ///   weighted, number x weight (x -1 with `reverse`), a fault at -254 or below,
    ///   at most 253 (`process_update_vrrp_track_file_status`).
    pub fn effect(&self) -> Effect {
        let m = self.multiplier();
        let w = i64::from(self.weight);
        match self.reading {
            Reading::Pending if self.weight == 0 => Effect::Pending,
            Reading::Pending => Effect::Priority(0),
            Reading::Up(good) if self.weight == 0 => {
                if good == self.reverse {
                    Effect::Fault
                } else {
                    Effect::Priority(0)
                }
            }
            Reading::Up(good) => {
                let counts = (w > 0 && good) || (w < 0 && !good);
                Effect::Priority(if counts { clamp_i32(w * m) } else { 0 })
            }
            Reading::Value(v) if self.weight == 0 => {
                if (v != 0) != self.reverse {
                    Effect::Fault
                } else {
                    Effect::Priority(0)
                }
            }
            Reading::Value(v) => {
                let status = v.saturating_mul(w).saturating_mul(m);
                if status <= FILE_FAULT {
                    Effect::Fault
                } else {
                    Effect::Priority(clamp_i32(status.min(FILE_MAX)))
                }
            }
        }
    }

    /// Whether status should list this tracker as failing: a fault, or a priority
    /// taken away.
    pub fn is_failing(&self) -> bool {
        match self.effect() {
            Effect::Fault => true,
            Effect::Pending => false,
            Effect::Priority(p) => p < 0,
        }
    }
}

fn clamp_i32(v: i64) -> i32 {
    i32::try_from(v.clamp(i64::from(i32::MIN), i64::from(i32::MAX))).unwrap_or(0)
}

/// Where the trackers leave an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Some tracker holds the instance in Fault.
    pub fault: bool,
    /// An unweighted script has no result yet: keepalived keeps the instance in its
    /// initial state until it has (it neither sends nor takes over).
    pub pending: bool,
    /// The effective priority: the base plus every contribution, within 1..=254; the
    /// address owner's stays 255.
    pub priority: u8,
}

/// The trackers of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    /// The priority before tracking (configured, or set by a handle).
    pub base: u8,
    pub trackers: Vec<Tracker>,
}

impl Tracking {
    pub fn new(base: u8, trackers: Vec<Tracker>) -> Tracking {
        Tracking { base, trackers }
    }

    /// Sets tracker `index`'s reading; whether it changed.
    pub fn set(&mut self, index: usize, reading: Reading) -> bool {
        match self.trackers.get_mut(index) {
            Some(t) if t.reading != reading => {
                t.reading = reading;
                true
            }
            _ => false,
        }
    }

    pub fn verdict(&self) -> Verdict {
        let mut fault = false;
        let mut pending = false;
        let mut delta: i64 = 0;
        for t in &self.trackers {
            match t.effect() {
                Effect::Fault => fault = true,
                Effect::Pending => pending = true,
                Effect::Priority(p) => delta += i64::from(p),
            }
        }
        let priority = if self.base == OWNER_PRIORITY {
            OWNER_PRIORITY
        } else {
            let p = (i64::from(self.base) + delta).clamp(1, i64::from(OWNER_PRIORITY) - 1);
            u8::try_from(p).unwrap_or(1)
        };
        Verdict {
            fault,
            pending,
            priority,
        }
    }

    /// The events that bring `machine` in line with the verdict: a fault raised or
    /// cleared, a new effective priority. (Startup is the caller's, once the verdict
    /// is no longer pending.)
    pub fn events(&self, machine: &Machine) -> Vec<Event> {
        let v = self.verdict();
        let mut events = Vec::new();
        if v.fault != machine.is_faulty() {
            events.push(if v.fault {
                Event::FaultRaised
            } else {
                Event::FaultCleared
            });
        }
        if !machine.config().is_owner() && v.priority != machine.priority() {
            events.push(Event::PriorityChanged(v.priority));
        }
        events
    }

    /// The trackers status lists as failing.
    pub fn failing(&self) -> impl Iterator<Item = &Tracker> {
        self.trackers.iter().filter(|t| t.is_failing())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: TrackerKind, weight: i32, reverse: bool, reading: Reading) -> Tracker {
        Tracker {
            kind,
            name: "x".into(),
            weight,
            reverse,
            reading,
        }
    }

    fn up(weight: i32, reverse: bool, good: bool) -> Effect {
        t(TrackerKind::Script, weight, reverse, Reading::Up(good)).effect()
    }

    #[test]
    fn unweighted_failure_is_a_fault_and_reverse_swaps_it() {
        assert_eq!(up(0, false, false), Effect::Fault);
        assert_eq!(up(0, false, true), Effect::Priority(0));
        // keepalived: 'weight 0 reverse' is down while the script succeeds.
        assert_eq!(up(0, true, true), Effect::Fault);
        assert_eq!(up(0, true, false), Effect::Priority(0));
    }

    #[test]
    fn weight_sign_picks_the_case_that_counts() {
        // Positive: added while up; negative: added while down.
        assert_eq!(up(20, false, true), Effect::Priority(20));
        assert_eq!(up(20, false, false), Effect::Priority(0));
        assert_eq!(up(-20, false, false), Effect::Priority(-20));
        assert_eq!(up(-20, false, true), Effect::Priority(0));
        // reverse: the same cases count, with the opposite sign.
        assert_eq!(up(20, true, true), Effect::Priority(-20));
        assert_eq!(up(-20, true, false), Effect::Priority(20));
        assert_eq!(up(-20, true, true), Effect::Priority(0));
    }

    #[test]
    fn pending_scripts_hold_only_when_unweighted() {
        let p = |w| t(TrackerKind::Script, w, false, Reading::Pending).effect();
        assert_eq!(p(0), Effect::Pending);
        assert_eq!(p(-30), Effect::Priority(0));
    }

    #[test]
    fn file_numbers_follow_keepalived_arithmetic() {
        let f = |w, reverse, v| t(TrackerKind::File, w, reverse, Reading::Value(v)).effect();
        assert_eq!(f(0, false, 0), Effect::Priority(0));
        assert_eq!(f(0, false, 7), Effect::Fault);
        assert_eq!(f(0, true, 0), Effect::Fault);
        assert_eq!(f(0, true, 7), Effect::Priority(0));
        assert_eq!(f(1, false, 30), Effect::Priority(30));
        assert_eq!(f(1, false, -30), Effect::Priority(-30));
        assert_eq!(f(2, true, 30), Effect::Priority(-60));
        assert_eq!(f(10, false, 100), Effect::Priority(253), "cut to 253");
        assert_eq!(f(1, false, -253), Effect::Priority(-253));
        assert_eq!(f(1, false, -254), Effect::Fault, "-254 is a fault");
        assert_eq!(f(254, false, i64::MIN), Effect::Fault, "no overflow");
    }

    #[test]
    fn verdict_sums_and_clamps_and_the_owner_never_moves() {
        let mut tr = Tracking::new(
            100,
            vec![
                t(TrackerKind::Interface, -60, false, Reading::Up(false)),
                t(TrackerKind::Process, -60, false, Reading::Up(false)),
                t(TrackerKind::File, 1, false, Reading::Value(5)),
            ],
        );
        assert_eq!(
            tr.verdict(),
            Verdict {
                fault: false,
                pending: false,
                priority: 1
            },
            "100 - 120 + 5 is clamped to 1"
        );
        assert_eq!(tr.failing().count(), 2);
        assert!(tr.set(0, Reading::Up(true)));
        assert!(!tr.set(0, Reading::Up(true)), "no change");
        assert_eq!(tr.verdict().priority, 45);
        tr.set(2, Reading::Value(500));
        assert_eq!(tr.verdict().priority, 254, "clamped to 254, never 255");
        tr.trackers
            .push(t(TrackerKind::Script, 0, false, Reading::Pending));
        assert!(tr.verdict().pending && !tr.verdict().fault);
        tr.set(3, Reading::Up(false));
        assert!(tr.verdict().fault);
        tr.base = 255;
        assert_eq!(tr.verdict().priority, 255);
    }
}
