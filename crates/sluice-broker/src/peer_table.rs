//! What this node knows of its peers' liveness from its own pings: a peer that has not answered
//! for the down-after period is down; one that answers with a new incarnation restarted. One that
//! failed the latest round is not yet down, but is not named as anyone's leader either.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct PeerState {
    last_ok: Instant,
    up: bool,
    /// The latest round's ping was answered.
    answering: bool,
    incarnation: u64,
}

/// The peers that changed state in one round of pings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PeerChanges {
    /// Answered the round before, not this one.
    pub fell_silent: Vec<u64>,
    pub went_down: Vec<u64>,
    /// Back after being down, or restarted (a new incarnation) while this node looked away.
    pub came_up: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct PeerTable {
    peers: HashMap<u64, PeerState>,
}

impl PeerTable {
    /// Whether `peer` answered recently. A peer never pinged yet counts as up.
    pub fn is_up(&self, peer: u64) -> bool {
        self.peers.get(&peer).is_none_or(|p| p.up)
    }

    /// Whether `peer` answered the latest round of pings. A killed node fails the next ping at
    /// once (its port refuses connections), long before it counts as down; that is soon enough
    /// to stop sending clients to it as a leader. A peer never pinged yet counts as answering.
    pub fn is_answering(&self, peer: u64) -> bool {
        self.peers.get(&peer).is_none_or(|p| p.answering)
    }

    /// Records one round of pings: each peer with its incarnation if it answered.
    pub fn record(
        &mut self,
        answers: impl IntoIterator<Item = (u64, Option<u64>)>,
        now: Instant,
        down_after: Duration,
    ) -> PeerChanges {
        let mut changes = PeerChanges::default();
        for (id, answer) in answers {
            let state = self.peers.entry(id).or_insert(PeerState {
                last_ok: now,
                up: true,
                answering: true,
                incarnation: 0,
            });
            if state.answering && answer.is_none() {
                changes.fell_silent.push(id);
            }
            state.answering = answer.is_some();
            match answer {
                Some(incarnation) => {
                    let restarted = state.incarnation != 0 && state.incarnation != incarnation;
                    if !state.up || restarted {
                        changes.came_up.push(id);
                    }
                    *state = PeerState { last_ok: now, up: true, answering: true, incarnation };
                }
                None if state.up && now.duration_since(state.last_ok) > down_after => {
                    state.up = false;
                    changes.went_down.push(id);
                }
                None => {}
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOWN_AFTER: Duration = Duration::from_millis(300);

    #[test]
    fn a_silent_peer_goes_down_after_the_period_and_comes_back_when_it_answers() {
        let mut table = PeerTable::default();
        let start = Instant::now();
        assert!(table.is_up(2), "never pinged counts as up");
        assert_eq!(table.record([(2, Some(7))], start, DOWN_AFTER), PeerChanges::default());
        let silent = table.record([(2, None)], start + DOWN_AFTER, DOWN_AFTER);
        assert_eq!(silent, PeerChanges { fell_silent: vec![2], ..PeerChanges::default() });
        let later = start + DOWN_AFTER + Duration::from_millis(1);
        assert_eq!(table.record([(2, None)], later, DOWN_AFTER).went_down, vec![2]);
        assert!(!table.is_up(2));
        assert_eq!(table.record([(2, Some(7))], later, DOWN_AFTER).came_up, vec![2]);
        assert!(table.is_up(2));
    }

    #[test]
    fn a_restart_between_pings_counts_as_coming_back() {
        let mut table = PeerTable::default();
        let now = Instant::now();
        table.record([(3, Some(1))], now, DOWN_AFTER);
        assert_eq!(table.record([(3, Some(2))], now, DOWN_AFTER).came_up, vec![3]);
        assert_eq!(table.record([(3, Some(2))], now, DOWN_AFTER), PeerChanges::default());
    }

    #[test]
    fn one_unanswered_round_stops_naming_a_peer_before_it_counts_as_down() {
        let mut table = PeerTable::default();
        let now = Instant::now();
        assert!(table.is_answering(2), "never pinged counts as answering");
        table.record([(2, Some(7))], now, DOWN_AFTER);
        assert!(table.is_answering(2));
        assert_eq!(table.record([(2, None)], now, DOWN_AFTER).fell_silent, vec![2]);
        assert!(!table.is_answering(2), "the failed round counts at once");
        assert_eq!(table.record([(2, None)], now, DOWN_AFTER), PeerChanges::default(), "once");
        assert!(table.is_up(2), "but the peer is not down before the period");
        table.record([(2, Some(7))], now, DOWN_AFTER);
        assert!(table.is_answering(2));
    }
}
