//! The node's one RocksDB, shared by every Raft group on the node.
//!
//! Column families (keys big-endian, so byte order is numeric order): `log` holds every group's
//! Raft log keyed `(group, index)`; `raft_state` the per-group vote, committed and purged ids;
//! `applied` the per-group state machine state and checkpoints; `offset_index` maps
//! `(group, base_offset)` to the Raft entry holding that batch. All writes go through one
//! [`Writer`](writer) pair of threads that merges concurrent requests of all groups into one
//! `WriteBatch` and one fsync (group commit).
//!
//! This is the only crate that links RocksDB. It knows nothing of Raft: entries and states are
//! opaque bytes; `sluice-raft` gives them meaning. Main types: [`Storage`], [`GroupStorage`],
//! [`Batch`].

mod batch;
mod crash;
mod error;
mod keys;
mod storage;
mod writer;

pub use batch::Batch;
pub use crash::{CRASH_POINTS, CrashPointError, CrashPoints, arm_crash_point, crash_point};
pub use error::StorageError;
pub use keys::{AppliedKey, RaftStateKey};
pub use storage::{GroupStorage, IndexedEntry, OffsetIndexEntry, Storage, StorageOptions, StorageStats};
pub use writer::Durability;
