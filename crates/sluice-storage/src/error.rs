use std::path::PathBuf;
use std::sync::Arc;

use sluice_types::GroupId;

/// Everything that can go wrong in the node's storage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: Arc<std::io::Error> },
    #[error("cannot start the writer threads: {0}")]
    SpawnThreads(Arc<std::io::Error>),
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
    #[error("group {0} already exists")]
    GroupExists(GroupId),
    #[error("stored value for {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// An earlier write or fsync failed: what is on disk is uncertain, so the store refuses all
    /// further writes (a failed fsync must never be retried as if nothing happened).
    #[error("storage failed earlier and refuses writes: {first}")]
    Poisoned { first: Box<StorageError> },
    #[error("storage is shut down")]
    Closed,
    /// A write-behind found the writer's queue full and was not queued.
    #[error("the writer's queue is full")]
    QueueFull,
}
