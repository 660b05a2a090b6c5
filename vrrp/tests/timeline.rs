//! Deterministic timelines on a simulated LAN: hours of adverts, masters dying and
//! coming back, priority-0 handover, preemption, interval adoption. Every advert goes
//! through emit, an IPv4 header with TTL 255 and the receive rules, with 1 ms latency.

mod common;

use std::time::Duration;

use common::{at, cs, ms, v4_config, v6_config, Lan, Rng};
use vrrp::{
    DropReason, Event, State, Timestamp, TransitionReason, V2Auth, V3Ipv4Checksum, Version,
};

const A: usize = 0;
const B: usize = 1;

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A: 192.0.2.1 priority 200, B: 192.0.2.2 priority 100, both VRRPv3, 1 s.
fn pair(version: Version) -> Lan {
    Lan::new(vec![v4_config(version, 1, 200), v4_config(version, 2, 100)])
}

fn start_both(lan: &mut Lan) {
    lan.start(A);
    lan.start(B);
}

#[test]
fn highest_priority_wins_and_holds_for_six_hours() {
    let mut lan = pair(Version::V3);
    start_both(&mut lan);
    lan.run_until(at(hours(6)));

    // A: Master_Down_Interval = 300 + (56 * 100) / 256 = 321 cs after startup.
    assert_eq!(lan.routers[A].became_master_at(), vec![at(ms(3210))]);
    assert!(
        lan.routers[B].became_master_at().is_empty(),
        "B never flaps"
    );
    assert_eq!(lan.masters(), vec![A]);
    assert_eq!(lan.vip_holders(), vec![A]);
    // Adverts at 3.21 s + k s up to 21600 s.
    let sent = 1 + (21_600_000 - 3_210) / 1000;
    assert_eq!(lan.routers[A].machine.counters().adverts_sent, sent);
    assert_eq!(lan.routers[B].machine.counters().adverts_received, sent);
    assert_eq!(lan.routers[B].machine.counters().adverts_sent, 0);
    // The first round of announcements, and the second 5 s later (keepalived's
    // garp_master_delay); no refresh by default.
    assert_eq!(lan.routers[A].gratuitous_sent, 2);
    assert_eq!(lan.routers[B].drops.total(), 0);
    assert_eq!(
        lan.routers[B].machine.master_address(),
        Some(lan.routers[A].machine.config().primary_address)
    );
}

#[test]
fn crashed_master_is_replaced_after_master_down_interval_and_preempts_back() {
    let mut lan = pair(Version::V3);
    start_both(&mut lan);
    lan.run_until(at(ms(3_600_500)));
    lan.kill(A);
    // A's last advert left at 3.21 + 3597 s and arrived 1 ms later; B waits its own
    // Master_Down_Interval of 300 + (156 * 100) / 256 = 360 cs from there.
    lan.run_until(at(ms(3_700_000)));
    assert_eq!(
        lan.routers[B].became_master_at(),
        vec![at(ms(3_600_211 + 3_600))]
    );
    assert_eq!(
        lan.routers[B].transitions.last().map(|t| t.reason),
        Some(TransitionReason::MasterDown)
    );
    assert_eq!(lan.vip_holders(), vec![B]);

    // A comes back: it discards B's lower-priority adverts and preempts once its own
    // Master_Down_Timer (321 cs) fires; B steps down 1 ms later.
    lan.start(A);
    lan.run_until(at(hours(2)));
    assert_eq!(
        lan.routers[A].became_master_at(),
        vec![at(ms(3_210)), at(ms(3_703_210))]
    );
    assert_eq!(
        lan.routers[A].transitions.last().map(|t| (t.at, t.reason)),
        Some((at(ms(3_703_210)), TransitionReason::Preempted))
    );
    let b_last = lan.routers[B]
        .transitions
        .last()
        .copied()
        .expect("B stepped down");
    assert_eq!(b_last.at, at(ms(3_703_211)));
    assert_eq!(b_last.to, State::Backup);
    assert_eq!(lan.masters(), vec![A]);
    assert_eq!(lan.vip_holders(), vec![A]);
}

#[test]
fn priority_zero_hands_over_after_exactly_skew_time_v3() {
    let mut lan = pair(Version::V3);
    start_both(&mut lan);
    lan.run_until(at(secs(100)));
    lan.shutdown(A);
    lan.run_until(at(secs(200)));
    // B: Skew_Time = (156 * 100) / 256 = 60 cs after the priority-0 advert arrives.
    assert_eq!(
        lan.routers[B].became_master_at(),
        vec![at(ms(100_001 + 600))]
    );
    assert_eq!(
        lan.routers[B].transitions.last().map(|t| t.reason),
        Some(TransitionReason::MasterReleased)
    );
    assert_eq!(lan.routers[A].machine.counters().priority_zero_sent, 1);
    assert_eq!(lan.routers[B].machine.counters().priority_zero_received, 1);
    assert_eq!(lan.vip_holders(), vec![B]);
}

#[test]
fn priority_zero_hands_over_after_exactly_skew_time_v2() {
    let mut lan = pair(Version::V2);
    start_both(&mut lan);
    lan.run_until(at(secs(100)));
    // A became Master after 3 s + (256 - 200) / 256 s = 3.21875 s.
    assert_eq!(
        lan.routers[A].became_master_at(),
        vec![Timestamp::from_nanos(3_218_750_000)]
    );
    lan.shutdown(A);
    lan.run_until(at(secs(200)));
    // B: Skew_Time = (256 - 100) / 256 s = 0.609375 s after the priority-0 advert.
    assert_eq!(
        lan.routers[B].became_master_at(),
        vec![Timestamp::from_nanos(100_001_000_000 + 609_375_000)]
    );
}

#[test]
fn later_higher_priority_router_preempts() {
    let mut lan = pair(Version::V3);
    lan.start(B);
    lan.run_until(at(secs(10)));
    assert_eq!(lan.routers[B].became_master_at(), vec![at(ms(3600))]);
    lan.start(A);
    lan.run_until(at(secs(60)));
    assert_eq!(lan.routers[A].became_master_at(), vec![at(ms(13_210))]);
    assert_eq!(lan.masters(), vec![A]);
    assert_eq!(lan.vip_holders(), vec![A]);
    assert!(lan.routers[A].machine.counters().adverts_discarded >= 3);
}

#[test]
fn nopreempt_leaves_the_lower_master_in_place_for_hours() {
    let mut configs = vec![
        v4_config(Version::V3, 1, 200),
        v4_config(Version::V3, 2, 100),
    ];
    configs[A].preempt_mode = false;
    let mut lan = Lan::new(configs);
    lan.start(B);
    lan.run_until(at(secs(10)));
    lan.start(A);
    lan.run_until(at(hours(4)));
    assert!(lan.routers[A].became_master_at().is_empty());
    assert_eq!(lan.masters(), vec![B]);
    assert_eq!(lan.routers[A].machine.counters().adverts_discarded, 0);
    assert_eq!(lan.routers[A].machine.state(), State::Backup);
}

#[test]
fn preempt_delay_postpones_preemption() {
    let mut configs = vec![
        v4_config(Version::V3, 1, 200),
        v4_config(Version::V3, 2, 100),
    ];
    configs[A].preempt_delay = secs(60);
    let mut lan = Lan::new(configs);
    lan.start(B);
    lan.run_until(at(secs(10)));
    lan.start(A);
    lan.run_until(at(secs(300)));
    // B sends at 3.6 s + k; A accepts arrivals before 70 s (the last at 69.601 s) and
    // takes over one Master_Down_Interval (321 cs) after it.
    assert_eq!(
        lan.routers[A].became_master_at(),
        vec![at(ms(69_601 + 3_210))]
    );
    assert_eq!(lan.masters(), vec![A]);
}

/// v3 Backups adopt the Master's interval (in centiseconds, not seconds: 50 cs is
/// half a second) and time out on it.
#[test]
fn backup_adopts_masters_interval_in_centiseconds() {
    let mut configs = vec![
        v4_config(Version::V3, 1, 200),
        v4_config(Version::V3, 2, 100),
    ];
    configs[A].advertisement_interval = cs(50);
    let mut lan = Lan::new(configs);
    start_both(&mut lan);
    lan.run_until(at(hours(1)));
    // A: 150 + (56 * 50) / 256 = 160 cs.
    assert_eq!(lan.routers[A].became_master_at(), vec![at(ms(1600))]);
    assert_eq!(
        lan.routers[A].machine.counters().adverts_sent,
        1 + (3_600_000 - 1_600) / 500
    );
    assert_eq!(lan.routers[B].machine.master_adver_interval(), cs(50));
    // B: 3 * 50 + (156 * 50) / 256 = 180 cs.
    assert_eq!(lan.routers[B].machine.master_down_interval(), ms(1800));
    lan.run_until(at(ms(3_600_200)));
    lan.kill(A);
    lan.run_until(at(ms(3_700_000)));
    // Last advert from A at 1.6 + 7197 * 0.5 = 3600.1 s.
    assert_eq!(
        lan.routers[B].became_master_at(),
        vec![at(ms(3_600_101 + 1_800))]
    );
    // As Master, B advertises its own interval again.
    let sends: Vec<_> = lan.routers[B].sent.iter().take(3).map(|s| s.0).collect();
    assert_eq!(
        sends,
        vec![at(ms(3_601_901)), at(ms(3_602_901)), at(ms(3_603_901))]
    );
}

/// Equal priorities: both time out together, then the greater primary address wins
/// (§6.4.3) and keeps winning.
#[test]
fn equal_priority_resolves_to_greater_address() {
    let mut lan = Lan::new(vec![
        v4_config(Version::V3, 1, 100),
        v4_config(Version::V3, 2, 100),
    ]);
    start_both(&mut lan);
    lan.run_until(at(hours(1)));
    assert_eq!(lan.masters(), vec![B]);
    assert_eq!(lan.vip_holders(), vec![B]);
    assert_eq!(lan.routers[A].became_master_at(), vec![at(ms(3600))]);
    assert_eq!(lan.routers[B].became_master_at(), vec![at(ms(3600))]);
    let a_last = lan.routers[A]
        .transitions
        .last()
        .copied()
        .expect("A stepped down");
    assert_eq!((a_last.at, a_last.to), (at(ms(3601)), State::Backup));
    assert_eq!(
        lan.routers[A].transitions.len(),
        3,
        "Backup, Master, Backup: no flapping"
    );
}

#[test]
fn ipv6_pair_fails_over() {
    let mut lan = Lan::new(vec![v6_config(1, 200), v6_config(2, 100)]);
    start_both(&mut lan);
    lan.run_until(at(ms(1_800_500)));
    assert_eq!(lan.masters(), vec![A]);
    assert_eq!(lan.routers[B].drops.total(), 0);
    lan.kill(A);
    lan.run_until(at(hours(1)));
    // Last advert from A at 3.21 + 1797 s.
    assert_eq!(
        lan.routers[B].became_master_at(),
        vec![at(ms(1_800_211 + 3_600))]
    );
    assert_eq!(lan.vip_holders(), vec![B]);
}

#[test]
fn v2_with_password() {
    let mut configs = vec![
        v4_config(Version::V2, 1, 200),
        v4_config(Version::V2, 2, 100),
    ];
    for c in &mut configs {
        c.auth = V2Auth::simple_password(b"secret").expect("short");
    }
    let mut lan = Lan::new(configs.clone());
    start_both(&mut lan);
    lan.run_until(at(hours(1)));
    assert_eq!(lan.masters(), vec![A]);
    assert_eq!(lan.routers[B].drops.total(), 0);

    // A wrong password on B: every advert fails, both become Master, and the counter
    // says why.
    configs[B].auth = V2Auth::simple_password(b"guess").expect("short");
    let mut lan = Lan::new(configs);
    start_both(&mut lan);
    lan.run_until(at(secs(60)));
    assert_eq!(lan.masters(), vec![A, B]);
    assert!(lan.routers[B].drops.get(DropReason::AuthFailure) > 50);
}

/// keepalived-style and Cisco-style checksums do not interoperate; the drops show it.
#[test]
fn checksum_mode_mismatch_is_visible() {
    let mut configs = vec![
        v4_config(Version::V3, 1, 200),
        v4_config(Version::V3, 2, 100),
    ];
    configs[B].v3_ipv4_checksum = V3Ipv4Checksum::WithoutPseudoHeader;
    let mut lan = Lan::new(configs);
    start_both(&mut lan);
    lan.run_until(at(secs(60)));
    assert_eq!(lan.masters(), vec![A, B]);
    assert!(lan.routers[A].drops.get(DropReason::BadChecksum) > 50);
    assert!(lan.routers[B].drops.get(DropReason::BadChecksum) > 50);
}

#[test]
fn interface_down_on_master_fails_over_and_recovers() {
    let mut lan = pair(Version::V3);
    start_both(&mut lan);
    lan.run_until(at(secs(100)));
    lan.event(A, Event::InterfaceDown);
    assert_eq!(lan.vip_holders(), Vec::<usize>::new());
    lan.run_until(at(secs(200)));
    // No priority 0 on a dead link: B waits the full 360 cs after A's last advert.
    assert_eq!(
        lan.routers[B].became_master_at(),
        vec![at(ms(99_211 + 3_600))]
    );
    lan.event(A, Event::InterfaceUp);
    lan.run_until(at(secs(300)));
    assert_eq!(
        lan.routers[A].became_master_at(),
        vec![at(ms(3_210)), at(ms(203_210))]
    );
    assert_eq!(lan.masters(), vec![A]);
    assert_eq!(lan.vip_holders(), vec![A]);
}

/// Tracking lowers the Master's priority below the Backup's: the Backup preempts one
/// Master_Down_Interval after the last advert it accepted.
#[test]
fn tracking_lowers_master_priority() {
    let mut lan = pair(Version::V3);
    start_both(&mut lan);
    lan.run_until(at(ms(100_500)));
    lan.event(A, Event::PriorityChanged(50));
    lan.run_until(at(secs(200)));
    // A's advert at 100.21 s still said 200; from 101.21 s on B discards A's adverts.
    assert_eq!(
        lan.routers[B].became_master_at(),
        vec![at(ms(100_211 + 3_600))]
    );
    assert_eq!(lan.masters(), vec![B]);
    lan.event(A, Event::PriorityChanged(200));
    lan.run_until(at(secs(300)));
    assert_eq!(lan.masters(), vec![A]);
}

/// Twelve simulated hours of random crashes, graceful stops and restarts of three
/// routers. Whenever things have had time to settle, the highest-priority running
/// router is the one Master and the only VIP holder.
#[test]
fn chaos_twelve_hours() {
    for seed in [1u64, 2, 3] {
        let configs = vec![
            v4_config(Version::V3, 1, 250),
            v4_config(Version::V3, 2, 150),
            v4_config(Version::V3, 3, 50),
        ];
        let mut lan = Lan::new(configs);
        for i in 0..3 {
            lan.start(i);
        }
        let mut rng = Rng::new(seed);
        let end = at(hours(12));
        let mut checks = 0;
        while lan.now < end {
            let next = lan.now + Duration::from_millis(10_000 + rng.below(170_000));
            lan.run_until(next);

            let running: Vec<usize> = (0..3)
                .filter(|i| lan.routers[*i].alive && lan.routers[*i].machine.is_started())
                .collect();
            // Lower index = higher priority.
            let expected: Vec<usize> = running.first().copied().into_iter().collect();
            assert_eq!(lan.masters(), expected, "seed {seed} at {}", lan.now);
            assert_eq!(lan.vip_holders(), expected, "seed {seed} at {}", lan.now);
            checks += 1;

            let i = usize::try_from(rng.below(3)).expect("small");
            if running.contains(&i) {
                if rng.below(2) == 0 {
                    lan.kill(i);
                } else {
                    lan.shutdown(i);
                }
            } else {
                lan.start(i);
            }
        }
        assert!(checks > 300, "seed {seed}: {checks} checks");
    }
}
