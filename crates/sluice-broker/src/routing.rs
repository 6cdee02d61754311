//! Finding a partition: its Raft group, the local replica if hosted here, and who leads it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_raft::PartitionGroup;
use sluice_types::GroupId;

use crate::api_error::DataError;
use crate::node::Node;

/// The partition's group and, if hosted here, its replica.
pub fn resolve(
    node: &Node,
    topic: &str,
    partition: u32,
) -> Result<(GroupId, Option<PartitionGroup>), DataError> {
    let state = node.registry_state();
    let group = state
        .topic(topic)
        .and_then(|t| t.partitions.get(partition as usize))
        .map(|p| p.group)
        .ok_or_else(|| DataError::UnknownPartition { topic: topic.to_string(), partition })?;
    Ok((group, node.partition(group)))
}

/// The local replica, if this node may serve the request: it leads the partition with a quorum,
/// or (`from_follower`) it hosts a replica at all. Otherwise `NOT_LEADER` naming the leader this
/// node knows of.
pub fn serving_replica(
    node: &Node,
    topic: &str,
    partition: u32,
    from_follower: bool,
) -> Result<PartitionGroup, DataError> {
    let (group, local) = resolve(node, topic, partition)?;
    let Some(replica) = local else { return Err(not_leader(node, leader_of(node, group, None))) };
    if !from_follower {
        let leader = leader_of(node, group, Some(&replica));
        if leader != Some(node.id()) {
            return Err(not_leader(node, leader));
        }
    }
    Ok(replica)
}

/// For a client that [`serving_replica`] sent away without a leader to name: waits up to
/// `bound` for this node's replica to know a live leader (its group is electing one, or the
/// leader's node stopped answering pings), then answers as [`serving_replica`] does. A leader
/// killed with kill -9 then costs its clients the election and no more: the retry that lands
/// here is answered as soon as a leader is known, by serving it or by naming the new leader.
pub async fn serving_replica_after_election(
    node: &Node,
    topic: &str,
    partition: u32,
    bound: Duration,
) -> Result<PartitionGroup, DataError> {
    let (group, local) = resolve(node, topic, partition)?;
    if let Some(replica) = local {
        // Pings, not metrics, tell when a silent leader answers again: look again each heartbeat.
        let recheck = Duration::from_millis(node.config().raft.heartbeat_interval_ms);
        let deadline = Instant::now() + bound;
        let known = |_: &_| leader_of(node, group, Some(&replica)).is_some();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || replica.wait_until(remaining.min(recheck), known).await {
                break;
            }
        }
    }
    serving_replica(node, topic, partition, false)
}

/// The leader this node knows of. A local replica's view wins; but a replica that thinks it
/// leads and has not heard from a quorum within the election timeout (cut off from its peers, or
/// just back from a pause) may have been deposed already, so it does not name itself: clients
/// then look elsewhere instead of waiting on a leader that cannot commit. Nor is a leader named
/// whose node failed this node's latest ping: its clients would retry against a dead address
/// until the election ends.
pub fn leader_of(node: &Node, group: GroupId, local: Option<&PartitionGroup>) -> Option<u64> {
    if let Some(replica) = local {
        match replica.with_metrics(|m| m.current_leader) {
            Some(leader) if leader != node.id() => return Some(leader).filter(|l| node.peer_answering(*l)),
            Some(_) if leads_with_quorum(node, replica) => return Some(node.id()),
            _ => {}
        }
    }
    // With a local replica, only its own view may say "this node".
    node.reported_leader(group)
        .filter(|l| local.is_none() || *l != node.id())
        .filter(|l| node.peer_answering(*l))
}

/// This leader heard from a quorum within the election timeout. A hibernating or just-woken
/// group has had no heartbeats to count, and a one-voter group needs none.
fn leads_with_quorum(node: &Node, replica: &PartitionGroup) -> bool {
    let lease = node.election_timeout_max();
    replica.is_hibernating()
        || replica.woke_at().elapsed() < lease
        || replica.with_metrics(|m| {
            m.membership_config.membership().voter_ids().count() <= 1
                || m.last_quorum_acked
                    .as_ref()
                    .is_some_and(|acked| openraft::Instant::elapsed(&**acked) < lease)
        })
}

/// `NOT_LEADER`, naming `leader` and its address when known.
pub fn not_leader(node: &Node, leader: Option<u64>) -> DataError {
    DataError::NotLeader { node: node.id(), leader, leader_addr: leader.and_then(|l| node.addr_of(l)) }
}

/// Every partition leader this node knows: those reported to the registry leader, overridden by
/// the groups this node leads itself.
pub fn known_leaders(node: &Node) -> HashMap<u64, u64> {
    let mut leaders = node.reported_leaders();
    for group in node.partition_groups() {
        if group.with_metrics(|m| m.current_leader) == Some(node.id()) {
            leaders.insert(group.group().0, node.id());
        }
    }
    leaders
}
