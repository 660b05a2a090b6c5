//! Boot and shutdown order, as OpenVZ's `vz` service kept it: VEs with
//! `onboot = true` start at boot by `boot_order`, highest first, VEs of one
//! value side by side, VEs without one last; at shutdown every running VE
//! stops in the reverse order.

use std::collections::BTreeMap;
use std::path::Path;

use netcfg::model::Config;

use super::runtime::{running, ve_file};

/// Groups `(id, boot_order)` for starting: highest order first, unset last;
/// ids ascending within a group.
pub fn start_order(ves: &[(u32, Option<u32>)]) -> Vec<Vec<u32>> {
    // `None` sorts below every `Some`: reversed, it comes last.
    let mut groups: BTreeMap<std::cmp::Reverse<Option<u32>>, Vec<u32>> = BTreeMap::new();
    for &(id, order) in ves {
        groups.entry(std::cmp::Reverse(order)).or_default().push(id);
    }
    groups
        .into_values()
        .map(|mut g| {
            g.sort_unstable();
            g.dedup();
            g
        })
        .collect()
}

/// The onboot VEs that are not running, in start groups.
pub fn onboot(config: &Config, state: &Path) -> Vec<Vec<u32>> {
    let ves: Vec<(u32, Option<u32>)> = config
        .ves
        .iter()
        .map(|f| &f.ve)
        // A VE whose file names a netns is wired, not run: `start` says so.
        .filter(|ve| ve.onboot && running(state, ve.id).is_none())
        .map(|ve| (ve.id, ve.boot_order))
        .collect();
    start_order(&ves)
}

/// Every running VE (each has a pid file in `STATE/run`), in stop groups:
/// the reverse of the start order. Each VE's order comes from its own file,
/// read alone, so that a broken config folder keeps no VE running at
/// shutdown.
pub fn running_for_shutdown(config_dir: &Path, state: &Path) -> Vec<Vec<u32>> {
    let ves: Vec<(u32, Option<u32>)> = recorded(state)
        .into_iter()
        .filter(|id| running(state, *id).is_some())
        .map(|id| (id, ve_file(config_dir, id).and_then(|v| v.boot_order)))
        .collect();
    let mut groups = start_order(&ves);
    groups.reverse();
    groups
}

/// Ids with a pid file in `STATE/run` (running or not).
fn recorded(state: &Path) -> Vec<u32> {
    std::fs::read_dir(state.join("run"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".pid")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_orders_start_first_and_unset_last_side_by_side() {
        let ves = [
            (5, None),
            (1, Some(10)),
            (9, Some(200)),
            (3, Some(10)),
            (2, None),
            (7, Some(0)),
        ];
        assert_eq!(
            start_order(&ves),
            vec![vec![9], vec![1, 3], vec![7], vec![2, 5]]
        );
        assert!(start_order(&[]).is_empty());
    }
}
