//! The metadata registry (Raft group 0): which brokers exist and whether they are alive, which
//! topics exist and where their partitions' replicas live, and producer-id allocation.
//!
//! Pure and sync: [`MetaState::apply`] is the whole state machine, deterministic, so every
//! controller computes the same placement. [`LivenessTable`] holds the registry leader's
//! in-memory liveness rules (heartbeats, session timeouts); only its verdicts (a broker declared
//! dead or alive again) become commands.
//! Main types: [`MetaState`], [`MetaCommand`], [`MetaResponse`], [`MetaError`].

mod liveness;
mod placement;
mod state;
mod topic_name;

pub use liveness::LivenessTable;
pub use placement::place_replicas;
pub use state::{
    BUMPED_PRODUCERS_MAX, Broker, BrokerState, MetaCommand, MetaError, MetaResponse, MetaState,
    PARTITIONS_MAX, PRODUCER_ID_BLOCK_MAX, PartitionAssignment, REPLICATION_FACTOR_MAX, TOPICS_MAX, Topic,
    TopicConfig,
};
pub use topic_name::{TOPIC_NAME_BYTES_MAX, validate_topic_name};
