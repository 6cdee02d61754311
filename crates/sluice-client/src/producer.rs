//! The producer: per-partition batching, idempotence, retries.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use sluice_types::Compression;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::ClientError;
use crate::cluster::Cluster;
use crate::partition_worker::PartitionWorker;
use sluice_types::sync::lock;

#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// How long a partition's batch waits for more records before it is sent. 0 (the default)
    /// still batches: whatever queued while the previous batch was in flight goes in one batch.
    pub linger_ms: u64,
    /// The linger used instead while two or more of this producer's partitions have a batch in
    /// flight: then batches are small and the brokers' work per Raft entry dominates, so waiting
    /// a little for larger batches raises throughput (measured: 17k → 31k msgs/s with 12
    /// partitions), while a single busy partition never waits.
    pub busy_linger_ms: u64,
    /// A batch is sent once its records reach this many bytes.
    pub batch_bytes_max: usize,
    /// Records without a key stay on one partition until this many bytes went there, then move
    /// to another chosen at random (Kafka's sticky partitioner). Each Raft entry then carries a
    /// full batch however many partitions the topic has, where per-record round robin would cut
    /// the records in flight into one small batch, and one entry, per partition
    /// (docs/decisions/0011). 0 sends keyless records round robin, one record per partition.
    pub sticky_bytes: usize,
    pub compression: Compression,
    /// Producer id and sequences make retries duplicate-free.
    pub idempotent: bool,
    /// Batches of one partition sent and not yet acknowledged, at most (1 to 8). Above 1 they
    /// go on an ordered stream to the leader, which proposes each without waiting for the one
    /// before to commit (Kafka's `max.in.flight.requests.per.connection`); order and
    /// idempotence hold, since the broker proposes a stream's batches in the order sent.
    pub max_in_flight: usize,
    /// A record not acknowledged within this long fails.
    pub delivery_timeout_ms: u64,
    /// Records waiting per partition; `send` waits when the queue is full.
    pub queue_records_max: usize,
    /// The first back-off after a failed attempt; it doubles up to 1 s, with jitter.
    pub retry_backoff_ms: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger_ms: 0,
            busy_linger_ms: 2,
            batch_bytes_max: 256 * 1024,
            sticky_bytes: 256 * 1024,
            compression: Compression::None,
            idempotent: true,
            max_in_flight: 4,
            delivery_timeout_ms: 60_000,
            queue_records_max: 16_384,
            retry_backoff_ms: 20,
        }
    }
}

/// Where an acknowledged record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub partition: u32,
    pub offset: u64,
}

/// Resolves once the record is acknowledged (committed on a majority) or has failed.
#[derive(Debug)]
pub struct DeliveryFuture(oneshot::Receiver<Result<Delivery, ClientError>>);

impl Future for DeliveryFuture {
    type Output = Result<Delivery, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

pub(crate) struct Pending {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Bytes,
    pub(crate) timestamp_ms: i64,
    pub(crate) done: oneshot::Sender<Result<Delivery, ClientError>>,
}

/// Sends records to a cluster. Cheap to share (`&Producer` from many tasks).
pub struct Producer {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    workers: Mutex<HashMap<(String, u32), mpsc::Sender<Pending>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    round_robin: AtomicU64,
    /// The partition keyless records go to, per topic, when `sticky_bytes` is set.
    sticky: Mutex<HashMap<String, Sticky>>,
    /// How many of this producer's partitions have a batch in flight.
    busy_partitions: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("config", &self.config).finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The partition of a keyed record: CRC32C of the key, modulo the partition count.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    crc32c::crc32c(key) % partitions.max(1)
}

impl Producer {
    pub fn new(cluster: Arc<Cluster>, config: ProducerConfig) -> Producer {
        Producer {
            cluster,
            config,
            workers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            round_robin: AtomicU64::new(0),
            sticky: Mutex::new(HashMap::new()),
            busy_partitions: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Queues a record; the key chooses the partition (records without a key go to a sticky
    /// partition, see `sticky_bytes`).
    /// Waits only while the partition's queue is full. The returned future resolves to where the
    /// record landed.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<Bytes>,
        value: Bytes,
    ) -> Result<DeliveryFuture, ClientError> {
        let partitions =
            u32::try_from(self.cluster.topic(topic, false).await?.leaders.len()).unwrap_or(u32::MAX);
        if partitions == 0 {
            return Err(ClientError::Refused {
                code: "UNKNOWN_TOPIC_OR_PARTITION".into(),
                message: topic.into(),
            });
        }
        let partition = match &key {
            Some(k) => partition_for_key(k, partitions),
            None if self.config.sticky_bytes > 0 => self.sticky_partition(topic, partitions, value.len()),
            None => u32::try_from(self.round_robin.fetch_add(1, Ordering::Relaxed) % u64::from(partitions))
                .unwrap_or(0),
        };
        self.send_to(topic, partition, key, value).await
    }

    /// The partition of a keyless record of `bytes` bytes under sticky partitioning.
    fn sticky_partition(&self, topic: &str, partitions: u32, bytes: usize) -> u32 {
        let limit = self.config.sticky_bytes;
        let mut sticky = lock(&self.sticky);
        // Looked up by &str first: no key allocation per record.
        if let Some(current) = sticky.get_mut(topic) {
            return current.next(partitions, bytes, limit);
        }
        sticky
            .entry(topic.to_string())
            .or_insert_with(|| Sticky::new(partitions))
            .next(partitions, bytes, limit)
    }

    /// Queues a record for a given partition.
    pub async fn send_to(
        &self,
        topic: &str,
        partition: u32,
        key: Option<Bytes>,
        value: Bytes,
    ) -> Result<DeliveryFuture, ClientError> {
        let (done, rx) = oneshot::channel();
        let pending = Pending { key, value, timestamp_ms: now_ms(), done };
        let sender = self.worker(topic, partition);
        sender.send(pending).await.map_err(|_| ClientError::Closed)?;
        Ok(DeliveryFuture(rx))
    }

    fn worker(&self, topic: &str, partition: u32) -> mpsc::Sender<Pending> {
        let mut workers = lock(&self.workers);
        if let Some(sender) = workers.get(&(topic.to_string(), partition)) {
            return sender.clone();
        }
        let (tx, rx) = mpsc::channel(self.config.queue_records_max.max(1));
        let worker = PartitionWorker {
            cluster: self.cluster.clone(),
            config: self.config.clone(),
            topic: topic.to_string(),
            partition,
            busy_partitions: self.busy_partitions.clone(),
        };
        let task = tokio::spawn(worker.run(rx));
        lock(&self.tasks).push(task);
        workers.insert((topic.to_string(), partition), tx.clone());
        tx
    }

    /// Sends everything queued, waits for every outcome, and stops.
    pub async fn close(self) {
        lock(&self.workers).clear();
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Where a topic's keyless records go, and how much went there since it was chosen.
struct Sticky {
    partition: u32,
    bytes: usize,
    random: Jitter,
}

impl Sticky {
    fn new(partitions: u32) -> Sticky {
        // Producers made in the same millisecond must not walk the partitions in step.
        static MADE: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
        let made = MADE.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Sticky::seeded(partitions, nanos ^ made)
    }

    fn seeded(partitions: u32, seed: u64) -> Sticky {
        let mut random = Jitter(seed | 1);
        let partition = u32::try_from(random.next(u64::from(partitions))).unwrap_or(0);
        Sticky { partition, bytes: 0, random }
    }

    /// The partition of the next record; after `limit` bytes, another partition (never the same
    /// one twice in a row when there are several).
    fn next(&mut self, partitions: u32, bytes: usize, limit: usize) -> u32 {
        if self.partition >= partitions {
            // The topic has fewer partitions than when this was chosen.
            self.partition = 0;
            self.bytes = 0;
        }
        if self.bytes >= limit {
            self.bytes = 0;
            if partitions > 1 {
                let step = 1 + self.random.next(u64::from(partitions - 1));
                let next = (u64::from(self.partition) + step) % u64::from(partitions);
                self.partition = u32::try_from(next).unwrap_or(0);
            }
        }
        self.bytes += bytes.max(1);
        self.partition
    }
}

/// A small xorshift for back-off jitter; quality does not matter here.
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Self {
        Jitter(u64::try_from(now_ms()).unwrap_or(1) | 1)
    }

    pub(crate) fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_stable_partitions() {
        let a = partition_for_key(b"order-17", 12);
        assert_eq!(a, partition_for_key(b"order-17", 12));
        assert!(a < 12);
        let spread: std::collections::HashSet<u32> =
            (0..1000).map(|i| partition_for_key(format!("k{i}").as_bytes(), 12)).collect();
        assert_eq!(spread.len(), 12, "a thousand keys reach every partition");
    }

    #[test]
    fn keyless_records_stick_to_a_partition_until_the_limit_then_move() {
        for seed in [1u64, 7, 0xdead_beef, 42_424_242] {
            println!("seed {seed}");
            let mut sticky = Sticky::seeded(12, seed);
            let mut runs: Vec<(u32, usize)> = Vec::new();
            for _ in 0..12_000 {
                let p = sticky.next(12, 100, 1000);
                assert!(p < 12);
                match runs.last_mut() {
                    Some((last, n)) if *last == p => *n += 1,
                    _ => runs.push((p, 1)),
                }
            }
            // 1,000 bytes of 100 B records: runs of exactly ten records, never the same
            // partition twice in a row.
            assert!(runs.iter().all(|&(_, n)| n == 10), "runs: {:?}", &runs[..5]);
            assert!(runs.windows(2).all(|w| w[0].0 != w[1].0));
            let used: std::collections::HashSet<u32> = runs.iter().map(|&(p, _)| p).collect();
            assert_eq!(used.len(), 12, "every partition gets records over time");
        }
    }

    #[test]
    fn sticky_partition_stays_within_a_topic_that_shrank_or_has_one_partition() {
        let mut sticky = Sticky::seeded(12, 3);
        for _ in 0..50 {
            sticky.next(12, 100, 1000);
        }
        for _ in 0..100 {
            assert!(sticky.next(3, 100, 1000) < 3);
        }
        let mut single = Sticky::seeded(1, 5);
        assert!((0..100).all(|_| single.next(1, 100, 150) == 0));
    }
}
