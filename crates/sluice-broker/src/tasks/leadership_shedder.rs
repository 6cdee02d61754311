//! Handing leaderships away from a node whose disk is below its floor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::tasks::Task;

/// How often a node whose disk is below its floor looks for leaderships to hand over.
const SHED_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A group's leadership is handed over at most this often: when every node's disk is low (one
/// disk shared by all), leaderships would otherwise circle the cluster.
const SHED_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// A leader whose disk is below its floor answers BUSY to every produce. Rather than keep its
/// partitions unwritable, it hands each leadership to the most caught-up follower that is up,
/// which campaigns at once; it stays a follower until its disk recovers or fills (a failed
/// write stops the node).
pub struct LeadershipShedder {
    pub node: Arc<Node>,
}

impl Task for LeadershipShedder {
    const NAME: &'static str = "leadership-shedder";

    async fn run(self, shutdown: CancellationToken) {
        let node = self.node;
        let mut tick = tokio::time::interval(SHED_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut handed: HashMap<u64, Instant> = HashMap::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !node.admission().disk_low() {
                continue;
            }
            handed.retain(|_, at| at.elapsed() < SHED_AGAIN_AFTER);
            for group in node.partition_groups() {
                if handed.contains_key(&group.group().0) {
                    continue;
                }
                let target = group.with_metrics(|m| {
                    if m.current_leader != Some(node.id()) {
                        return None;
                    }
                    m.replication
                        .as_ref()?
                        .iter()
                        .filter(|(id, _)| **id != node.id() && node.peer_up(**id))
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
}
