//! Units that cannot be repaired: each is retried with backoff on its own, reported
//! in status and metrics, and logged once when it starts failing, when its error
//! changes and when it recovers — never once per attempt.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use netcfg::apply::ApplyError;
use netcfg::unit::Unit;

use crate::status::UnitStatus;

/// Backoff of a unit that fails for a reason that passes (out of descriptors, a busy
/// netlink socket): retried soon, not at the next periodic pass.
const TRANSIENT_FIRST: Duration = Duration::from_millis(100);
const TRANSIENT_MAX: Duration = Duration::from_secs(2);
/// Backoff of a unit whose failure needs someone to act (a deleted namespace).
const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Failing {
    failures: u32,
    since: Instant,
    next: Instant,
    error: String,
}

/// The failing units.
#[derive(Debug, Default)]
pub struct Retries {
    units: BTreeMap<Unit, Failing>,
}

/// Whether an apply error is likely to pass by itself.
pub fn is_transient(e: &ApplyError) -> bool {
    let io = match e {
        ApplyError::Op { source, .. } | ApplyError::Observe { source, .. } => source,
        _ => return false,
    };
    // EEXIST: a VE end that another host's agent still holds while it unwires
    // the VE (a fleet move) goes within milliseconds.
    matches!(
        io.raw_os_error(),
        Some(
            libc::EEXIST
                | libc::EMFILE
                | libc::ENFILE
                | libc::EBUSY
                | libc::ENOBUFS
                | libc::EAGAIN
                | libc::ENOMEM
                | libc::EINTR
        )
    )
}

impl Retries {
    /// True when `unit` may be tried at `now` (it is not failing, or its backoff is
    /// over).
    pub fn due(&self, unit: &Unit, now: Instant) -> bool {
        self.units.get(unit).is_none_or(|f| f.next <= now)
    }

    /// True while `unit` is failing.
    pub fn is_failing(&self, unit: &Unit) -> bool {
        self.units.contains_key(unit)
    }

    /// `unit` applied and verified.
    pub fn succeeded(&mut self, unit: &Unit) {
        if let Some(f) = self.units.remove(unit) {
            tracing::warn!(%unit, failures = f.failures, failing_for_ms = f.since.elapsed().as_millis() as u64, "unit repaired");
        }
    }

    /// `unit` failed (and was rolled back) at `now`.
    pub fn failed(&mut self, unit: &Unit, error: String, transient: bool, now: Instant) {
        let (first, max) = if transient {
            (TRANSIENT_FIRST, TRANSIENT_MAX)
        } else {
            (FIRST, MAX)
        };
        match self.units.get_mut(unit) {
            Some(f) => {
                f.failures += 1;
                let shift = f.failures.saturating_sub(1).min(16);
                f.next = now + first.saturating_mul(1 << shift).min(max);
                if f.error != error {
                    tracing::error!(%unit, failures = f.failures, retry_in_ms = (f.next - now).as_millis() as u64, %error, "unit still cannot be repaired, now for another reason");
                    f.error = error;
                }
            }
            None => {
                tracing::error!(%unit, retry_in_ms = first.as_millis() as u64, %error, "unit cannot be repaired; the others go on; retrying with backoff");
                self.units.insert(
                    unit.clone(),
                    Failing {
                        failures: 1,
                        since: now,
                        next: now + first,
                        error,
                    },
                );
            }
        }
    }

    /// Makes every failing unit due now (an explicit `vznet apply` tries them all).
    pub fn expedite(&mut self, now: Instant) {
        for f in self.units.values_mut() {
            f.next = now;
        }
    }

    /// When the next failing unit is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.units.values().map(|f| f.next).min()
    }

    /// The failing units, for status.
    pub fn status(&self, now: Instant) -> Vec<UnitStatus> {
        self.units
            .iter()
            .map(|(unit, f)| UnitStatus {
                unit: unit.clone(),
                failures: f.failures,
                failing_for_s: now.saturating_duration_since(f.since).as_secs(),
                retry_in_ms: f.next.saturating_duration_since(now).as_millis() as u64,
                error: f.error.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_per_unit_and_success_clears_it() {
        let mut r = Retries::default();
        let t0 = Instant::now();
        let ve = Unit::Ve(7);
        let br = Unit::Host("br0".into());
        r.failed(&ve, "netns gone".into(), false, t0);
        assert!(!r.due(&ve, t0));
        assert!(r.due(&br, t0), "another unit is never held back");
        assert!(r.due(&ve, t0 + FIRST));
        r.failed(&ve, "netns gone".into(), false, t0 + FIRST);
        assert!(!r.due(&ve, t0 + FIRST * 2));
        assert!(r.due(&ve, t0 + FIRST * 3));
        for n in 0..20 {
            r.failed(&ve, "netns gone".into(), false, t0 + FIRST * n);
        }
        assert!(r.due(&ve, t0 + FIRST * 19 + MAX), "capped at MAX");
        r.failed(&br, "EMFILE".into(), true, t0);
        assert!(
            r.due(&br, t0 + TRANSIENT_FIRST),
            "transient failures retry soon"
        );
        assert_eq!(r.next_due(), Some(t0 + TRANSIENT_FIRST));
        r.succeeded(&ve);
        assert!(r.due(&ve, t0));
        assert_eq!(r.status(t0).len(), 1);
        r.expedite(t0);
        assert!(r.due(&br, t0));
    }
}
