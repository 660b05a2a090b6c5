//! Fault injection on the real `vznet apply` (built with the agent's `faults`
//! feature): a host with two bridges and 50 VEs, applied from nothing and then
//! changed to a config that deletes a bridge and half the VEs. At sampled fault
//! points (about eight per transition, always the first and last; `lab faults`
//! tries every one) an injected failure must roll back so that every
//! namespace's full kernel state equals the one before, and after a SIGKILL the
//! next apply must converge and an empty config remove everything vznet made.

mod common;

use anyhow::Result;

#[test]
fn failures_roll_back_exactly_and_kills_converge_at_sampled_points() -> Result<()> {
    let opts = lab::faults::Options {
        vznet: vec![common::VZNET.into()],
        ves: 50,
        stride: 1,
        max_points: Some(6),
        tag: "faults_sampled".into(),
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
