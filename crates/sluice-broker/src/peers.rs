//! Node-to-node liveness. Every node pings every other broker each Raft heartbeat interval; a
//! peer that has not answered for an election timeout is down. This is what keeps hibernating
//! partitions safe to leave without heartbeats: when a leader's node goes down, the followers of
//! its groups here are woken and elect a new leader; when a peer comes back (or restarted), the
//! groups this node leads with it are woken so that it hears from its leaders at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_proto::node::PingRequest;
use sluice_types::NodeId;

use crate::node::Node;

#[derive(Debug, Clone, Copy)]
pub struct PeerState {
    last_ok: Instant,
    up: bool,
    incarnation: u64,
}

/// Whether `peer` answered recently. A peer never pinged yet counts as up.
pub fn peer_up(node: &Node, peer: u64) -> bool {
    let peers = node.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    peers.get(&peer).is_none_or(|p| p.up)
}

pub async fn run(node: Arc<Node>) {
    let interval = Duration::from_millis(node.config.raft.heartbeat_interval_ms);
    let down_after = Duration::from_millis(node.config.raft.election_timeout_min_ms);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let peers: Vec<(u64, String)> = node
            .registry()
            .state
            .brokers()
            .filter(|b| b.id != NodeId(node.id))
            .map(|b| (b.id.0, b.addr.clone()))
            .collect();
        let pings = peers.into_iter().map(|(id, addr)| {
            let node = node.clone();
            async move {
                let Ok(mut client) = node.clients.node(&addr) else { return (id, None) };
                let mut request = tonic::Request::new(PingRequest { from: node.id });
                request.set_timeout(down_after / 2);
                let answer = tokio::time::timeout(down_after / 2, client.ping(request)).await;
                match answer {
                    Ok(Ok(response)) => (id, Some(response.into_inner().incarnation)),
                    _ => (id, None),
                }
            }
        });
        let results = futures::future::join_all(pings).await;
        let now = Instant::now();
        let mut went_down = Vec::new();
        let mut came_up = Vec::new();
        {
            let mut states = node.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (id, answer) in results {
                let state = states.entry(id).or_insert(PeerState { last_ok: now, up: true, incarnation: 0 });
                match answer {
                    Some(incarnation) => {
                        let restarted = state.incarnation != 0 && state.incarnation != incarnation;
                        if !state.up || restarted {
                            came_up.push(id);
                        }
                        *state = PeerState { last_ok: now, up: true, incarnation };
                    }
                    None if state.up && now.duration_since(state.last_ok) > down_after => {
                        state.up = false;
                        went_down.push(id);
                    }
                    None => {}
                }
            }
        }
        for peer in went_down {
            tracing::info!(peer, "peer stopped answering; waking the groups it led here");
            for group in node.partition_groups() {
                if group.with_metrics(|m| m.current_leader) == Some(peer) {
                    group.wake();
                }
            }
        }
        for peer in came_up {
            tracing::info!(peer, "peer is back; waking the groups this node leads with it");
            for group in node.partition_groups() {
                let leads_with_peer = group.with_metrics(|m| {
                    m.current_leader == Some(node.id)
                        && m.membership_config.membership().voter_ids().any(|v| v == peer)
                });
                if leads_with_peer {
                    group.wake();
                }
            }
        }
    }
}

/// Puts idle partition replicas to sleep and wakes those whose leader is gone.
/// How often idle replicas are looked for.
const QUIESCE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub async fn quiesce(node: Arc<Node>) {
    let idle_after = Duration::from_millis(node.config.raft.hibernate_after_ms);
    if idle_after.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(QUIESCE_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Per group: the last log index seen and since when.
    let mut activity: HashMap<u64, (u64, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let groups = node.partition_groups();
        activity.retain(|g, _| groups.iter().any(|group| group.group().0 == *g));
        for group in groups {
            let (leader, last, committed, replicated) = group.with_metrics(|m| {
                let last = m.last_log_index.unwrap_or(0);
                let replicated = m
                    .replication
                    .as_ref()
                    .is_some_and(|r| r.values().all(|matched| matched.map(|id| id.index) == Some(last)));
                (m.current_leader, last, m.local_committed.map_or(0, |id| id.index), replicated)
            });
            let entry = activity.entry(group.group().0).or_insert((last, now));
            if entry.0 != last {
                *entry = (last, now);
            }
            if group.is_hibernating() {
                // A sleeping follower must not outlive its leader's node.
                let leader_alive = leader.is_some_and(|l| l == node.id || peer_up(&node, l));
                if !leader_alive {
                    group.wake();
                }
                continue;
            }
            if now.duration_since(entry.1.max(group.woke_at())) < idle_after {
                continue;
            }
            if committed != last {
                continue;
            }
            let settled = match leader {
                Some(l) if l == node.id => replicated,
                Some(l) => peer_up(&node, l),
                None => false,
            };
            if settled {
                group.hibernate();
            }
        }
    }
}

/// How often a node whose disk is below its floor looks for leaderships to hand over.
const SHED_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A group's leadership is handed over at most this often: when every node's disk is low (one
/// disk shared by all), leaderships would otherwise circle the cluster.
const SHED_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// A leader whose disk is below its floor answers BUSY to every produce. Rather than keep its
/// partitions unwritable, it hands each leadership to the most caught-up follower that is up,
/// which campaigns at once; it stays a follower until its disk recovers or fills (a failed
/// write stops the node).
pub async fn shed_leadership(node: Arc<Node>) {
    let mut tick = tokio::time::interval(SHED_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut handed: HashMap<u64, Instant> = HashMap::new();
    loop {
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !node.admission.disk_low(&node) {
            continue;
        }
        handed.retain(|_, at| at.elapsed() < SHED_AGAIN_AFTER);
        for group in node.partition_groups() {
            if handed.contains_key(&group.group().0) {
                continue;
            }
            let target = group.with_metrics(|m| {
                if m.current_leader != Some(node.id) {
                    return None;
                }
                m.replication
                    .as_ref()?
                    .iter()
                    .filter(|(id, _)| **id != node.id && peer_up(&node, **id))
                    .max_by_key(|(_, matched)| matched.as_ref().map(|l| l.index))
                    .map(|(id, _)| *id)
            });
            let Some(to) = target else { continue };
            handed.insert(group.group().0, Instant::now());
            tracing::warn!(group = %group.group(), to, "disk below its floor: handing leadership over");
            group.wake();
            if let Err(e) = group.raft().trigger().transfer_leader(to).await {
                tracing::warn!(group = %group.group(), error = %e, "leadership hand-over failed");
            }
        }
    }
}
