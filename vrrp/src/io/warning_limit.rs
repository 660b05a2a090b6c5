//! Rate limits for warnings that peers' packets trigger. A warning meant to be
//! logged once per cause (RFC 5798 §7.1: "log the event" of a misconfigured
//! peer) must not become a line per packet when a flood of adverts alternates
//! causes: at most one line per distinct cause per interval, carrying how many
//! occurrences were left out since that cause's previous line, and at most
//! [`MAX_CAUSES`] causes at a time (spoofed sources cannot make the log grow
//! either; their occurrences are counted as `other_suppressed`).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The most causes one limit tracks.
pub const MAX_CAUSES: usize = 16;

/// How often one cause may log a line.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// What an admitted line reports besides its own event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Suppressed {
    /// Occurrences of this cause since its previous line, left out.
    pub this_cause: u64,
    /// Occurrences of causes beyond [`MAX_CAUSES`] (or of causes forgotten
    /// before their next line), left out.
    pub other_causes: u64,
}

#[derive(Debug)]
struct Cause {
    last_line: Instant,
    suppressed: u64,
}

/// One warning's limit, keyed by its cause.
#[derive(Debug)]
pub struct WarningLimit<K> {
    interval: Duration,
    causes: HashMap<K, Cause>,
    other: u64,
}

impl<K: Eq + Hash + Clone> Default for WarningLimit<K> {
    fn default() -> Self {
        WarningLimit::new(INTERVAL)
    }
}

impl<K: Eq + Hash + Clone> WarningLimit<K> {
    pub fn new(interval: Duration) -> Self {
        WarningLimit {
            interval,
            causes: HashMap::new(),
            other: 0,
        }
    }

    /// Whether an occurrence of `cause` at `now` gets a line, and what that
    /// line reports as left out. `None`: counted, not logged.
    pub fn admit(&mut self, now: Instant, cause: &K) -> Option<Suppressed> {
        let interval = self.interval;
        let expired = |c: &Cause| now.saturating_duration_since(c.last_line) >= interval;
        if let Some(c) = self.causes.get_mut(cause) {
            if !expired(c) {
                c.suppressed += 1;
                return None;
            }
            let this_cause = std::mem::take(&mut c.suppressed);
            c.last_line = now;
            return Some(self.line(this_cause));
        }
        if self.causes.len() >= MAX_CAUSES {
            // Forget causes quiet for an interval; what they left out moves
            // to the next line as other causes', never lost.
            let mut forgotten = 0;
            self.causes.retain(|_, c| {
                let keep = !expired(c);
                if !keep {
                    forgotten += c.suppressed;
                }
                keep
            });
            self.other += forgotten;
        }
        if self.causes.len() >= MAX_CAUSES {
            self.other += 1;
            return None;
        }
        self.causes.insert(
            cause.clone(),
            Cause {
                last_line: now,
                suppressed: 0,
            },
        );
        Some(self.line(0))
    }

    fn line(&mut self, this_cause: u64) -> Suppressed {
        Suppressed {
            this_cause,
            other_causes: std::mem::take(&mut self.other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every occurrence is either a line or counted in a later line.
    fn accounted(lines: &[Suppressed], occurrences: u64, pending: u64) {
        let counted: u64 = lines
            .iter()
            .map(|s| 1 + s.this_cause + s.other_causes)
            .sum();
        assert_eq!(counted + pending, occurrences);
    }

    #[test]
    fn a_flood_alternating_causes_logs_one_line_per_cause_per_interval() {
        let mut limit = WarningLimit::new(Duration::from_secs(1));
        let start = Instant::now();
        let mut lines = Vec::new();
        // 20,000 adverts over 2.5 s, every third from another source: the
        // flood of issue #12 (a line per ~3 packets before).
        for n in 0..20_000u64 {
            let now = start + Duration::from_micros(n * 125);
            let cause = n % 3;
            if let Some(s) = limit.admit(now, &cause) {
                lines.push((cause, s));
            }
        }
        // Windows at 0 s, 1 s and 2 s, three causes each.
        assert_eq!(lines.len(), 9, "{lines:?}");
        assert!(lines[..3].iter().all(|(_, s)| s.this_cause == 0));
        for (cause, s) in &lines[3..] {
            assert!(
                (2600..=2700).contains(&s.this_cause),
                "cause {cause}: {s:?}"
            );
        }
        let pending: u64 = limit.causes.values().map(|c| c.suppressed).sum();
        let only: Vec<Suppressed> = lines.iter().map(|(_, s)| *s).collect();
        accounted(&only, 20_000, pending);
    }

    #[test]
    fn causes_beyond_the_cap_are_counted_on_a_later_line() {
        let mut limit = WarningLimit::new(Duration::from_secs(1));
        let start = Instant::now();
        let mut lines = Vec::new();
        // A spoofed source per packet: only MAX_CAUSES lines in the interval.
        for n in 0..1000u64 {
            if let Some(s) = limit.admit(start + Duration::from_millis(n / 2), &n) {
                lines.push(s);
            }
        }
        assert_eq!(lines.len(), MAX_CAUSES);
        // After the interval the first cause logs again and reports the rest.
        let s = limit
            .admit(start + Duration::from_secs(2), &0)
            .expect("a new interval");
        assert_eq!(s.this_cause, 0);
        assert_eq!(s.other_causes, 1000 - MAX_CAUSES as u64);
        lines.push(s);
        let pending: u64 = limit.causes.values().map(|c| c.suppressed).sum();
        accounted(&lines, 1001, pending + limit.other);
    }

    #[test]
    fn a_quiet_cause_logs_its_next_occurrence_at_once() {
        let mut limit = WarningLimit::new(Duration::from_secs(60));
        let t = Instant::now();
        assert_eq!(limit.admit(t, &"a"), Some(Suppressed::default()));
        assert_eq!(limit.admit(t + Duration::from_secs(1), &"a"), None);
        assert_eq!(
            limit.admit(t + Duration::from_secs(1), &"b"),
            Some(Suppressed::default())
        );
        let s = limit
            .admit(t + Duration::from_secs(61), &"a")
            .expect("a line");
        assert_eq!(s.this_cause, 1);
    }
}
