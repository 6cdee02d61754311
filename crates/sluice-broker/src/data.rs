//! The data path services: `Produce`, `Fetch` (long poll), `ListOffsets`, `Metadata`, `InitProducer`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_meta::{MetaCommand, MetaResponse};
use sluice_partition::{AppendError, BatchOutcome};
use sluice_proto::v1 as pb;
use sluice_proto::v1::consumer_server::Consumer;
use sluice_proto::v1::metadata_server::Metadata;
use sluice_proto::v1::producer_server::Producer;
use sluice_raft::{AppendFailure, FetchError, PartitionGroup};
use sluice_types::{BatchError, GroupId, Offset, ValidatedBatch};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Response, Status};

use crate::node::Node;

/// The most bytes one fetch returns (at least one whole batch is returned even if larger).
pub const FETCH_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// The longest a fetch may wait for data.
pub const FETCH_WAIT_MS_MAX: u32 = 30_000;
/// Admission counts memory in units of this many bytes.
const ADMISSION_UNIT_BYTES: u64 = 1024;
/// A produce waits at most this many election timeouts for its commit.
const COMMIT_DEADLINE_ELECTIONS: u64 = 3;
/// Responses a subscription may queue before waiting for the client to read them.
const SUBSCRIBE_QUEUE_RESPONSES: usize = 4;
/// A subscription with nothing to send says so this often.
const SUBSCRIBE_HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a measured free-space figure is trusted.
const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);

fn error(code: pb::ErrorCode, message: impl Into<String>) -> pb::Error {
    pb::Error { code: code as i32, message: message.into(), ..pb::Error::default() }
}

/// The bounded funnel in front of every partition: bytes accepted but not committed are counted
/// per partition and per node; beyond either bound, and while the disk is nearly full, produce
/// answers BUSY instead of queueing.
pub struct Admission {
    node: Arc<Semaphore>,
    partition_units: u32,
    partitions: Mutex<HashMap<GroupId, Arc<Semaphore>>>,
    retry_after_ms: u32,
    disk_free_min: u64,
    /// (when measured, free bytes)
    disk: Mutex<(Option<Instant>, u64)>,
    pub busy_answers: AtomicU64,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").field("partition_units", &self.partition_units).finish_non_exhaustive()
    }
}

/// Held while a produce is in flight; releases its bytes when dropped.
pub struct AdmissionPermit {
    _node: OwnedSemaphorePermit,
    _partition: OwnedSemaphorePermit,
}

fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(ADMISSION_UNIT_BYTES)).unwrap_or(u32::MAX)
}

impl Admission {
    pub fn new(limits: &crate::config::LimitsConfig) -> Self {
        Admission {
            node: Arc::new(Semaphore::new(units(limits.node_inflight_bytes) as usize)),
            partition_units: units(limits.partition_inflight_bytes),
            partitions: Mutex::new(HashMap::new()),
            retry_after_ms: limits.busy_retry_after_ms,
            disk_free_min: limits.disk_free_bytes_min,
            disk: Mutex::new((None, u64::MAX)),
            busy_answers: AtomicU64::new(0),
        }
    }

    fn busy(&self, reason: &str) -> pb::Error {
        self.busy_answers.fetch_add(1, Ordering::Relaxed);
        pb::Error { retry_after_ms: self.retry_after_ms, ..error(pb::ErrorCode::Busy, reason) }
    }

    fn disk_free(&self, node: &Node) -> u64 {
        let mut disk = self.disk.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if disk.0.is_none_or(|at| at.elapsed() > DISK_CHECK_INTERVAL) {
            let free = rustix::fs::statvfs(node.storage.path())
                .map_or(u64::MAX, |s| s.f_bavail.saturating_mul(s.f_frsize));
            *disk = (Some(Instant::now()), free);
        }
        disk.1
    }

    /// Whether the disk's free space is below the floor (produce answers BUSY).
    pub fn disk_low(&self, node: &Node) -> bool {
        self.disk_free(node) < self.disk_free_min
    }

    fn try_admit(&self, node: &Node, group: GroupId, bytes: usize) -> Result<AdmissionPermit, pb::Error> {
        if self.disk_low(node) {
            return Err(self.busy("disk free space is below the floor"));
        }
        let needed = units(bytes as u64);
        let partition = {
            let mut partitions = self.partitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            partitions
                .entry(group)
                .or_insert_with(|| Arc::new(Semaphore::new(self.partition_units as usize)))
                .clone()
        };
        let partition = partition
            .try_acquire_many_owned(needed)
            .map_err(|_| self.busy("partition in-flight bytes are at their limit"))?;
        let node_permit = self
            .node
            .clone()
            .try_acquire_many_owned(needed)
            .map_err(|_| self.busy("node memory budget is exhausted"))?;
        Ok(AdmissionPermit { _node: node_permit, _partition: partition })
    }

    /// Forgets a deleted partition's counter.
    pub fn forget(&self, group: GroupId) {
        self.partitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&group);
    }
}

/// The partition's group and, if hosted here, its replica.
fn resolve(node: &Node, topic: &str, partition: u32) -> Result<(GroupId, Option<PartitionGroup>), pb::Error> {
    let registry = node.registry();
    let group = registry
        .state
        .topic(topic)
        .and_then(|t| t.partitions.get(partition as usize))
        .map(|p| p.group)
        .ok_or_else(|| {
            error(
                pb::ErrorCode::UnknownTopicOrPartition,
                format!("topic {topic:?} has no partition {partition}"),
            )
        })?;
    Ok((group, node.partition(group)))
}

/// The leader this node knows of. A local replica's view wins; but a replica that thinks it
/// leads and has not heard from a quorum within the election timeout (cut off from its peers, or
/// just back from a pause) may have been deposed already, so it does not name itself: clients
/// then look elsewhere instead of waiting on a leader that cannot commit.
fn leader_of(node: &Node, group: GroupId, local: Option<&PartitionGroup>) -> Option<u64> {
    if let Some(replica) = local {
        match replica.with_metrics(|m| m.current_leader) {
            Some(leader) if leader != node.id => return Some(leader),
            Some(_) if leads_with_quorum(node, replica) => return Some(node.id),
            _ => {}
        }
    }
    let registry = if node.is_meta_leader() {
        crate::liveness::reported_leaders(node).get(&group.0).copied()
    } else {
        node.cluster_info().leaders.get(&group.0).copied()
    };
    // With a local replica, only its own view may say "this node".
    registry.filter(|l| local.is_none() || *l != node.id)
}

/// This leader heard from a quorum within the election timeout. A hibernating or just-woken
/// group has had no heartbeats to count, and a one-voter group needs none.
fn leads_with_quorum(node: &Node, replica: &PartitionGroup) -> bool {
    let lease = Duration::from_millis(node.config.raft.election_timeout_max_ms);
    replica.is_hibernating()
        || replica.woke_at().elapsed() < lease
        || replica.with_metrics(|m| {
            m.membership_config.membership().voter_ids().count() <= 1
                || m.last_quorum_acked
                    .as_ref()
                    .is_some_and(|acked| openraft::Instant::elapsed(&**acked) < lease)
        })
}

fn not_leader(node: &Node, leader: Option<u64>) -> pb::Error {
    pb::Error {
        leader_id: leader,
        leader_addr: leader.and_then(|l| node.addr_of(l)).unwrap_or_default(),
        ..error(pb::ErrorCode::NotLeader, format!("node {} does not lead this partition", node.id))
    }
}

fn batch_error(e: &BatchError) -> pb::Error {
    match e {
        BatchError::RecordTooLarge { .. } => error(pb::ErrorCode::RecordTooLarge, e.to_string()),
        _ => error(pb::ErrorCode::InvalidBatch, e.to_string()),
    }
}

pub struct DataRpc {
    node: Arc<Node>,
}

impl DataRpc {
    pub fn new(node: Arc<Node>) -> Self {
        DataRpc { node }
    }

    async fn produce_inner(&self, request: pb::ProduceRequest) -> Result<pb::ProduceResponse, pb::Error> {
        let node = &self.node;
        let (group, local) = resolve(node, &request.topic, request.partition)?;
        let Some(replica) = local else { return Err(not_leader(node, leader_of(node, group, None))) };
        let leader = leader_of(node, group, Some(&replica));
        if leader != Some(node.id) {
            return Err(not_leader(node, leader));
        }
        let batch = ValidatedBatch::validate(request.batch).map_err(|e| batch_error(&e))?;
        let _permit = node.admission.try_admit(node, group, batch.bytes().len())?;
        // A leader that cannot reach a quorum would hold the request forever; past the deadline
        // the client is told the outcome is unknown and retries (idempotently) elsewhere.
        let deadline =
            Duration::from_millis(COMMIT_DEADLINE_ELECTIONS * node.config.raft.election_timeout_max_ms);
        let response = match tokio::time::timeout(deadline, replica.append(vec![batch])).await {
            Ok(Ok(response)) => response,
            Ok(Err(AppendFailure::NotLeader { leader })) => return Err(not_leader(node, leader)),
            Ok(Err(AppendFailure::Indeterminate(e))) => {
                return Err(error(pb::ErrorCode::Unavailable, format!("outcome unknown: {e}")));
            }
            Err(_) => {
                return Err(error(
                    pb::ErrorCode::Unavailable,
                    format!("not committed within {} ms; outcome unknown", deadline.as_millis()),
                ));
            }
        };
        match response.outcomes.into_iter().next() {
            Some(BatchOutcome::Appended { base_offset }) => {
                Ok(pb::ProduceResponse { error: None, base_offset: base_offset.0, duplicate: false })
            }
            Some(BatchOutcome::Duplicate { base_offset }) => {
                Ok(pb::ProduceResponse { error: None, base_offset: base_offset.0, duplicate: true })
            }
            Some(BatchOutcome::Rejected(reason)) => Err(match reason {
                AppendError::ProducerFenced { .. } => {
                    error(pb::ErrorCode::ProducerFenced, reason.to_string())
                }
                AppendError::OutOfOrderSequence { .. } => {
                    error(pb::ErrorCode::OutOfOrderSequence, reason.to_string())
                }
                AppendError::Unreadable(_) => error(pb::ErrorCode::InvalidBatch, reason.to_string()),
            }),
            None => Err(error(pb::ErrorCode::Unavailable, "the append returned no outcome")),
        }
    }

    async fn fetch_inner(&self, request: pb::FetchRequest) -> Result<pb::FetchResponse, pb::Error> {
        let node = &self.node;
        if request.max_bytes == 0 {
            return Err(error(pb::ErrorCode::InvalidRequest, "max_bytes must be positive"));
        }
        let (group, local) = resolve(node, &request.topic, request.partition)?;
        let Some(replica) = local else { return Err(not_leader(node, leader_of(node, group, None))) };
        if !request.read_from_follower {
            let leader = leader_of(node, group, Some(&replica));
            if leader != Some(node.id) {
                return Err(not_leader(node, leader));
            }
        }
        let reader = replica.reader().clone();
        let max_bytes = request.max_bytes.min(FETCH_BYTES_MAX) as usize;
        let min_bytes = (request.min_bytes as usize).clamp(1, max_bytes);
        let wait = Duration::from_millis(u64::from(request.max_wait_ms.min(FETCH_WAIT_MS_MAX)));
        let deadline = tokio::time::Instant::now() + wait;
        let mut watch = reader.watch();
        loop {
            watch.borrow_and_update();
            let progress = reader.progress();
            let batches = match reader.read(Offset(request.offset), max_bytes) {
                Ok(batches) => batches,
                Err(FetchError::OffsetOutOfRange { log_start, high_watermark, .. }) => {
                    return Err(pb::Error {
                        log_start_offset: log_start.0,
                        high_watermark: high_watermark.0,
                        ..error(
                            pb::ErrorCode::OffsetOutOfRange,
                            format!("offset {} is outside [{log_start}, {high_watermark}]", request.offset),
                        )
                    });
                }
                Err(e) => return Err(error(pb::ErrorCode::Unavailable, e.to_string())),
            };
            let bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
            if bytes >= min_bytes || tokio::time::Instant::now() >= deadline || node.shutdown.is_cancelled() {
                return Ok(pb::FetchResponse {
                    error: None,
                    batches: batches
                        .into_iter()
                        .map(|b| pb::StoredBatch { base_offset: b.base_offset.0, batch: b.bytes })
                        .collect(),
                    high_watermark: progress.high_watermark.0,
                    log_start_offset: progress.log_start.0,
                });
            }
            tokio::select! {
                changed = watch.changed() => if changed.is_err() {
                    return Err(error(pb::ErrorCode::Unavailable, "the partition replica stopped"));
                },
                () = tokio::time::sleep_until(deadline) => {}
                () = node.shutdown.cancelled() => {}
            }
        }
    }
}

#[tonic::async_trait]
impl Producer for DataRpc {
    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let response = self.produce_inner(request.into_inner()).await.unwrap_or_else(|error| {
            pb::ProduceResponse { error: Some(error), ..pb::ProduceResponse::default() }
        });
        Ok(Response::new(response))
    }

    async fn init_producer(
        &self,
        _request: Request<pb::InitProducerRequest>,
    ) -> Result<Response<pb::InitProducerResponse>, Status> {
        let response = match self.node.propose(MetaCommand::AllocateProducerIds { count: 1 }).await {
            Ok(MetaResponse::ProducerIds { first, .. }) => {
                pb::InitProducerResponse { error: None, producer_id: first.0, producer_epoch: 0 }
            }
            Ok(other) => pb::InitProducerResponse {
                error: Some(error(
                    pb::ErrorCode::Unavailable,
                    format!("unexpected registry answer {other:?}"),
                )),
                ..pb::InitProducerResponse::default()
            },
            Err(e) => pb::InitProducerResponse {
                error: Some(error(pb::ErrorCode::Unavailable, e.to_string())),
                ..pb::InitProducerResponse::default()
            },
        };
        Ok(Response::new(response))
    }
}

type SubscribeStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::SubscribeResponse, Status>> + Send + 'static>>;

/// One push subscription: sends committed batches within the client's credit, heartbeats when
/// idle, and stops when the client goes away or the node shuts down.
async fn run_subscription(
    node: Arc<Node>,
    first: pb::SubscribeRequest,
    mut inbound: tonic::Streaming<pb::SubscribeRequest>,
    tx: tokio::sync::mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
) {
    let fail =
        |error: pb::Error| pb::SubscribeResponse { error: Some(error), ..pb::SubscribeResponse::default() };
    let replica = match resolve(&node, &first.topic, first.partition) {
        Err(error) => {
            let _ = tx.send(Ok(fail(error))).await;
            return;
        }
        Ok((group, None)) => {
            let _ = tx.send(Ok(fail(not_leader(&node, leader_of(&node, group, None))))).await;
            return;
        }
        Ok((group, Some(replica))) => {
            let leader = leader_of(&node, group, Some(&replica));
            if !first.read_from_follower && leader != Some(node.id) {
                let _ = tx.send(Ok(fail(not_leader(&node, leader)))).await;
                return;
            }
            replica
        }
    };
    let reader = replica.reader().clone();
    let mut watch = reader.watch();
    let mut position = Offset(first.offset);
    let mut credit_records = u64::from(first.credit_records);
    let mut credit_bytes = first.credit_bytes;
    let mut heartbeat = tokio::time::interval(SUBSCRIBE_HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut sent = false;
        if credit_records > 0 && credit_bytes > 0 {
            watch.borrow_and_update();
            let max_bytes =
                usize::try_from(credit_bytes.min(u64::from(FETCH_BYTES_MAX))).unwrap_or(usize::MAX);
            match reader.read(position, max_bytes) {
                Ok(batches) if !batches.is_empty() => {
                    let mut out = Vec::new();
                    for batch in batches {
                        if credit_records == 0 {
                            break;
                        }
                        let count =
                            sluice_types::BatchHeader::read(&batch.bytes).map_or(1, |h| h.record_count);
                        let skipped = position.0.saturating_sub(batch.base_offset.0);
                        credit_records =
                            credit_records.saturating_sub(u64::from(count).saturating_sub(skipped));
                        credit_bytes = credit_bytes.saturating_sub(batch.bytes.len() as u64);
                        position = batch.base_offset.plus(u64::from(count));
                        out.push(pb::StoredBatch { base_offset: batch.base_offset.0, batch: batch.bytes });
                    }
                    let response = pb::SubscribeResponse {
                        error: None,
                        batches: out,
                        high_watermark: reader.progress().high_watermark.0,
                        heartbeat: false,
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                    sent = true;
                    heartbeat.reset();
                }
                Ok(_) => {}
                Err(FetchError::OffsetOutOfRange { log_start, high_watermark, .. }) => {
                    let error = pb::Error {
                        log_start_offset: log_start.0,
                        high_watermark: high_watermark.0,
                        ..error(pb::ErrorCode::OffsetOutOfRange, format!("offset {position} is out of range"))
                    };
                    let _ = tx.send(Ok(fail(error))).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Ok(fail(error(pb::ErrorCode::Unavailable, e.to_string())))).await;
                    return;
                }
            }
        }
        if sent {
            continue;
        }
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            () = tx.closed() => return,
            changed = watch.changed() => if changed.is_err() {
                let _ = tx.send(Ok(fail(error(pb::ErrorCode::Unavailable, "the partition replica stopped")))).await;
                return;
            },
            message = inbound.message() => match message {
                Ok(Some(more)) => {
                    credit_records = credit_records.saturating_add(u64::from(more.credit_records));
                    credit_bytes = credit_bytes.saturating_add(more.credit_bytes);
                }
                // The client closed its side or the stream broke: the subscription is over.
                Ok(None) | Err(_) => return,
            },
            _ = heartbeat.tick() => {
                let beat = pb::SubscribeResponse {
                    heartbeat: true,
                    high_watermark: reader.progress().high_watermark.0,
                    ..pb::SubscribeResponse::default()
                };
                if tx.send(Ok(beat)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Consumer for DataRpc {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<tonic::Streaming<pb::SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| {
            Status::invalid_argument("a subscription starts with a request naming the partition")
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel(SUBSCRIBE_QUEUE_RESPONSES);
        tokio::spawn(run_subscription(self.node.clone(), first, inbound, tx));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn fetch(&self, request: Request<pb::FetchRequest>) -> Result<Response<pb::FetchResponse>, Status> {
        let response = self
            .fetch_inner(request.into_inner())
            .await
            .unwrap_or_else(|error| pb::FetchResponse { error: Some(error), ..pb::FetchResponse::default() });
        Ok(Response::new(response))
    }

    async fn list_offsets(
        &self,
        request: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        let request = request.into_inner();
        let node = &self.node;
        let response = match resolve(node, &request.topic, request.partition) {
            Err(error) => {
                pb::ListOffsetsResponse { error: Some(error), ..pb::ListOffsetsResponse::default() }
            }
            Ok((group, None)) => pb::ListOffsetsResponse {
                error: Some(not_leader(node, leader_of(node, group, None))),
                ..pb::ListOffsetsResponse::default()
            },
            Ok((_, Some(replica))) => {
                let progress = replica.reader().progress();
                pb::ListOffsetsResponse {
                    error: None,
                    earliest: progress.log_start.0,
                    latest: progress.high_watermark.0,
                }
            }
        };
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl Metadata for DataRpc {
    async fn metadata(
        &self,
        request: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        let request = request.into_inner();
        let node = &self.node;
        let registry = node.registry();
        let brokers = registry
            .state
            .brokers()
            .map(|b| pb::BrokerAddress { id: b.id.0, addr: b.addr.clone() })
            .collect();
        let names: Vec<String> = if request.topics.is_empty() {
            registry.state.topics().map(|t| t.name.clone()).collect()
        } else {
            request.topics
        };
        let topics = names
            .into_iter()
            .map(|name| match registry.state.topic(&name) {
                None => pb::TopicMetadata {
                    error: Some(error(
                        pb::ErrorCode::UnknownTopicOrPartition,
                        format!("unknown topic {name:?}"),
                    )),
                    name,
                    partitions: Vec::new(),
                },
                Some(topic) => pb::TopicMetadata {
                    name,
                    error: None,
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|p| {
                            let local = node.partition(p.group);
                            let leader = leader_of(node, p.group, local.as_ref());
                            pb::PartitionMetadata {
                                partition: p.partition,
                                leader_id: leader,
                                leader_addr: leader.and_then(|l| node.addr_of(l)).unwrap_or_default(),
                                replicas: p.replicas.iter().map(|r| r.0).collect(),
                            }
                        })
                        .collect(),
                },
            })
            .collect();
        Ok(Response::new(pb::MetadataResponse { brokers, topics }))
    }
}
