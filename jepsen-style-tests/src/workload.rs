//! Clients: each worker is a Jepsen "process" that sends unique integers to keys (one key per
//! partition) and polls them in assign mode, recording every operation; workers crash and
//! reopen now and then. After the faults, a final write per key, then every producer is closed
//! (a crashed client's producer keeps retrying what it had in flight, as a real one would until
//! its process dies), and a drain reads every key back to the servers' high watermark.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use sluice_client::{ClientError, Cluster, Consumer, ConsumerConfig, Producer, ProducerConfig, StartAt};
use tokio::time::Instant;

use crate::history::{F, Key, Offset, OpType, OpValue, Process, Recorder, Sent, Value};
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub topic: String,
    pub keys: u32,
    pub workers: u64,
    /// A send or poll not answered in this long completes `info` (sends) or `fail` (polls).
    pub op_timeout: Duration,
    /// Each worker crashes its client about this often (Jepsen's `--crash-client-interval`).
    pub crash_every: Duration,
}

/// What the workers share.
#[derive(Debug)]
pub struct Shared {
    pub recorder: Arc<Recorder>,
    pub addrs: Vec<String>,
    pub config: WorkloadConfig,
    next_value: AtomicU64,
    next_process: AtomicU64,
    /// The producers of crashed and finished clients, still retrying what they had in flight:
    /// [`settle`] waits for them. At most one per client opened (a run opens a few per worker).
    retired: Mutex<Vec<Producer>>,
}

impl Shared {
    pub fn new(recorder: Arc<Recorder>, addrs: Vec<String>, config: WorkloadConfig) -> Arc<Shared> {
        Arc::new(Shared {
            recorder,
            addrs,
            config,
            next_value: AtomicU64::new(1),
            next_process: AtomicU64::new(0),
            retired: Mutex::new(Vec::new()),
        })
    }

    /// Keeps a client's producer (its retries go on) until [`settle`].
    fn retire(&self, client: Client) {
        sluice_types::sync::lock(&self.retired).push(client.producer);
    }

    pub fn new_process(&self) -> Process {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    fn new_value(&self) -> Value {
        self.next_value.fetch_add(1, Ordering::Relaxed)
    }
}

/// One client: a producer and one consumer per assigned key.
struct Client {
    producer: Producer,
    cluster: Arc<Cluster>,
    consumers: BTreeMap<Key, Consumer>,
}

fn consumer_config() -> ConsumerConfig {
    ConsumerConfig { max_bytes: 64 * 1024, min_bytes: 1, max_wait_ms: 20, read_from_follower: false }
}

impl Client {
    fn open(shared: &Shared) -> anyhow::Result<Client> {
        let cluster = Cluster::new(&shared.addrs)?;
        let producer = Producer::new(
            cluster.clone(),
            // The producer keeps retrying a batch well past the op's own timeout, across leader
            // changes: those retries are what the dedup window must absorb.
            ProducerConfig { delivery_timeout_ms: 30_000, ..ProducerConfig::default() },
        );
        Ok(Client { producer, cluster, consumers: BTreeMap::new() })
    }

    /// Replaces the assignment: kept keys keep their position, new ones start at the beginning.
    fn assign(&mut self, shared: &Shared, keys: &[Key], seek_to_beginning: bool) {
        self.consumers.retain(|k, _| keys.contains(k));
        for k in keys {
            let consumer = self.consumers.entry(*k).or_insert_with(|| {
                Consumer::new(
                    self.cluster.clone(),
                    &shared.config.topic,
                    *k,
                    StartAt::Earliest,
                    consumer_config(),
                )
            });
            if seek_to_beginning {
                consumer.seek(StartAt::Earliest);
            }
        }
    }
}

fn encode(value: Value) -> Bytes {
    Bytes::from(value.to_string())
}

/// A value as read back; anything unparsable becomes `u64::MAX`, which nobody sent.
fn decode(bytes: &[u8]) -> Value {
    std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX)
}

/// Sends one value; returns how it completed.
async fn send(shared: &Shared, client: &Client, process: Process, key: Key) -> OpType {
    let value = shared.new_value();
    let rec = &shared.recorder;
    rec.record(
        process,
        OpType::Invoke,
        F::Send,
        OpValue::Send(vec![Sent { key, value, offset: None }]),
        None,
    );
    let queued = client.producer.send_to(&shared.config.topic, key, None, encode(value)).await;
    let outcome = match queued {
        // Refused before anything was sent.
        Err(e) => Err((OpType::Fail, e.to_string())),
        Ok(delivery) => match tokio::time::timeout(shared.config.op_timeout, delivery).await {
            Ok(Ok(d)) => Ok(d.offset),
            Ok(Err(ClientError::InvalidRecord(e))) => Err((OpType::Fail, e)),
            // After one attempt or more the batch may have landed: unknown.
            Ok(Err(e)) => Err((OpType::Info, e.to_string())),
            Err(_) => Err((OpType::Info, "timed out".to_string())),
        },
    };
    match outcome {
        Ok(offset) => {
            let sent = Sent { key, value, offset: Some(offset) };
            rec.record(process, OpType::Ok, F::Send, OpValue::Send(vec![sent]), None);
            OpType::Ok
        }
        Err((kind, error)) => {
            rec.record(
                process,
                kind,
                F::Send,
                OpValue::Send(vec![Sent { key, value, offset: None }]),
                Some(error),
            );
            kind
        }
    }
}

/// Queues `count` values to one key without waiting for any, yielding between them so that the
/// producer sends several batches of the partition at once, then waits for all: one op, ok only
/// if every value was acknowledged. The checker requires them to land in the order queued.
async fn burst(shared: &Shared, client: &Client, process: Process, key: Key, count: usize) -> OpType {
    let values: Vec<Value> = (0..count).map(|_| shared.new_value()).collect();
    let op = |offsets: &[Option<Offset>]| {
        let sends =
            values.iter().zip(offsets).map(|(value, offset)| Sent { key, value: *value, offset: *offset });
        OpValue::Send(sends.collect())
    };
    let rec = &shared.recorder;
    rec.record(process, OpType::Invoke, F::Send, op(&vec![None; count]), None);
    let mut deliveries = Vec::with_capacity(count);
    let mut refused = None;
    for value in &values {
        match client.producer.send_to(&shared.config.topic, key, None, encode(*value)).await {
            Ok(delivery) => deliveries.push(delivery),
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    let queued = deliveries.len();
    let outcome = tokio::time::timeout(shared.config.op_timeout, join_all(deliveries)).await;
    let offsets: Option<Vec<Option<Offset>>> = match &outcome {
        Ok(results) if refused.is_none() => {
            results.iter().map(|r| r.as_ref().ok().map(|d| Some(d.offset))).collect()
        }
        _ => None,
    };
    if let Some(offsets) = offsets {
        rec.record(process, OpType::Ok, F::Send, op(&offsets), None);
        return OpType::Ok;
    }
    let error = match (&refused, &outcome) {
        (Some(e), _) => e.clone(),
        (None, Err(_)) => "timed out".to_string(),
        (None, Ok(results)) => {
            results.iter().find_map(|r| r.as_ref().err()).map_or_else(String::new, ToString::to_string)
        }
    };
    // Nothing queued: nothing can land. Otherwise any queued value may have.
    let kind = if queued == 0 { OpType::Fail } else { OpType::Info };
    rec.record(process, kind, F::Send, op(&vec![None; count]), Some(error));
    kind
}

/// Polls every assigned key once. Keys whose poll failed contribute nothing (their consumer did
/// not move); the op fails only when every key failed.
async fn poll(shared: &Shared, client: &mut Client, process: Process) {
    let rec = &shared.recorder;
    rec.record(process, OpType::Invoke, F::Poll, OpValue::Poll(BTreeMap::new()), None);
    let timeout = shared.config.op_timeout;
    let results = join_all(
        client
            .consumers
            .iter_mut()
            .map(|(k, c)| async move { (*k, tokio::time::timeout(timeout, c.poll()).await) }),
    )
    .await;
    let mut reads = BTreeMap::new();
    let mut errors = Vec::new();
    for (k, result) in results {
        match result {
            Ok(Ok(records)) => {
                let pairs: Vec<(Offset, Value)> =
                    records.iter().map(|r| (r.offset, decode(&r.value))).collect();
                if !pairs.is_empty() {
                    reads.insert(k, pairs);
                }
            }
            Ok(Err(e)) => errors.push(format!("key {k}: {e}")),
            Err(_) => errors.push(format!("key {k}: timed out")),
        }
    }
    if !errors.is_empty() && errors.len() == client.consumers.len() {
        rec.record(process, OpType::Fail, F::Poll, OpValue::Poll(BTreeMap::new()), Some(errors.join("; ")));
    } else {
        rec.record(
            process,
            OpType::Ok,
            F::Poll,
            OpValue::Poll(reads),
            (!errors.is_empty()).then(|| errors.join("; ")),
        );
    }
}

fn all_keys(shared: &Shared) -> Vec<Key> {
    (0..shared.config.keys).collect()
}

/// One worker until `until`: a mix of sends (half), polls, rare reassignments and crashes.
pub async fn run_worker(shared: Arc<Shared>, seed: u64, until: Instant) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    let mut process = shared.new_process();
    let mut client = Client::open(&shared)?;
    client.assign(&shared, &all_keys(&shared), false);
    let crash_every = shared.config.crash_every.as_millis().max(1);
    let mut next_crash =
        Instant::now() + Duration::from_millis(rng.between(crash_every / 2, crash_every * 3 / 2));
    while Instant::now() < until {
        if Instant::now() >= next_crash {
            shared.recorder.record(process, OpType::Invoke, F::Crash, OpValue::Crash, None);
            // Abandoned, not closed: whatever it had in flight goes on being retried, and may land
            // long after (the final drain reads to the servers' high watermark to see it).
            shared.retire(client);
            shared.recorder.record(process, OpType::Info, F::Crash, OpValue::Crash, None);
            process = shared.new_process();
            client = Client::open(&shared)?;
            client.assign(&shared, &all_keys(&shared), false);
            next_crash =
                Instant::now() + Duration::from_millis(rng.between(crash_every / 2, crash_every * 3 / 2));
            continue;
        }
        match rng.below(64) {
            0 => {
                // Reassign: a random non-empty subset of the keys, sometimes from the beginning.
                let mut keys: Vec<Key> =
                    all_keys(&shared).into_iter().filter(|_| rng.below(2) == 0).collect();
                if keys.is_empty() {
                    keys.push(u32::try_from(rng.below(u64::from(shared.config.keys))).unwrap_or(0));
                }
                let seek = rng.below(4) == 0;
                let value = OpValue::Assign { keys: keys.clone(), seek_to_beginning: seek };
                shared.recorder.record(process, OpType::Invoke, F::Assign, value.clone(), None);
                client.assign(&shared, &keys, seek);
                shared.recorder.record(process, OpType::Ok, F::Assign, value, None);
            }
            1..=32 => {
                let key = u32::try_from(rng.below(u64::from(shared.config.keys))).unwrap_or(0);
                let done = if rng.below(8) == 0 {
                    let count = 2 + usize::try_from(rng.below(7)).unwrap_or(0);
                    burst(&shared, &client, process, key, count).await
                } else {
                    send(&shared, &client, process, key).await
                };
                if done == OpType::Info {
                    // Jepsen retires a process after an indeterminate op.
                    process = shared.new_process();
                }
            }
            _ => poll(&shared, &mut client, process).await,
        }
    }
    shared.retire(client);
    Ok(())
}

/// Waits until every producer ever opened has finished retrying (each gives up after its
/// delivery timeout, 30 s), so that nothing can land after the drain. Whether all finished
/// before `deadline`.
pub async fn settle(shared: &Shared, deadline: Instant) -> bool {
    let producers = std::mem::take(&mut *sluice_types::sync::lock(&shared.retired));
    tokio::time::timeout_at(deadline, join_all(producers.into_iter().map(Producer::close))).await.is_ok()
}

/// Asks the servers for each key's log start and high watermark, recorded as one operation;
/// keys that did not answer before `deadline` are left out, except that a partition the
/// cluster still says does not exist at the deadline is recorded as an empty log `(0, 0)`:
/// the topic was created before the load, so a cluster that lost it lost its records.
pub async fn final_offsets(
    shared: &Shared,
    deadline: Instant,
) -> anyhow::Result<BTreeMap<Key, (Offset, Offset)>> {
    let client = Client::open(shared)?;
    let process = shared.new_process();
    shared.recorder.record(process, OpType::Invoke, F::ListOffsets, OpValue::Offsets(BTreeMap::new()), None);
    let mut bounds = BTreeMap::new();
    let keys = all_keys(shared);
    for (done, key) in keys.iter().copied().enumerate() {
        // Each key gets an equal share of what is left, so one that never answers does not
        // take the others' time.
        let left = u32::try_from(keys.len() - done).unwrap_or(1);
        let deadline = Instant::now() + deadline.saturating_duration_since(Instant::now()) / left;
        let mut consumer = Consumer::new(
            client.cluster.clone(),
            &shared.config.topic,
            key,
            StartAt::Earliest,
            consumer_config(),
        );
        let mut unknown = false;
        while Instant::now() < deadline {
            match consumer.offsets().await {
                Ok(answer) => {
                    bounds.insert(key, answer);
                    break;
                }
                Err(e) => {
                    unknown = matches!(&e, ClientError::Refused { code, .. } if code == "UNKNOWN_TOPIC_OR_PARTITION");
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if unknown && !bounds.contains_key(&key) {
            bounds.insert(key, (0, 0));
        }
    }
    shared.recorder.record(process, OpType::Ok, F::ListOffsets, OpValue::Offsets(bounds.clone()), None);
    Ok(bounds)
}

/// After the faults: one acknowledged write per key, retried until `deadline`. Returns the keys
/// that could not be written.
pub async fn final_writes(shared: &Shared, deadline: Instant) -> anyhow::Result<Vec<Key>> {
    let client = Client::open(shared)?;
    let mut failed = Vec::new();
    for key in all_keys(shared) {
        let mut process = shared.new_process();
        loop {
            if send(shared, &client, process, key).await == OpType::Ok {
                break;
            }
            process = shared.new_process();
            if Instant::now() > deadline {
                failed.push(key);
                break;
            }
        }
    }
    shared.retire(client);
    Ok(failed)
}

/// Reads every key from the beginning until each reaches `targets[k]` (the last offset to read:
/// below the final high watermark) or `deadline`. Returns the keys left short.
pub async fn drain(
    shared: &Shared,
    targets: &BTreeMap<Key, Offset>,
    deadline: Instant,
) -> anyhow::Result<Vec<Key>> {
    let mut client = Client::open(shared)?;
    let process = shared.new_process();
    let keys = all_keys(shared);
    let value = OpValue::Assign { keys: keys.clone(), seek_to_beginning: true };
    shared.recorder.record(process, OpType::Invoke, F::Assign, value.clone(), None);
    client.assign(shared, &keys, true);
    shared.recorder.record(process, OpType::Ok, F::Assign, value, None);
    loop {
        let short: Vec<Key> = keys
            .iter()
            .copied()
            .filter(|k| {
                let target = targets.get(k).copied();
                let position = client.consumers.get(k).and_then(Consumer::position);
                target.is_some_and(|t| position.is_none_or(|p| p <= t))
            })
            .collect();
        if short.is_empty() || Instant::now() > deadline {
            return Ok(short);
        }
        poll(shared, &mut client, process).await;
    }
}
