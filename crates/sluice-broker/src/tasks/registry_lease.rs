//! Keeps the registry leader's quorum lease alive over slow links.
//!
//! openraft's leader accepts a proposal only while a quorum acknowledged it within the last
//! election timeout (its `CheckQuorum` lease), and gives every heartbeat exactly one heartbeat
//! interval. A busy group renews the lease with each replicated entry; the registry is mostly
//! idle and renews it only with heartbeats, so over links whose round trip is longer than the
//! heartbeat interval every heartbeat times out, the lease lapses and every registry change
//! (producer ids, topics, liveness verdicts) is refused. Found by the fault tests' slow-network
//! scenario. This task replicates a `Noop` when the lease is half gone
//! ([`sluice_raft::MetaGroup::renew_lease_if_aging`]); with heartbeats answered in time it never
//! writes.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::tasks::Task;

pub struct LeaseKeeper {
    pub node: Arc<Node>,
}

impl Task for LeaseKeeper {
    const NAME: &'static str = "registry-lease";

    async fn run(self, shutdown: CancellationToken) {
        let node = self.node;
        let Some(meta) = node.registry().meta() else { return };
        let lease = node.election_timeout_max();
        let mut tick = tokio::time::interval(Duration::from_millis(node.config().raft.heartbeat_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Awaited here: at most one renewal in flight. A leader that lost its quorum for real
            // is refused (its lease lapsed) or times out; either way nothing is renewed, as intended.
            match tokio::time::timeout(3 * lease, meta.renew_lease_if_aging(node.id(), lease)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "registry lease renewal not committed"),
                Err(_) => tracing::debug!("registry lease renewal timed out"),
            }
        }
    }
}
