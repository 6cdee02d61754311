//! Every node registers itself with the registry and then heartbeats to its leader, reporting the
//! partitions it leads; the answer carries the cluster's partition leaders, liveness and, for
//! nodes without a registry replica, the registry itself.

use std::sync::Arc;
use std::time::Duration;

use sluice_meta::{MetaCommand, MetaState};
use sluice_proto::node::{HeartbeatRequest, LedGroup};
use sluice_types::NodeId;

use crate::api_error::leader_hint;
use crate::node::{ClusterInfo, Node};

pub async fn run(node: Arc<Node>) {
    let interval = Duration::from_millis(node.config.liveness.heartbeat_interval_ms);
    let mut registered = false;
    let mut hint: Option<String> = None;
    loop {
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            () = tokio::time::sleep(if registered { interval } else { interval / 4 }) => {}
        }
        if !registered {
            let command = MetaCommand::RegisterBroker { id: NodeId(node.id), addr: node.addr.clone() };
            match node.propose(command).await {
                Ok(_) => {
                    tracing::info!(node = node.id, addr = %node.addr, "registered with the registry");
                    registered = true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "registration not possible yet");
                    continue;
                }
            }
        }
        match send_heartbeat(&node, hint.take()).await {
            Ok(still_registered) => registered = still_registered,
            Err(next_hint) => hint = next_hint,
        }
    }
}

/// One heartbeat to the registry leader. `Ok(false)` means the registry forgot this node.
async fn send_heartbeat(node: &Node, hint: Option<String>) -> Result<bool, Option<String>> {
    let led: Vec<LedGroup> = node
        .partition_groups()
        .into_iter()
        .filter_map(|g| {
            g.with_metrics(|m| {
                (m.current_leader == Some(node.id))
                    .then_some(LedGroup { group_id: g.group().0, term: m.current_term })
            })
        })
        .collect();
    let mut targets = Vec::new();
    targets.extend(hint);
    targets.extend(node.meta_leader().and_then(|l| node.addr_of(l)));
    targets.extend(node.config.controllers.iter().map(|c| c.addr.clone()));
    targets.dedup();
    let request = HeartbeatRequest {
        node_id: node.id,
        addr: node.addr.clone(),
        led,
        known_registry_index: node.registry().index,
    };
    for addr in targets {
        let Ok(mut client) = node.clients.node(&addr) else { continue };
        let mut call = tonic::Request::new(request.clone());
        call.set_timeout(Duration::from_millis(node.config.liveness.heartbeat_interval_ms.max(500)));
        match client.heartbeat(call).await {
            Ok(response) => {
                let response = response.into_inner();
                if !response.registry.is_empty() {
                    match MetaState::from_bytes(&response.registry) {
                        Ok(state) => node.offer_registry(state, response.registry_index),
                        Err(e) => tracing::warn!(error = %e, "registry copy in heartbeat is unreadable"),
                    }
                }
                node.set_cluster_info(ClusterInfo {
                    meta_leader: Some(response.meta_leader),
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
