//! Node-to-node liveness. Every node pings every other broker each Raft heartbeat interval; a
//! peer that has not answered for an election timeout is down (`crate::peer_table`). This is what
//! keeps hibernating partitions safe to leave without heartbeats: when a leader's node goes down,
//! the followers of its groups here are woken and elect a new leader; when a peer comes back (or
//! restarted), the groups this node leads with it are woken so that it hears from its leaders at
//! once. A peer that fails a single ping is stood in for: see `stand_in`.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::node::PingRequest;
use sluice_types::NodeId;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::tasks::{Task, stand_in};

/// A ping's time to answer. A killed node refuses the connection at once, so this only bounds
/// how long a paused or cut-off one is waited for; it is as generous as a Raft RPC's floor, so
/// that a slow link (the slow-network fault) does not make a live leader look dead.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

pub struct PeerMonitor {
    pub node: Arc<Node>,
}

impl Task for PeerMonitor {
    const NAME: &'static str = "peers";

    async fn run(self, shutdown: CancellationToken) {
        let node = self.node;
        let interval = Duration::from_millis(node.config().raft.heartbeat_interval_ms);
        let down_after = Duration::from_millis(node.config().raft.election_timeout_min_ms);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // At most one a peer: a peer falls silent again only after it answered.
        let mut stand_ins = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            while stand_ins.try_join_next().is_some() {}
            let answers = ping_all(&node, PING_TIMEOUT).await;
            let changes = node.record_pings(answers, down_after);
            for peer in changes.fell_silent {
                tracing::info!(peer, "peer failed a ping; its groups here campaign once their lease is out");
                stand_ins.spawn(stand_in::stand_in_for(node.clone(), peer));
            }
            for peer in changes.went_down {
                tracing::info!(peer, "peer stopped answering; waking the groups it led here");
                for group in node.partition_groups() {
                    if group.with_metrics(|m| m.current_leader) == Some(peer) {
                        group.wake();
                    }
                }
            }
            for peer in changes.came_up {
                tracing::info!(peer, "peer is back; waking the groups this node leads with it");
                for group in node.partition_groups() {
                    let leads_with_peer = group.with_metrics(|m| {
                        m.current_leader == Some(node.id())
                            && m.membership_config.membership().voter_ids().any(|v| v == peer)
                    });
                    if leads_with_peer {
                        group.wake();
                    }
                }
            }
        }
    }
}

/// Pings every other registered broker at once; each answer is its incarnation, or `None`.
async fn ping_all(node: &Arc<Node>, timeout: Duration) -> Vec<(u64, Option<u64>)> {
    let peers: Vec<(u64, String)> = node
        .registry_state()
        .brokers()
        .filter(|b| b.id != NodeId(node.id()))
        .map(|b| (b.id.0, b.addr.clone()))
        .collect();
    let pings = peers.into_iter().map(|(id, addr)| {
        let node = node.clone();
        async move {
            let Ok(mut client) = node.clients().node(&addr) else { return (id, None) };
            let mut request = tonic::Request::new(PingRequest { from: node.id() });
            request.set_timeout(timeout);
            match tokio::time::timeout(timeout, client.ping(request)).await {
                Ok(Ok(response)) => (id, Some(response.into_inner().incarnation)),
                _ => (id, None),
            }
        }
    });
    futures::future::join_all(pings).await
}
