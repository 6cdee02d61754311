//! Any group's Raft log in the node's shared RocksDB.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use sluice_storage::{Durability, GroupStorage, RaftStateKey, StorageError};

use crate::codec;
use crate::types::GroupConfig;

/// How many bytes of entries one read returns at most (openraft asks again for the rest).
const READ_BYTES_MAX: usize = 16 * 1024 * 1024;

pub(crate) fn io_error(e: StorageError) -> io::Error {
    io::Error::other(e)
}

/// A group's Raft log, vote and committed id. Cheap to clone; every clone reads the same store.
pub struct RocksLogStore<C> {
    storage: GroupStorage,
    _config: PhantomData<fn() -> C>,
}

impl<C> Clone for RocksLogStore<C> {
    fn clone(&self) -> Self {
        RocksLogStore { storage: self.storage.clone(), _config: PhantomData }
    }
}

impl<C> Debug for RocksLogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksLogStore").field("group", &self.storage.group()).finish()
    }
}

impl<C: GroupConfig> RocksLogStore<C> {
    pub fn new(storage: GroupStorage) -> Self {
        RocksLogStore { storage, _config: PhantomData }
    }

    fn purged(&self) -> Result<Option<LogIdOf<C>>, io::Error> {
        match self.storage.raft_state(RaftStateKey::Purged).map_err(io_error)? {
            Some(bytes) => Ok(Some(codec::decode_log_id(bytes, "purged log id")?)),
            None => Ok(None),
        }
    }
}

impl<C: GroupConfig> RaftLogReader<C> for RocksLogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        let mut out: Vec<EntryOf<C>> = Vec::new();
        let mut next = start;
        // Loop over byte-bounded reads so a huge range never becomes one huge allocation at once
        // on the RocksDB side; openraft itself bounds the ranges it asks for.
        while next < end {
            let chunk = self.storage.entries(next, end, READ_BYTES_MAX).map_err(io_error)?;
            let Some(&(last, _)) = chunk.last() else { break };
            for (index, bytes) in chunk {
                // The range may begin before the first entry (purged or never written); after
                // the first entry found, the log must be contiguous.
                if out.is_empty() {
                    next = index;
                }
                if index != next {
                    // A hole: openraft never asks across one, so the store is damaged.
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("group {}: log hole at {next} (found {index})", self.storage.group()),
                    ));
                }
                out.push(codec::decode_entry::<C>(bytes)?);
                next += 1;
            }
            debug_assert_eq!(next, last + 1);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        match self.storage.raft_state(RaftStateKey::Vote).map_err(io_error)? {
            Some(bytes) => Ok(Some(codec::decode_vote(bytes)?)),
            None => Ok(None),
        }
    }
}

impl<C: GroupConfig> RaftLogStorage<C> for RocksLogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged_log_id = self.purged()?;
        let last_log_id = match self.storage.log_bounds().map_err(io_error)? {
            Some((_, (_, last))) => Some(codec::entry_log_id(&last)?),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let mut batch = self.storage.batch();
        batch.put_raft_state(RaftStateKey::Vote, codec::encode_vote(vote));
        self.storage.write(batch, Durability::Fsync).await.map_err(io_error)
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // A hint for restart (re-apply up to it); losing the latest value on a crash only means
        // re-applying less before the leader tells us more, so it is not fsynced on its own.
        let mut batch = self.storage.batch();
        match committed {
            Some(id) => batch.put_raft_state(RaftStateKey::Committed, codec::encode_log_id(&id)),
            None => batch.delete_raft_state(RaftStateKey::Committed),
        }
        self.storage.write(batch, Durability::Buffered).await.map_err(io_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        match self.storage.raft_state(RaftStateKey::Committed).map_err(io_error)? {
            Some(bytes) => Ok(Some(codec::decode_log_id(bytes, "committed log id")?)),
            None => Ok(None),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = self.storage.batch();
        for entry in entries {
            batch.put_entry(entry.log_id.index, codec::encode_entry::<C>(&entry));
        }
        if batch.is_empty() {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        // Readable when this returns; acknowledged to Raft only once fsynced.
        self.storage
            .write_then(batch, move |result| callback.io_completed(result.map_err(io_error)))
            .await
            .map_err(io_error)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        let mut batch = self.storage.batch();
        batch.delete_entries_from(from);
        self.storage.write(batch, Durability::Fsync).await.map_err(io_error)
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        // Record the purge point and delete in one atomic batch: no hole can be observed.
        let mut batch = self.storage.batch();
        batch.put_raft_state(RaftStateKey::Purged, codec::encode_log_id(&log_id));
        batch.delete_entries_through(log_id.index);
        self.storage.write(batch, Durability::Fsync).await.map_err(io_error)
    }
}
