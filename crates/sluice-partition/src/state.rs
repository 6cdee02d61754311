use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use sluice_types::{BatchHeader, Offset, ProducerEpoch, ProducerId, Sequence};

use crate::sabotage::Sabotage;

/// How many recent batches per producer are remembered for deduplication. A producer must not
/// have more batches in flight per partition than this, or a retry of an older one could be
/// appended twice (Redpanda's duplicates came from a window smaller than the in-flight limit).
pub const PRODUCER_DEDUP_WINDOW: usize = 8;

/// How many producers a partition remembers; beyond it the least recently active is forgotten
/// (its next batch starts a fresh sequence, as after an epoch bump).
pub const PRODUCERS_MAX: usize = 4096;

/// Why a batch was refused at apply time. It stays in the Raft log but gets no offsets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AppendError {
    /// The producer's epoch is older than one already seen: a newer incarnation exists.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    ProducerFenced { producer_id: ProducerId, epoch: ProducerEpoch, current: ProducerEpoch },
    /// The stored batch could not be read. The leader validated it before appending, so this
    /// means corruption or a bug; every replica reaches the same verdict.
    #[error("stored batch is unreadable: {0}")]
    Unreadable(String),
    /// The batch does not continue the producer's sequence and is not a known duplicate.
    #[error("producer {producer_id}: batch starts at sequence {got}, expected {expected}")]
    OutOfOrderSequence { producer_id: ProducerId, expected: Sequence, got: Sequence },
}

/// Where a producer's sequence may start in a partition. An entry keeps the rule it was written
/// under (its command says which), so that a replica replaying an old log computes the offsets
/// that were acknowledged then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SequenceRule {
    /// Entries written before the rule existed: a producer new to the partition may start at
    /// any sequence.
    AnyStart,
    /// A producer new to the partition, or at a newer epoch, starts at sequence 0; anything else
    /// is refused as out of order (a client bug, or a batch whose predecessors were lost).
    FromZero,
}

/// What applying one batch did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchOutcome {
    /// The batch got offsets `base_offset ..= base_offset + count - 1`.
    Appended {
        base_offset: Offset,
    },
    /// The batch was appended before (a retry); it keeps its first offsets and adds nothing.
    Duplicate {
        base_offset: Offset,
    },
    Rejected(AppendError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecentBatch {
    pub(crate) base_sequence: Sequence,
    pub(crate) last_sequence: Sequence,
    pub(crate) base_offset: Offset,
}

/// What a partition remembers of one idempotent producer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    pub(crate) epoch: ProducerEpoch,
    /// The most recent batches, oldest first; at most [`PRODUCER_DEDUP_WINDOW`].
    pub(crate) recent: VecDeque<RecentBatch>,
    /// The next offset of the partition when this producer last appended; orders eviction.
    pub(crate) last_active: Offset,
}

impl ProducerState {
    fn next_sequence(&self) -> Option<Sequence> {
        self.recent.back().map(|b| Sequence(b.last_sequence.0 + 1))
    }
}

/// The replicated state of one partition. Small: the records live in the log, not here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub(crate) next_offset: Offset,
    pub(crate) log_start_offset: Offset,
    pub(crate) producers: BTreeMap<ProducerId, ProducerState>,
}

impl PartitionState {
    /// The offset the next appended record gets; also the high watermark: every offset below it
    /// is committed.
    pub fn next_offset(&self) -> Offset {
        self.next_offset
    }

    /// The first offset still retained.
    pub fn log_start_offset(&self) -> Offset {
        self.log_start_offset
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Applies one committed batch under today's rule. Deterministic: every replica computes the
    /// same outcome.
    pub fn apply_batch(&mut self, header: &BatchHeader) -> BatchOutcome {
        self.apply_batch_with(header, SequenceRule::FromZero, Sabotage::NONE)
    }

    /// [`PartitionState::apply_batch`] under the `rule` its entry was written with, broken on
    /// purpose as `sabotage` says (fault tests only).
    pub fn apply_batch_with(
        &mut self,
        header: &BatchHeader,
        rule: SequenceRule,
        sabotage: Sabotage,
    ) -> BatchOutcome {
        debug_assert!(header.record_count > 0, "validated batches are never empty");
        let count = u64::from(header.record_count);
        if header.producer_id.is_none() || sabotage.skip_dedup {
            return BatchOutcome::Appended { base_offset: self.assign(count) };
        }

        if let Some(producer) = self.producers.get(&header.producer_id) {
            if header.producer_epoch < producer.epoch {
                return BatchOutcome::Rejected(AppendError::ProducerFenced {
                    producer_id: header.producer_id,
                    epoch: header.producer_epoch,
                    current: producer.epoch,
                });
            }
            if header.producer_epoch == producer.epoch {
                if let Some(dup) = producer.recent.iter().find(|b| {
                    b.base_sequence == header.base_sequence && b.last_sequence == header.last_sequence()
                }) {
                    return BatchOutcome::Duplicate { base_offset: dup.base_offset };
                }
                let expected = producer.next_sequence().unwrap_or(header.base_sequence);
                if header.base_sequence != expected {
                    return BatchOutcome::Rejected(AppendError::OutOfOrderSequence {
                        producer_id: header.producer_id,
                        expected,
                        got: header.base_sequence,
                    });
                }
            }
        }

        // A new producer, a newer epoch (which restarts the sequence), or the next batch in order.
        let restarts =
            self.producers.get(&header.producer_id).is_none_or(|p| p.epoch != header.producer_epoch);
        if restarts && rule == SequenceRule::FromZero && header.base_sequence != Sequence(0) {
            return BatchOutcome::Rejected(AppendError::OutOfOrderSequence {
                producer_id: header.producer_id,
                expected: Sequence(0),
                got: header.base_sequence,
            });
        }
        let base_offset = self.assign(count);
        let last_active = self.next_offset;
        let producer = self.producers.entry(header.producer_id).or_insert_with(|| ProducerState {
            epoch: header.producer_epoch,
            recent: VecDeque::new(),
            last_active,
        });
        if producer.epoch != header.producer_epoch {
            producer.epoch = header.producer_epoch;
            producer.recent.clear();
        }
        if producer.recent.len() == PRODUCER_DEDUP_WINDOW {
            producer.recent.pop_front();
        }
        producer.recent.push_back(RecentBatch {
            base_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset,
        });
        producer.last_active = last_active;
        self.evict_producers();
        BatchOutcome::Appended { base_offset }
    }

    fn assign(&mut self, count: u64) -> Offset {
        let base = self.next_offset;
        self.next_offset = base.plus(count);
        base
    }

    fn evict_producers(&mut self) {
        while self.producers.len() > PRODUCERS_MAX {
            let oldest = self.producers.iter().min_by_key(|(id, p)| (p.last_active, **id)).map(|(id, _)| *id);
            match oldest {
                Some(id) => self.producers.remove(&id),
                None => break,
            };
        }
    }

    /// Moves the log start forward after retention purged the log up to `offset` (exclusive).
    /// Never moves it backwards, never past the next offset.
    pub fn advance_log_start(&mut self, offset: Offset) {
        self.log_start_offset = self.log_start_offset.max(offset.min(self.next_offset));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use sluice_types::Compression;

    use super::*;

    /// The header of a batch of `count` records from producer `pid`.
    pub(crate) fn header(pid: u64, epoch: u32, seq: u64, count: u32) -> BatchHeader {
        BatchHeader {
            producer_id: ProducerId(pid),
            producer_epoch: ProducerEpoch(epoch),
            base_sequence: Sequence(seq),
            record_count: count,
            base_timestamp_ms: 0,
            compression: Compression::None,
        }
    }

    #[test]
    fn offsets_are_dense_and_advance_by_record_count() {
        let mut s = PartitionState::default();
        assert_eq!(s.apply_batch(&header(0, 0, 0, 3)), BatchOutcome::Appended { base_offset: Offset(0) });
        assert_eq!(s.apply_batch(&header(0, 0, 0, 2)), BatchOutcome::Appended { base_offset: Offset(3) });
        assert_eq!(s.next_offset(), Offset(5));
    }

    #[test]
    fn retried_batch_gets_its_first_offsets_and_adds_nothing() {
        let mut s = PartitionState::default();
        s.apply_batch(&header(7, 1, 0, 5));
        s.apply_batch(&header(7, 1, 5, 5));
        assert_eq!(s.apply_batch(&header(7, 1, 0, 5)), BatchOutcome::Duplicate { base_offset: Offset(0) });
        assert_eq!(s.apply_batch(&header(7, 1, 5, 5)), BatchOutcome::Duplicate { base_offset: Offset(5) });
        assert_eq!(s.next_offset(), Offset(10));
    }

    #[test]
    fn every_batch_in_the_dedup_window_is_recognised() {
        let mut s = PartitionState::default();
        for i in 0..PRODUCER_DEDUP_WINDOW as u64 {
            s.apply_batch(&header(7, 1, i, 1));
        }
        for i in 0..PRODUCER_DEDUP_WINDOW as u64 {
            assert_eq!(
                s.apply_batch(&header(7, 1, i, 1)),
                BatchOutcome::Duplicate { base_offset: Offset(i) }
            );
        }
        // One batch more pushes the oldest out of the window; a retry of it is then out of order.
        s.apply_batch(&header(7, 1, PRODUCER_DEDUP_WINDOW as u64, 1));
        assert!(matches!(
            s.apply_batch(&header(7, 1, 0, 1)),
            BatchOutcome::Rejected(AppendError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn sequence_gap_is_refused() {
        let mut s = PartitionState::default();
        s.apply_batch(&header(7, 1, 0, 5));
        assert_eq!(
            s.apply_batch(&header(7, 1, 6, 1)),
            BatchOutcome::Rejected(AppendError::OutOfOrderSequence {
                producer_id: ProducerId(7),
                expected: Sequence(5),
                got: Sequence(6)
            })
        );
        assert_eq!(s.next_offset(), Offset(5), "a refused batch assigns no offsets");
    }

    #[test]
    fn older_epoch_is_fenced_and_newer_epoch_restarts_sequence() {
        let mut s = PartitionState::default();
        s.apply_batch(&header(7, 2, 0, 1));
        assert!(matches!(
            s.apply_batch(&header(7, 1, 1, 1)),
            BatchOutcome::Rejected(AppendError::ProducerFenced { .. })
        ));
        assert_eq!(s.apply_batch(&header(7, 3, 0, 1)), BatchOutcome::Appended { base_offset: Offset(1) });
        // The old epoch's window is gone: its sequence 0 is not a duplicate of the new epoch's.
        assert_eq!(s.apply_batch(&header(7, 3, 1, 1)), BatchOutcome::Appended { base_offset: Offset(2) });
    }

    #[test]
    fn a_new_producer_or_epoch_starts_at_sequence_zero() {
        let mut s = PartitionState::default();
        let out_of_order = |got: u64| {
            BatchOutcome::Rejected(AppendError::OutOfOrderSequence {
                producer_id: ProducerId(7),
                expected: Sequence(0),
                got: Sequence(got),
            })
        };
        assert_eq!(s.apply_batch(&header(7, 0, 1000, 1)), out_of_order(1000), "a new producer");
        assert_eq!(s.producer_count(), 0, "a refused first batch leaves no trace");
        s.apply_batch(&header(7, 0, 0, 2));
        assert_eq!(s.apply_batch(&header(7, 1, 2, 1)), out_of_order(2), "a new epoch");
        assert_eq!(s.next_offset(), Offset(2), "refused batches assign no offsets");
        // Entries written before the rule replay as they were applied then.
        let mut old = PartitionState::default();
        let any = old.apply_batch_with(&header(7, 0, 1000, 1), SequenceRule::AnyStart, Sabotage::NONE);
        assert_eq!(any, BatchOutcome::Appended { base_offset: Offset(0) });
    }

    #[test]
    fn producers_beyond_the_limit_evict_the_least_recently_active() {
        let mut s = PartitionState::default();
        for pid in 1..=(PRODUCERS_MAX as u64 + 1) {
            s.apply_batch(&header(pid, 0, 0, 1));
        }
        assert_eq!(s.producer_count(), PRODUCERS_MAX);
        // Producer 1 was evicted: its retry is no longer recognised and is appended again.
        assert!(matches!(s.apply_batch(&header(1, 0, 0, 1)), BatchOutcome::Appended { .. }));
        // Producer 3 is remembered.
        assert!(matches!(s.apply_batch(&header(3, 0, 0, 1)), BatchOutcome::Duplicate { .. }));
    }

    #[test]
    fn skip_dedup_sabotage_appends_a_retry_twice() {
        let mut s = PartitionState::default();
        let broken = Sabotage { skip_dedup: true, ..Sabotage::NONE };
        s.apply_batch(&header(7, 1, 0, 5));
        assert_eq!(s.apply_batch(&header(7, 1, 0, 5)), BatchOutcome::Duplicate { base_offset: Offset(0) });
        let retried = s.apply_batch_with(&header(7, 1, 0, 5), SequenceRule::FromZero, broken);
        assert_eq!(retried, BatchOutcome::Appended { base_offset: Offset(5) });
    }

    #[test]
    fn log_start_never_moves_back_or_past_the_end() {
        let mut s = PartitionState::default();
        s.apply_batch(&header(0, 0, 0, 10));
        s.advance_log_start(Offset(4));
        s.advance_log_start(Offset(2));
        assert_eq!(s.log_start_offset(), Offset(4));
        s.advance_log_start(Offset(100));
        assert_eq!(s.log_start_offset(), Offset(10));
    }

    proptest::proptest! {
        /// Replaying any sequence of sends, each possibly retried, never duplicates an offset range
        /// and keeps offsets dense: the outcome depends only on the inputs.
        #[test]
        fn retries_never_create_duplicates(ops in proptest::collection::vec((1u64..4, 1u32..4, proptest::bool::ANY), 1..200)) {
            let mut s = PartitionState::default();
            let mut next_seq = std::collections::HashMap::<u64, u64>::new();
            let mut sent = Vec::<(u64, u64, u32)>::new();
            let mut appended = 0u64;
            for (pid, count, retry) in ops {
                if retry && !sent.is_empty() {
                    let (p, seq, c) = *sent.last().unwrap();
                    let outcome = s.apply_batch(&header(p, 0, seq, c));
                    proptest::prop_assert!(matches!(outcome, BatchOutcome::Duplicate { .. }), "{:?}", outcome);
                } else {
                    let seq = next_seq.entry(pid).or_default();
                    let outcome = s.apply_batch(&header(pid, 0, *seq, count));
                    proptest::prop_assert_eq!(outcome, BatchOutcome::Appended { base_offset: Offset(appended) });
                    sent.push((pid, *seq, count));
                    *seq += u64::from(count);
                    appended += u64::from(count);
                }
            }
            proptest::prop_assert_eq!(s.next_offset(), Offset(appended));
        }
    }
}
