//! Sync groups on a simulated LAN: two hosts, each running two virtual routers (VRID 51
//! and 52) as one sync group, so the pair of virtual routers is Master on one host or
//! the other, never split (keepalived's `vrrp_sync_group`).

mod common;

use common::*;
use std::net::{IpAddr, Ipv4Addr};
use vrrp::{Event, InstanceConfig, State, Version, VirtualAddresses};

/// Host A's routers 0 (VRID 51) and 1 (VRID 52), host B's 2 and 3.
const A51: usize = 0;
const A52: usize = 1;
const B51: usize = 2;
const B52: usize = 3;

fn member(vrid_value: u8, host: u8, priority: u8) -> InstanceConfig {
    let mut c = InstanceConfig::new(
        vrid(vrid_value),
        Version::V3,
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
        VirtualAddresses::V4(vec![Ipv4Addr::new(192, 0, 2, vrid_value)]),
    );
    c.priority = priority;
    c.synchronized = true;
    c
}

fn two_hosts(a: [u8; 2], b: [u8; 2]) -> Lan {
    lan(a, b, true)
}

/// Host A runs its two routers as a sync group; host B too if `b_grouped`, else as
/// two independent instances.
fn lan(a: [u8; 2], b: [u8; 2], b_grouped: bool) -> Lan {
    let alone = |mut c: InstanceConfig| {
        c.synchronized = b_grouped;
        c
    };
    let mut lan = Lan::new(vec![
        member(51, 1, a[0]),
        member(52, 1, a[1]),
        alone(member(51, 2, b[0])),
        alone(member(52, 2, b[1])),
    ]);
    lan.sync_group(vec![A51, A52]);
    if b_grouped {
        lan.sync_group(vec![B51, B52]);
    }
    for i in 0..4 {
        lan.start(i);
    }
    lan
}

fn state(lan: &Lan, i: usize) -> State {
    lan.routers[i].machine.state()
}

#[test]
fn the_group_becomes_master_together_once_every_member_wants_it() {
    let mut lan = two_hosts([200, 200], [100, 100]);
    lan.run_for(ms(10_000));
    assert_eq!(lan.masters(), vec![A51, A52]);
    assert_eq!(lan.vip_holders(), vec![A51, A52]);
    assert_eq!(lan.groups[0].sync.state(), State::Master);
    assert_eq!(lan.groups[1].sync.state(), State::Backup);
    // Both of A's members went Master at the same moment: when the second one's
    // Master_Down_Timer fired (the first waited for it).
    let a = lan.routers[A51].became_master_at();
    assert_eq!(a.len(), 1);
    assert_eq!(a, lan.routers[A52].became_master_at());
}

#[test]
fn a_member_in_fault_takes_the_whole_group_to_fault_and_back() {
    let mut lan = two_hosts([200, 200], [100, 100]);
    lan.run_for(ms(10_000));
    lan.event(A51, Event::FaultRaised);
    // A52 was not faulted itself but follows its group, sending priority 0, so B
    // takes both over after Skew_Time rather than Master_Down_Interval.
    assert_eq!(state(&lan, A51), State::Fault);
    assert_eq!(state(&lan, A52), State::Fault);
    assert_eq!(lan.groups[0].sync.state(), State::Fault);
    lan.run_for(ms(1_000));
    assert_eq!(lan.masters(), vec![B51, B52]);
    let reason = |i: usize| {
        lan.routers[i]
            .transitions
            .last()
            .map(|t| t.reason)
            .expect("transitions")
    };
    assert_eq!(reason(B52), vrrp::TransitionReason::MasterReleased);
    assert_eq!(reason(A52), vrrp::TransitionReason::GroupFault);

    lan.event(A51, Event::FaultCleared);
    assert_eq!(state(&lan, A51), State::Backup);
    assert_eq!(state(&lan, A52), State::Backup);
    lan.run_for(ms(10_000));
    assert_eq!(lan.masters(), vec![A51, A52], "A preempts back, together");
}

#[test]
fn a_group_never_lets_one_member_go_alone() {
    let mut lan = two_hosts([200, 200], [100, 100]);
    lan.run_for(ms(10_000));
    // A52 falls below B52: B52 wants to preempt, but B51 hears A51 at 200 and does
    // not, so B's group stays Backup and A52 stays Master at 50.
    lan.event(A52, Event::PriorityChanged(50));
    lan.run_for(ms(30_000));
    assert_eq!(lan.masters(), vec![A51, A52]);
    assert!(lan.routers[B52].machine.wants_master());
    assert!(!lan.routers[B51].machine.wants_master());
}

#[test]
fn a_member_that_yields_takes_the_group_to_backup_and_the_group_prefers_backup() {
    // Host B runs two independent instances.
    let mut lan = lan([200, 200], [100, 100], false);
    lan.run_for(ms(10_000));
    assert_eq!(lan.masters(), vec![A51, A52]);
    // A52's priority falls below B52's: B52 preempts, A52 yields, and A51 follows
    // it to Backup although nobody outranks it for VRID 51.
    lan.event(A52, Event::PriorityChanged(50));
    lan.run_for(ms(10_000));
    assert_eq!(state(&lan, A52), State::Backup);
    assert_eq!(state(&lan, A51), State::Backup);
    assert_eq!(
        lan.masters(),
        vec![B51, B52],
        "never split between the hosts"
    );
    // A51 (200) discards B51's adverts (100) and wants to be Master again, but A52
    // does not: the group stays Backup rather than thrash (keepalived's
    // vrrp_sync_can_goto_master).
    assert!(lan.routers[A51].machine.wants_master());
    lan.run_for(ms(60_000));
    assert_eq!(lan.masters(), vec![B51, B52]);
    // A52 back at 200: both want it, both go.
    lan.event(A52, Event::PriorityChanged(200));
    lan.run_for(ms(10_000));
    assert_eq!(lan.masters(), vec![A51, A52]);
}

#[test]
fn a_member_whose_interface_goes_down_faults_its_group() {
    let mut lan = two_hosts([200, 200], [100, 100]);
    lan.run_for(ms(10_000));
    lan.event(A52, Event::InterfaceDown);
    assert_eq!(state(&lan, A52), State::Initialize);
    assert_eq!(state(&lan, A51), State::Fault);
    lan.run_for(ms(5_000));
    assert_eq!(lan.masters(), vec![B51, B52]);
    lan.event(A52, Event::InterfaceUp);
    lan.run_for(ms(10_000));
    assert_eq!(lan.masters(), vec![A51, A52]);
    let states: Vec<State> = lan.groups[0].states.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        states,
        [
            State::Backup,
            State::Master,
            State::Fault,
            State::Backup,
            State::Master
        ]
    );
}
