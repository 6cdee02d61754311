//! The metadata registry (Raft group 0): which brokers exist and whether they are alive, which
//! topics exist and where their partitions' replicas live, and producer-id allocation.
//!
//! Pure and sync: [`MetaState::apply`] is the whole state machine, deterministic, so every
//! controller computes the same placement. Liveness timing (heartbeats, session timeouts) lives in
//! the broker; only its verdicts (a broker declared dead or alive again) are commands here.
//! Main types: [`MetaState`], [`MetaCommand`], [`MetaResponse`], [`MetaError`].

mod placement;
mod state;
mod topic_name;

pub use placement::place_replicas;
pub use state::{
    Broker, BrokerState, MetaCommand, MetaError, MetaResponse, MetaState, PARTITIONS_MAX,
    PRODUCER_ID_BLOCK_MAX, PartitionAssignment, REPLICATION_FACTOR_MAX, TOPICS_MAX, Topic, TopicConfig,
};
pub use topic_name::{TOPIC_NAME_BYTES_MAX, validate_topic_name};
