//! Every error a client or peer sees, and its mapping to a gRPC status: this is the one place
//! where that mapping happens. The `sluice-error` metadata key carries a stable code.

use sluice_meta::MetaError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("this node is not the registry leader (leader: {leader_addr:?})")]
    NotLeader { leader_addr: Option<String> },
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("internal error: {0}")]
    Internal(String),
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
            },
            ApiError::NotLeader { .. } => "NOT_LEADER",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::InvalidArgument(_) => "INVALID_ARGUMENT",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    fn grpc_code(&self) -> Code {
        match self {
            ApiError::Meta(e) => match e {
                MetaError::TopicExists(_) => Code::AlreadyExists,
                MetaError::UnknownTopic(_) | MetaError::UnknownBroker(_) => Code::NotFound,
                MetaError::NotEnoughBrokers { .. } => Code::FailedPrecondition,
                MetaError::TooManyTopics => Code::ResourceExhausted,
                _ => Code::InvalidArgument,
            },
            ApiError::NotLeader { .. } | ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::Internal(_) => Code::Internal,
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
