//! Keeps the partition replicas running on this node equal to what the applied registry assigns
//! to it: starts new ones (the preferred leader forms the group), stops and deletes those whose
//! topic is gone.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use openraft::impls::BasicNode;
use sluice_meta::PartitionAssignment;
use sluice_raft::PartitionGroup;
use sluice_types::{GroupId, NodeId};

use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::tasks::Task;

const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Reconciles whenever the registry changes, and again after a failure until it succeeds.
pub struct Reconciler {
    pub node: Arc<Node>,
}

impl Task for Reconciler {
    const NAME: &'static str = "reconciler";

    async fn run(self, shutdown: CancellationToken) {
        let node = self.node;
        let mut registry = node.registry().watch();
        loop {
            let complete = reconcile(&node, &shutdown).await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = registry.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(RETRY_INTERVAL), if !complete => {}
            }
        }
    }
}

/// Returns whether everything assigned is running and everything removed is gone.
async fn reconcile(node: &Node, shutdown: &CancellationToken) -> bool {
    let registry = node.registry().snapshot();
    if registry.index == 0 {
        return true; // Nothing known yet: never delete on an empty view; wait for a change.
    }
    let mut complete = true;
    let me = NodeId(node.id());
    let desired: HashMap<GroupId, PartitionAssignment> =
        registry.state.assignments_of(me).map(|(_, p)| (p.group, p.clone())).collect();

    for (group, assignment) in &desired {
        if node.partition(*group).is_some() || shutdown.is_cancelled() {
            continue;
        }
        match start_replica(node, assignment, &registry.state).await {
            Ok(replica) => node.add_partition(replica),
            Err(e) => {
                complete = false;
                tracing::warn!(%group, error = %e, "could not start partition replica; will retry");
            }
        }
    }

    // Group ids are never reused: one below `next_group` that is not assigned here belonged to a
    // deleted topic. Ids at or above it are newer than this view and are left alone.
    let next_group = registry.state.next_group();
    for group in node.hosted_groups() {
        if desired.contains_key(&group) || group >= next_group {
            continue;
        }
        if let Some(replica) = node.remove_partition(group)
            && let Err(e) = replica.shutdown(node.dispatcher()).await
        {
            tracing::warn!(%group, error = %e, "partition replica shutdown failed");
        }
    }
    for group in node.storage().groups() {
        if group == GroupId::META
            || desired.contains_key(&group)
            || group >= next_group
            || node.partition(group).is_some()
        {
            continue;
        }
        match node.storage().delete_group(group).await {
            Ok(()) => tracing::info!(%group, "deleted the data of a removed partition"),
            Err(e) => {
                complete = false;
                tracing::warn!(%group, error = %e, "could not delete a removed partition");
            }
        }
    }
    complete
}

async fn start_replica(
    node: &Node,
    assignment: &PartitionAssignment,
    state: &sluice_meta::MetaState,
) -> Result<PartitionGroup, sluice_raft::GroupError> {
    let replica = PartitionGroup::open(
        node.id(),
        assignment.group,
        node.storage(),
        node.transport(),
        node.dispatcher(),
        node.raft_settings(),
    )
    .await?;
    if assignment.replicas.first() == Some(&NodeId(node.id()))
        && !replica.raft().is_initialized().await.map_err(sluice_raft::GroupError::raft)?
    {
        let members: BTreeMap<u64, BasicNode> = assignment
            .replicas
            .iter()
            .map(|id| {
                let addr = state.broker(*id).map_or_else(String::new, |b| b.addr.clone());
                (id.0, BasicNode::new(addr))
            })
            .collect();
        replica.initialize(members).await?;
        tracing::info!(group = %assignment.group, "formed partition group");
    }
    Ok(replica)
}
