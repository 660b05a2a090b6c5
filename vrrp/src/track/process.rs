//! Tracked processes, sans I/O: which processes match a `track_process` entry, and
//! whether its quorum holds, with keepalived's fork and terminate delays
//! (`track_process.c`).

use std::time::Duration;

use crate::settings::{ParamMatch, TrackProcess};
use crate::time::Timestamp;

/// One process as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEntry {
    pub pid: u32,
    /// `/proc/PID/stat`'s name (the kernel's `comm`, at most 15 bytes).
    pub comm: String,
    /// `/proc/PID/cmdline`, split at its NUL bytes; read only when some entry needs it.
    pub cmdline: Option<Vec<String>>,
    pub zombie: bool,
}

/// Whether `p` is a process `spec` counts. Like keepalived (and `pgrep -x`), names are
/// compared exactly, never as patterns; zombies do not count.
pub fn matches(spec: &TrackProcess, p: &ProcessEntry) -> bool {
    if p.zombie {
        return false;
    }
    if !spec.uses_command_line() {
        return p.comm == spec.process;
    }
    let Some(cmdline) = &p.cmdline else {
        return false;
    };
    let Some((name, args)) = cmdline.split_first() else {
        return false;
    };
    if *name != spec.process {
        return false;
    }
    let want = &spec.args;
    match spec.effective_param_match() {
        None => true,
        Some(ParamMatch::Exact) => args == want.as_slice(),
        Some(ParamMatch::Partial) => args.starts_with(want),
        Some(ParamMatch::Initial) => match want.split_last() {
            None => true,
            Some((last, head)) => {
                args.len() >= want.len()
                    && args.starts_with(head)
                    && args[head.len()].starts_with(last.as_str())
            }
        },
    }
}

/// Whether a tracked process's quorum holds, the delays applied.
#[derive(Debug, Clone)]
pub struct Quorum {
    min: u32,
    max: u32,
    fork_delay: Duration,
    terminate_delay: Duration,
    /// The state trackers see; `None` before the first count.
    held: Option<bool>,
    /// A change waiting out its delay.
    pending: Option<(bool, Timestamp)>,
}

impl Quorum {
    pub fn new(spec: &TrackProcess) -> Quorum {
        Quorum {
            min: spec.quorum,
            max: spec.quorum_max.unwrap_or(u32::MAX),
            fork_delay: Duration::from_millis(spec.fork_delay_ms),
            terminate_delay: Duration::from_millis(spec.terminate_delay_ms),
            held: None,
            pending: None,
        }
    }

    /// Whether the quorum holds, once counted.
    pub fn held(&self) -> Option<bool> {
        self.held
    }

    /// When a pending change takes effect.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.pending.map(|(_, at)| at)
    }

    /// Feeds a count of matching processes at `now`; returns the new state when it
    /// changed. The first count takes effect at once (keepalived's start-up read).
    pub fn count(&mut self, now: Timestamp, count: u32) -> Option<bool> {
        let quorum = (self.min..=self.max).contains(&count);
        let Some(held) = self.held else {
            self.held = Some(quorum);
            return Some(quorum);
        };
        if quorum == held {
            // Back where it was before the delay ran out: no change at all.
            self.pending = None;
            return None;
        }
        let delay = if quorum {
            self.fork_delay
        } else {
            self.terminate_delay
        };
        if delay.is_zero() {
            self.held = Some(quorum);
            self.pending = None;
            return Some(quorum);
        }
        if self.pending.is_none() {
            self.pending = Some((quorum, now + delay));
        }
        self.timeout(now)
    }

    /// Applies a pending change whose delay has passed.
    pub fn timeout(&mut self, now: Timestamp) -> Option<bool> {
        match self.pending {
            Some((quorum, at)) if at <= now => {
                self.pending = None;
                self.held = Some(quorum);
                Some(quorum)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(process: &str) -> TrackProcess {
        TrackProcess {
            process: process.into(),
            args: Vec::new(),
            param_match: None,
            full_command: false,
            weight: 0,
            reverse: false,
            quorum: 1,
            quorum_max: None,
            fork_delay_ms: 0,
            terminate_delay_ms: 0,
        }
    }

    fn proc(comm: &str, cmdline: &[&str]) -> ProcessEntry {
        ProcessEntry {
            pid: 1,
            comm: comm.into(),
            cmdline: Some(cmdline.iter().map(|s| s.to_string()).collect()),
            zombie: false,
        }
    }

    #[test]
    fn names_match_exactly_and_zombies_never() {
        let s = spec("haproxy");
        assert!(matches(&s, &proc("haproxy", &[])));
        assert!(!matches(&s, &proc("haproxy-wrap", &[])), "not a pattern");
        assert!(!matches(&s, &proc("hap", &[])));
        let mut z = proc("haproxy", &[]);
        z.zombie = true;
        assert!(!matches(&s, &z));
    }

    #[test]
    fn arguments_match_exactly_partially_or_initially() {
        let mut s = spec("/usr/sbin/haproxy");
        s.args = vec!["-f".into(), "/etc/hap".into()];
        let p = |args: &[&str]| {
            let mut v = vec!["/usr/sbin/haproxy"];
            v.extend_from_slice(args);
            proc("haproxy", &v)
        };
        assert!(matches(&s, &p(&["-f", "/etc/hap"])));
        assert!(!matches(&s, &p(&["-f", "/etc/hap", "-D"])));
        assert!(!matches(&s, &p(&["-f", "/etc/haproxy.cfg"])));
        s.param_match = Some(ParamMatch::Partial);
        assert!(matches(&s, &p(&["-f", "/etc/hap", "-D"])));
        assert!(!matches(&s, &p(&["-f", "/etc/haproxy.cfg"])));
        s.param_match = Some(ParamMatch::Initial);
        assert!(matches(&s, &p(&["-f", "/etc/haproxy.cfg"])));
        assert!(!matches(&s, &p(&["-f"])));
        // full_command without args: only the command's first word.
        let mut f = spec("/usr/sbin/haproxy");
        f.full_command = true;
        assert!(matches(&f, &p(&["anything"])));
        assert!(!matches(&f, &proc("haproxy", &["haproxy"])));
        // Exact with no args given but param_match set: no arguments at all.
        let mut e = spec("/bin/sleep");
        e.param_match = Some(ParamMatch::Exact);
        assert!(matches(&e, &proc("sleep", &["/bin/sleep"])));
        assert!(!matches(&e, &proc("sleep", &["/bin/sleep", "9"])));
    }

    #[test]
    fn quorum_bounds_and_delays() {
        let ms = |n| Timestamp::from_elapsed(Duration::from_millis(n));
        let mut s = spec("x");
        s.quorum = 2;
        s.quorum_max = Some(3);
        s.fork_delay_ms = 100;
        s.terminate_delay_ms = 50;
        let mut q = Quorum::new(&s);
        assert_eq!(
            q.count(ms(0), 1),
            Some(false),
            "the first count counts at once"
        );
        assert_eq!(q.count(ms(10), 2), None, "fork delay");
        assert_eq!(q.poll_timeout(), Some(ms(110)));
        assert_eq!(q.count(ms(20), 1), None, "bounced back: no change");
        assert_eq!(q.poll_timeout(), None);
        assert_eq!(q.count(ms(30), 3), None);
        assert_eq!(q.timeout(ms(129)), None);
        assert_eq!(q.timeout(ms(130)), Some(true));
        assert_eq!(
            q.count(ms(200), 4),
            None,
            "over quorum_max: terminate delay"
        );
        assert_eq!(q.count(ms(250), 4), Some(false));
        assert_eq!(q.held(), Some(false));
    }
}
