//! One partition's sending side: batching, idempotent sequences, several batches in flight on
//! an ordered stream to the leader, and the retries after a failure.
//!
//! While all goes well, batches go out on one `ProduceStream` to the partition's leader, up to
//! `max_in_flight` of them unanswered, and the broker answers them in order. The first failure
//! of any kind (an error answer, a broken stream, an answer that does not come) ends the stream;
//! the batches still in flight are then *settled*, each in order by single `Produce` calls with
//! the usual retries, before anything new is sent. A retried batch keeps the producer id and
//! sequence it was first sent with, so a batch that had landed after all is recognised as a
//! duplicate and answered with its first offsets (docs/decisions/0015).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::v1 as pb;
use sluice_proto::v1::producer_client::ProducerClient;
use sluice_types::{ProducerEpoch, ProducerId, Record, RecordBatch, Sequence};
use tokio::sync::mpsc;

use crate::ClientError;
use crate::cluster::Cluster;
use crate::error::{code_name, refused};
use crate::producer::{Delivery, Jitter, Pending, ProducerConfig};

/// Records per batch at most, whatever their size.
const BATCH_RECORDS_MAX: usize = 10_000;
/// One produce attempt's limit: above the broker's own commit deadline (three election
/// timeouts), so that the broker's answer normally comes first. On a stream, the oldest batch
/// in flight must be answered within it.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest single back-off between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Batches in flight on one stream at most: the broker's window and the partitions' sequence
/// dedup window.
pub(crate) const IN_FLIGHT_MAX: usize = 8;

pub(crate) struct PartitionWorker {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) config: ProducerConfig,
    pub(crate) topic: String,
    pub(crate) partition: u32,
    /// How many of the producer's partitions have a batch in flight.
    pub(crate) busy_partitions: Arc<AtomicUsize>,
}

/// The producer id this partition's batches are sent under, and the next sequence.
#[derive(Default)]
struct Identity {
    current: Option<(u64, u32)>,
    next_sequence: u64,
}

/// A batch sent and not yet answered.
struct InFlight {
    pending: Vec<Pending>,
    batch: Bytes,
    sent_at: tokio::time::Instant,
}

/// An open `ProduceStream` to the partition's leader.
struct Line {
    addr: String,
    requests: mpsc::Sender<pb::ProduceRequest>,
    answers: tonic::Streaming<pb::ProduceResponse>,
}

/// Why a stream stopped serving.
enum Trouble {
    /// The broker answered the oldest batch with an error (and ends the stream).
    Answer(pb::ProduceResponse),
    /// The stream broke, ended early, or the oldest batch was not answered in time.
    Broken(String),
}

impl PartitionWorker {
    fn max_in_flight(&self) -> usize {
        self.config.max_in_flight.clamp(1, IN_FLIGHT_MAX)
    }

    pub(crate) async fn run(self, mut rx: mpsc::Receiver<Pending>) {
        let mut identity = Identity::default();
        let mut line: Option<Line> = None;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut open = true;
        loop {
            if !open && in_flight.is_empty() {
                return;
            }
            let room = open && in_flight.len() < self.max_in_flight();
            tokio::select! {
                biased;
                answer = next_answer(line.as_mut(), in_flight.front()), if !in_flight.is_empty() => {
                    match answer {
                        Ok(base_offset) => {
                            let done = in_flight.pop_front().expect("an answer is for the oldest batch");
                            self.acknowledge(done.pending, base_offset);
                            self.note_idle(&in_flight);
                        }
                        Err(trouble) => {
                            if let Some(line) = line.take() {
                                self.learn(&line.addr, trouble);
                            }
                            self.settle(&mut in_flight, &mut identity).await;
                            self.note_idle(&in_flight);
                        }
                    }
                }
                first = rx.recv(), if room => {
                    let Some(first) = first else {
                        open = false;
                        continue;
                    };
                    let pending = self.gather(first, &mut rx).await;
                    let batch = match self.encode(&pending, &mut identity).await {
                        Ok(batch) => batch,
                        Err(e) => {
                            fail(pending, &e);
                            continue;
                        }
                    };
                    if in_flight.is_empty() {
                        self.busy_partitions.fetch_add(1, Ordering::Relaxed);
                    }
                    in_flight.push_back(InFlight { pending, batch, sent_at: tokio::time::Instant::now() });
                    let sent = self.send(&mut line, &in_flight).await;
                    if !sent {
                        line = None;
                        self.settle(&mut in_flight, &mut identity).await;
                        self.note_idle(&in_flight);
                    }
                }
            }
        }
    }

    fn note_idle(&self, in_flight: &VecDeque<InFlight>) {
        if in_flight.is_empty() {
            self.busy_partitions.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The records for the next batch: `first`, what is already queued, and with a positive
    /// linger what arrives during it, up to the batch limits.
    async fn gather(&self, first: Pending, rx: &mut mpsc::Receiver<Pending>) -> Vec<Pending> {
        let busy = self.busy_partitions.load(Ordering::Relaxed) >= 2;
        let linger =
            Duration::from_millis(if busy { self.config.busy_linger_ms } else { self.config.linger_ms });
        let mut bytes = record_bytes(&first);
        let mut pending = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while bytes < self.config.batch_bytes_max && pending.len() < BATCH_RECORDS_MAX {
            // Take what is already queued without waiting; only a positive linger waits for
            // more (a zero-length timer would still cost a timer tick, about a millisecond).
            let next = match rx.try_recv() {
                Ok(p) => Some(p),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) if linger.is_zero() => None,
                Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
                    next = rx.recv() => next,
                    () = tokio::time::sleep_until(deadline) => None,
                },
            };
            let Some(p) = next else { break };
            bytes += record_bytes(&p);
            pending.push(p);
        }
        pending
    }

    /// The records encoded as one batch under the producer's identity (asked for first if
    /// there is none), taking the next sequences.
    async fn encode(&self, pending: &[Pending], identity: &mut Identity) -> Result<Bytes, ClientError> {
        if self.config.idempotent && identity.current.is_none() {
            let id = self.init_identity().await?;
            *identity = Identity { current: Some(id), next_sequence: 0 };
        }
        let (producer_id, epoch) = identity.current.unwrap_or((0, 0));
        let base_timestamp_ms = pending[0].timestamp_ms;
        let batch = RecordBatch {
            producer_id: ProducerId(producer_id),
            producer_epoch: ProducerEpoch(epoch),
            base_sequence: Sequence(identity.next_sequence),
            base_timestamp_ms,
            compression: self.config.compression,
            records: pending
                .iter()
                .map(|p| Record {
                    timestamp_delta_ms: p.timestamp_ms - base_timestamp_ms,
                    key: p.key.clone(),
                    value: p.value.clone(),
                    headers: Vec::new(),
                })
                .collect(),
        };
        let encoded = batch.encode().map_err(|e| ClientError::InvalidRecord(e.to_string()))?;
        identity.next_sequence += pending.len() as u64;
        Ok(encoded)
    }

    /// Sends the newest batch in flight: on the open stream, on a new one to the leader, or,
    /// with one batch in flight at most, by a single call. Whether it is on its way (a single
    /// call's answer included); if not, the caller settles what is in flight.
    async fn send(&self, line: &mut Option<Line>, in_flight: &VecDeque<InFlight>) -> bool {
        let newest = in_flight.back().expect("the batch to send is in flight");
        if self.max_in_flight() == 1 {
            return false;
        }
        if line.is_none() {
            *line = self.open_line().await;
        }
        let Some(open) = line.as_ref() else { return false };
        let request = pb::ProduceRequest {
            topic: self.topic.clone(),
            partition: self.partition,
            batch: newest.batch.clone(),
        };
        // The channel holds as many requests as may be in flight: this never waits.
        open.requests.send(request).await.is_ok()
    }

    /// A new `ProduceStream` to the partition's leader, or none if it cannot be opened.
    async fn open_line(&self) -> Option<Line> {
        let addr = self.cluster.leader_addr(&self.topic, self.partition, false).await.ok()?;
        let mut client = ProducerClient::new(self.cluster.channel(&addr).ok()?)
            .max_decoding_message_size(Cluster::max_message_bytes())
            .max_encoding_message_size(Cluster::max_message_bytes());
        let (requests, outgoing) = mpsc::channel(IN_FLIGHT_MAX);
        let answers = client.produce_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing));
        match tokio::time::timeout(PRODUCE_TIMEOUT, answers).await {
            Ok(Ok(answers)) => Some(Line { addr, requests, answers: answers.into_inner() }),
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unavailable {
                    self.cluster.suspect(&addr);
                }
                None
            }
            Err(_) => None,
        }
    }

    /// Takes what a failed stream's last answer says about the cluster: a new leader's address,
    /// or a broker that stopped answering.
    fn learn(&self, addr: &str, trouble: Trouble) {
        match trouble {
            Trouble::Answer(answer) => {
                let _ = self.classify(addr, answer);
            }
            Trouble::Broken(reason) => {
                tracing::debug!(addr, topic = %self.topic, partition = self.partition, %reason, "produce stream broke");
                self.cluster.suspect(addr);
            }
        }
    }

    /// Delivers every batch in flight, oldest first, by single calls with retries. A batch
    /// keeps the identity and sequence it was sent with while the batch before it may have
    /// landed; once the cluster refused one outright (so nothing after it landed either), the
    /// rest are encoded again under a new identity.
    async fn settle(&self, in_flight: &mut VecDeque<InFlight>, identity: &mut Identity) {
        let mut encode_again = false;
        while let Some(f) = in_flight.pop_front() {
            let batch = if encode_again {
                match self.encode(&f.pending, identity).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        fail(f.pending, &e);
                        continue;
                    }
                }
            } else {
                f.batch
            };
            // Each batch keeps its own delivery timeout, counted from when it was first sent: a
            // batch settled after others does not get a fresh one.
            let deadline = f.sent_at + Duration::from_millis(self.config.delivery_timeout_ms);
            match self.deliver(batch, deadline).await {
                Ok(base_offset) => self.acknowledge(f.pending, base_offset),
                Err(e) => {
                    let refused = matches!(e, ClientError::Refused { .. });
                    encode_again |= refused;
                    // The next batch encoded starts clean, under a new producer id: continuing
                    // this sequence could be refused or misread as a duplicate. A batch already
                    // sent after one whose outcome is unknown keeps its sequence: if it lands,
                    // the unknown one had landed too.
                    if refused || in_flight.is_empty() {
                        *identity = Identity::default();
                    }
                    fail(f.pending, &e);
                }
            }
        }
    }

    fn acknowledge(&self, pending: Vec<Pending>, base_offset: u64) {
        for (i, p) in pending.into_iter().enumerate() {
            let _ = p.done.send(Ok(Delivery { partition: self.partition, offset: base_offset + i as u64 }));
        }
    }

    /// A producer id from the registry, asked again with back-off until the delivery timeout:
    /// the registry may be electing a leader.
    async fn init_identity(&self) -> Result<(u64, u32), ClientError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.config.delivery_timeout_ms);
        let mut backoff = Duration::from_millis(self.config.retry_backoff_ms.max(1));
        let mut round = 0u32;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let timeout =
                crate::cluster::init_producer_timeout(round).min(remaining.max(Duration::from_millis(1)));
            round = round.saturating_add(1);
            match self.cluster.init_producer(timeout).await {
                Ok(identity) => return Ok(identity),
                Err(e) if tokio::time::Instant::now() + backoff > deadline => return Err(e),
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Sends one encoded batch until it is acknowledged, a final error, or `deadline` (at least
    /// one attempt is made).
    async fn deliver(&self, batch: Bytes, deadline: tokio::time::Instant) -> Result<u64, ClientError> {
        let mut jitter = Jitter::new();
        let mut backoff = Duration::from_millis(self.config.retry_backoff_ms.max(1));
        let mut refresh = false;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let last = match self.attempt(&batch, refresh).await {
                Ok(Ok(base_offset)) => return Ok(base_offset),
                Ok(Err(retry)) => retry,
                Err(final_error) => return Err(final_error),
            };
            refresh = last.refresh;
            let wait = if let Some(after) = last.wait {
                after + Duration::from_millis(jitter.next(millis(after) / 4 + 1))
            } else {
                let wait = backoff + Duration::from_millis(jitter.next(millis(backoff) / 2 + 1));
                backoff = (backoff * 2).min(BACKOFF_MAX);
                wait
            };
            if tokio::time::Instant::now() + wait > deadline {
                return Err(ClientError::DeliveryTimeout { attempts, last: last.reason });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: `Ok(Ok(offset))` acknowledged, `Ok(Err(retry))` worth retrying,
    /// `Err(e)` final.
    async fn attempt(&self, batch: &Bytes, refresh: bool) -> Result<Result<u64, Retry>, ClientError> {
        let addr = match self.cluster.leader_addr(&self.topic, self.partition, refresh).await {
            Ok(addr) => addr,
            Err(ClientError::Refused { code, message }) if code != "UNKNOWN_TOPIC_OR_PARTITION" => {
                return Err(ClientError::Refused { code, message });
            }
            Err(e) => return Ok(Err(Retry { reason: e.to_string(), refresh: true, wait: None })),
        };
        let mut client = ProducerClient::new(self.cluster.channel(&addr)?)
            .max_decoding_message_size(Cluster::max_message_bytes())
            .max_encoding_message_size(Cluster::max_message_bytes());
        let mut request = tonic::Request::new(pb::ProduceRequest {
            topic: self.topic.clone(),
            partition: self.partition,
            batch: batch.clone(),
        });
        request.set_timeout(PRODUCE_TIMEOUT);
        match client.produce(request).await {
            Ok(response) => self.classify(&addr, response.into_inner()),
            Err(status) => {
                if status.code() == tonic::Code::Unavailable {
                    self.cluster.suspect(&addr);
                }
                Ok(Err(Retry { reason: format!("{addr}: {}", status.message()), refresh: true, wait: None }))
            }
        }
    }

    /// What a broker's answer means: the batch's offset, a retry (after learning a leader's
    /// address from a `NOT_LEADER` hint), or a final refusal.
    fn classify(&self, addr: &str, response: pb::ProduceResponse) -> Result<Result<u64, Retry>, ClientError> {
        let Some(error) = response.error.filter(|e| e.code != pb::ErrorCode::None as i32) else {
            return Ok(Ok(response.base_offset));
        };
        let reason = format!("{addr}: {}: {}", code_name(error.code), error.message);
        match pb::ErrorCode::try_from(error.code) {
            Ok(pb::ErrorCode::NotLeader) => {
                let hinted = !error.leader_addr.is_empty();
                if hinted {
                    self.cluster.set_leader(&self.topic, self.partition, error.leader_addr.clone());
                }
                Ok(Err(Retry { reason, refresh: !hinted, wait: hinted.then_some(Duration::ZERO) }))
            }
            Ok(pb::ErrorCode::Busy) => Ok(Err(Retry {
                reason,
                refresh: false,
                wait: Some(Duration::from_millis(u64::from(error.retry_after_ms.max(1)))),
            })),
            Ok(pb::ErrorCode::Unavailable | pb::ErrorCode::UnknownTopicOrPartition) => {
                Ok(Err(Retry { reason, refresh: true, wait: None }))
            }
            _ => Err(refused(&error)),
        }
    }
}

/// The oldest batch's answer on the open stream: its offset, or why the stream stopped serving.
async fn next_answer(line: Option<&mut Line>, oldest: Option<&InFlight>) -> Result<u64, Trouble> {
    let (Some(line), Some(oldest)) = (line, oldest) else {
        return Err(Trouble::Broken("no stream".into()));
    };
    match tokio::time::timeout_at(oldest.sent_at + PRODUCE_TIMEOUT, line.answers.message()).await {
        Err(_) => Err(Trouble::Broken(format!("no answer in {PRODUCE_TIMEOUT:?}"))),
        Ok(Ok(None)) => Err(Trouble::Broken("the stream ended".into())),
        Ok(Err(status)) => Err(Trouble::Broken(status.message().to_string())),
        Ok(Ok(Some(answer))) => {
            match answer.error.as_ref().filter(|e| e.code != pb::ErrorCode::None as i32) {
                None => Ok(answer.base_offset),
                Some(_) => Err(Trouble::Answer(answer)),
            }
        }
    }
}

struct Retry {
    reason: String,
    refresh: bool,
    /// The broker's requested delay, or none for the exponential back-off.
    wait: Option<Duration>,
}

fn record_bytes(p: &Pending) -> usize {
    p.value.len() + p.key.as_ref().map_or(0, Bytes::len)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn fail(pending: Vec<Pending>, error: &ClientError) {
    for p in pending {
        let _ = p.done.send(Err(error.clone()));
    }
}
