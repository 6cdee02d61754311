//! Any group's Raft log in the node's shared RocksDB.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use sluice_storage::{Durability, GroupStorage, RaftStateKey, StorageError};

use sluice_types::sync::lock;

use crate::codec;
use crate::types::GroupConfig;

/// How many bytes of entries one read returns at most (openraft asks again for the rest).
const READ_BYTES_MAX: usize = 16 * 1024 * 1024;

pub(crate) fn io_error(e: StorageError) -> io::Error {
    io::Error::other(e)
}

/// A group's Raft log, vote and committed id. Cheap to clone; every clone reads the same store.
pub struct RocksLogStore<C: GroupConfig> {
    storage: GroupStorage,
    /// The last committed id saved, which may not be written yet (`save_committed`).
    committed: Arc<Mutex<Option<LogIdOf<C>>>>,
    /// The newest entries, which replication and apply read right after they are appended.
    tail: Arc<Mutex<Tail<C>>>,
}

impl<C: GroupConfig> Clone for RocksLogStore<C> {
    fn clone(&self) -> Self {
        RocksLogStore {
            storage: self.storage.clone(),
            committed: self.committed.clone(),
            tail: self.tail.clone(),
        }
    }
}

/// One group's newest entries, in memory, contiguous and in order, as their encoded bytes.
///
/// openraft reads every entry back twice right after appending it: the replication to each
/// follower, and the state machine's apply. From RocksDB each read builds an iterator and seeks
/// the memtable; that was 9 % of a node's CPU with 48 busy partitions (docs/decisions/0011).
/// The tail answers those reads. It only ever holds entries that are also in the log (they are
/// added before they are written and dropped before they are truncated or purged), and it is
/// bounded per group and across the process, so an idle group keeps little.
struct Tail<C: GroupConfig> {
    entries: VecDeque<(u64, Bytes)>,
    bytes: usize,
    _config: std::marker::PhantomData<fn() -> C>,
}

/// The most bytes of entries one group's tail holds; larger entries are read from RocksDB.
const TAIL_GROUP_BYTES_MAX: usize = 256 * 1024;
/// The most bytes all tails of the process hold together.
const TAIL_PROCESS_BYTES_MAX: usize = 256 * 1024 * 1024;
static TAIL_PROCESS_BYTES: AtomicUsize = AtomicUsize::new(0);

impl<C: GroupConfig> Tail<C> {
    fn new() -> Self {
        Tail { entries: VecDeque::new(), bytes: 0, _config: std::marker::PhantomData }
    }

    fn pop_front(&mut self) {
        if let Some((_, bytes)) = self.entries.pop_front() {
            self.bytes -= bytes.len();
            TAIL_PROCESS_BYTES.fetch_sub(bytes.len(), Ordering::Relaxed);
        }
    }

    fn pop_back(&mut self) {
        if let Some((_, bytes)) = self.entries.pop_back() {
            self.bytes -= bytes.len();
            TAIL_PROCESS_BYTES.fetch_sub(bytes.len(), Ordering::Relaxed);
        }
    }

    fn clear(&mut self) {
        while !self.entries.is_empty() {
            self.pop_front();
        }
    }

    /// Adds the entry at `index`, which must follow the newest one (else the tail starts over).
    fn push(&mut self, index: u64, bytes: Bytes) {
        if self.entries.back().is_some_and(|&(last, _)| last + 1 != index) {
            self.clear();
        }
        let len = bytes.len();
        if len > TAIL_GROUP_BYTES_MAX {
            self.clear();
            return;
        }
        while self.bytes + len > TAIL_GROUP_BYTES_MAX {
            self.pop_front();
        }
        if TAIL_PROCESS_BYTES.fetch_add(len, Ordering::Relaxed) + len > TAIL_PROCESS_BYTES_MAX {
            TAIL_PROCESS_BYTES.fetch_sub(len, Ordering::Relaxed);
            self.clear();
            return;
        }
        self.bytes += len;
        self.entries.push_back((index, bytes));
    }

    /// Drops the entries from `index` on.
    fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|&(last, _)| last >= index) {
            self.pop_back();
        }
    }

    /// Drops the entries through `index`.
    fn purge_through(&mut self, index: u64) {
        while self.entries.front().is_some_and(|&(first, _)| first <= index) {
            self.pop_front();
        }
    }

    /// The entries in `[start, end)` if the tail holds that whole range.
    fn range(&self, start: u64, end: u64) -> Option<Vec<(u64, Bytes)>> {
        let &(first, _) = self.entries.front()?;
        let &(last, _) = self.entries.back()?;
        if start < first || end > last + 1 || start >= end {
            return None;
        }
        let from = usize::try_from(start - first).ok()?;
        let count = usize::try_from(end - start).ok()?;
        Some(self.entries.iter().skip(from).take(count).cloned().collect())
    }
}

impl<C: GroupConfig> Drop for Tail<C> {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<C: GroupConfig> Debug for RocksLogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksLogStore").field("group", &self.storage.group()).finish_non_exhaustive()
    }
}

impl<C: GroupConfig> RocksLogStore<C> {
    pub fn new(storage: GroupStorage) -> Self {
        RocksLogStore {
            storage,
            committed: Arc::new(Mutex::new(None)),
            tail: Arc::new(Mutex::new(Tail::new())),
        }
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
        if let Some(cached) = lock(&self.tail).range(start, end) {
            return cached.into_iter().map(|(_, bytes)| Ok(codec::decode_entry::<C>(bytes)?)).collect();
        }
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
        // re-applying less before the leader tells us more, so it is not fsynced on its own, and
        // Raft does not wait for it to be written: openraft calls this on every commit, and a
        // round trip to the writer thread each time was one more wake-up per entry on every node
        // (docs/decisions/0011). A full writer queue skips the hint; a later commit writes it.
        let mut batch = self.storage.batch();
        match committed {
            Some(id) => batch.put_raft_state(RaftStateKey::Committed, codec::encode_log_id(&id)),
            None => batch.delete_raft_state(RaftStateKey::Committed),
        }
        *lock(&self.committed) = committed;
        match self.storage.write_behind(batch) {
            Ok(()) | Err(StorageError::QueueFull) => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        if let Some(saved) = *lock(&self.committed) {
            return Ok(Some(saved));
        }
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
        {
            // Into the tail before the write: a read sees them no later than in RocksDB.
            let mut tail = lock(&self.tail);
            for entry in entries {
                let bytes = codec::encode_entry::<C>(&entry);
                tail.push(entry.log_id.index, bytes.clone());
                batch.put_entry(entry.log_id.index, bytes);
            }
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
        lock(&self.tail).truncate_from(from);
        let mut batch = self.storage.batch();
        batch.delete_entries_from(from);
        self.storage.write(batch, Durability::Fsync).await.map_err(io_error)
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        // Record the purge point and delete in one atomic batch: no hole can be observed.
        lock(&self.tail).purge_through(log_id.index);
        let mut batch = self.storage.batch();
        batch.put_raft_state(RaftStateKey::Purged, codec::encode_log_id(&log_id));
        batch.delete_entries_through(log_id.index);
        self.storage.write(batch, Durability::Fsync).await.map_err(io_error)
    }
}
