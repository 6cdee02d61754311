//! Broker liveness as the registry leader keeps it: in memory, never replicated (KRaft-style).
//! Heartbeats only touch this table; a registry write happens only when a verdict changes.
//!
//! Pure: the caller passes the time (`now`) and the registry term, so the rules are tested
//! without a clock or a runtime.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_types::{GroupId, NodeId};

use crate::state::{BrokerState, MetaState};

/// What the registry leader heard from brokers during its current term.
#[derive(Debug, Default)]
pub struct LivenessTable {
    /// The registry term this table belongs to; a new leader starts a new table.
    term: u64,
    last_seen: HashMap<NodeId, Instant>,
    /// Partition group -> (leader, its Raft term) as reported in heartbeats.
    leaders: HashMap<GroupId, (NodeId, u64)>,
}

impl LivenessTable {
    /// Starts afresh when the registry term changed: a new leader knows nothing of the old
    /// leader's heartbeats, so it gives every registered broker a full session from its election.
    fn enter_term(&mut self, term: u64, registry: &MetaState, now: Instant) {
        if self.term != term {
            self.term = term;
            self.leaders.clear();
            self.last_seen = registry.brokers().map(|b| (b.id, now)).collect();
        }
    }

    /// Records a heartbeat of `from`, which reports leading each of `led` (group, Raft term).
    /// A report for a group is kept unless one of a higher Raft term is already known.
    pub fn record_heartbeat(
        &mut self,
        term: u64,
        registry: &MetaState,
        now: Instant,
        from: NodeId,
        led: impl IntoIterator<Item = (GroupId, u64)>,
    ) {
        self.enter_term(term, registry, now);
        self.last_seen.insert(from, now);
        for (group, group_term) in led {
            let entry = self.leaders.entry(group).or_insert((from, group_term));
            if group_term >= entry.1 {
                *entry = (from, group_term);
            }
        }
    }

    /// The verdicts that changed as of `now`: a live broker not heard from for longer than
    /// `session` is dead, a dead one heard from within it is alive. `me` (the registry leader)
    /// counts as heard from.
    pub fn verdicts(
        &mut self,
        term: u64,
        registry: &MetaState,
        now: Instant,
        me: NodeId,
        session: Duration,
    ) -> Vec<(NodeId, BrokerState)> {
        self.enter_term(term, registry, now);
        self.last_seen.insert(me, now);
        registry
            .brokers()
            .filter_map(|b| {
                let fresh = self.last_seen.get(&b.id).is_some_and(|t| now.duration_since(*t) <= session);
                match (b.state, fresh) {
                    (BrokerState::Alive, false) => Some((b.id, BrokerState::Dead)),
                    (BrokerState::Dead, true) => Some((b.id, BrokerState::Alive)),
                    _ => None,
                }
            })
            .collect()
    }

    /// The leader reported for one group.
    pub fn reported_leader(&self, group: GroupId) -> Option<NodeId> {
        self.leaders.get(&group).map(|(node, _)| *node)
    }

    /// Every reported partition leader.
    pub fn reported_leaders(&self) -> HashMap<GroupId, NodeId> {
        self.leaders.iter().map(|(group, (node, _))| (*group, *node)).collect()
    }

    /// How long ago each broker was last heard from.
    pub fn last_seen_ago(&self, now: Instant) -> HashMap<NodeId, Duration> {
        self.last_seen.iter().map(|(node, at)| (*node, now.saturating_duration_since(*at))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MetaCommand;

    const SESSION: Duration = Duration::from_millis(1500);

    fn registry(brokers: &[u64]) -> MetaState {
        let mut state = MetaState::default();
        for id in brokers {
            state.apply(MetaCommand::RegisterBroker { id: NodeId(*id), addr: format!("n{id}:1") });
        }
        state
    }

    #[test]
    fn a_silent_broker_is_declared_dead_after_the_session_and_alive_when_heard_again() {
        let mut state = registry(&[1, 2, 3]);
        let mut table = LivenessTable::default();
        let start = Instant::now();
        // A new term gives everyone a full session.
        assert!(table.verdicts(1, &state, start, NodeId(1), SESSION).is_empty());
        table.record_heartbeat(1, &state, start + SESSION, NodeId(2), []);
        let later = start + SESSION + Duration::from_millis(1);
        assert_eq!(
            table.verdicts(1, &state, later, NodeId(1), SESSION),
            vec![(NodeId(3), BrokerState::Dead)]
        );
        state.apply(MetaCommand::SetBrokerState { id: NodeId(3), state: BrokerState::Dead });
        assert!(table.verdicts(1, &state, later, NodeId(1), SESSION).is_empty(), "a verdict is given once");
        table.record_heartbeat(1, &state, later, NodeId(3), []);
        assert_eq!(
            table.verdicts(1, &state, later, NodeId(1), SESSION),
            vec![(NodeId(3), BrokerState::Alive)]
        );
    }

    #[test]
    fn the_registry_leader_never_declares_itself_dead() {
        let state = registry(&[1]);
        let mut table = LivenessTable::default();
        let start = Instant::now();
        table.verdicts(1, &state, start, NodeId(1), SESSION);
        assert!(table.verdicts(1, &state, start + 10 * SESSION, NodeId(1), SESSION).is_empty());
    }

    #[test]
    fn a_new_term_forgets_the_old_leaders_reports_and_restarts_every_session() {
        let state = registry(&[1, 2]);
        let mut table = LivenessTable::default();
        let start = Instant::now();
        table.record_heartbeat(1, &state, start, NodeId(2), [(GroupId(5), 3)]);
        assert_eq!(table.reported_leader(GroupId(5)), Some(NodeId(2)));
        let much_later = start + 10 * SESSION;
        assert!(table.verdicts(2, &state, much_later, NodeId(1), SESSION).is_empty());
        assert_eq!(table.reported_leader(GroupId(5)), None);
        assert_eq!(table.last_seen_ago(much_later).get(&NodeId(2)), Some(&Duration::ZERO));
    }

    #[test]
    fn a_report_of_an_older_group_term_does_not_replace_a_newer_one() {
        let state = registry(&[1, 2, 3]);
        let mut table = LivenessTable::default();
        let now = Instant::now();
        table.record_heartbeat(1, &state, now, NodeId(2), [(GroupId(5), 4)]);
        table.record_heartbeat(1, &state, now, NodeId(3), [(GroupId(5), 3)]);
        assert_eq!(table.reported_leader(GroupId(5)), Some(NodeId(2)));
        table.record_heartbeat(1, &state, now, NodeId(3), [(GroupId(5), 5)]);
        assert_eq!(table.reported_leaders(), HashMap::from([(GroupId(5), NodeId(3))]));
    }
}
