//! The slot table: Maglev consistent hashing (Eisenbud et al., NSDI 2016) with
//! weights.
//!
//! Every backend walks its own permutation of the `M` slots (offset and skip
//! from two hashes of its address and port; `M` prime so every skip visits every
//! slot) and, taking turns, claims the next free slot on its walk. A backend with
//! weight `w` gets `w / w_max` turns per round, so slot counts follow weights.
//! Removing a backend frees only its slots and the walks of the others barely
//! change, so few other flows move. The table depends only on the set of
//! (address, port, weight), never on the order given, so two hosts build the same
//! table and `source-hash` sends a client to the same backend from either.

use std::net::IpAddr;

/// A backend as the slot table sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// Its address.
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its weight now (0: takes no slots).
    pub weight: u32,
}

/// The smallest prime at or above `n`.
pub fn prime_at_least(n: usize) -> usize {
    let mut p = n.max(2);
    while !is_prime(p) {
        p += 1;
    }
    p
}

fn is_prime(n: usize) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The slot count for a virtual server with `backends` backends: at least 64
/// slots per backend (Maglev's imbalance shrinks as M/N grows), at least 1021,
/// at most 65521 so that a slot number fits the mark's low 16 bits.
pub fn slot_count(backends: usize) -> usize {
    prime_at_least((backends.saturating_mul(64)).clamp(1021, 65521))
}

/// FNV-1a, then a SplitMix64 finaliser: stable across hosts and releases.
fn hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn key(m: &Member) -> Vec<u8> {
    let mut k = match m.address {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    k.extend_from_slice(&m.port.to_be_bytes());
    k
}

/// Fills `slots` slots (a prime) with indexes into `members`. Members of weight
/// 0 get none; with no weighted member every slot is `None`.
pub fn populate(members: &[Member], slots: usize) -> Vec<Option<usize>> {
    let mut table = vec![None; slots];
    // Order-independent: walk members sorted by address and port.
    let mut order: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].weight > 0)
        .collect();
    order.sort_by_key(|&i| (members[i].address, members[i].port));
    order.dedup_by_key(|i| (members[*i].address, members[*i].port));
    let Some(w_max) = order.iter().map(|&i| members[i].weight).max() else {
        return table;
    };
    let m = slots as u64;
    let walks: Vec<(u64, u64)> = order
        .iter()
        .map(|&i| {
            let k = key(&members[i]);
            let offset = hash(&k, 0x5eed_0001) % m;
            let skip = hash(&k, 0x5eed_0002) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; order.len()];
    let mut credit = vec![0u64; order.len()];
    let mut filled = 0;
    'fill: loop {
        for (j, &i) in order.iter().enumerate() {
            credit[j] += u64::from(members[i].weight);
            if credit[j] < u64::from(w_max) {
                continue;
            }
            credit[j] -= u64::from(w_max);
            let (offset, skip) = walks[j];
            loop {
                let c = ((offset + next[j] * skip) % m) as usize;
                next[j] += 1;
                if table[c].is_none() {
                    table[c] = Some(i);
                    filled += 1;
                    break;
                }
            }
            if filled == slots {
                break 'fill;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(last: u8, weight: u32) -> Member {
        Member {
            address: IpAddr::from([10, 0, 0, last]),
            port: 80,
            weight,
        }
    }

    fn counts(table: &[Option<usize>], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for i in table.iter().flatten() {
            c[*i] += 1;
        }
        c
    }

    #[test]
    fn slot_counts_follow_weights() {
        let members = [member(1, 1), member(2, 1), member(3, 2), member(4, 4)];
        let m = slot_count(members.len());
        let table = populate(&members, m);
        assert!(table.iter().all(Option::is_some), "every slot is filled");
        let c = counts(&table, members.len());
        for (i, mem) in members.iter().enumerate() {
            let want = m as f64 * f64::from(mem.weight) / 8.0;
            let err = (c[i] as f64 - want).abs() / want;
            assert!(err < 0.02, "member {i}: {} slots, want {want:.0}", c[i]);
        }
    }

    #[test]
    fn removing_one_backend_moves_few_other_slots() {
        let members: Vec<Member> = (1..=10).map(|i| member(i, 1)).collect();
        let m = slot_count(members.len());
        let before = populate(&members, m);
        let mut after_members = members.clone();
        after_members[3].weight = 0;
        let after = populate(&after_members, m);
        let moved_others = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != Some(3) && b != a)
            .count();
        // Maglev's paper reports a few percent of the remaining slots move.
        assert!(
            moved_others * 100 < m * 6,
            "{moved_others} of {m} slots of live backends moved"
        );
        assert!(after.iter().all(|s| *s != Some(3)));
        assert!(after.iter().all(Option::is_some));
    }

    #[test]
    fn the_table_ignores_the_order_backends_are_given_in() {
        let a = [member(1, 1), member(2, 3), member(3, 1)];
        let b = [a[2], a[0], a[1]];
        let m = slot_count(3);
        let ta: Vec<Option<Member>> = populate(&a, m).iter().map(|s| s.map(|i| a[i])).collect();
        let tb: Vec<Option<Member>> = populate(&b, m).iter().map(|s| s.map(|i| b[i])).collect();
        assert_eq!(ta, tb);
    }

    #[test]
    fn no_weight_means_no_slots() {
        assert!(populate(&[member(1, 0)], 1021).iter().all(Option::is_none));
        assert!(populate(&[], 1021).iter().all(Option::is_none));
    }

    #[test]
    fn slot_counts_are_primes_in_range() {
        assert_eq!(slot_count(1), 1021);
        assert_eq!(slot_count(1000), 64007);
        assert!(slot_count(100_000) <= 65521);
        assert!(is_prime(slot_count(100_000)));
    }
}
