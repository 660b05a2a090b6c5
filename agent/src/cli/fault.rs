//! `VZNET_FAULT` (cargo feature `faults` only): makes an apply fail or die at a
//! chosen fault point of netcfg's test seam, so that `lab faults` can run the
//! real command with a failure or a SIGKILL at every point of a plan.
//!
//! - `fail:K`: the K-th point (from 0) fails as if the kernel had refused it;
//! - `kill:K`: the process sends itself SIGKILL at the K-th point;
//! - `count`: nothing fails; a successful apply prints `fault points: N` on
//!   stderr (how many points the plan has).

use std::cell::Cell;
use std::rc::Rc;

use anyhow::{bail, Context, Result};
use netcfg::apply::Engine;
use netcfg::fault;

/// The variable read.
const VAR: &str = "VZNET_FAULT";

/// What `VZNET_FAULT` asks for.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Fail(usize),
    Kill(usize),
    Count,
}

fn mode() -> Result<Option<Mode>> {
    let Ok(text) = std::env::var(VAR) else {
        return Ok(None);
    };
    let at = |k: &str| k.parse::<usize>().with_context(|| format!("{VAR}={text}"));
    Ok(Some(match text.split_once(':') {
        Some(("fail", k)) => Mode::Fail(at(k)?),
        Some(("kill", k)) => Mode::Kill(at(k)?),
        None if text == "count" => Mode::Count,
        _ => bail!("{VAR}={text}: expected fail:K, kill:K or count"),
    }))
}

/// Installs the hook `VZNET_FAULT` asks for (if any); the returned counter
/// holds how many points were passed.
pub(super) fn from_env(engine: Engine) -> Result<(Engine, Option<Rc<Cell<usize>>>)> {
    let Some(mode) = mode()? else {
        return Ok((engine, None));
    };
    let seen = Rc::new(Cell::new(0usize));
    let counter = seen.clone();
    let hook: fault::Hook = Box::new(move |n, _point| {
        counter.set(n + 1);
        match mode {
            Mode::Fail(k) if k == n => Some(fault::injected()),
            Mode::Kill(k) if k == n => {
                // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, so
                // nothing after it runs: the crash the seam is for.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                None
            }
            _ => None,
        }
    });
    Ok((engine.inject(hook), Some(seen)))
}

/// Prints how many fault points the apply passed, when asked to count.
pub(super) fn report(points: &Option<Rc<Cell<usize>>>) {
    if let (Ok(Some(Mode::Count)), Some(p)) = (mode(), points) {
        eprintln!("fault points: {}", p.get());
    }
}
