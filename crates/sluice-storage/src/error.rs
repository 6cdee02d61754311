use sluice_types::GroupId;

/// Everything that can go wrong in the node's storage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(String),
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
    #[error("group {0} already exists")]
    GroupExists(GroupId),
    #[error("stored value for {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// An earlier write or fsync failed: what is on disk is uncertain, so the store refuses all
    /// further writes (a failed fsync must never be retried as if nothing happened).
    #[error("storage failed earlier and refuses writes: {0}")]
    Poisoned(String),
    #[error("storage is shut down")]
    Closed,
}

impl From<rocksdb::Error> for StorageError {
    fn from(e: rocksdb::Error) -> Self {
        StorageError::Rocks(e.into_string())
    }
}
