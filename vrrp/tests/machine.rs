//! The §6.4 rules one at a time, by feeding events directly.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{at, cs, ms, v4_config, v6_config, vrid, VIP4};
use vrrp::{
    Action, ConfigError, Event, InstanceConfig, Machine, Received, State, Timestamp,
    TransitionReason, V2Advert, V2Auth, V3Advert, Version, VirtualAddresses, VrrpRepr,
};

const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const LOW_PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 0);

fn machine(config: InstanceConfig) -> Machine {
    Machine::new(config).expect("valid config")
}

fn started(config: InstanceConfig) -> Machine {
    let mut m = machine(config);
    m.handle(Timestamp::ZERO, Event::Startup);
    m
}

fn advert_from(m: &Machine, priority: u8, interval: u16) -> VrrpRepr {
    let c = m.config();
    match c.version {
        Version::V2 => VrrpRepr::V2(V2Advert {
            vrid: c.vrid,
            priority,
            adver_int: u8::try_from(interval / 100).expect("v2 test intervals are small"),
            auth: c.auth,
            addresses: vec![VIP4],
        }),
        Version::V3 => VrrpRepr::V3(V3Advert {
            vrid: c.vrid,
            priority,
            max_adver_int: cs(interval),
            addresses: c.virtual_addresses.clone(),
        }),
    }
}

fn receive(
    m: &mut Machine,
    now: Timestamp,
    priority: u8,
    interval: u16,
    source: Ipv4Addr,
) -> Vec<Action> {
    let advert = advert_from(m, priority, interval);
    m.handle(
        now,
        Event::AdvertReceived {
            advert,
            source: IpAddr::V4(source),
        },
    )
}

fn to_master(m: &mut Machine) -> Timestamp {
    let t = m.poll_timeout().expect("backup has a Master_Down_Timer");
    m.handle(t, Event::Timeout);
    assert_eq!(m.state(), State::Master);
    t
}

fn sent_priorities(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendAdvert(r) => Some(r.priority()),
            _ => None,
        })
        .collect()
}

#[test]
fn invalid_config_is_refused() {
    let mut c = v4_config(Version::V3, 1, 100);
    c.priority = 0;
    assert_eq!(Machine::new(c).map(|_| ()), Err(ConfigError::PriorityZero));
}

/// Skew_Time and Master_Down_Interval, exactly as §6.1 computes them.
#[test]
fn skew_time_and_master_down_interval() {
    // v3: ((256 - Priority) * Master_Adver_Interval) / 256, whole centiseconds.
    for (priority, interval, skew_cs) in [
        (100u8, 100u16, 60u64), // 15600 / 256 = 60.9
        (200, 100, 21),         // 5600 / 256 = 21.9
        (254, 1, 0),            // 2 / 256
        (1, 4095, 4079),        // 1044225 / 256 = 4079.0
        (255, 100, 0),          // 100 / 256
        (150, 5, 2),            // 530 / 256 = 2.07
    ] {
        let mut c = v4_config(Version::V3, 1, priority);
        c.advertisement_interval = cs(interval);
        let m = machine(c);
        assert_eq!(
            m.skew_time(),
            ms(skew_cs * 10),
            "prio {priority} int {interval}"
        );
        assert_eq!(
            m.master_down_interval(),
            ms(u64::from(interval) * 30 + skew_cs * 10),
            "prio {priority} int {interval}"
        );
    }
    // v2: (256 - Priority) / 256 seconds, exact.
    for (priority, skew_ns) in [(100u8, 609_375_000u64), (255, 3_906_250), (1, 996_093_750)] {
        let mut c = v4_config(Version::V2, 1, priority);
        c.advertisement_interval = cs(300);
        let m = machine(c);
        assert_eq!(m.skew_time(), Duration::from_nanos(skew_ns));
        assert_eq!(
            m.master_down_interval(),
            Duration::from_secs(9) + Duration::from_nanos(skew_ns)
        );
    }
}

/// §6.4.1: a non-owner goes to Backup with Master_Down_Timer = Master_Down_Interval.
#[test]
fn startup_non_owner_goes_backup() {
    let mut m = machine(v4_config(Version::V3, 1, 100));
    assert_eq!(m.poll_timeout(), None);
    let actions = m.handle(at(ms(500)), Event::Startup);
    assert_eq!(
        actions,
        vec![Action::StateChanged {
            from: State::Initialize,
            to: State::Backup,
            reason: TransitionReason::Startup
        }]
    );
    assert_eq!(m.master_adver_interval(), cs(100));
    assert_eq!(m.poll_timeout(), Some(at(ms(500 + 3600))));
    assert_eq!(m.master_down_timer(), m.poll_timeout());
    assert!(m.is_started());
    // A second Startup changes nothing.
    assert_eq!(m.handle(at(ms(600)), Event::Startup), vec![]);
}

/// §6.4.1: the owner (priority 255) goes straight to Master.
#[test]
fn startup_owner_goes_master() {
    let mut m = machine(v4_config(Version::V3, 1, 255));
    let actions = m.handle(Timestamp::ZERO, Event::Startup);
    assert_eq!(
        actions,
        vec![
            Action::StateChanged {
                from: State::Initialize,
                to: State::Master,
                reason: TransitionReason::Startup
            },
            Action::SendAdvert(m.advert(255)),
            Action::AddVirtualAddresses,
            Action::SendGratuitous { count: 5 },
        ]
    );
    assert_eq!(m.adver_timer(), Some(at(ms(1000))));
    assert_eq!(m.poll_timeout(), Some(at(ms(1000))));
    assert!(m.accepts_virtual_address_traffic(), "the owner accepts");
    assert_eq!(
        m.master_address(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
    );
}

/// §6.4.2: Master_Down_Timer fires: send, announce, set Adver_Timer, become Master.
#[test]
fn master_down_timer_makes_master() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    assert_eq!(
        m.handle(at(ms(3599)), Event::Timeout),
        vec![],
        "not yet due"
    );
    let actions = m.handle(at(ms(3600)), Event::Timeout);
    assert_eq!(
        actions,
        vec![
            Action::StateChanged {
                from: State::Backup,
                to: State::Master,
                reason: TransitionReason::MasterDown
            },
            Action::SendAdvert(m.advert(100)),
            Action::AddVirtualAddresses,
            Action::SendGratuitous { count: 5 },
        ]
    );
    assert_eq!(m.adver_timer(), Some(at(ms(4600))));
    assert_eq!(m.master_down_timer(), None);
    assert!(
        !m.accepts_virtual_address_traffic(),
        "Accept_Mode is off by default"
    );
}

/// §6.4.3: Adver_Timer fires: send and reset to Advertisement_Interval.
#[test]
fn adver_timer_sends_and_resets() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let t = to_master(&mut m);
    let next = t + ms(1000);
    assert_eq!(
        m.handle(next, Event::Timeout),
        vec![Action::SendAdvert(m.advert(100))]
    );
    assert_eq!(m.poll_timeout(), Some(next + ms(1000)));
    assert_eq!(m.counters().adverts_sent, 2);
}

/// §6.4.2: priority 0 sets the Master_Down_Timer to Skew_Time.
#[test]
fn backup_priority_zero_sets_skew_time() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let now = at(ms(2000));
    assert_eq!(receive(&mut m, now, 0, 100, PEER), vec![]);
    assert_eq!(m.master_down_timer(), Some(now + ms(600)));
    let actions = m.handle(now + ms(600), Event::Timeout);
    assert!(actions.contains(&Action::StateChanged {
        from: State::Backup,
        to: State::Master,
        reason: TransitionReason::MasterReleased
    }));
    assert_eq!(m.counters().priority_zero_received, 1);
}

/// §6.4.2: an advert of higher or equal priority resets the timer and (v3) the
/// Backup adopts the Master's interval.
#[test]
fn backup_adopts_master_adver_interval_v3() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let now = at(ms(1000));
    receive(&mut m, now, 200, 50, PEER);
    assert_eq!(m.master_adver_interval(), cs(50));
    // 3 * 50 + (156 * 50) / 256 = 150 + 30 cs.
    assert_eq!(m.master_down_interval(), ms(1800));
    assert_eq!(m.master_down_timer(), Some(now + ms(1800)));
    assert_eq!(m.master_address(), Some(IpAddr::V4(PEER)));
    // Equal priority counts as "greater than or equal" too.
    receive(&mut m, now + ms(500), 100, 70, PEER);
    assert_eq!(m.master_adver_interval(), cs(70));
}

/// VRRPv2 has no interval adoption: the interval must match (RFC 3768 §7.1).
#[test]
fn backup_keeps_own_interval_v2() {
    let mut m = started(v4_config(Version::V2, 1, 100));
    let now = at(ms(1000));
    receive(&mut m, now, 200, 100, PEER);
    assert_eq!(m.master_adver_interval(), cs(100));
    assert_eq!(
        m.master_down_timer(),
        Some(now + ms(3000) + Duration::from_nanos(609_375_000))
    );
}

/// §6.4.2: with Preempt_Mode, a lower-priority advert is discarded.
#[test]
fn backup_preempt_discards_lower_priority() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let before = m.master_down_timer();
    receive(&mut m, at(ms(1000)), 50, 100, PEER);
    assert_eq!(m.master_down_timer(), before, "discarded: timer untouched");
    assert_eq!(m.counters().adverts_discarded, 1);
    let t = before.expect("timer runs");
    let actions = m.handle(t, Event::Timeout);
    assert_eq!(
        actions.first(),
        Some(&Action::StateChanged {
            from: State::Backup,
            to: State::Master,
            reason: TransitionReason::Preempted
        })
    );
}

/// §6.4.2: without Preempt_Mode, any advert resets the timer.
#[test]
fn backup_nopreempt_accepts_lower_priority() {
    let mut c = v4_config(Version::V3, 1, 100);
    c.preempt_mode = false;
    let mut m = started(c);
    let now = at(ms(1000));
    receive(&mut m, now, 50, 100, PEER);
    assert_eq!(m.master_down_timer(), Some(now + ms(3600)));
    assert_eq!(m.counters().adverts_discarded, 0);
}

/// preempt_delay: lower-priority adverts are accepted until the hold ends.
#[test]
fn backup_preempt_delay_holds_then_discards() {
    let mut c = v4_config(Version::V3, 1, 100);
    c.preempt_delay = Duration::from_secs(30);
    let mut m = started(c);
    receive(&mut m, at(ms(29_999)), 50, 100, PEER);
    assert_eq!(m.master_down_timer(), Some(at(ms(29_999 + 3600))));
    receive(&mut m, at(ms(30_000)), 50, 100, PEER);
    assert_eq!(
        m.master_down_timer(),
        Some(at(ms(29_999 + 3600))),
        "hold over: discarded"
    );
    assert_eq!(m.counters().adverts_discarded, 1);
}

/// §6.4.3: priority 0 from another Master: send at once and reset the Adver_Timer.
#[test]
fn master_answers_priority_zero() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let t = to_master(&mut m);
    let now = t + ms(300);
    assert_eq!(
        receive(&mut m, now, 0, 100, PEER),
        vec![Action::SendAdvert(m.advert(100))]
    );
    assert_eq!(m.adver_timer(), Some(now + ms(1000)));
}

/// §6.4.3: a higher priority makes the Master a Backup, adopting the interval (v3).
#[test]
fn master_steps_down_for_higher_priority() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let t = to_master(&mut m);
    let now = t + ms(10);
    let actions = receive(&mut m, now, 200, 40, PEER);
    assert_eq!(
        actions,
        vec![
            Action::StateChanged {
                from: State::Master,
                to: State::Backup,
                reason: TransitionReason::HigherPriorityAdvert {
                    priority: 200,
                    source: IpAddr::V4(PEER)
                }
            },
            Action::RemoveVirtualAddresses,
        ]
    );
    assert_eq!(m.adver_timer(), None);
    assert_eq!(m.master_adver_interval(), cs(40));
    // 3 * 40 + (156 * 40) / 256 = 120 + 24 cs.
    assert_eq!(m.master_down_timer(), Some(now + ms(1440)));
}

/// §6.4.3: equal priority, the greater primary address wins.
#[test]
fn master_tie_break_on_primary_address() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let t = to_master(&mut m);
    receive(&mut m, t, 100, 100, LOW_PEER);
    assert_eq!(m.state(), State::Master, "192.0.2.0 < 192.0.2.1");
    receive(&mut m, t, 100, 100, PEER);
    assert_eq!(m.state(), State::Backup, "192.0.2.2 > 192.0.2.1");
}

/// §6.4.3: a lower priority is discarded; RFC 9568 adds an immediate advert (v3 only),
/// and the Adver_Timer is not reset.
#[test]
fn master_lower_priority_v3_asserts_v2_ignores() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let t = to_master(&mut m);
    let timer = m.adver_timer();
    let actions = receive(&mut m, t + ms(100), 50, 100, PEER);
    assert_eq!(sent_priorities(&actions), vec![100]);
    assert_eq!(m.adver_timer(), timer);
    assert_eq!(m.state(), State::Master);

    let mut m = started(v4_config(Version::V2, 1, 100));
    let t = to_master(&mut m);
    assert_eq!(receive(&mut m, t + ms(100), 50, 100, PEER), vec![]);
    assert_eq!(m.counters().adverts_discarded, 1);
}

/// §6.4.3: Shutdown as Master sends priority 0 and removes the addresses.
#[test]
fn master_shutdown_sends_priority_zero() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let t = to_master(&mut m);
    let actions = m.handle(t + ms(5), Event::Shutdown);
    assert_eq!(
        actions,
        vec![
            Action::StateChanged {
                from: State::Master,
                to: State::Initialize,
                reason: TransitionReason::Shutdown
            },
            Action::SendAdvert(m.advert(0)),
            Action::RemoveVirtualAddresses,
        ]
    );
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(m.counters().priority_zero_sent, 1);
    assert_eq!(
        m.handle(t + ms(6), Event::Shutdown),
        vec![],
        "already stopped"
    );
}

/// §6.4.2: Shutdown as Backup cancels the timer, sends nothing.
#[test]
fn backup_shutdown_is_silent() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let actions = m.handle(at(ms(1)), Event::Shutdown);
    assert_eq!(
        actions,
        vec![Action::StateChanged {
            from: State::Backup,
            to: State::Initialize,
            reason: TransitionReason::Shutdown
        }]
    );
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn interface_down_and_up() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let t = to_master(&mut m);
    let actions = m.handle(t + ms(1), Event::InterfaceDown);
    assert_eq!(
        actions,
        vec![
            Action::StateChanged {
                from: State::Master,
                to: State::Initialize,
                reason: TransitionReason::InterfaceDown
            },
            Action::RemoveVirtualAddresses,
        ],
        "no priority 0 on a dead link"
    );
    assert!(!m.is_interface_up());
    assert_eq!(m.handle(t + ms(2), Event::InterfaceDown), vec![]);
    let up = t + ms(10);
    let actions = m.handle(up, Event::InterfaceUp);
    assert_eq!(
        actions,
        vec![Action::StateChanged {
            from: State::Initialize,
            to: State::Backup,
            reason: TransitionReason::InterfaceUp
        }]
    );
    assert_eq!(m.poll_timeout(), Some(up + ms(3600)));
}

#[test]
fn startup_waits_for_the_interface() {
    let mut m = machine(v4_config(Version::V3, 1, 255));
    assert_eq!(m.handle(Timestamp::ZERO, Event::InterfaceDown), vec![]);
    assert_eq!(m.handle(Timestamp::ZERO, Event::Startup), vec![]);
    assert_eq!(m.state(), State::Initialize);
    let actions = m.handle(at(ms(100)), Event::InterfaceUp);
    assert_eq!(m.state(), State::Master);
    assert_eq!(
        actions.first(),
        Some(&Action::StateChanged {
            from: State::Initialize,
            to: State::Master,
            reason: TransitionReason::InterfaceUp
        })
    );
    // Stopped instances stay down when the link returns.
    let mut m = machine(v4_config(Version::V3, 1, 100));
    m.handle(Timestamp::ZERO, Event::InterfaceDown);
    assert_eq!(m.handle(Timestamp::ZERO, Event::InterfaceUp), vec![]);
    assert_eq!(m.state(), State::Initialize);
}

/// Tracking moves the priority within 1..=254; the owner keeps 255.
#[test]
fn priority_changes() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    assert_eq!(m.handle(at(ms(1)), Event::PriorityChanged(150)), vec![]);
    assert_eq!(m.priority(), 150);
    // 3 * 100 + (106 * 100) / 256 = 300 + 41 cs.
    assert_eq!(m.master_down_interval(), ms(3410));
    m.handle(at(ms(1)), Event::PriorityChanged(0));
    assert_eq!(m.priority(), 1);
    m.handle(at(ms(1)), Event::PriorityChanged(255));
    assert_eq!(m.priority(), 254);
    let t = to_master(&mut m);
    assert_eq!(
        m.handle(t + ms(1000), Event::Timeout),
        vec![Action::SendAdvert(m.advert(254))]
    );

    let mut owner = started(v4_config(Version::V3, 1, 255));
    owner.handle(at(ms(1)), Event::PriorityChanged(10));
    assert_eq!(owner.priority(), 255);
}

#[test]
fn adverts_for_someone_else_are_ignored() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let timer = m.master_down_timer();
    let other_vrid = VrrpRepr::V3(V3Advert {
        vrid: vrid(7),
        priority: 200,
        max_adver_int: cs(100),
        addresses: VirtualAddresses::V4(vec![VIP4]),
    });
    let v2 = VrrpRepr::V2(V2Advert {
        vrid: vrid(51),
        priority: 200,
        adver_int: 1,
        auth: V2Auth::None,
        addresses: vec![VIP4],
    });
    let zero_interval = VrrpRepr::V3(V3Advert {
        vrid: vrid(51),
        priority: 200,
        max_adver_int: cs(0),
        addresses: VirtualAddresses::V4(vec![VIP4]),
    });
    let v6 = VrrpRepr::V3(V3Advert {
        vrid: vrid(51),
        priority: 200,
        max_adver_int: cs(100),
        addresses: v6_config(2, 100).virtual_addresses,
    });
    for advert in [other_vrid, v2, zero_interval, v6] {
        let event = Event::AdvertReceived {
            advert,
            source: IpAddr::V4(PEER),
        };
        assert_eq!(m.handle(at(ms(10)), event), vec![]);
    }
    assert_eq!(m.master_down_timer(), timer);
    assert_eq!(m.counters().adverts_ignored, 4);
    assert_eq!(m.counters().adverts_received, 4);

    let mut idle = machine(v4_config(Version::V3, 1, 100));
    receive(&mut idle, at(ms(10)), 200, 100, PEER);
    assert_eq!(
        idle.counters().adverts_ignored,
        1,
        "Initialize ignores adverts"
    );
}

#[test]
fn accept_mode_is_exposed_for_the_shell() {
    let mut c = v4_config(Version::V3, 1, 100);
    c.accept_mode = true;
    let mut m = started(c);
    assert!(
        !m.accepts_virtual_address_traffic(),
        "a Backup never accepts"
    );
    to_master(&mut m);
    assert!(m.accepts_virtual_address_traffic());
    assert!(m.config().accept_mode);
}

#[test]
fn received_converts_into_an_event() {
    let m = started(v4_config(Version::V3, 1, 100));
    let advert = advert_from(&m, 200, 100);
    let received = Received {
        advert: advert.clone(),
        source: IpAddr::V4(PEER),
        address_list_mismatch: false,
    };
    assert_eq!(
        Event::from(received),
        Event::AdvertReceived {
            advert,
            source: IpAddr::V4(PEER)
        }
    );
}

/// The owner preempts even with Preempt_Mode off (§6.1), e.g. after losing a tie
/// against a misconfigured second owner.
#[test]
fn owner_always_preempts() {
    let mut c = v4_config(Version::V3, 1, 255);
    c.preempt_mode = false;
    let mut m = started(c);
    receive(&mut m, at(ms(10)), 255, 100, PEER);
    assert_eq!(m.state(), State::Backup, "lost the tie to 192.0.2.2");
    let timer = m.master_down_timer();
    receive(&mut m, at(ms(20)), 100, 100, PEER);
    assert_eq!(m.master_down_timer(), timer, "lower priority discarded");
}

#[test]
fn v2_adverts_carry_auth_and_whole_seconds() {
    let mut c = v4_config(Version::V2, 1, 100);
    c.advertisement_interval = cs(300);
    c.auth = V2Auth::simple_password(b"pw").expect("short");
    let m = machine(c);
    assert_eq!(
        m.advert(100),
        VrrpRepr::V2(V2Advert {
            vrid: vrid(51),
            priority: 100,
            adver_int: 3,
            auth: V2Auth::simple_password(b"pw").expect("short"),
            addresses: vec![VIP4],
        })
    );
}

#[test]
fn fault_from_master_sends_priority_zero_and_waits() {
    let mut m = started(v4_config(Version::V3, 1, 100));
    let t = to_master(&mut m);
    let actions = m.handle(t + ms(1), Event::FaultRaised);
    assert_eq!(
        actions,
        vec![
            Action::StateChanged {
                from: State::Master,
                to: State::Fault,
                reason: TransitionReason::Fault
            },
            Action::SendAdvert(m.advert(0)),
            Action::RemoveVirtualAddresses,
        ],
        "a fault elsewhere leaves the link usable: priority 0 hands over fast"
    );
    assert!(m.is_faulty());
    assert_eq!(m.poll_timeout(), None, "no timers in Fault");
    assert_eq!(m.handle(t + ms(2), Event::FaultRaised), vec![]);
    // Adverts in Fault are ignored.
    let before = m.counters().adverts_ignored;
    assert_eq!(receive(&mut m, t + ms(3), 200, 100, PEER), vec![]);
    assert_eq!(m.counters().adverts_ignored, before + 1);
    assert_eq!(m.state(), State::Fault);

    let up = t + ms(10);
    assert_eq!(
        m.handle(up, Event::FaultCleared),
        vec![Action::StateChanged {
            from: State::Fault,
            to: State::Backup,
            reason: TransitionReason::FaultCleared
        }]
    );
    assert_eq!(m.poll_timeout(), Some(up + ms(3600)));
}

#[test]
fn fault_and_interface_state_combine() {
    // Fault before startup: Startup lands in Fault, not Backup.
    let mut m = machine(v4_config(Version::V3, 1, 100));
    assert_eq!(m.handle(Timestamp::ZERO, Event::FaultRaised), vec![]);
    let actions = m.handle(at(ms(1)), Event::Startup);
    assert_eq!(
        actions,
        vec![Action::StateChanged {
            from: State::Initialize,
            to: State::Fault,
            reason: TransitionReason::Fault
        }]
    );
    // The link goes: Initialize; it returns while the fault stays: Fault again.
    m.handle(at(ms(2)), Event::InterfaceDown);
    assert_eq!(m.state(), State::Initialize);
    m.handle(at(ms(3)), Event::InterfaceUp);
    assert_eq!(m.state(), State::Fault);
    // Cleared while the link is down: nothing until it is up.
    m.handle(at(ms(4)), Event::InterfaceDown);
    assert_eq!(m.handle(at(ms(5)), Event::FaultCleared), vec![]);
    assert_eq!(m.state(), State::Initialize);
    m.handle(at(ms(6)), Event::InterfaceUp);
    assert_eq!(m.state(), State::Backup);
    // A Backup's fault is silent; Shutdown from Fault goes to Initialize silently.
    let actions = m.handle(at(ms(7)), Event::FaultRaised);
    assert_eq!(sent_priorities(&actions), Vec::<u8>::new());
    assert_eq!(m.state(), State::Fault);
    assert_eq!(
        m.handle(at(ms(8)), Event::Shutdown),
        vec![Action::StateChanged {
            from: State::Fault,
            to: State::Initialize,
            reason: TransitionReason::Shutdown
        }]
    );
}

#[test]
fn owner_faults_too() {
    let mut m = started(v4_config(Version::V3, 1, 255));
    assert_eq!(m.state(), State::Master);
    m.handle(at(ms(1)), Event::FaultRaised);
    assert_eq!(m.state(), State::Fault);
    m.handle(at(ms(2)), Event::FaultCleared);
    assert_eq!(m.state(), State::Master, "the owner starts as Master again");
}
