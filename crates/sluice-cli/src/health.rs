//! How each partition stands, for `cluster status` and `topic describe`: its leader (the last
//! known one while the partition is idle), whether it is idle (hibernating: no traffic, no
//! heartbeats, nothing wrong), and which of its replicas are out of sync.

use std::collections::{BTreeMap, HashSet};

use sluice_client::proto as pb;

/// One partition's (or the registry's) standing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The leader its replicas report, or the last one known while it is idle.
    pub leader: Option<u64>,
    /// Idle: its replicas stopped their Raft timers for lack of traffic; the first request wakes
    /// it. Its leader is then the last one known.
    pub idle: bool,
    /// Replicas of its set that are out of sync: on a broker the registry holds dead, on one
    /// that did not answer, or not matched by the leader's log.
    pub out_of_sync: Vec<u64>,
}

impl Health {
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        match (self.leader, self.idle) {
            (None, _) => parts.push("NO LEADER".to_string()),
            (Some(_), true) => parts.push("idle".to_string()),
            (Some(_), false) => {}
        }
        if !self.out_of_sync.is_empty() {
            let ids: Vec<String> = self.out_of_sync.iter().map(u64::to_string).collect();
            parts.push(format!("UNDER-REPLICATED ({} out of sync)", ids.join(",")));
        }
        if parts.is_empty() { "ok".to_string() } else { parts.join(", ") }
    }

    pub fn leader_text(&self) -> String {
        match (self.leader, self.idle) {
            (Some(l), true) => format!("{l} (idle)"),
            (Some(l), false) => l.to_string(),
            (None, _) => "-".into(),
        }
    }
}

/// Every group's replica set: the topics' partitions, and the controllers for the registry.
pub fn replica_sets(status: &pb::ClusterStatusResponse, topics: &[pb::TopicInfo]) -> BTreeMap<u64, Vec<u64>> {
    let mut sets: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let controllers: Vec<u64> = status.brokers.iter().filter(|b| b.controller).map(|b| b.id).collect();
    sets.insert(0, controllers);
    for t in topics {
        for p in &t.partitions {
            sets.insert(p.group_id, p.replicas.clone());
        }
    }
    sets
}

/// The standing of `group`, whose replica set is `replicas`, as `status` shows it; `reported`
/// is the leader the topic metadata names, used when no replica reported one.
pub fn assess(
    status: &pb::ClusterStatusResponse,
    group: u64,
    replicas: &[u64],
    reported: Option<u64>,
) -> Health {
    let report = status.groups.iter().find(|g| g.group_id == group);
    let dead: HashSet<u64> = status.brokers.iter().filter(|b| b.state != "alive").map(|b| b.id).collect();
    let unreachable: HashSet<u64> = status.unreachable.iter().copied().collect();
    let idle = report.is_some_and(|g| g.hibernating);
    let leader = report.and_then(|g| g.leader).or(if idle || report.is_none() { reported } else { None });
    // Only a leader's report says how far its followers are.
    let from_leader = report.filter(|g| g.leader.is_some() && g.leader == Some(g.reported_by));
    let out_of_sync = replicas
        .iter()
        .copied()
        .filter(|r| {
            dead.contains(r)
                || unreachable.contains(r)
                || from_leader.is_some_and(|g| {
                    *r != g.reported_by
                        && !g.replicas.iter().any(|p| p.node_id == *r && p.matched_index.is_some())
                })
        })
        .collect();
    Health { leader, idle, out_of_sync }
}

/// One line for a whole status: how many partitions, and how many need attention.
pub fn summary(healths: &[Health]) -> String {
    let without_leader = healths.iter().filter(|h| h.leader.is_none()).count();
    let under = healths.iter().filter(|h| !h.out_of_sync.is_empty()).count();
    let idle = healths.iter().filter(|h| h.idle).count();
    let verdict = if without_leader + under == 0 { "healthy" } else { "NEEDS ATTENTION" };
    format!(
        "{verdict}: {} groups, {without_leader} without a leader, {under} under-replicated, {idle} idle",
        healths.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: u64, state: &str) -> pb::BrokerStatus {
        pb::BrokerStatus {
            id,
            addr: format!("127.0.0.1:{id}"),
            state: state.into(),
            controller: true,
            ..Default::default()
        }
    }

    fn progress(node_id: u64, matched: Option<u64>) -> pb::ReplicaProgress {
        pb::ReplicaProgress { node_id, matched_index: matched, lag: 0 }
    }

    fn status(groups: Vec<pb::GroupStatus>, dead: &[u64]) -> pb::ClusterStatusResponse {
        pb::ClusterStatusResponse {
            brokers: (1..=3)
                .map(|id| broker(id, if dead.contains(&id) { "dead" } else { "alive" }))
                .collect(),
            groups,
            ..Default::default()
        }
    }

    fn led_by(leader: u64, followers: Vec<pb::ReplicaProgress>, hibernating: bool) -> pb::GroupStatus {
        pb::GroupStatus {
            group_id: 7,
            leader: Some(leader),
            reported_by: leader,
            replicas: followers,
            hibernating,
            ..Default::default()
        }
    }

    #[test]
    fn a_led_group_with_every_follower_matched_is_ok() {
        let s = status(vec![led_by(1, vec![progress(2, Some(5)), progress(3, Some(5))], false)], &[]);
        let h = assess(&s, 7, &[1, 2, 3], None);
        assert_eq!(h, Health { leader: Some(1), idle: false, out_of_sync: vec![] });
        assert_eq!(h.label(), "ok");
        assert_eq!(summary(&[h]), "healthy: 1 groups, 0 without a leader, 0 under-replicated, 0 idle");
    }

    #[test]
    fn a_replica_on_a_dead_broker_or_unmatched_is_out_of_sync() {
        let s = status(vec![led_by(1, vec![progress(2, None), progress(3, Some(5))], false)], &[3]);
        let h = assess(&s, 7, &[1, 2, 3], None);
        assert_eq!(h.out_of_sync, vec![2, 3]);
        assert_eq!(h.label(), "UNDER-REPLICATED (2,3 out of sync)");
        assert!(
            summary(&[h]).starts_with("NEEDS ATTENTION: 1 groups, 0 without a leader, 1 under-replicated")
        );
    }

    #[test]
    fn an_idle_group_shows_its_last_known_leader() {
        let mut idle = led_by(2, vec![progress(1, Some(9)), progress(3, Some(9))], true);
        let s = status(vec![idle.clone()], &[]);
        let h = assess(&s, 7, &[1, 2, 3], None);
        assert_eq!((h.leader_text(), h.label()), ("2 (idle)".to_string(), "idle".to_string()));

        // A hibernating follower's report names no leader: the topic metadata's is the last known.
        idle.leader = None;
        idle.reported_by = 3;
        let s = status(vec![idle], &[]);
        let h = assess(&s, 7, &[1, 2, 3], Some(2));
        assert_eq!((h.leader, h.idle), (Some(2), true));
    }

    #[test]
    fn an_awake_group_without_a_leader_needs_attention() {
        let mut leaderless = led_by(1, vec![], false);
        leaderless.leader = None;
        let s = status(vec![leaderless], &[1]);
        // The metadata's stale leader is not shown for a group that is awake and has none.
        let h = assess(&s, 7, &[1, 2, 3], Some(1));
        assert_eq!(h.leader, None);
        assert_eq!(h.label(), "NO LEADER, UNDER-REPLICATED (1 out of sync)");
        assert!(summary(&[h]).starts_with("NEEDS ATTENTION: 1 groups, 1 without a leader"));
    }
}
