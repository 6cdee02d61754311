//! Turns missed and resumed heartbeats into registry writes, while this node leads the registry
//! (the rules are `sluice_meta::LivenessTable`'s; a Raft write happens only when a verdict
//! changes).

use std::sync::Arc;
use std::time::Duration;

use sluice_meta::MetaCommand;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::tasks::Task;

pub struct LivenessMonitor {
    pub node: Arc<Node>,
}

impl Task for LivenessMonitor {
    const NAME: &'static str = "liveness";

    async fn run(self, shutdown: CancellationToken) {
        let node = self.node;
        let session = Duration::from_millis(node.config().liveness.session_timeout_ms);
        let mut tick =
            tokio::time::interval(Duration::from_millis(node.config().liveness.heartbeat_interval_ms / 2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !node.registry().is_leader() {
                continue;
            }
            for (id, state) in node.liveness_verdicts(session) {
                tracing::info!(broker = %id, ?state, "broker liveness changed");
                let command = MetaCommand::SetBrokerState { id, state };
                if let Err(e) = node.registry().propose_local(command).await {
                    tracing::warn!(broker = %id, error = %e, "could not record the liveness verdict");
                }
            }
        }
    }
}
