//! Time as a parameter: the machine never reads a clock.

use std::fmt;
use std::ops::Add;
use std::time::Duration;

/// A point in time, in nanoseconds since an epoch the caller picks (typically the
/// shell's start, via `Instant::duration_since`). Only differences matter, so tests can
/// start at [`Timestamp::ZERO`] and run hours of protocol deterministically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub const fn from_nanos(nanos: u64) -> Timestamp {
        Timestamp(nanos)
    }

    /// The point `elapsed` after the epoch; saturates after about 584 years.
    pub fn from_elapsed(elapsed: Duration) -> Timestamp {
        Timestamp(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time since the epoch.
    pub const fn elapsed(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturating: a deadline past the end of time is never reached, never a panic.
    fn add(self, rhs: Duration) -> Timestamp {
        let rhs = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(rhs))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_nanos(u64::MAX - 1);
        assert_eq!(t + Duration::from_secs(1), Timestamp::from_nanos(u64::MAX));
        assert_eq!(Timestamp::from_elapsed(Duration::MAX).as_nanos(), u64::MAX);
        assert_eq!(
            Timestamp::ZERO.saturating_duration_since(Timestamp::from_nanos(5)),
            Duration::ZERO
        );
    }

    #[test]
    fn round_trips_and_orders() {
        let t = Timestamp::from_elapsed(Duration::from_millis(1500));
        assert_eq!(t.as_nanos(), 1_500_000_000);
        assert_eq!(t.elapsed(), Duration::from_millis(1500));
        assert!(t > Timestamp::ZERO);
        assert_eq!(
            (t + Duration::from_millis(10)).saturating_duration_since(t),
            Duration::from_millis(10)
        );
        assert_eq!(t.to_string(), "1.5s");
    }
}
