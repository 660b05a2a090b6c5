//! A `[[vrrp_script]]` check, sans I/O: when to run it, when a run has overstayed its
//! timeout, and what a run's result does to the script's state.
//!
//! The counting is keepalived 2.2.7's (`vrrp_script_child_thread`): a counter runs
//! from 0 to rise + fall - 1; the script is good from `rise` up. A failed script
//! needs `rise` successes in a row, a good one `fall` failures in a row; a result in
//! the other direction resets the count. Before the first result the script is
//! pending and that result alone decides ("one success is enough"), unless
//! `init_fail` starts it as failed. A run that outlives its timeout is killed and
//! counts as a failure; a run still going when the next is due delays nothing and
//! skips that run.

use std::time::Duration;

use crate::settings::Script;
use crate::time::Timestamp;

/// A script's state as its trackers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScriptState {
    /// No result yet.
    Pending,
    Good,
    Failed,
}

/// An input to a [`ScriptCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptEvent {
    /// The deadline from [`ScriptCheck::poll_timeout`] may have passed.
    Timeout,
    /// The running program exited (`true`: status 0).
    Exited { success: bool },
    /// The program could not be started: a failure.
    SpawnFailed,
}

/// What the shell must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptAction {
    /// Start the program.
    Run,
    /// Kill the running program (its timeout passed); its exit no longer counts.
    Kill,
    /// The script's state changed.
    Changed(ScriptState),
}

/// One script's schedule and result counting.
#[derive(Debug, Clone)]
pub struct ScriptCheck {
    interval: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
    /// keepalived's `result`: 0..=rise + fall - 1, good from `rise` up.
    result: u32,
    state: ScriptState,
    next_run: Timestamp,
    /// When the running program must be done.
    running_until: Option<Timestamp>,
    /// Runs skipped because the previous one was still going.
    skipped: u64,
}

impl ScriptCheck {
    /// A check whose first run is due at `now`.
    pub fn new(script: &Script, now: Timestamp) -> ScriptCheck {
        let rise = script.rise.max(1);
        let fall = script.fall.max(1);
        let (result, state) = if script.init_fail {
            (0, ScriptState::Failed)
        } else {
            (rise - 1, ScriptState::Pending)
        };
        ScriptCheck {
            interval: Duration::from_millis(script.interval_ms.max(1)),
            timeout: Duration::from_millis(script.effective_timeout_ms().max(1)),
            rise,
            fall,
            result,
            state,
            next_run: now,
            running_until: None,
            skipped: 0,
        }
    }

    pub fn state(&self) -> ScriptState {
        self.state
    }

    pub fn is_running(&self) -> bool {
        self.running_until.is_some()
    }

    /// Runs skipped because the previous run was still going.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next deadline: the next run, or the running one's timeout if sooner.
    pub fn poll_timeout(&self) -> Timestamp {
        match self.running_until {
            Some(t) => t.min(self.next_run),
            None => self.next_run,
        }
    }

    pub fn handle(&mut self, now: Timestamp, event: ScriptEvent) -> Vec<ScriptAction> {
        let mut actions = Vec::new();
        match event {
            ScriptEvent::Timeout => {
                if self.running_until.is_some_and(|t| t <= now) {
                    self.running_until = None;
                    actions.push(ScriptAction::Kill);
                    self.record(false, &mut actions);
                }
                if self.next_run <= now {
                    self.next_run = now + self.interval;
                    if self.running_until.is_some() {
                        self.skipped += 1;
                    } else {
                        self.running_until = Some(now + self.timeout);
                        actions.push(ScriptAction::Run);
                    }
                }
            }
            ScriptEvent::Exited { success } => {
                if self.running_until.take().is_some() {
                    self.record(success, &mut actions);
                }
            }
            ScriptEvent::SpawnFailed => {
                if self.running_until.take().is_some() {
                    self.record(false, &mut actions);
                }
            }
        }
        actions
    }

    /// keepalived's counting of one result.
    fn record(&mut self, success: bool, actions: &mut Vec<ScriptAction>) {
        let top = self.rise + self.fall - 1;
        let before = self.state;
        if success {
            if self.result + 1 < self.rise {
                self.result += 1;
            } else {
                self.result = top;
                self.state = ScriptState::Good;
            }
        } else if self.result > self.rise {
            self.result -= 1;
        } else {
            self.result = 0;
            self.state = ScriptState::Failed;
        }
        if self.state != before {
            actions.push(ScriptAction::Changed(self.state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ScriptCommand;

    fn script(rise: u32, fall: u32) -> Script {
        Script {
            rise,
            fall,
            ..Script::new("chk", ScriptCommand::Shell("true".into()))
        }
    }

    fn ms(n: u64) -> Timestamp {
        Timestamp::from_elapsed(Duration::from_millis(n))
    }

    /// Runs once, finishing at `at` with `success`; returns the state changes.
    fn run(c: &mut ScriptCheck, at: Timestamp, success: bool) -> Vec<ScriptAction> {
        let due = c.poll_timeout();
        assert_eq!(c.handle(due, ScriptEvent::Timeout), [ScriptAction::Run]);
        c.handle(at.max(due), ScriptEvent::Exited { success })
    }

    #[test]
    fn the_first_result_decides_whatever_rise_and_fall_say() {
        let mut c = ScriptCheck::new(&script(3, 3), ms(0));
        assert_eq!(c.state(), ScriptState::Pending);
        assert_eq!(
            run(&mut c, ms(5), true),
            [ScriptAction::Changed(ScriptState::Good)]
        );
        let mut c = ScriptCheck::new(&script(3, 3), ms(0));
        assert_eq!(
            run(&mut c, ms(5), false),
            [ScriptAction::Changed(ScriptState::Failed)]
        );
    }

    #[test]
    fn fall_failures_fail_and_rise_successes_recover() {
        let mut c = ScriptCheck::new(&script(2, 3), ms(0));
        run(&mut c, ms(1), true);
        assert_eq!(c.state(), ScriptState::Good);
        assert_eq!(run(&mut c, ms(0), false), []);
        assert_eq!(run(&mut c, ms(0), false), []);
        // A success in between resets the count.
        assert_eq!(run(&mut c, ms(0), true), []);
        assert_eq!(run(&mut c, ms(0), false), []);
        assert_eq!(run(&mut c, ms(0), false), []);
        assert_eq!(
            run(&mut c, ms(0), false),
            [ScriptAction::Changed(ScriptState::Failed)]
        );
        assert_eq!(run(&mut c, ms(0), true), []);
        // A failure while failed starts the count again.
        assert_eq!(run(&mut c, ms(0), false), []);
        assert_eq!(run(&mut c, ms(0), true), []);
        assert_eq!(
            run(&mut c, ms(0), true),
            [ScriptAction::Changed(ScriptState::Good)]
        );
    }

    #[test]
    fn init_fail_starts_failed() {
        let s = Script {
            init_fail: true,
            ..script(2, 1)
        };
        let mut c = ScriptCheck::new(&s, ms(0));
        assert_eq!(c.state(), ScriptState::Failed);
        assert_eq!(run(&mut c, ms(1), true), []);
        assert_eq!(
            run(&mut c, ms(1), true),
            [ScriptAction::Changed(ScriptState::Good)]
        );
    }

    #[test]
    fn a_hung_run_is_killed_at_its_timeout_and_fails() {
        let s = Script {
            interval_ms: 1000,
            timeout_ms: Some(300),
            ..script(1, 1)
        };
        let mut c = ScriptCheck::new(&s, ms(0));
        assert_eq!(c.handle(ms(0), ScriptEvent::Timeout), [ScriptAction::Run]);
        assert_eq!(c.poll_timeout(), ms(300));
        assert_eq!(c.handle(ms(299), ScriptEvent::Timeout), []);
        assert_eq!(
            c.handle(ms(300), ScriptEvent::Timeout),
            [
                ScriptAction::Kill,
                ScriptAction::Changed(ScriptState::Failed)
            ]
        );
        // The killed program's exit does not count again.
        assert_eq!(c.handle(ms(301), ScriptEvent::Exited { success: true }), []);
        assert_eq!(c.poll_timeout(), ms(1000), "the schedule is unchanged");
    }

    #[test]
    fn a_run_still_going_skips_the_next_and_timeout_defaults_to_interval() {
        let mut c = ScriptCheck::new(&script(1, 1), ms(0));
        c.handle(ms(0), ScriptEvent::Timeout);
        // Timeout = interval = 1 s: both fall due at once.
        assert_eq!(c.poll_timeout(), ms(1000));
        let actions = c.handle(ms(1000), ScriptEvent::Timeout);
        assert_eq!(
            actions,
            [
                ScriptAction::Kill,
                ScriptAction::Changed(ScriptState::Failed),
                ScriptAction::Run
            ]
        );
        let s = Script {
            timeout_ms: Some(5000),
            ..script(1, 1)
        };
        let mut c = ScriptCheck::new(&s, ms(0));
        c.handle(ms(0), ScriptEvent::Timeout);
        assert_eq!(c.handle(ms(1000), ScriptEvent::Timeout), []);
        assert_eq!(c.skipped(), 1);
        assert!(c.is_running());
        assert_eq!(
            c.handle(ms(1500), ScriptEvent::SpawnFailed),
            [ScriptAction::Changed(ScriptState::Failed)]
        );
    }
}
