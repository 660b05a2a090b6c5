//! Least-connection scheduling (`lc`, `wlc`) over a slot table.
//!
//! The kernel picks a random slot per new connection; what follows open
//! connections is the slot table itself. Every [`SAMPLE_INTERVAL`] the agent
//! counts each backend's conntrack entries (IPVS's load: 256 per established
//! TCP connection plus 1 per other entry, so UDP and closing TCP count 1) and
//! gives out the slots by *water-filling*: the connections expected before the
//! next sample (the arrivals of the last interval) are poured into the
//! backends with the least load per unit of weight until their loads level,
//! and each backend's share of slots is its share of that water. A backend
//! already above the level gets no new connections; with equal loads the
//! shares follow the weights. So between two samples new connections go
//! where they would have under IPVS's `wlc` if they arrived at an even pace;
//! a burst within one interval is spread by the shares of the interval's
//! start (the imprecision is at most one interval's arrivals).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// How often conntrack is counted while a least-connection service exists.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Weight of an established TCP connection against any other entry (IPVS).
pub const ACTIVE_WEIGHT: u64 = 256;

/// The largest slot weight a share becomes.
const SCALE: u64 = 1000;

/// One backend: its weight and its load (IPVS's overhead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Weight (0: takes nothing).
    pub weight: u32,
    /// `ACTIVE_WEIGHT * established + others`.
    pub load: u64,
}

/// Slot weights (0..=1000) that fill the least-loaded backends first with
/// `arrivals` new connections' worth of load.
pub fn shares(backends: &[Load], arrivals: u64) -> Vec<u32> {
    let live: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].weight > 0)
        .collect();
    if live.is_empty() {
        return vec![0; backends.len()];
    }
    // Loads per unit of weight, in 1/1000ths to stay in integers.
    let ratio = |i: usize| backends[i].load * SCALE / u64::from(backends[i].weight);
    let mut order = live.clone();
    order.sort_by_key(|&i| ratio(i));
    let water = arrivals.max(1) * ACTIVE_WEIGHT * SCALE;
    // Raise the level over the sorted ratios until the water is used.
    let mut level = ratio(order[0]);
    let mut weight_below: u64 = 0;
    let mut left = water;
    for (k, &i) in order.iter().enumerate() {
        weight_below += u64::from(backends[i].weight);
        let next = order.get(k + 1).map(|&j| ratio(j));
        let room = next.map_or(u64::MAX, |n| (n - level).saturating_mul(weight_below));
        if room >= left {
            level += left / weight_below;
            left = 0;
            break;
        }
        left -= room;
        level = next.unwrap_or(level);
    }
    let _ = left;
    let raw: Vec<u64> = (0..backends.len())
        .map(|i| {
            if backends[i].weight == 0 {
                0
            } else {
                u64::from(backends[i].weight) * level.saturating_sub(ratio(i))
            }
        })
        .collect();
    let top = raw.iter().copied().max().unwrap_or(0);
    if top == 0 {
        // Every live backend sits at the level: share by weight.
        return backends.iter().map(|b| b.weight).collect();
    }
    raw.iter()
        .map(|&r| {
            if r == 0 {
                0
            } else {
                ((r * SCALE) / top).max(1) as u32
            }
        })
        .collect()
}

/// Conntrack entries of balanced connections: `(mark, id, established TCP)`.
pub type Entries = Vec<(u32, u32, bool)>;

/// Per-mark loads and arrivals since the previous sample.
#[derive(Debug, Default)]
pub struct Counter {
    seen: HashSet<u32>,
}

impl Counter {
    /// Loads per mark, and new entries per mark since the last call.
    pub fn count(&mut self, entries: &Entries) -> (BTreeMap<u32, u64>, BTreeMap<u32, u64>) {
        let mut loads = BTreeMap::new();
        let mut arrivals = BTreeMap::new();
        let mut seen = HashSet::with_capacity(entries.len());
        for &(mark, id, established) in entries {
            *loads.entry(mark).or_insert(0) += if established { ACTIVE_WEIGHT } else { 1 };
            if !self.seen.contains(&id) {
                *arrivals.entry(mark).or_insert(0) += 1;
            }
            seen.insert(id);
        }
        self.seen = seen;
        (loads, arrivals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(weight: u32, load: u64) -> Load {
        Load { weight, load }
    }

    #[test]
    fn idle_backends_share_by_weight() {
        assert_eq!(
            shares(&[l(1, 0), l(2, 0), l(1, 0)], 10),
            vec![500, 1000, 500]
        );
    }

    #[test]
    fn a_few_arrivals_all_go_to_the_least_loaded() {
        let s = shares(&[l(1, 10 * ACTIVE_WEIGHT), l(1, 2 * ACTIVE_WEIGHT)], 3);
        assert_eq!(s[0], 0, "{s:?}");
        assert!(s[1] > 0);
    }

    #[test]
    fn many_arrivals_level_the_loads() {
        // 2 and 10 open; 20 new: both end at 16, so 6 and 14 of them.
        let s = shares(&[l(1, 10 * ACTIVE_WEIGHT), l(1, 2 * ACTIVE_WEIGHT)], 20);
        let ratio = f64::from(s[0]) / f64::from(s[1]);
        assert!((ratio - 6.0 / 14.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn weights_scale_the_load() {
        // wlc: 4 on weight 2 is as loaded as 2 on weight 1.
        let s = shares(&[l(2, 4 * ACTIVE_WEIGHT), l(1, 2 * ACTIVE_WEIGHT)], 30);
        let ratio = f64::from(s[0]) / f64::from(s[1]);
        assert!((ratio - 2.0).abs() < 0.05, "{s:?}");
    }

    #[test]
    fn dead_backends_get_nothing() {
        assert_eq!(shares(&[l(0, 0), l(1, 500)], 5)[0], 0);
        assert_eq!(shares(&[l(0, 0)], 5), vec![0]);
    }

    #[test]
    fn arrivals_are_entries_not_seen_before() {
        let mut c = Counter::default();
        let (loads, new) = c.count(&vec![(1, 10, true), (1, 11, false), (2, 12, true)]);
        assert_eq!(loads[&1], ACTIVE_WEIGHT + 1);
        assert_eq!(new[&1], 2);
        let (_, new) = c.count(&vec![(1, 10, true), (2, 13, true)]);
        assert_eq!(new.get(&1), None);
        assert_eq!(new[&2], 1);
    }
}
