//! Every error a client or peer sees, and its mapping to the wire: this is the one place where
//! that mapping happens.
//!
//! - [`ApiError`]: the admin and node-control APIs, as a gRPC status whose `sluice-error`
//!   metadata carries a stable code.
//! - [`DataError`]: the data path (produce, fetch, subscribe, metadata), as the `Error` message
//!   inside the response, so that a client reads an expected condition like any answer.

use sluice_meta::{MetaError, MetaResponse};
use sluice_partition::AppendError;
use sluice_proto::v1 as pb;
use sluice_raft::{AppendFailure, FetchError};
use sluice_types::{BatchError, Offset, ProducerEpoch, ProducerId};
use tonic::{Code, Status};

use crate::admission::Busy;

/// A peer that did not answer a registry call, and what it said.
#[derive(Debug, Clone)]
pub struct PeerFailure {
    pub addr: String,
    pub code: Code,
    pub message: String,
}

impl std::fmt::Display for PeerFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}: {}", self.addr, self.code, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("this node is not the registry leader (leader: {leader_addr:?})")]
    NotLeader { leader_addr: Option<String> },
    #[error("no registry leader reachable{}", last.as_ref().map(|l| format!(" (last: {l})")).unwrap_or_default())]
    NoRegistryLeader { last: Option<PeerFailure> },
    #[error("registry change not committed within {waited_ms} ms; outcome unknown")]
    CommitTimeout { waited_ms: u64 },
    #[error("registry change outcome unknown: {0}")]
    Indeterminate(AppendFailure),
    #[error("unreadable registry command: {0}")]
    InvalidCommand(serde_json::Error),
    #[error("unreadable registry answer from a peer: {0}")]
    UnreadableAnswer(serde_json::Error),
    #[error("unreadable registry state from a peer: {0}")]
    UnreadableState(serde_json::Error),
    #[error("the registry answered {0:?} where it never does")]
    UnexpectedAnswer(Box<MetaResponse>),
}

impl ApiError {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Meta(e) => match e {
                MetaError::InvalidTopicName { .. } => "INVALID_TOPIC_NAME",
                MetaError::TopicExists(_) => "TOPIC_EXISTS",
                MetaError::UnknownTopic(_) => "UNKNOWN_TOPIC",
                MetaError::InvalidPartitionCount(_) => "INVALID_PARTITION_COUNT",
                MetaError::InvalidReplicationFactor { .. } => "INVALID_REPLICATION_FACTOR",
                MetaError::NotEnoughBrokers { .. } => "NOT_ENOUGH_BROKERS",
                MetaError::TooManyTopics => "TOO_MANY_TOPICS",
                MetaError::UnknownBroker(_) => "UNKNOWN_BROKER",
                MetaError::EmptyAddress | MetaError::InvalidProducerIdCount(_) => "INVALID_ARGUMENT",
                MetaError::UnknownProducerId(_) => "UNKNOWN_PRODUCER_ID",
                MetaError::ProducerEpochsExhausted(_) | MetaError::TooManyBumpedProducers => {
                    "PRODUCER_EPOCHS_EXHAUSTED"
                }
            },
            ApiError::NotLeader { .. } => "NOT_LEADER",
            ApiError::NoRegistryLeader { .. }
            | ApiError::CommitTimeout { .. }
            | ApiError::Indeterminate(_) => "UNAVAILABLE",
            ApiError::InvalidCommand(_) => "INVALID_ARGUMENT",
            ApiError::UnreadableAnswer(_) | ApiError::UnreadableState(_) | ApiError::UnexpectedAnswer(_) => {
                "INTERNAL"
            }
        }
    }

    fn grpc_code(&self) -> Code {
        match self {
            ApiError::Meta(e) => match e {
                MetaError::TopicExists(_) => Code::AlreadyExists,
                MetaError::UnknownTopic(_)
                | MetaError::UnknownBroker(_)
                | MetaError::UnknownProducerId(_) => Code::NotFound,
                MetaError::NotEnoughBrokers { .. } => Code::FailedPrecondition,
                MetaError::TooManyTopics
                | MetaError::ProducerEpochsExhausted(_)
                | MetaError::TooManyBumpedProducers => Code::ResourceExhausted,
                _ => Code::InvalidArgument,
            },
            ApiError::NotLeader { .. }
            | ApiError::NoRegistryLeader { .. }
            | ApiError::CommitTimeout { .. }
            | ApiError::Indeterminate(_) => Code::Unavailable,
            ApiError::InvalidCommand(_) => Code::InvalidArgument,
            ApiError::UnreadableAnswer(_) | ApiError::UnreadableState(_) | ApiError::UnexpectedAnswer(_) => {
                Code::Internal
            }
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let mut status = Status::new(e.grpc_code(), e.to_string());
        if let Ok(code) = e.code().parse() {
            status.metadata_mut().insert("sluice-error", code);
        }
        if let ApiError::NotLeader { leader_addr: Some(addr) } = &e
            && let Ok(value) = addr.parse()
        {
            status.metadata_mut().insert("sluice-leader", value);
        }
        status
    }
}

/// The leader hint a `NOT_LEADER` status carries, if any.
pub fn leader_hint(status: &Status) -> Option<String> {
    let is_not_leader =
        status.metadata().get("sluice-error").and_then(|v| v.to_str().ok()) == Some("NOT_LEADER");
    if !is_not_leader {
        return None;
    }
    status.metadata().get("sluice-leader").and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// How long a client told `NOT_LEADER` with no leader to name should wait before it asks again
/// (an election takes a few hundred milliseconds).
pub const LEADERLESS_RETRY_AFTER_MS: u32 = 50;

/// Why the data path could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("node {node} does not lead this partition")]
    NotLeader { node: u64, leader: Option<u64>, leader_addr: Option<String> },
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    InvalidBatch(#[from] BatchError),
    #[error(transparent)]
    Rejected(#[from] AppendError),
    #[error("offset {requested} is outside [{log_start}, {high_watermark}]")]
    OffsetOutOfRange { requested: Offset, log_start: Offset, high_watermark: Offset },
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("producer id {0} was never issued by InitProducer")]
    UnknownProducerId(ProducerId),
    #[error("producer id {producer_id} was never issued epoch {epoch}; its current epoch is {current}")]
    InvalidProducerEpoch { producer_id: ProducerId, epoch: ProducerEpoch, current: ProducerEpoch },
    #[error("{0}")]
    ProducerRefused(MetaError),
    #[error("not committed within {waited_ms} ms; outcome unknown")]
    CommitTimeout { waited_ms: u64 },
    #[error("outcome unknown: {0}")]
    Indeterminate(AppendFailure),
    #[error("the append returned no outcome")]
    NoOutcome,
    #[error("the partition replica stopped")]
    ReplicaStopped,
    #[error("cannot read the partition: {0}")]
    Read(FetchError),
    #[error(transparent)]
    Registry(#[from] ApiError),
}

impl From<FetchError> for DataError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::OffsetOutOfRange { requested, log_start, high_watermark } => {
                DataError::OffsetOutOfRange { requested, log_start, high_watermark }
            }
            other => DataError::Read(other),
        }
    }
}

impl DataError {
    fn code(&self) -> pb::ErrorCode {
        use pb::ErrorCode as E;
        match self {
            DataError::UnknownPartition { .. } | DataError::UnknownTopic(_) => E::UnknownTopicOrPartition,
            DataError::NotLeader { .. } => E::NotLeader,
            DataError::Busy(_) => E::Busy,
            DataError::InvalidBatch(BatchError::RecordTooLarge { .. }) => E::RecordTooLarge,
            DataError::InvalidBatch(BatchError::TooLarge { .. }) => E::BatchTooLarge,
            DataError::InvalidBatch(_) | DataError::Rejected(AppendError::Unreadable(_)) => E::InvalidBatch,
            DataError::Rejected(AppendError::ProducerFenced { .. }) => E::ProducerFenced,
            DataError::Rejected(AppendError::OutOfOrderSequence { .. }) => E::OutOfOrderSequence,
            DataError::OffsetOutOfRange { .. } => E::OffsetOutOfRange,
            DataError::InvalidRequest(_) | DataError::ProducerRefused(_) => E::InvalidRequest,
            DataError::UnknownProducerId(_) => E::UnknownProducerId,
            DataError::InvalidProducerEpoch { .. } => E::InvalidProducerEpoch,
            DataError::CommitTimeout { .. }
            | DataError::Indeterminate(_)
            | DataError::NoOutcome
            | DataError::ReplicaStopped
            | DataError::Read(_)
            | DataError::Registry(_) => E::Unavailable,
        }
    }

    /// The error as the data-path responses carry it.
    pub fn to_pb(&self) -> pb::Error {
        let mut error =
            pb::Error { code: self.code() as i32, message: self.to_string(), ..pb::Error::default() };
        match self {
            DataError::NotLeader { leader, leader_addr, .. } => {
                error.leader_id = *leader;
                error.leader_addr = leader_addr.clone().unwrap_or_default();
                if leader.is_none() {
                    // No leader to name: an election is under way, or this node is cut off.
                    error.retry_after_ms = LEADERLESS_RETRY_AFTER_MS;
                }
            }
            DataError::Busy(busy) => error.retry_after_ms = busy.retry_after_ms,
            DataError::OffsetOutOfRange { log_start, high_watermark, .. } => {
                error.log_start_offset = log_start.0;
                error.high_watermark = high_watermark.0;
            }
            _ => {}
        }
        error
    }
}
