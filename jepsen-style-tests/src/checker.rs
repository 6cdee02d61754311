//! The checker: Jepsen's Kafka-workload anomalies over a history (CHAOS.md §1.3, §1.4), plus the
//! stricter order a single Raft log owes (`realtime-send-order`).
//!
//! Every anomaly here is an error for Sluice: consumers use assign mode and producers are
//! idempotent, so the ones Jepsen allows for Kafka by default (poll skips across rebalances,
//! duplicates of retried sends) are not allowed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::history::{F, Key, Offset, Op, OpType, OpValue, Process, Value};

/// How many examples each anomaly keeps in the report.
const EXAMPLES_MAX: usize = 8;

pub const LOST_WRITE: &str = "lost-write";
pub const UNSEEN: &str = "unseen";
pub const DUPLICATE: &str = "duplicate";
pub const INCONSISTENT_OFFSETS: &str = "inconsistent-offsets";
pub const G1A: &str = "G1a";
pub const PHANTOM_READ: &str = "phantom-read";
pub const INT_POLL_SKIP: &str = "int-poll-skip";
pub const INT_NONMONOTONIC_POLL: &str = "int-nonmonotonic-poll";
pub const POLL_SKIP: &str = "poll-skip";
pub const NONMONOTONIC_POLL: &str = "nonmonotonic-poll";
pub const NONMONOTONIC_SEND: &str = "nonmonotonic-send";
pub const REALTIME_SEND_ORDER: &str = "realtime-send-order";
/// An offset below the final high watermark that no read returned: Sluice assigns offsets
/// contiguously, so every one of them holds a record.
pub const OFFSET_HOLE: &str = "offset-hole";
/// A read returned an offset at or past the final high watermark: the log shrank under it.
pub const READ_PAST_END: &str = "read-past-high-watermark";

/// Every anomaly the checker looks for, all of them errors.
/// The fsync audit's finding (power-loss scenario only, [`fsync_audit`]): an acknowledged send
/// during which fewer than two nodes completed a WAL fsync.
pub const UNSYNCED_ACK: &str = "unsynced-ack";

/// The corruption scenario's finding: a node started on a disk it had damaged files on, and
/// served from it, instead of refusing to start.
pub const UNDETECTED_DAMAGE: &str = "undetected-damage";

pub const ANOMALIES: [&str; 16] = [
    LOST_WRITE,
    UNSEEN,
    DUPLICATE,
    INCONSISTENT_OFFSETS,
    G1A,
    PHANTOM_READ,
    INT_POLL_SKIP,
    INT_NONMONOTONIC_POLL,
    POLL_SKIP,
    NONMONOTONIC_POLL,
    NONMONOTONIC_SEND,
    REALTIME_SEND_ORDER,
    OFFSET_HOLE,
    READ_PAST_END,
    UNSYNCED_ACK,
    UNDETECTED_DAMAGE,
];

#[derive(Clone, Debug, Default, Serialize)]
pub struct Anomaly {
    pub count: usize,
    pub examples: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub ops: usize,
    pub sends_ok: usize,
    pub sends_info: usize,
    pub sends_fail: usize,
    pub polls_ok: usize,
    /// Sends that completed `info` and were later read: they did happen.
    pub info_sends_recovered: usize,
    pub anomalies: BTreeMap<String, Anomaly>,
}

impl Report {
    pub fn count(&self, anomaly: &str) -> usize {
        self.anomalies.get(anomaly).map_or(0, |a| a.count)
    }

    pub fn errors(&self) -> usize {
        self.anomalies.values().map(|a| a.count).sum()
    }

    pub(crate) fn flag(&mut self, anomaly: &str, example: impl FnOnce() -> String) {
        let entry = self.anomalies.entry(anomaly.to_string()).or_default();
        entry.count += 1;
        if entry.examples.len() < EXAMPLES_MAX {
            entry.examples.push(example());
        }
    }
}

/// An operation's invocation and its completion.
struct Pair<'a> {
    invoke: &'a Op,
    done: &'a Op,
}

/// Invocations matched with their completions (each process has one operation at a time);
/// invocations never completed are left out.
fn pairs(history: &[Op]) -> Vec<Pair<'_>> {
    let mut open: HashMap<Process, &Op> = HashMap::new();
    let mut out = Vec::new();
    for op in history {
        if op.kind == OpType::Invoke {
            open.insert(op.process, op);
        } else if let Some(invoke) = open.remove(&op.process) {
            out.push(Pair { invoke, done: op });
        }
    }
    out
}

/// One key's log as the history shows it: offset → the values seen there.
#[derive(Default)]
struct KeyLog {
    at: BTreeMap<Offset, BTreeSet<Value>>,
    /// Offset → its place among the non-empty offsets (holes skipped).
    dense: HashMap<Offset, usize>,
    /// Value → (first, last) dense index.
    by_value: HashMap<Value, (usize, usize)>,
}

impl KeyLog {
    fn add(&mut self, offset: Offset, value: Value) {
        self.at.entry(offset).or_default().insert(value);
    }

    fn index(&mut self) {
        for (i, (offset, values)) in self.at.iter().enumerate() {
            self.dense.insert(*offset, i);
            for v in values {
                let e = self.by_value.entry(*v).or_insert((i, i));
                e.0 = e.0.min(i);
                e.1 = e.1.max(i);
            }
        }
    }

    fn first_idx(&self, v: Value) -> Option<usize> {
        self.by_value.get(&v).map(|e| e.0)
    }
}

fn signed(a: usize, b: usize) -> i64 {
    i64::try_from(a).unwrap_or(i64::MAX) - i64::try_from(b).unwrap_or(i64::MAX)
}

/// Checks a complete history (after the final drain).
pub fn check(history: &[Op]) -> Report {
    let pairs = pairs(history);
    let mut report = Report { ops: pairs.len(), ..Report::default() };

    // Who wrote each value, and how that send completed.
    let mut writer: HashMap<(Key, Value), OpType> = HashMap::new();
    let mut read_ok: HashSet<(Key, Value)> = HashSet::new();
    for p in &pairs {
        match (&p.done.f, &p.invoke.value) {
            (F::Send, OpValue::Send(sends)) => {
                match p.done.kind {
                    OpType::Ok => report.sends_ok += sends.len(),
                    OpType::Info => report.sends_info += sends.len(),
                    OpType::Fail => report.sends_fail += sends.len(),
                    OpType::Invoke => {}
                }
                for s in sends {
                    writer.insert((s.key, s.value), p.done.kind);
                }
            }
            (F::Poll, _) if p.done.kind == OpType::Ok => {
                report.polls_ok += 1;
                if let OpValue::Poll(reads) = &p.done.value {
                    for (k, pairs) in reads {
                        read_ok.extend(pairs.iter().map(|(_, v)| (*k, *v)));
                    }
                }
            }
            _ => {}
        }
    }
    let must_have_committed = |k: Key, v: Value| match writer.get(&(k, v)) {
        Some(OpType::Ok) => true,
        Some(OpType::Info) => read_ok.contains(&(k, v)),
        _ => false,
    };
    report.info_sends_recovered =
        writer.iter().filter(|(kv, t)| **t == OpType::Info && read_ok.contains(kv)).count();

    // log_k from every poll of any outcome and from the sends that must have committed.
    let mut logs: BTreeMap<Key, KeyLog> = BTreeMap::new();
    for p in &pairs {
        match &p.done.value {
            OpValue::Poll(reads) => {
                for (k, pairs) in reads {
                    for (o, v) in pairs {
                        logs.entry(*k).or_default().add(*o, *v);
                    }
                }
            }
            OpValue::Send(sends) => {
                for s in sends {
                    if let Some(o) = s.offset
                        && must_have_committed(s.key, s.value)
                    {
                        logs.entry(s.key).or_default().add(o, s.value);
                    }
                }
            }
            _ => {}
        }
    }
    for log in logs.values_mut() {
        log.index();
    }

    check_logs(&logs, &read_ok, &must_have_committed, &mut report);

    // unseen, G1a, phantom reads: in history order over ok operations.
    let mut sent: BTreeSet<(Key, Value)> = BTreeSet::new();
    for p in &pairs {
        if p.done.kind != OpType::Ok {
            continue;
        }
        match &p.done.value {
            OpValue::Send(sends) => sent.extend(sends.iter().map(|s| (s.key, s.value))),
            OpValue::Poll(reads) => {
                for (k, pairs) in reads {
                    for (o, v) in pairs {
                        match writer.get(&(*k, *v)) {
                            Some(OpType::Fail) => report.flag(G1A, || {
                                format!(
                                    "poll {} read key {k} value {v} at {o}; its send failed",
                                    p.done.index
                                )
                            }),
                            None => report.flag(PHANTOM_READ, || {
                                format!("poll {} read key {k} value {v} at {o}; nobody sent it", p.done.index)
                            }),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for (k, v) in sent.iter().filter(|kv| !read_ok.contains(kv)) {
        report.flag(UNSEEN, || format!("key {k} value {v} acknowledged, never polled"));
    }

    check_polls(&pairs, &logs, &mut report);
    check_sends(&pairs, &logs, &mut report);
    check_dense(&pairs, &mut report);
    report
}

/// Against the servers' final `(log start, high watermark)` of each key: every offset in between
/// was read by some ok poll (no hole), no read went past the end, and no acknowledged offset is
/// at or past the end (the log lost it, whether or not anyone had read it).
fn check_dense(pairs: &[Pair<'_>], report: &mut Report) {
    let mut bounds: BTreeMap<Key, (Offset, Offset)> = BTreeMap::new();
    let mut read: BTreeMap<Key, BTreeSet<Offset>> = BTreeMap::new();
    let mut acked: BTreeMap<Key, BTreeMap<Offset, Value>> = BTreeMap::new();
    for p in pairs.iter().filter(|p| p.done.kind == OpType::Ok) {
        match &p.done.value {
            OpValue::Offsets(final_bounds) => bounds.extend(final_bounds),
            OpValue::Send(sends) => {
                for s in sends {
                    if let Some(o) = s.offset {
                        acked.entry(s.key).or_default().insert(o, s.value);
                    }
                }
            }
            OpValue::Poll(polled) => {
                for (k, got) in polled {
                    read.entry(*k).or_default().extend(got.iter().map(|(o, _)| *o));
                }
            }
            _ => {}
        }
    }
    for (k, (start, end)) in &bounds {
        let seen = read.remove(k).unwrap_or_default();
        for o in (*start..*end).filter(|o| !seen.contains(o)) {
            report.flag(OFFSET_HOLE, || format!("key {k} offset {o} (log {start}..{end}) was never read"));
        }
        for o in seen.range(*end..) {
            report.flag(READ_PAST_END, || format!("key {k} offset {o} read, final high watermark {end}"));
        }
        for (o, v) in acked.get(k).map(|a| a.range(*end..)).into_iter().flatten() {
            report.flag(LOST_WRITE, || {
                format!("key {k} value {v} acknowledged at offset {o}, final high watermark {end}")
            });
        }
    }
}

/// Per key: one value per offset, one offset per value, and nothing acknowledged skipped by reads.
fn check_logs(
    logs: &BTreeMap<Key, KeyLog>,
    read_ok: &HashSet<(Key, Value)>,
    must_have_committed: &dyn Fn(Key, Value) -> bool,
    report: &mut Report,
) {
    for (k, log) in logs {
        for (o, values) in &log.at {
            if values.len() > 1 {
                report.flag(INCONSISTENT_OFFSETS, || format!("key {k} offset {o} holds {values:?}"));
            }
        }
        let mut offsets_of: BTreeMap<Value, Vec<Offset>> = BTreeMap::new();
        for (o, values) in &log.at {
            for v in values {
                offsets_of.entry(*v).or_default().push(*o);
            }
        }
        for (v, offsets) in &offsets_of {
            if offsets.len() > 1 {
                report.flag(DUPLICATE, || format!("key {k} value {v} at offsets {offsets:?}"));
            }
        }
        // lost-write: a value below the highest index any ok poll reached, never read.
        let read_here: HashSet<Value> = read_ok.iter().filter(|(key, _)| key == k).map(|(_, v)| *v).collect();
        let bound = read_here.iter().filter_map(|v| log.first_idx(*v)).max();
        if let Some(bound) = bound {
            for (v, (_, last)) in &log.by_value {
                if *last <= bound && !read_here.contains(v) && must_have_committed(*k, *v) {
                    report.flag(LOST_WRITE, || {
                        format!("key {k} value {v} (index {last}, reads reached {bound})")
                    });
                }
            }
        }
    }
}

/// Within one poll and between one process's polls: offsets advance one (dense) step at a time.
fn check_polls(pairs: &[Pair<'_>], logs: &BTreeMap<Key, KeyLog>, report: &mut Report) {
    let mut last_read: HashMap<Process, HashMap<Key, Offset>> = HashMap::new();
    for p in pairs {
        if p.done.kind != OpType::Ok {
            continue;
        }
        match &p.done.value {
            OpValue::Assign { keys, seek_to_beginning } => {
                let reads = last_read.entry(p.done.process).or_default();
                if *seek_to_beginning {
                    reads.clear();
                } else {
                    reads.retain(|k, _| keys.contains(k));
                }
            }
            OpValue::Poll(polled) => {
                for (k, pairs) in polled {
                    let Some(log) = logs.get(k) else { continue };
                    let idx = |o: &Offset| log.dense.get(o).copied().unwrap_or(0);
                    for w in pairs.windows(2) {
                        let delta = signed(idx(&w[1].0), idx(&w[0].0));
                        if delta > 1 {
                            report.flag(INT_POLL_SKIP, || {
                                format!("poll {} key {k}: offset {} then {}", p.done.index, w[0].0, w[1].0)
                            });
                        } else if delta < 1 {
                            report.flag(INT_NONMONOTONIC_POLL, || {
                                format!("poll {} key {k}: offset {} then {}", p.done.index, w[0].0, w[1].0)
                            });
                        }
                    }
                    let (Some(first), Some(last)) = (pairs.first(), pairs.last()) else { continue };
                    let reads = last_read.entry(p.done.process).or_default();
                    if let Some(before) = reads.get(k) {
                        let delta = signed(idx(&first.0), idx(before));
                        if delta > 1 {
                            report.flag(POLL_SKIP, || {
                                format!(
                                    "process {} key {k}: read up to offset {before}, next poll {} starts at {}",
                                    p.done.process, p.done.index, first.0
                                )
                            });
                        } else if delta < 1 {
                            report.flag(NONMONOTONIC_POLL, || {
                                format!(
                                    "process {} key {k}: read up to offset {before}, next poll {} starts at {}",
                                    p.done.process, p.done.index, first.0
                                )
                            });
                        }
                    }
                    reads.insert(*k, last.0);
                }
            }
            _ => {}
        }
    }
}

/// A process's sends to a key land in the order it sent them, and a send acknowledged before
/// another began lands before it.
fn check_sends(pairs: &[Pair<'_>], logs: &BTreeMap<Key, KeyLog>, report: &mut Report) {
    let mut last_sent: HashMap<(Process, Key), Value> = HashMap::new();
    // Per key: (invoked at, completed at, offset, value) of ok sends.
    let mut acked: BTreeMap<Key, Vec<(u64, u64, Offset, Value)>> = BTreeMap::new();
    for p in pairs {
        let OpValue::Send(sends) = &p.done.value else { continue };
        if !matches!(p.done.kind, OpType::Ok | OpType::Info) {
            continue;
        }
        let mut firsts: HashMap<Key, Value> = HashMap::new();
        for s in sends {
            firsts.entry(s.key).or_insert(s.value);
            if p.done.kind == OpType::Ok
                && let Some(o) = s.offset
            {
                acked.entry(s.key).or_default().push((p.invoke.time_ns, p.done.time_ns, o, s.value));
            }
        }
        for (k, first) in firsts {
            if let Some(before) = last_sent.get(&(p.done.process, k))
                && let Some(log) = logs.get(&k)
                && let (Some(a), Some(b)) = (log.first_idx(*before), log.first_idx(first))
                && signed(b, a) < 1
            {
                report.flag(NONMONOTONIC_SEND, || {
                    format!(
                        "process {} key {k}: sent {before} then {first}, which landed before it",
                        p.done.process
                    )
                });
            }
        }
        // Within one op (a burst of sends queued without waiting), each value must land after
        // the one queued before it to the same key: several batches of one partition are in
        // flight at once, and must still keep the producer's order.
        let mut previous: HashMap<Key, Value> = HashMap::new();
        for s in sends {
            if let Some(before) = previous.insert(s.key, s.value)
                && let Some(log) = logs.get(&s.key)
                && let (Some(a), Some(b)) = (log.first_idx(before), log.first_idx(s.value))
                && signed(b, a) < 1
            {
                report.flag(NONMONOTONIC_SEND, || {
                    format!(
                        "process {} key {}: queued {before} then {} in one burst, which landed before it",
                        p.done.process, s.key, s.value
                    )
                });
            }
        }
        for s in sends {
            last_sent.insert((p.done.process, s.key), s.value);
        }
    }
    for (k, mut sends) in acked {
        let mut by_completion: Vec<(u64, Offset, Value)> = sends.iter().map(|s| (s.1, s.2, s.3)).collect();
        by_completion.sort_unstable();
        sends.sort_unstable();
        let mut next = 0;
        let mut highest: Option<(Offset, Value)> = None;
        for (invoked, _, offset, value) in sends {
            while next < by_completion.len() && by_completion[next].0 < invoked {
                let (_, o, v) = by_completion[next];
                if highest.is_none_or(|(h, _)| o > h) {
                    highest = Some((o, v));
                }
                next += 1;
            }
            if let Some((h, hv)) = highest
                && offset <= h
            {
                report.flag(REALTIME_SEND_ORDER, || {
                    format!("key {k}: value {value} sent after value {hv} was acked at {h}, yet got offset {offset}")
                });
            }
        }
    }
}

/// The completion times (ns) of ok sends, per key, ascending.
pub fn ok_send_times(history: &[Op]) -> BTreeMap<Key, Vec<u64>> {
    let mut out: BTreeMap<Key, Vec<u64>> = BTreeMap::new();
    for op in history {
        if op.kind == OpType::Ok
            && let OpValue::Send(sends) = &op.value
        {
            for s in sends {
                out.entry(s.key).or_default().push(op.time_ns);
            }
        }
    }
    for times in out.values_mut() {
        times.sort_unstable();
    }
    out
}

/// When the first send to `key` invoked at or after `at_ns` was acknowledged (ns): how long the
/// key took to take new writes again after a fault.
pub fn first_ack_invoked_after(history: &[Op], key: Key, at_ns: u64) -> Option<u64> {
    pairs(history)
        .iter()
        .filter(|p| p.done.kind == OpType::Ok && p.invoke.time_ns >= at_ns)
        .filter(|p| matches!(&p.done.value, OpValue::Send(sends) if sends.iter().any(|s| s.key == key)))
        .map(|p| p.done.time_ns)
        .min()
}

/// The longest any send to `key` invoked in `[from, to]` waited for its answer (ns), whatever
/// the answer: how unavailable the key was to a client that kept trying.
pub fn max_send_wait(history: &[Op], key: Key, from: u64, to: u64) -> u64 {
    pairs(history)
        .iter()
        .filter(|p| (from..=to).contains(&p.invoke.time_ns))
        .filter(|p| matches!(&p.invoke.value, OpValue::Send(sends) if sends.iter().any(|s| s.key == key)))
        .map(|p| p.done.time_ns - p.invoke.time_ns)
        .max()
        .unwrap_or(0)
}

/// The longest time (ns) a key went without an ok send, among the gaps between consecutive ok
/// sends that overlap `[from, to]`; a key whose sends stopped inside the window counts up to `to`.
pub fn max_gap_in(times: &[u64], from: u64, to: u64) -> u64 {
    let mut gap = 0;
    for w in times.windows(2) {
        if w[1] >= from && w[0] <= to {
            gap = gap.max(w[1] - w[0]);
        }
    }
    match times.last() {
        Some(last) if *last < to => gap.max(to - (*last).max(from)),
        None => to.saturating_sub(from),
        Some(_) => gap,
    }
}

#[cfg(test)]
mod tests;

/// The times (ns since the run started, sorted) at which one node's WAL fsyncs completed, from
/// its lazy filesystem's sync log (`<CLOCK_MONOTONIC ns> <path>` lines; WAL files end in
/// `.log`). `start_mono_ns` is the run's start on the same clock.
pub fn wal_sync_times(log: &str, start_mono_ns: u128) -> Vec<u64> {
    let mut times: Vec<u64> = log
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, path)| std::path::Path::new(path).extension().is_some_and(|e| e == "log"))
        .filter_map(|(ns, _)| ns.parse::<u128>().ok()?.checked_sub(start_mono_ns))
        .filter_map(|ns| u64::try_from(ns).ok())
        .collect();
    times.sort_unstable();
    times
}

/// The fsync audit: an acknowledgement means the batch was fsynced on a majority, so while each
/// acknowledged send was in flight at least two nodes must have completed a WAL fsync
/// (`wal_syncs`: one sorted list of times per node). A build that acknowledges before its fsync,
/// or never fsyncs, fails it; an fsync of someone else's batch in the same window also counts,
/// so it cannot tell which bytes were synced.
pub fn fsync_audit(history: &[Op], wal_syncs: &[Vec<u64>], report: &mut Report) {
    for p in pairs(history) {
        if p.done.kind != OpType::Ok || p.done.f != F::Send {
            continue;
        }
        let (from, to) = (p.invoke.time_ns, p.done.time_ns);
        let synced = wal_syncs
            .iter()
            .filter(|times| times.get(times.partition_point(|t| *t < from)).is_some_and(|t| *t <= to))
            .count();
        if synced < 2 {
            report.flag(UNSYNCED_ACK, || {
                format!("send acknowledged at {to} ns (invoked at {from}): WAL fsyncs on {synced} node(s) meanwhile")
            });
        }
    }
}
