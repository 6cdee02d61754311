//! Every node registers itself with the registry and then heartbeats to its leader, reporting the
//! partitions it leads; the answer carries the cluster's partition leaders, liveness and, for
//! nodes without a registry replica, the registry itself.

use std::sync::Arc;
use std::time::Duration;

use sluice_meta::{MetaCommand, MetaState};
use sluice_proto::node::{HeartbeatRequest, LedGroup};
use sluice_types::NodeId;
use tokio_util::sync::CancellationToken;

use crate::api_error::leader_hint;
use crate::node::{ClusterInfo, Node};
use crate::tasks::Task;

/// A heartbeat is given at least this long to be answered.
const HEARTBEAT_TIMEOUT_MIN: Duration = Duration::from_millis(500);

pub struct Heartbeater {
    pub node: Arc<Node>,
}

impl Task for Heartbeater {
    const NAME: &'static str = "heartbeat";

    async fn run(self, shutdown: CancellationToken) {
        let node = self.node;
        let interval = Duration::from_millis(node.config().liveness.heartbeat_interval_ms);
        let mut registered = false;
        let mut hint: Option<String> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(if registered { interval } else { interval / 4 }) => {}
            }
            if !registered {
                let command =
                    MetaCommand::RegisterBroker { id: NodeId(node.id()), addr: node.addr().to_string() };
                match node.registry().propose(command).await {
                    Ok(_) => {
                        tracing::info!(node = node.id(), addr = %node.addr(), "registered with the registry");
                        registered = true;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "registration not possible yet");
                        continue;
                    }
                }
            }
            match send_heartbeat(&node, interval, hint.take()).await {
                Ok(still_registered) => registered = still_registered,
                Err(next_hint) => hint = next_hint,
            }
        }
    }
}

/// One heartbeat to the registry leader. `Ok(false)` means the registry forgot this node;
/// `Err` carries the leader hint of a node that was not the leader.
async fn send_heartbeat(
    node: &Node,
    interval: Duration,
    hint: Option<String>,
) -> Result<bool, Option<String>> {
    let led: Vec<LedGroup> = node
        .partition_groups()
        .into_iter()
        .filter_map(|g| {
            g.with_metrics(|m| {
                (m.current_leader == Some(node.id()))
                    .then_some(LedGroup { group_id: g.group().0, term: m.current_term })
            })
        })
        .collect();
    let request = HeartbeatRequest {
        node_id: node.id(),
        addr: node.addr().to_string(),
        led,
        known_registry_index: node.registry().snapshot().index,
    };
    for addr in node.registry().targets(hint) {
        let Ok(mut client) = node.clients().node(&addr) else { continue };
        let mut call = tonic::Request::new(request.clone());
        call.set_timeout(interval.max(HEARTBEAT_TIMEOUT_MIN));
        match client.heartbeat(call).await {
            Ok(response) => {
                let response = response.into_inner();
                if !response.registry.is_empty() {
                    match MetaState::from_bytes(&response.registry) {
                        Ok(state) => node.registry().offer(state, response.registry_index),
                        Err(e) => tracing::warn!(error = %e, "registry copy in heartbeat is unreadable"),
                    }
                }
                node.registry().learn_leader(response.meta_leader);
                node.set_cluster_info(ClusterInfo {
                    leaders: response.leaders,
                    last_seen_ms_ago: response
                        .liveness
                        .iter()
                        .map(|l| (l.node_id, l.last_seen_ms_ago))
                        .collect(),
                });
                return Ok(response.registered);
            }
            Err(status) => {
                if let Some(leader) = leader_hint(&status) {
                    return Err(Some(leader));
                }
                tracing::debug!(%addr, error = %status.message(), "heartbeat failed");
            }
        }
    }
    Err(None)
}
