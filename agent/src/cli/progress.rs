//! A progress line on stderr for long applies (`vznet apply`, the wiring of
//! `vznet ve start`): shown only on a terminal, without --json, and only for
//! plans of more than `THRESHOLD` ops; redrawn at most every 100 ms and cleared
//! after the last op (or when the apply stops early), so the output that
//! follows is the same as without it.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Plans smaller than this finish before a progress line would help.
pub const THRESHOLD: usize = 200;

const REDRAW: Duration = Duration::from_millis(100);

/// The progress line of one apply.
#[derive(Debug)]
pub struct Meter {
    what: &'static str,
    last: Cell<Option<Instant>>,
    drawn: Cell<bool>,
}

impl Meter {
    /// A meter when stderr is a terminal and the output is not JSON.
    pub fn for_terminal(what: &'static str, json: bool) -> Option<Meter> {
        (!json && std::io::stderr().is_terminal()).then(|| Meter {
            what,
            last: Cell::new(None),
            drawn: Cell::new(false),
        })
    }

    /// One op done of `total`; the last one clears the line, so what the
    /// command prints next starts on a clean line.
    pub fn update(&self, done: usize, total: usize) {
        if done == total && self.drawn.replace(false) {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            return;
        }
        if let Some(line) = self.line(done, total, Instant::now()) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
        }
    }

    /// The line to draw now, if any.
    fn line(&self, done: usize, total: usize, now: Instant) -> Option<String> {
        if total <= THRESHOLD {
            return None;
        }
        let due = self
            .last
            .get()
            .is_none_or(|t| now.duration_since(t) >= REDRAW);
        if !due && done < total {
            return None;
        }
        self.last.set(Some(now));
        self.drawn.set(true);
        Some(format!(
            "{}: {done}/{total} changes ({}%)",
            self.what,
            done * 100 / total
        ))
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if self.drawn.get() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter() -> Meter {
        Meter {
            what: "applying",
            last: Cell::new(None),
            drawn: Cell::new(false),
        }
    }

    #[test]
    fn small_plans_draw_nothing_and_large_ones_redraw_at_most_every_100_ms() {
        let m = meter();
        let t = Instant::now();
        assert_eq!(m.line(1, THRESHOLD, t), None);
        assert_eq!(
            m.line(1, 1000, t).as_deref(),
            Some("applying: 1/1000 changes (0%)")
        );
        assert_eq!(m.line(2, 1000, t + Duration::from_millis(50)), None);
        assert_eq!(
            m.line(3, 1000, t + Duration::from_millis(100)).as_deref(),
            Some("applying: 3/1000 changes (0%)")
        );
        // The last op always shows.
        assert_eq!(
            m.line(1000, 1000, t + Duration::from_millis(101))
                .as_deref(),
            Some("applying: 1000/1000 changes (100%)")
        );
    }

    #[test]
    fn no_meter_without_a_terminal_or_with_json() {
        // Tests run with stderr captured: never a terminal.
        assert!(Meter::for_terminal("applying", false).is_none());
        assert!(Meter::for_terminal("applying", true).is_none());
    }
}
