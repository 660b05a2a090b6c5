//! A test seam (cargo feature `faults`): the points of an apply where a test
//! can make it fail, or make the process die, to prove that every failure
//! rolls back exactly and every crash converges on the next run. Nothing
//! happens unless a caller installs a hook with [`crate::apply::Engine::inject`].

use std::io;

use crate::op::{NsName, Op};

/// Where an apply stands when it asks the hook.
#[derive(Debug, Clone, Copy)]
pub enum Point<'a> {
    /// An op (of the plan, or an inverse while rolling back) is about to run.
    Op(&'a Op),
    /// A link was just made and is not marked yet (inside a `LinkAdd`).
    Created {
        /// Netns.
        ns: &'a NsName,
        /// The link.
        name: &'a str,
    },
}

/// Called at every point with the number of points before it; an error fails
/// the op there, as if the kernel had refused it.
pub type Hook = Box<dyn Fn(usize, Point<'_>) -> Option<io::Error>>;

/// The error a hook returns to fail an op: EIO with a text that says so.
pub fn injected() -> io::Error {
    io::Error::other("injected failure (test seam)")
}

/// An installed hook and the count of points so far.
pub(crate) struct Faults {
    hook: Hook,
    seq: std::cell::Cell<usize>,
}

impl Faults {
    pub(crate) fn new(hook: Hook) -> Faults {
        Faults {
            hook,
            seq: std::cell::Cell::new(0),
        }
    }

    /// Asks the hook at `point`.
    pub(crate) fn at(&self, point: Point<'_>) -> io::Result<()> {
        let n = self.seq.get();
        self.seq.set(n + 1);
        match (self.hook)(n, point) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faults({} points)", self.seq.get())
    }
}
