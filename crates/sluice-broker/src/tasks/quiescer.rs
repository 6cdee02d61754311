//! Hibernation of idle partition replicas: an idle, fully replicated group stops its Raft timers;
//! a sleeping follower whose leader's node is down is woken to elect a new leader.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::tasks::Task;

/// How often idle replicas are looked for.
const QUIESCE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A leader stays awake this much longer than its followers. Each node looks for idle replicas
/// on its own clock, up to one check interval apart, and a follower that still runs its timers
/// when its leader's heartbeats stop calls an election within 750–1,000 ms (the default election
/// timeouts): so the followers must be asleep first. Without this margin an idle cluster
/// elected new leaders every few seconds (found by bench.sh's election count).
const LEADER_SLEEPS_LATER: Duration = Duration::from_secs(2);

/// Puts idle partition replicas to sleep and wakes those whose leader is gone.
pub struct Quiescer {
    pub node: Arc<Node>,
}

impl Task for Quiescer {
    const NAME: &'static str = "quiescer";

    async fn run(self, shutdown: CancellationToken) {
        let node = self.node;
        let idle_after = Duration::from_millis(node.config().raft.hibernate_after_ms);
        if idle_after.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(QUIESCE_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Per group: the last log index seen and since when.
        let mut activity: HashMap<u64, (u64, Instant)> = HashMap::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
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
                    let leader_alive = leader.is_some_and(|l| l == node.id() || node.peer_up(l));
                    if !leader_alive {
                        group.wake();
                    }
                    continue;
                }
                let leads = leader == Some(node.id());
                let idle_for = if leads { idle_after + LEADER_SLEEPS_LATER } else { idle_after };
                if now.duration_since(entry.1.max(group.woke_at())) < idle_for {
                    continue;
                }
                if committed != last {
                    continue;
                }
                let settled = match leader {
                    Some(_) if leads => replicated,
                    Some(l) => node.peer_up(l),
                    None => false,
                };
                if settled {
                    group.hibernate();
                }
            }
        }
    }
}
