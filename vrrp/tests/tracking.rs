//! Tracking and the machine's own timers, without sockets or clocks: a
//! `[[vrrp_script]]` check driving failover on a simulated LAN, the rounds of
//! gratuitous announcements, strict mode.

mod common;

use std::time::Duration;

use common::*;
use vrrp::settings::{Script, ScriptCommand};
use vrrp::track::script::{ScriptAction, ScriptCheck, ScriptEvent, ScriptState};
use vrrp::track::{Reading, Tracker, TrackerKind, Tracking};
use vrrp::{Action, Event, Machine, State, Timestamp, Version};

const A: usize = 0;
const B: usize = 1;

/// Router A's tracking of one script with `weight`, and the script's check.
struct TrackedScript {
    check: ScriptCheck,
    tracking: Tracking,
}

impl TrackedScript {
    fn new(weight: i32, fall: u32, now: Timestamp) -> TrackedScript {
        let script = Script {
            interval_ms: 1000,
            fall,
            weight,
            ..Script::new("chk", ScriptCommand::Shell("true".into()))
        };
        TrackedScript {
            check: ScriptCheck::new(&script, now),
            tracking: Tracking::new(
                200,
                vec![Tracker {
                    kind: TrackerKind::Script,
                    name: "chk".into(),
                    weight,
                    reverse: false,
                    reading: Reading::Pending,
                }],
            ),
        }
    }

    /// Runs the script's due runs up to `until`, each succeeding as `ok` says, feeding
    /// the verdict to router A as it changes.
    fn run(&mut self, lan: &mut Lan, until: Timestamp, ok: bool) {
        while self.check.poll_timeout() <= until {
            let due = self.check.poll_timeout();
            lan.run_until(due);
            let mut actions = self.check.handle(due, ScriptEvent::Timeout);
            if actions.contains(&ScriptAction::Run) {
                // The script takes 5 ms.
                let done = due + ms(5);
                lan.run_until(done);
                actions.extend(self.check.handle(done, ScriptEvent::Exited { success: ok }));
            }
            for a in actions {
                if let ScriptAction::Changed(state) = a {
                    let reading = match state {
                        ScriptState::Pending => Reading::Pending,
                        ScriptState::Good => Reading::Up(true),
                        ScriptState::Failed => Reading::Up(false),
                    };
                    self.tracking.set(0, reading);
                    for e in self.tracking.events(&lan.routers[A].machine) {
                        lan.event(A, e);
                    }
                    if !lan.routers[A].machine.is_started() && !self.tracking.verdict().pending {
                        lan.event(A, Event::Startup);
                    }
                }
            }
        }
        lan.run_until(until);
    }
}

fn pair() -> Lan {
    Lan::new(vec![
        v4_config(Version::V3, 1, 200),
        v4_config(Version::V3, 2, 100),
    ])
}

#[test]
fn a_weighted_script_failing_fall_times_moves_the_vip_and_its_recovery_takes_it_back() {
    let mut lan = pair();
    lan.start(B);
    let mut script = TrackedScript::new(-150, 3, lan.now);
    // Weighted: A starts at once; the script's first success changes nothing.
    lan.event(A, Event::Startup);
    script.run(&mut lan, at(ms(10_000)), true);
    assert_eq!(lan.masters(), vec![A]);

    let failing_from = lan.now;
    script.run(&mut lan, failing_from + Duration::from_secs(2), false);
    assert_eq!(
        lan.masters(),
        vec![A],
        "two failures of three: no change yet"
    );
    script.run(&mut lan, failing_from + Duration::from_secs(3), false);
    assert_eq!(lan.routers[A].machine.priority(), 50);
    // B (100) preempts A (50) after its Master_Down_Interval.
    lan.run_for(ms(5_000));
    assert_eq!(lan.masters(), vec![B]);
    assert_eq!(lan.vip_holders(), vec![B]);

    let until = lan.now + Duration::from_secs(1);
    script.run(&mut lan, until, true);
    assert_eq!(lan.routers[A].machine.priority(), 200);
    lan.run_for(ms(5_000));
    assert_eq!(lan.masters(), vec![A], "A preempts back");
}

#[test]
fn an_unweighted_script_holds_startup_then_its_failure_is_a_fault() {
    let mut lan = pair();
    lan.start(B);
    let mut script = TrackedScript::new(0, 1, lan.now + ms(500));
    assert!(script.tracking.verdict().pending);
    lan.run_for(ms(400));
    assert!(
        !lan.routers[A].machine.is_started(),
        "waits for the first result"
    );
    script.run(&mut lan, at(ms(10_000)), true);
    assert!(lan.routers[A].machine.is_started());
    assert_eq!(lan.masters(), vec![A]);
    let until = lan.now + Duration::from_secs(1);
    script.run(&mut lan, until, false);
    assert_eq!(lan.routers[A].machine.state(), State::Fault);
    // Priority 0 on the way out: B after Skew_Time.
    lan.run_for(ms(1_000));
    assert_eq!(lan.masters(), vec![B]);
}

fn gratuitous_rounds(m: &mut Machine, until: Timestamp) -> Vec<(Timestamp, u32)> {
    let mut out = Vec::new();
    while let Some(t) = m.poll_timeout().filter(|t| *t <= until) {
        for a in m.handle(t, Event::Timeout) {
            if let Action::SendGratuitous { count } = a {
                out.push((t, count));
            }
        }
    }
    out
}

#[test]
fn gratuitous_rounds_follow_delay_repeat_and_refresh() {
    let mut c = v4_config(Version::V3, 1, 255);
    c.gratuitous.master_delay = Some(Duration::from_secs(5));
    c.gratuitous.master_repeat = 3;
    c.gratuitous.refresh = Some(Duration::from_secs(60));
    c.gratuitous.refresh_repeat = 2;
    let mut m = Machine::new(c).expect("valid");
    let first = m.handle(Timestamp::ZERO, Event::Startup);
    assert!(first.contains(&Action::SendGratuitous { count: 3 }));
    let rounds = gratuitous_rounds(&mut m, at(ms(130_000)));
    assert_eq!(
        rounds,
        [
            (at(ms(5_000)), 3),
            (at(ms(60_000)), 2),
            (at(ms(120_000)), 2)
        ]
    );
    // Leaving Master cancels them.
    m.handle(at(ms(130_000)), Event::Shutdown);
    assert_eq!(m.poll_timeout(), None);

    let mut c = v4_config(Version::V3, 1, 255);
    c.gratuitous.master_delay = None;
    let mut m = Machine::new(c).expect("valid");
    m.handle(Timestamp::ZERO, Event::Startup);
    assert_eq!(gratuitous_rounds(&mut m, at(ms(600_000))), []);
}

#[test]
fn strict_mode_does_not_answer_a_lower_priority_advert() {
    let advert_from_b = |strict: bool| {
        let mut c = v4_config(Version::V3, 1, 200);
        c.strict = strict;
        let mut m = Machine::new(c).expect("valid");
        m.handle(Timestamp::ZERO, Event::Startup);
        let t = m.poll_timeout().expect("down timer");
        m.handle(t, Event::Timeout);
        assert_eq!(m.state(), State::Master);
        let lower = Machine::new(v4_config(Version::V3, 2, 100))
            .expect("valid")
            .advert(100);
        m.handle(
            t + ms(1),
            Event::AdvertReceived {
                advert: lower,
                source: "192.0.2.2".parse().expect("literal"),
            },
        )
    };
    // RFC 9568 §6.4.3: answer at once; RFC 5798 (strict): discard silently.
    assert!(matches!(
        advert_from_b(false).as_slice(),
        [Action::SendAdvert(_)]
    ));
    assert_eq!(advert_from_b(true), vec![]);
}
