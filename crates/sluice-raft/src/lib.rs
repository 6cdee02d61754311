//! openraft glue: the only crate that links openraft.
//!
//! [`RocksLogStore`] keeps any group's Raft log in the node's shared RocksDB (`sluice-storage`),
//! in the [`codec`] encoding that is also the wire encoding. [`PartitionStateMachine`] applies a
//! partition's committed batches through the pure `sluice-partition` rules; its Raft log is the
//! message log, and its snapshots are small checkpoints taken at the retention boundary. The
//! [`network`] module multiplexes every group's RPCs over one transport per node, and the
//! [`PeerBatcher`] sends the appends of many groups to one peer as one message.
//! Main types: [`PartitionRaft`], [`PartitionGroup`], [`RocksLogStore`], [`PartitionStateMachine`].

mod batching;
pub mod codec;
mod group;
mod lease;
mod log_store;
mod meta_group;
mod meta_sm;
pub mod network;
mod partition_sm;
mod pb;
mod snapshot_store;
mod time_lookup;
mod types;

pub use batching::{BatchLimits, PeerBatcher};
pub use group::{AppendFailure, GroupError, PartitionGroup, ProposedAppend, RaftSettings, group_config};
pub use log_store::RocksLogStore;
pub use meta_group::{MetaGroup, MetaRaftHandle};
pub use meta_sm::{MetaStateMachine, MetaView};
pub use network::{
    AppendResult, DispatchError, GroupRpc, GroupRpcError, LocalNetwork, LocalTransport, RaftDispatcher,
    Transport, TransportError,
};
pub use partition_sm::{
    CHECKPOINT_INTERVAL_ENTRIES, FetchError, PartitionReader, PartitionStateMachine, Progress,
    RetentionFloor, StoredBatch,
};
pub use time_lookup::offset_for_time;
pub use types::{GroupConfig, MetaRaft, MetaRequest, PartitionRaft, PartitionRequest, PartitionResponse};

/// The Raft handle of a partition group.
pub type PartitionRaftHandle = openraft::Raft<PartitionRaft, PartitionStateMachine>;
