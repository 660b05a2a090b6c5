//! Fault injection on the real `vznet apply` (built with the agent's `faults`
//! feature): a host with two bridges and 50 VEs, applied from nothing and then
//! changed to a config that deletes a bridge and half the VEs. At sampled fault
//! points (about eight per transition, always the first and last; `lab faults`
//! tries every one) an injected failure must roll back so that every
//! namespace's full kernel state equals the one before, and after a SIGKILL the
//! next apply must converge and an empty config remove everything vznet made.
//! The same host with six VEs is tried at every fault point (81 of them), and
//! `lab faults --ves 50 --stride 1` tries every point of the 50-VE host.

mod common;

use anyhow::Result;
use lab::faults::Counts;

/// The harness with `ves` VEs at every point (or about `max_points` per
/// transition); every point tried must hold.
fn run(ves: u32, max_points: Option<usize>, tag: &str) -> Result<Counts> {
    let opts = lab::faults::Options {
        vznet: vec![common::VZNET.into()],
        ves,
        stride: 1,
        max_points,
        tag: tag.into(),
    };
    let counts = lab::faults::run(&opts)?;
    println!("{:?}", counts.points);
    println!("{}", counts.summary());
    assert!(
        counts.problems.is_empty(),
        "{}\n{}",
        counts.summary(),
        counts.problems.join("\n")
    );
    Ok(counts)
}

#[test]
fn failures_roll_back_exactly_and_kills_converge_at_sampled_points() -> Result<()> {
    let counts = run(50, Some(6), "faults_sampled")?;
    // Both transitions have points, and each point was tried both ways.
    assert_eq!(counts.points.len(), 2);
    assert!(
        counts.points.iter().all(|(_, n)| *n > 50),
        "{:?}",
        counts.points
    );
    assert!(counts.kill_total >= 14 && counts.fail_total == counts.kill_total);
    Ok(())
}

/// Every fault point of a smaller host (both bridges, six VEs): each op of
/// both plans fails once and is killed once.
#[test]
fn failures_roll_back_exactly_and_kills_converge_at_every_point_of_a_small_host() -> Result<()> {
    let counts = run(6, None, "faults_every")?;
    let points: usize = counts.points.iter().map(|(_, n)| n).sum();
    assert_eq!(counts.kill_total, points, "{:?}", counts.points);
    assert_eq!(counts.fail_total, points, "{:?}", counts.points);
    Ok(())
}
