//! Golden histories: each anomaly's worked example (after the shapes in Jepsen's Redpanda
//! analysis) must be flagged, and the clean histories around it must pass.

use std::collections::BTreeMap;

use super::*;
use crate::history::{Op, OpType, OpValue, Sent};

#[derive(Default)]
struct History {
    ops: Vec<Op>,
}

impl History {
    fn push(&mut self, process: Process, kind: OpType, f: F, value: OpValue) {
        let index = self.ops.len() as u64;
        self.ops.push(Op { index, time_ns: index * 1_000, process, kind, f, value, error: None });
    }

    fn invoke_send(&mut self, p: Process, key: Key, value: Value) {
        self.push(p, OpType::Invoke, F::Send, OpValue::Send(vec![Sent { key, value, offset: None }]));
    }

    fn complete_send(&mut self, p: Process, key: Key, value: Value, kind: OpType, offset: Option<Offset>) {
        self.push(p, kind, F::Send, OpValue::Send(vec![Sent { key, value, offset }]));
    }

    /// An ok send of `value` to `key` that landed at `offset`.
    fn send(&mut self, p: Process, key: Key, value: Value, offset: Offset) -> &mut Self {
        self.invoke_send(p, key, value);
        self.complete_send(p, key, value, OpType::Ok, Some(offset));
        self
    }

    fn send_as(&mut self, p: Process, key: Key, value: Value, kind: OpType) -> &mut Self {
        self.invoke_send(p, key, value);
        self.complete_send(p, key, value, kind, None);
        self
    }

    /// An ok poll returning `(offset, value)` pairs of `key`.
    fn poll(&mut self, p: Process, key: Key, read: &[(Offset, Value)]) -> &mut Self {
        self.push(p, OpType::Invoke, F::Poll, OpValue::Poll(BTreeMap::new()));
        self.push(p, OpType::Ok, F::Poll, OpValue::Poll(BTreeMap::from([(key, read.to_vec())])));
        self
    }

    fn assign(&mut self, p: Process, keys: &[Key], seek_to_beginning: bool) -> &mut Self {
        let value = OpValue::Assign { keys: keys.to_vec(), seek_to_beginning };
        self.push(p, OpType::Invoke, F::Assign, value.clone());
        self.push(p, OpType::Ok, F::Assign, value);
        self
    }

    fn check(&self) -> Report {
        check(&self.ops)
    }
}

/// Asserts that exactly the named anomalies were found, with these counts.
fn assert_only(report: &Report, expected: &[(&str, usize)]) {
    for name in ANOMALIES {
        let want = expected.iter().find(|(n, _)| *n == name).map_or(0, |(_, c)| *c);
        assert_eq!(report.count(name), want, "{name}: {:#?}", report.anomalies);
    }
}

#[test]
fn a_clean_history_passes() {
    let mut h = History::default();
    h.send(1, 0, 10, 0).send(2, 0, 11, 1).send(1, 1, 12, 0).send(2, 0, 13, 2);
    h.poll(3, 0, &[(0, 10), (1, 11)]).poll(3, 0, &[(2, 13)]).poll(3, 1, &[(0, 12)]);
    let report = h.check();
    assert_only(&report, &[]);
    assert_eq!(report.sends_ok, 4);
    assert_eq!(report.polls_ok, 3);
}

#[test]
fn two_values_at_one_offset_are_inconsistent_offsets() {
    // An acknowledged send says value 1 is at offset 4; a poll finds value 2 there.
    let mut h = History::default();
    h.send(1, 0, 1, 4).send(2, 0, 2, 5);
    h.poll(3, 0, &[(4, 2)]);
    let report = h.check();
    assert!(report.count(INCONSISTENT_OFFSETS) == 1, "{report:#?}");
    assert!(report.anomalies[INCONSISTENT_OFFSETS].examples[0].contains("offset 4"));
}

#[test]
fn one_value_at_two_offsets_is_a_duplicate() {
    // The idempotent producer's retry landed a second time (Redpanda #3039's shape).
    let mut h = History::default();
    h.send(1, 0, 5, 0).send(1, 0, 6, 1);
    h.poll(2, 0, &[(0, 5), (1, 6), (2, 5)]);
    assert_only(&h.check(), &[(DUPLICATE, 1)]);
}

#[test]
fn an_acked_value_skipped_by_later_reads_is_a_lost_write() {
    // Value 2 was acknowledged at offset 1; polls read offsets 0 and 2 but never value 2.
    let mut h = History::default();
    h.send(1, 0, 1, 0).send(1, 0, 2, 1).send(1, 0, 3, 2);
    h.poll(2, 0, &[(0, 1)]);
    h.poll(3, 0, &[(2, 3)]);
    assert_only(&h.check(), &[(LOST_WRITE, 1), (UNSEEN, 1)]);
}

#[test]
fn an_acked_value_past_every_read_is_unseen_not_lost() {
    let mut h = History::default();
    h.send(1, 0, 1, 0).send(1, 0, 2, 1);
    h.poll(2, 0, &[(0, 1)]);
    assert_only(&h.check(), &[(UNSEEN, 1)]);
}

#[test]
fn reading_a_failed_send_is_g1a() {
    let mut h = History::default();
    h.send(1, 0, 1, 0).send_as(1, 0, 9, OpType::Fail);
    h.poll(2, 0, &[(0, 1), (1, 9)]);
    assert_only(&h.check(), &[(G1A, 1)]);
}

#[test]
fn reading_a_value_nobody_sent_is_a_phantom() {
    let mut h = History::default();
    h.send(1, 0, 1, 0);
    h.poll(2, 0, &[(0, 1), (1, 77)]);
    assert_only(&h.check(), &[(PHANTOM_READ, 1)]);
}

#[test]
fn info_sends_are_neither_lost_nor_unseen_and_count_as_recovered_when_read() {
    let mut h = History::default();
    h.send(1, 0, 1, 0).send_as(1, 0, 2, OpType::Info).send_as(4, 0, 3, OpType::Info).send(5, 0, 4, 2);
    // Value 2 did land (offset 1); value 3 never did.
    h.poll(2, 0, &[(0, 1), (1, 2), (2, 4)]);
    let report = h.check();
    assert_only(&report, &[]);
    assert_eq!(report.info_sends_recovered, 1);
    assert_eq!(report.sends_info, 2);
}

#[test]
fn a_gap_inside_one_poll_is_int_poll_skip() {
    let mut h = History::default();
    h.send(1, 0, 1, 0).send(1, 0, 2, 1).send(1, 0, 3, 2);
    h.poll(2, 0, &[(0, 1), (1, 2), (2, 3)]);
    h.poll(3, 0, &[(0, 1), (2, 3)]);
    assert_only(&h.check(), &[(INT_POLL_SKIP, 1)]);
}

#[test]
fn going_back_inside_one_poll_is_int_nonmonotonic_poll() {
    let mut h = History::default();
    h.send(1, 0, 1, 0).send(1, 0, 2, 1);
    h.poll(2, 0, &[(0, 1), (1, 2), (0, 1)]);
    assert_only(&h.check(), &[(INT_NONMONOTONIC_POLL, 1)]);
}

#[test]
fn holes_in_offsets_are_not_skips() {
    // Offset 1 never held a known value (an unacknowledged send's entry, say): 0 then 2 is dense.
    let mut h = History::default();
    h.send(1, 0, 1, 0).send(1, 0, 3, 2);
    h.poll(2, 0, &[(0, 1), (2, 3)]);
    assert_only(&h.check(), &[]);
}

#[test]
fn a_gap_between_one_process_polls_is_poll_skip() {
    let mut h = History::default();
    h.send(1, 0, 1, 0).send(1, 0, 2, 1).send(1, 0, 3, 2);
    h.poll(2, 0, &[(0, 1), (1, 2), (2, 3)]);
    h.poll(3, 0, &[(0, 1)]).poll(3, 0, &[(2, 3)]);
    assert_only(&h.check(), &[(POLL_SKIP, 1)]);
}

#[test]
fn reading_again_between_polls_is_nonmonotonic_unless_the_process_seeked() {
    let mut h = History::default();
    h.send(1, 0, 1, 0).send(1, 0, 2, 1);
    h.poll(3, 0, &[(0, 1), (1, 2)]).poll(3, 0, &[(1, 2)]);
    assert_only(&h.check(), &[(NONMONOTONIC_POLL, 1)]);

    let mut h = History::default();
    h.send(1, 0, 1, 0).send(1, 0, 2, 1);
    h.poll(3, 0, &[(0, 1), (1, 2)]).assign(3, &[0], true).poll(3, 0, &[(0, 1), (1, 2)]);
    assert_only(&h.check(), &[]);
}

#[test]
fn a_later_send_of_one_process_landing_earlier_is_nonmonotonic_send() {
    // Process 1 sent 10 then 11, yet 11 is before 10 in the log.
    let mut h = History::default();
    h.send(1, 0, 10, 5).send(1, 0, 11, 3);
    h.poll(2, 0, &[(3, 11), (5, 10)]);
    let report = h.check();
    assert_eq!(report.count(NONMONOTONIC_SEND), 1, "{report:#?}");
    assert_eq!(report.count(REALTIME_SEND_ORDER), 1, "{report:#?}");
}

#[test]
fn a_burst_landing_out_of_its_queued_order_is_nonmonotonic_send() {
    // One op queued 10, 11 and 12 to key 0 without waiting; 12 landed before 11.
    let burst = |offsets: [Option<Offset>; 3]| {
        let sends = [10, 11, 12].iter().zip(offsets).map(|(v, offset)| Sent { key: 0, value: *v, offset });
        OpValue::Send(sends.collect())
    };
    let mut h = History::default();
    h.push(1, OpType::Invoke, F::Send, burst([None; 3]));
    h.push(1, OpType::Ok, F::Send, burst([Some(0), Some(2), Some(1)]));
    h.poll(2, 0, &[(0, 10), (1, 12), (2, 11)]);
    assert_only(&h.check(), &[(NONMONOTONIC_SEND, 1)]);

    // The same burst in order, and one whose outcome is unknown but read in order, are clean.
    let mut h = History::default();
    h.push(1, OpType::Invoke, F::Send, burst([None; 3]));
    h.push(1, OpType::Ok, F::Send, burst([Some(0), Some(1), Some(2)]));
    h.push(3, OpType::Invoke, F::Send, OpValue::Send(vec![Sent { key: 0, value: 13, offset: None }]));
    h.push(3, OpType::Info, F::Send, OpValue::Send(vec![Sent { key: 0, value: 13, offset: None }]));
    h.poll(2, 0, &[(0, 10), (1, 11), (2, 12), (3, 13)]);
    assert_only(&h.check(), &[]);
}

#[test]
fn a_send_begun_after_another_was_acked_must_land_after_it() {
    let mut h = History::default();
    h.send(1, 0, 10, 5);
    h.send(2, 0, 11, 4);
    h.poll(3, 0, &[(4, 11), (5, 10)]);
    assert_only(&h.check(), &[(REALTIME_SEND_ORDER, 1)]);
}

#[test]
fn concurrent_sends_may_land_in_either_order() {
    let mut h = History::default();
    h.invoke_send(1, 0, 10);
    h.invoke_send(2, 0, 11);
    h.complete_send(1, 0, 10, OpType::Ok, Some(1));
    h.complete_send(2, 0, 11, OpType::Ok, Some(0));
    h.poll(3, 0, &[(0, 11), (1, 10)]);
    assert_only(&h.check(), &[]);
}

#[test]
fn gaps_are_measured_across_the_window() {
    let s = 1_000_000_000;
    let times = [0, s, 2 * s, 6 * s, 7 * s];
    assert_eq!(max_gap_in(&times, 3 * s, 5 * s), 4 * s);
    assert_eq!(max_gap_in(&times, 0, s), s);
    // Sends stopped inside the window: the gap runs to its end.
    assert_eq!(max_gap_in(&times[..3], 3 * s, 9 * s), 6 * s);
    assert_eq!(max_gap_in(&[], 3 * s, 9 * s), 6 * s);
}

#[test]
fn recovery_counts_from_the_first_send_invoked_after_the_fault() {
    let mut h = History::default();
    // Ops are 1 µs apart. Value 1 is invoked at 0 and acked at 3 µs, across the fault at 4 µs
    // would not count; value 3 is invoked at 4 µs and acked at 5 µs.
    h.invoke_send(1, 0, 1);
    h.send(2, 1, 2, 0);
    h.complete_send(1, 0, 1, OpType::Ok, Some(0));
    h.send(3, 0, 3, 1);
    assert_eq!(first_ack_invoked_after(&h.ops, 0, 4_000), Some(5_000));
    assert_eq!(first_ack_invoked_after(&h.ops, 0, 0), Some(3_000));
    assert_eq!(first_ack_invoked_after(&h.ops, 1, 4_000), None);
}

impl History {
    /// The servers' final `(log start, high watermark)` per key, as the drain records it.
    fn offsets(&mut self, p: Process, bounds: &[(Key, Offset, Offset)]) -> &mut Self {
        let bounds: BTreeMap<Key, (Offset, Offset)> = bounds.iter().map(|(k, s, e)| (*k, (*s, *e))).collect();
        self.push(p, OpType::Invoke, F::ListOffsets, OpValue::Offsets(BTreeMap::new()));
        self.push(p, OpType::Ok, F::ListOffsets, OpValue::Offsets(bounds));
        self
    }
}

/// A run over two keys drained to the servers' high watermark: key 0 holds values 100..110 at
/// offsets 0..10, key 1 values 200..205 at 0..5, each acknowledged and read back in polls of
/// three records.
fn drained() -> History {
    let mut h = History::default();
    for (key, base, count) in [(0u32, 100u64, 10u64), (1, 200, 5)] {
        for i in 0..count {
            h.send(1, key, base + i, i);
        }
    }
    for (key, base, count) in [(0u32, 100u64, 10u64), (1, 200, 5)] {
        let all: Vec<(Offset, Value)> = (0..count).map(|i| (i, base + i)).collect();
        for chunk in all.chunks(3) {
            h.poll(2, key, chunk);
        }
    }
    h.offsets(3, &[(0, 0, 10), (1, 0, 5)]);
    h
}

/// Applies `mutate` to every ok poll's reads of `key`.
fn mutate_polls(h: &mut History, key: Key, mutate: impl Fn(&mut Vec<(Offset, Value)>)) {
    for op in &mut h.ops {
        if let (OpType::Ok, OpValue::Poll(reads)) = (op.kind, &mut op.value)
            && let Some(pairs) = reads.get_mut(&key)
        {
            mutate(pairs);
        }
    }
}

#[test]
fn a_history_drained_to_the_high_watermark_passes() {
    let report = drained().check();
    assert_only(&report, &[]);
    assert_eq!(report.sends_ok, 15);
}

/// Each mutation of a recorded history that a broken system could produce must fail the check.
#[test]
fn mutated_histories_are_caught() {
    // An acknowledged value vanishes from every read (a lost fsync, a truncated log).
    let mut lost = drained();
    mutate_polls(&mut lost, 0, |pairs| pairs.retain(|(o, _)| *o != 4));
    let report = lost.check();
    assert_eq!(report.count(UNSEEN), 1, "{report:#?}");
    assert_eq!(report.count(OFFSET_HOLE), 1, "{report:#?}");

    // Two records swap offsets between the acknowledgement and the read.
    let mut swapped = drained();
    mutate_polls(&mut swapped, 1, |pairs| {
        for pair in pairs.iter_mut() {
            pair.1 = match pair.0 {
                1 => 202,
                2 => 201,
                _ => pair.1,
            };
        }
    });
    let report = swapped.check();
    assert!(report.count(INCONSISTENT_OFFSETS) >= 2, "{report:#?}");
    assert!(report.errors() > 0);

    // A retry landed twice: the value is read again at the end of the log.
    let mut duplicated = drained();
    mutate_polls(&mut duplicated, 1, |pairs| {
        if pairs.last().is_some_and(|(o, _)| *o == 4) {
            pairs.push((5, 203));
        }
    });
    duplicated.ops.retain(|op| !matches!(op.value, OpValue::Offsets(_)));
    duplicated.offsets(3, &[(0, 0, 10), (1, 0, 6)]);
    assert_only(&duplicated.check(), &[(DUPLICATE, 1)]);

    // A record nobody acknowledged or read sits below the high watermark: a read skipped it
    // (one record left out of a fetch) or the drain stopped short.
    let mut hole = drained();
    hole.ops.retain(|op| !matches!(op.value, OpValue::Offsets(_)));
    hole.offsets(3, &[(0, 0, 11), (1, 0, 5)]);
    assert_only(&hole.check(), &[(OFFSET_HOLE, 1)]);

    // Reads went past the servers' final end: the log shrank under them.
    let mut shrunk = drained();
    shrunk.ops.retain(|op| !matches!(op.value, OpValue::Offsets(_)));
    shrunk.offsets(3, &[(0, 0, 8), (1, 0, 5)]);
    assert_only(&shrunk.check(), &[(READ_PAST_END, 2), (LOST_WRITE, 2)]);

    // The log ends below acknowledged records nobody read (acknowledged before an fsync,
    // then a power cut): the log lost them, even though no read went past its end.
    let mut cut = drained();
    mutate_polls(&mut cut, 0, |pairs| pairs.retain(|(o, _)| *o < 7));
    cut.ops.retain(|op| !matches!(op.value, OpValue::Offsets(_)));
    cut.offsets(3, &[(0, 0, 7), (1, 0, 5)]);
    assert_only(&cut.check(), &[(LOST_WRITE, 3), (UNSEEN, 3)]);

    // The cluster lost the topic: the final offsets record an empty log.
    let mut gone = drained();
    gone.ops.retain(|op| !matches!(op.value, OpValue::Offsets(_)));
    gone.offsets(3, &[(0, 0, 0), (1, 0, 0)]);
    assert_only(&gone.check(), &[(READ_PAST_END, 15), (LOST_WRITE, 15)]);
}

/// The fsync audit: a send acknowledged while fewer than two nodes completed a WAL fsync is
/// flagged; fsyncs of other files (a MANIFEST, an SST) do not count.
#[test]
fn acknowledgements_without_two_wal_fsyncs_in_flight_are_flagged() {
    let mut h = History::default();
    h.send(1, 0, 100, 0); // invoked at 0 ns, acknowledged at 1,000
    h.send(1, 0, 101, 1); // 2,000 .. 3,000
    h.send(1, 0, 102, 2); // 4,000 .. 5,000
    h.poll(2, 0, &[(0, 100), (1, 101), (2, 102)]);
    let start = 7_000_000_000u128;
    let node1 = format!(
        "{} 000004.log\n{} MANIFEST-000005\n{} 000004.log\n",
        start + 500,
        start + 2_500,
        start + 4_000
    );
    let node2 =
        format!("{} 000009.log\n{} 000012.sst\n{} 000009.log\n", start + 1_000, start + 2_600, start + 4_999);
    let node3 = format!("{} 000004.log\n", start - 1);
    let syncs: Vec<Vec<u64>> = [node1, node2, node3].iter().map(|log| wal_sync_times(log, start)).collect();
    assert_eq!(syncs[0], [500, 4_000]);
    assert_eq!(syncs[2], Vec::<u64>::new(), "an fsync before the run started is not counted");
    let mut report = h.check();
    fsync_audit(&h.ops, &syncs, &mut report);
    assert_only(&report, &[(UNSYNCED_ACK, 1)]);
    assert!(report.anomalies[UNSYNCED_ACK].examples[0].contains("on 0 node(s)"), "{report:#?}");
}
