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

/// The slot count for a virtual server with `backends` backends: a prime, at
/// least 1021, 64 per backend up to 32749. Every backend holds its share to
/// within one slot, so more slots per backend means finer weights and less
/// disruption; the cap bounds the work of recomputing the table on every
/// commit (about 1 ms at 1000 backends here) and keeps 16 per backend at 2000.
pub fn slot_count(backends: usize) -> usize {
    prime_at_least((backends.saturating_mul(64)).clamp(1021, 32749))
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
    // Each walk is (position, skip); stepping is an add and a compare, not a
    // modulo (the table is recomputed on every commit).
    let mut walks: Vec<(usize, usize)> = order
        .iter()
        .map(|&i| {
            let k = key(&members[i]);
            let offset = hash(&k, 0x5eed_0001) % m;
            let skip = hash(&k, 0x5eed_0002) % (m - 1) + 1;
            (offset as usize, skip as usize)
        })
        .collect();
    const FREE: u32 = u32::MAX;
    let mut owner = vec![FREE; slots];
    let weights: Vec<u32> = order.iter().map(|&i| members[i].weight).collect();
    let mut credit = vec![0u32; order.len()];
    let mut filled = 0;
    'fill: loop {
        for (j, walk) in walks.iter_mut().enumerate() {
            credit[j] += weights[j];
            if credit[j] < w_max {
                continue;
            }
            credit[j] -= w_max;
            loop {
                let c = walk.0;
                walk.0 += walk.1;
                if walk.0 >= slots {
                    walk.0 -= slots;
                }
                if owner[c] == FREE {
                    owner[c] = j as u32;
                    filled += 1;
                    break;
                }
            }
            if filled == slots {
                break 'fill;
            }
        }
    }
    for (slot, j) in table.iter_mut().zip(owner) {
        *slot = Some(order[j as usize]);
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
        assert_eq!(slot_count(100), 6421);
        assert_eq!(slot_count(1000), 32749);
        assert!(slot_count(100_000) <= 65521);
        assert!(is_prime(slot_count(100_000)));
    }
}
