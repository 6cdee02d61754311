//! The status of the Raft groups this node hosts, as `ClusterStatus` and peers' `GroupStatus`
//! report it.

use std::collections::HashMap;

use sluice_proto::v1 as pb;
use sluice_types::GroupId;

use crate::node::Node;

/// The status of every Raft group hosted on this node.
pub fn local_group_status(node: &Node) -> Vec<pb::GroupStatus> {
    let registry = node.registry().snapshot();
    let names: HashMap<GroupId, (String, u32)> = registry
        .state
        .topics()
        .flat_map(|t| t.partitions.iter().map(move |p| (p.group, (t.name.clone(), p.partition))))
        .collect();
    let mut out = Vec::new();
    if let Some(meta) = node.registry().meta() {
        let m = meta.metrics();
        out.push(group_status(node.id(), 0, String::new(), 0, &m, 0, false));
    }
    for group in node.partition_groups() {
        let m = group.metrics();
        let (topic, partition) = names.get(&group.group()).cloned().unwrap_or_default();
        let high_watermark = group.reader().progress().high_watermark.0;
        out.push(group_status(
            node.id(),
            group.group().0,
            topic,
            partition,
            &m,
            high_watermark,
            group.is_hibernating(),
        ));
    }
    out
}

fn group_status<C: openraft::RaftTypeConfig<NodeId = u64, Term = u64>>(
    reporter: u64,
    group_id: u64,
    topic: String,
    partition: u32,
    m: &openraft::RaftMetrics<C>,
    high_watermark: u64,
    hibernating: bool,
) -> pb::GroupStatus {
    let last_log_index = m.last_log_index.unwrap_or(0);
    let replicas = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, matched)| {
                    let matched_index = matched.as_ref().map(|l| l.index);
                    pb::ReplicaProgress {
                        node_id: *id,
                        matched_index,
                        lag: last_log_index.saturating_sub(matched_index.unwrap_or(0)),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    pb::GroupStatus {
        group_id,
        topic,
        partition,
        leader: m.current_leader,
        term: m.current_term,
        commit_index: m.local_committed.as_ref().map_or(0, |l| l.index),
        last_log_index,
        replicas,
        reported_by: reporter,
        high_watermark,
        hibernating,
    }
}
