//! Broker liveness, kept by the registry leader in memory (KRaft-style): heartbeats only touch
//! this table; a Raft write happens only when a verdict changes (a broker declared dead after
//! the session timeout, or alive again when it is heard from).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_meta::{BrokerState, MetaCommand};
use sluice_proto::node::HeartbeatRequest;
use sluice_types::NodeId;

use crate::node::{LivenessTable, Node};

pub struct HeartbeatAnswer {
    pub leaders: HashMap<u64, u64>,
    pub last_seen_ms_ago: HashMap<u64, u64>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Starts a fresh table when the registry term changed: a new leader knows nothing of the old
/// leader's heartbeats, so it gives every broker a full session from its election.
fn table_for_term<'a>(
    node: &Node,
    table: &'a mut LivenessTable,
    term: u64,
    now: Instant,
) -> &'a mut LivenessTable {
    if table.term != term {
        table.term = term;
        table.leaders.clear();
        table.last_seen = node.registry().state.brokers().map(|b| (b.id.0, now)).collect();
    }
    table
}

fn current_term(node: &Node) -> u64 {
    node.meta.as_ref().map_or(0, |m| m.metrics().current_term)
}

/// Records a heartbeat on the registry leader and answers with what the cluster knows.
pub fn record_heartbeat(node: &Node, request: &HeartbeatRequest) -> HeartbeatAnswer {
    let now = Instant::now();
    let term = current_term(node);
    let mut guard = node.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let table = table_for_term(node, &mut guard, term, now);
    table.last_seen.insert(request.node_id, now);
    for led in &request.led {
        let entry = table.leaders.entry(led.group_id).or_insert((request.node_id, led.term));
        if led.term >= entry.1 {
            *entry = (request.node_id, led.term);
        }
    }
    HeartbeatAnswer {
        leaders: table.leaders.iter().map(|(g, (n, _))| (*g, *n)).collect(),
        last_seen_ms_ago: table.last_seen.iter().map(|(n, t)| (*n, millis(now.duration_since(*t)))).collect(),
    }
}

/// On the registry leader, the partition leaders reported in heartbeats.
pub fn reported_leaders(node: &Node) -> HashMap<u64, u64> {
    let table = node.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    table.leaders.iter().map(|(g, (n, _))| (*g, *n)).collect()
}

/// On the registry leader, milliseconds since each broker was last heard from.
pub fn last_seen_ms_ago(node: &Node) -> HashMap<u64, u64> {
    let now = Instant::now();
    let table = node.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    table.last_seen.iter().map(|(n, t)| (*n, millis(now.duration_since(*t)))).collect()
}

/// Turns missed and resumed heartbeats into registry writes, while this node leads the registry.
pub async fn run(node: Arc<Node>) {
    let session = Duration::from_millis(node.config.liveness.session_timeout_ms);
    let mut tick =
        tokio::time::interval(Duration::from_millis(node.config.liveness.heartbeat_interval_ms / 2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !node.is_meta_leader() {
            continue;
        }
        let now = Instant::now();
        let term = current_term(&node);
        let registry = node.registry();
        let verdicts: Vec<(NodeId, BrokerState)> = {
            let mut guard = node.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let table = table_for_term(&node, &mut guard, term, now);
            table.last_seen.insert(node.id, now);
            registry
                .state
                .brokers()
                .filter_map(|b| {
                    let fresh =
                        table.last_seen.get(&b.id.0).is_some_and(|t| now.duration_since(*t) <= session);
                    match (b.state, fresh) {
                        (BrokerState::Alive, false) => Some((b.id, BrokerState::Dead)),
                        (BrokerState::Dead, true) => Some((b.id, BrokerState::Alive)),
                        _ => None,
                    }
                })
                .collect()
        };
        for (id, state) in verdicts {
            tracing::info!(broker = %id, ?state, "broker liveness changed");
            if let Err(e) = node.propose_local(MetaCommand::SetBrokerState { id, state }).await {
                tracing::warn!(broker = %id, error = %e, "could not record the liveness verdict");
            }
        }
    }
}
