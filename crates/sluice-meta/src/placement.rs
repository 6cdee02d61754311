//! Where a new topic's replicas go: spread evenly over the live brokers, by replica count and by
//! preferred leaderships, deterministically (every controller computes the same answer).

use std::collections::BTreeMap;

use sluice_types::NodeId;

/// Chooses `replication_factor` distinct brokers for each of `partitions` new partitions. The
/// first replica of each is the preferred leader. `load` holds, per live broker, how many
/// replicas and preferred leaderships it already has; it is updated as partitions are placed.
///
/// Preferred leaders go to the broker with the fewest leaderships (then fewest replicas, then
/// lowest id); followers to the brokers with the fewest replicas (then lowest id).
pub fn place_replicas(
    load: &mut BTreeMap<NodeId, (u32, u32)>,
    partitions: u32,
    replication_factor: usize,
) -> Vec<Vec<NodeId>> {
    assert!(
        replication_factor >= 1 && replication_factor <= load.len(),
        "caller checked the replication factor"
    );
    let mut placed = Vec::with_capacity(partitions as usize);
    for _ in 0..partitions {
        let leader = *load
            .iter()
            .min_by_key(|(id, (replicas, leaders))| (*leaders, *replicas, **id))
            .map(|(id, _)| id)
            .expect("at least one live broker");
        let mut replicas = vec![leader];
        let mut followers: Vec<(u32, NodeId)> = load
            .iter()
            .filter(|(id, _)| **id != leader)
            .map(|(id, (replicas, _))| (*replicas, *id))
            .collect();
        followers.sort_unstable();
        replicas.extend(followers.into_iter().take(replication_factor - 1).map(|(_, id)| id));
        for (i, id) in replicas.iter().enumerate() {
            let entry = load.get_mut(id).expect("chosen from the load map");
            entry.0 += 1;
            if i == 0 {
                entry.1 += 1;
            }
        }
        placed.push(replicas);
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_load(n: u64) -> BTreeMap<NodeId, (u32, u32)> {
        (1..=n).map(|id| (NodeId(id), (0, 0))).collect()
    }

    #[test]
    fn six_partitions_rf3_on_three_brokers_give_each_two_leaderships() {
        let mut load = empty_load(3);
        let placed = place_replicas(&mut load, 6, 3);
        for id in 1..=3 {
            let leads = placed.iter().filter(|r| r[0] == NodeId(id)).count();
            assert_eq!(leads, 2, "broker {id}");
        }
        assert!(placed.iter().all(|r| {
            let mut s = r.clone();
            s.sort_unstable();
            s.dedup();
            s.len() == 3
        }));
    }

    proptest::proptest! {
        /// Replicas and leaderships never differ by more than one between live brokers.
        #[test]
        fn placement_is_balanced(brokers in 1u64..8, partitions in 1u32..64, rf_seed in 0usize..8) {
            let rf = 1 + rf_seed % usize::try_from(brokers).unwrap();
            let mut load = empty_load(brokers);
            let placed = place_replicas(&mut load, partitions, rf);
            proptest::prop_assert_eq!(placed.len(), partitions as usize);
            for replicas in &placed {
                let mut distinct = replicas.clone();
                distinct.sort_unstable();
                distinct.dedup();
                proptest::prop_assert_eq!(distinct.len(), rf);
            }
            let replicas: Vec<u32> = load.values().map(|(r, _)| *r).collect();
            let leaders: Vec<u32> = load.values().map(|(_, l)| *l).collect();
            proptest::prop_assert!(replicas.iter().max().unwrap() - replicas.iter().min().unwrap() <= 1, "{:?}", load);
            proptest::prop_assert!(leaders.iter().max().unwrap() - leaders.iter().min().unwrap() <= 1, "{:?}", load);
        }
    }
}
