//! Standing in for a leader whose node fell silent. openraft gives every leader a lease of one
//! `election_timeout_max`, and a follower calls its election only a random election timeout
//! after that lease ran out: a leader killed with kill -9 costs its groups up to twice the
//! maximum election timeout. The node's own pings learn of the death sooner (a killed node's
//! port refuses the next ping), so once the lease has run out on every follower, one of them
//! campaigns at once. The campaign is a pre-vote: should the leader still be alive and heard by
//! a quorum (only the ping was lost), nothing changes.

use std::sync::Arc;
use std::time::Duration;

use crate::node::Node;

/// Campaigns, in the place of `peer`, for the groups it led here (the registry's too); begun
/// when `peer` fell silent. The followers of a group take turns, one heartbeat interval apart
/// in the order of their ids, so that they do not split the vote.
pub async fn stand_in_for(node: Arc<Node>, peer: u64) {
    let turn = Duration::from_millis(node.config().raft.heartbeat_interval_ms);
    // Every follower's lease started at the last message from `peer`, before it fell silent.
    tokio::time::sleep(node.election_timeout_max()).await;
    let mut rank = 0;
    loop {
        let mut later = false;
        for group in node.partition_groups() {
            let place = group.with_metrics(|m| {
                place_of(&node, peer, m.current_leader, m.membership_config.membership().voter_ids())
            });
            later |= place.is_some_and(|p| p > rank);
            if place == Some(rank)
                && let Err(e) = group.campaign().await
            {
                tracing::warn!(group = group.group().0, error = %e, "could not campaign for a silent leader");
            }
        }
        if let Some(meta) = node.registry().meta() {
            let m = meta.metrics();
            let place = place_of(&node, peer, m.current_leader, m.membership_config.membership().voter_ids());
            later |= place.is_some_and(|p| p > rank);
            if place == Some(rank)
                && let Err(e) = meta.campaign().await
            {
                tracing::warn!(error = %e, "could not campaign for the registry's silent leader");
            }
        }
        if !later {
            return;
        }
        rank += 1;
        tokio::time::sleep(turn).await;
    }
}

/// This node's turn among the group's followers that may stand in for its leader `peer`: its
/// place among the answering voters other than `peer`, by id. None if `peer` no longer leads
/// the group here, or answers again.
fn place_of(node: &Node, peer: u64, leader: Option<u64>, voters: impl Iterator<Item = u64>) -> Option<usize> {
    if leader != Some(peer) || node.peer_answering(peer) {
        return None;
    }
    let mut stand_ins: Vec<u64> = voters.filter(|&v| v != peer && node.peer_answering(v)).collect();
    stand_ins.sort_unstable();
    stand_ins.iter().position(|&v| v == node.id())
}
