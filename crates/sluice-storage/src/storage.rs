//! Opening the node's RocksDB, the group registry, and per-group reads and writes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use rocksdb::{
    ColumnFamilyDescriptor, DB, DBCompressionType, DBRecoveryMode, Direction, IteratorMode, Options,
};
use sluice_types::{GroupId, Offset};
use tokio::sync::{mpsc, oneshot};

use crate::StorageError;
use crate::batch::{Batch, Op};
use crate::keys::{
    self, AppliedKey, CF_APPLIED, CF_GROUPS, CF_LOG, CF_OFFSET_INDEX, CF_RAFT_STATE, COLUMN_FAMILIES,
    RaftStateKey,
};
use crate::writer::{self, Durability, DurableCallback, Poison, Request, WriterStats};
use sluice_types::sync::{lock, read, write};

/// Tunables of the node's RocksDB.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// Memtable size per column family.
    pub write_buffer_bytes: usize,
    /// Block cache shared by all column families.
    pub block_cache_bytes: usize,
    /// Memtable flushes and compactions write with `O_DIRECT`, past the page cache, where the
    /// filesystem supports it (docs/decisions/0007). The WAL stays buffered and fsynced.
    pub direct_io_flush: bool,
    /// A deliberate bug for the fault tests (the `ack-before-fsync` sabotage): writes asked to
    /// be durable are acknowledged once RocksDB has handed the WAL to the OS, never fsynced.
    pub skip_wal_fsync: bool,
    /// A deliberate bug for the fault tests (the `tolerate-wal-damage` sabotage): the WAL is
    /// replayed in RocksDB's `PointInTime` mode, which stops at the first damaged record and
    /// opens with what came before it (decision 0014 says why that is wrong).
    pub tolerate_wal_damage: bool,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            write_buffer_bytes: 32 << 20,
            block_cache_bytes: 128 << 20,
            direct_io_flush: true,
            skip_wal_fsync: false,
            tolerate_wal_damage: false,
        }
    }
}

/// Whether files in `dir` can be opened with `O_DIRECT` (tmpfs, for one, refuses it).
fn supports_direct_io(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(".direct-io-probe");
    let supported = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits().cast_signed())
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    supported
}

/// Totals of the write path since open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Write requests submitted by groups.
    pub requests: u64,
    /// RocksDB `WriteBatch`es they were merged into.
    pub write_batches: u64,
    /// WAL fsyncs that made them durable.
    pub fsyncs: u64,
    pub bytes: u64,
}

/// A log entry and its Raft index.
pub type IndexedEntry = (u64, Bytes);

/// Where a batch lives: Raft entry `index`, batch number `position` inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetIndexEntry {
    pub index: u64,
    pub position: u32,
    pub record_count: u32,
}

impl OffsetIndexEntry {
    pub(crate) fn encode(self) -> Bytes {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.index.to_be_bytes());
        v.extend_from_slice(&self.position.to_be_bytes());
        v.extend_from_slice(&self.record_count.to_be_bytes());
        Bytes::from(v)
    }

    fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        if bytes.len() != 16 {
            return Err(StorageError::Corrupt {
                what: "offset index entry",
                detail: format!("{} bytes", bytes.len()),
            });
        }
        let (index, rest) = bytes.split_at(8);
        let (position, count) = rest.split_at(4);
        Ok(OffsetIndexEntry {
            index: keys::read_u64(index, "offset index entry")?,
            position: u32::from_be_bytes(position.try_into().unwrap_or_default()),
            record_count: u32::from_be_bytes(count.try_into().unwrap_or_default()),
        })
    }
}

struct Inner {
    db: Arc<DB>,
    path: PathBuf,
    groups: RwLock<BTreeSet<GroupId>>,
    /// `None` once shut down.
    tx: RwLock<Option<mpsc::Sender<Request>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    stats: Arc<WriterStats>,
    poison: Arc<Poison>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close_and_join();
    }
}

impl Inner {
    fn close_and_join(&self) {
        write(&self.tx).take();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// The node's storage. Cheap to clone; the writer threads stop when the last clone is dropped or
/// [`Storage::shutdown`] is called.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens (creating if needed) the RocksDB at `path`. Recovery replays the whole WAL: a write
    /// torn by a crash at its tail is dropped, never served; damage before the tail is a
    /// `Corruption` error, and the node does not start.
    pub fn open(path: impl AsRef<Path>, options: &StorageOptions) -> Result<Storage, StorageError> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)
            .map_err(|e| StorageError::CreateDir { path: path.clone(), source: Arc::new(e) })?;

        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        // A torn tail (the last, unsynced write cut short) is dropped; damage before it fails the
        // open rather than silently dropping every later record, votes included (decision 0014).
        db_options.set_wal_recovery_mode(if options.tolerate_wal_damage {
            DBRecoveryMode::PointInTime
        } else {
            DBRecoveryMode::TolerateCorruptedTailRecords
        });
        db_options.set_max_background_jobs(2);
        db_options.set_bytes_per_sync(1 << 20);
        db_options.set_max_total_wal_size(256 << 20);
        // Flushes and compactions write large sequential files that nobody reads back soon;
        // through the page cache they compete with the fsynced WAL for the kernel's writeback
        // (measured: sustained 1 KiB appends 84k/s buffered, 122k/s direct; docs/BENCHMARKS.md).
        let direct_io = options.direct_io_flush && supports_direct_io(&path);
        db_options.set_use_direct_io_for_flush_and_compaction(direct_io);
        let cache = rocksdb::Cache::new_lru_cache(options.block_cache_bytes)?;

        let descriptors = COLUMN_FAMILIES.iter().map(|&name| {
            let mut cf = Options::default();
            cf.set_write_buffer_size(options.write_buffer_bytes);
            // Bounds the memtables a column family holds (the node's memory budget counts on it).
            cf.set_max_write_buffer_number(2);
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            cf.set_block_based_table_factory(&table);
            if name == CF_LOG {
                // Producers compress batches themselves; compressing again costs CPU for little.
                cf.set_compression_type(DBCompressionType::None);
            }
            ColumnFamilyDescriptor::new(name, cf)
        });
        let db = Arc::new(DB::open_cf_descriptors(&db_options, &path, descriptors)?);

        let mut groups = BTreeSet::new();
        {
            let cf = cf(&db, CF_GROUPS)?;
            for item in db.iterator_cf(cf, IteratorMode::Start) {
                let (key, _) = item?;
                groups.insert(GroupId(keys::read_u64(&key, "group registry key")?));
            }
        }

        let stats = Arc::new(WriterStats::default());
        let poison = Arc::new(Poison::default());
        let (tx, threads) = writer::spawn(db.clone(), stats.clone(), poison.clone(), options.skip_wal_fsync)
            .map_err(|e| StorageError::SpawnThreads(Arc::new(e)))?;
        tracing::info!(path = %path.display(), groups = groups.len(), direct_io, "storage opened");
        Ok(Storage {
            inner: Arc::new(Inner {
                db,
                path,
                groups: RwLock::new(groups),
                tx: RwLock::new(Some(tx)),
                threads: Mutex::new(threads),
                stats,
                poison,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stops the writer threads after they finished what was queued. Later writes fail with
    /// [`StorageError::Closed`]; reads still work until the last clone is dropped.
    pub fn shutdown(&self) {
        self.inner.close_and_join();
    }

    pub fn stats(&self) -> StorageStats {
        let s = &self.inner.stats;
        StorageStats {
            requests: s.requests.load(Ordering::Relaxed),
            write_batches: s.write_batches.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
        }
    }

    /// The groups this node stores.
    pub fn groups(&self) -> Vec<GroupId> {
        read(&self.inner.groups).iter().copied().collect()
    }

    /// Registers a new group, durably.
    pub async fn create_group(&self, group: GroupId) -> Result<GroupStorage, StorageError> {
        if read(&self.inner.groups).contains(&group) {
            return Err(StorageError::GroupExists(group));
        }
        let ops = vec![Op::Put { cf: CF_GROUPS, key: group.to_be_bytes().to_vec(), value: Bytes::new() }];
        self.submit_wait(ops, 8, Durability::Fsync).await?;
        write(&self.inner.groups).insert(group);
        Ok(GroupStorage { storage: self.clone(), group })
    }

    /// The storage of a group, registering it first if this node has never stored it.
    pub async fn open_or_create_group(&self, group: GroupId) -> Result<GroupStorage, StorageError> {
        match self.group(group) {
            Err(StorageError::UnknownGroup(_)) => self.create_group(group).await,
            found => found,
        }
    }

    /// The storage of a group that exists.
    pub fn group(&self, group: GroupId) -> Result<GroupStorage, StorageError> {
        if read(&self.inner.groups).contains(&group) {
            Ok(GroupStorage { storage: self.clone(), group })
        } else {
            Err(StorageError::UnknownGroup(group))
        }
    }

    /// Deletes a group and everything stored for it, durably.
    pub async fn delete_group(&self, group: GroupId) -> Result<(), StorageError> {
        if !read(&self.inner.groups).contains(&group) {
            return Err(StorageError::UnknownGroup(group));
        }
        let mut ops: Vec<Op> = [CF_LOG, CF_RAFT_STATE, CF_APPLIED, CF_OFFSET_INDEX]
            .into_iter()
            .map(|cf| Op::DeleteRange {
                cf,
                from: keys::group_prefix(group).to_vec(),
                to: keys::group_end(group).to_vec(),
            })
            .collect();
        ops.push(Op::Delete { cf: CF_GROUPS, key: group.to_be_bytes().to_vec() });
        write(&self.inner.groups).remove(&group);
        self.submit_wait(ops, 0, Durability::Fsync).await
    }

    /// Resolves, with the reason, once a write or fsync has failed: from then on every write
    /// fails (a failed fsync leaves the page cache's state unknown, so nothing is retried).
    pub async fn failed(&self) -> StorageError {
        self.inner.poison.failed().await
    }

    fn sender(&self) -> Result<mpsc::Sender<Request>, StorageError> {
        self.inner.poison.check()?;
        read(&self.inner.tx).clone().ok_or(StorageError::Closed)
    }

    async fn submit(
        &self,
        ops: Vec<Op>,
        bytes: usize,
        on_durable: Option<DurableCallback>,
    ) -> Result<(), StorageError> {
        let (written_tx, written_rx) = oneshot::channel();
        let request = Request { ops, bytes, written: Some(written_tx), on_durable };
        self.sender()?.send(request).await.map_err(|_| StorageError::Closed)?;
        written_rx.await.map_err(|_| StorageError::Closed)?
    }

    async fn submit_wait(
        &self,
        ops: Vec<Op>,
        bytes: usize,
        durability: Durability,
    ) -> Result<(), StorageError> {
        match durability {
            Durability::Buffered => self.submit(ops, bytes, None).await,
            Durability::Fsync => {
                let (durable_tx, durable_rx) = oneshot::channel();
                let callback: DurableCallback = Box::new(move |result| {
                    let _ = durable_tx.send(result);
                });
                self.submit(ops, bytes, Some(callback)).await?;
                durable_rx.await.map_err(|_| StorageError::Closed)?
            }
        }
    }
}

fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a rocksdb::ColumnFamily, StorageError> {
    db.cf_handle(name).ok_or(StorageError::MissingColumnFamily(name))
}

/// One group's view of the node's storage.
#[derive(Clone)]
pub struct GroupStorage {
    storage: Storage,
    group: GroupId,
}

impl std::fmt::Debug for GroupStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupStorage").field("group", &self.group).finish_non_exhaustive()
    }
}

impl GroupStorage {
    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// An empty batch of writes for this group.
    pub fn batch(&self) -> Batch {
        Batch::new(self.group)
    }

    /// Writes `batch` and returns once it is readable and as durable as asked.
    pub async fn write(&self, batch: Batch, durability: Durability) -> Result<(), StorageError> {
        self.check_batch(&batch)?;
        let bytes = batch.bytes;
        self.storage.submit_wait(batch.ops, bytes, durability).await
    }

    /// Queues `batch` for the writer and returns at once, without waiting for it to be written:
    /// for hints that nothing waits for (the committed index). Writes of one group still land in
    /// the order they were queued. A full queue refuses it with [`StorageError::QueueFull`].
    pub fn write_behind(&self, batch: Batch) -> Result<(), StorageError> {
        self.check_batch(&batch)?;
        let request = Request { bytes: batch.bytes, ops: batch.ops, written: None, on_durable: None };
        self.storage.sender()?.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StorageError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => StorageError::Closed,
        })
    }

    /// Writes `batch`, returns once it is readable, and calls `on_durable` from the syncer thread
    /// once it is fsynced (or with the error that prevented it). This is Raft's log append: the
    /// entries must be readable when `append` returns, and acknowledged only when durable.
    pub async fn write_then(
        &self,
        batch: Batch,
        on_durable: impl FnOnce(Result<(), StorageError>) + Send + 'static,
    ) -> Result<(), StorageError> {
        self.check_batch(&batch)?;
        let bytes = batch.bytes;
        self.storage.submit(batch.ops, bytes, Some(Box::new(on_durable))).await
    }

    fn check_batch(&self, batch: &Batch) -> Result<(), StorageError> {
        assert_eq!(batch.group(), self.group, "a batch is written through the group that made it");
        if read(&self.storage.inner.groups).contains(&self.group) {
            Ok(())
        } else {
            Err(StorageError::UnknownGroup(self.group))
        }
    }

    fn db(&self) -> &DB {
        &self.storage.inner.db
    }

    /// The log entry at `index`.
    pub fn entry(&self, index: u64) -> Result<Option<Bytes>, StorageError> {
        let db = self.db();
        Ok(db.get_cf(cf(db, CF_LOG)?, keys::group_index(self.group, index))?.map(Bytes::from))
    }

    /// Log entries with indexes in `[start, end)`, in order, stopping early once `bytes_max` is
    /// reached (at least one entry is returned if any exists).
    pub fn entries(&self, start: u64, end: u64, bytes_max: usize) -> Result<Vec<IndexedEntry>, StorageError> {
        let db = self.db();
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let mut read = rocksdb::ReadOptions::default();
        read.set_iterate_upper_bound(keys::group_index(self.group, end).to_vec());
        let mut it = db.raw_iterator_cf_opt(cf(db, CF_LOG)?, read);
        it.seek(keys::group_index(self.group, start));
        let mut bytes = 0;
        while it.valid() {
            let (Some(key), Some(value)) = (it.key(), it.value()) else { break };
            let (_, index) = keys::split_group_index(key, "log key")?;
            if !out.is_empty() && bytes + value.len() > bytes_max {
                break;
            }
            bytes += value.len();
            out.push((index, Bytes::copy_from_slice(value)));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The first and last log entries present, if any.
    pub fn log_bounds(&self) -> Result<Option<(IndexedEntry, IndexedEntry)>, StorageError> {
        let first = self.edge_entry(Direction::Forward)?;
        let last = self.edge_entry(Direction::Reverse)?;
        Ok(first.zip(last))
    }

    fn edge_entry(&self, direction: Direction) -> Result<Option<IndexedEntry>, StorageError> {
        let db = self.db();
        let mut read = rocksdb::ReadOptions::default();
        read.set_iterate_lower_bound(keys::group_prefix(self.group).to_vec());
        read.set_iterate_upper_bound(keys::group_end(self.group).to_vec());
        let mut it = db.raw_iterator_cf_opt(cf(db, CF_LOG)?, read);
        match direction {
            Direction::Forward => it.seek_to_first(),
            Direction::Reverse => it.seek_to_last(),
        }
        let found = match (it.key(), it.value()) {
            (Some(key), Some(value)) => {
                Some((keys::split_group_index(key, "log key")?.1, Bytes::copy_from_slice(value)))
            }
            _ => None,
        };
        it.status()?;
        Ok(found)
    }

    pub fn raft_state(&self, key: RaftStateKey) -> Result<Option<Bytes>, StorageError> {
        let db = self.db();
        Ok(db.get_cf(cf(db, CF_RAFT_STATE)?, keys::raft_state(self.group, key))?.map(Bytes::from))
    }

    pub fn applied(&self, key: AppliedKey) -> Result<Option<Bytes>, StorageError> {
        let db = self.db();
        Ok(db.get_cf(cf(db, CF_APPLIED)?, keys::applied(self.group, key))?.map(Bytes::from))
    }

    /// The indexes of the stored checkpoints, ascending.
    pub fn checkpoint_indexes(&self) -> Result<Vec<u64>, StorageError> {
        let db = self.db();
        let prefix = keys::checkpoint_prefix(self.group);
        let mut out = Vec::new();
        let mut it = db.raw_iterator_cf(cf(db, CF_APPLIED)?);
        it.seek(prefix);
        while let Some(key) = it.key() {
            if !key.starts_with(&prefix) {
                break;
            }
            out.push(keys::read_u64(&key[prefix.len()..], "checkpoint key")?);
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The offset index row of the batch holding `offset`: the last row whose base offset is at
    /// most `offset`.
    pub fn offset_index_floor(
        &self,
        offset: Offset,
    ) -> Result<Option<(Offset, OffsetIndexEntry)>, StorageError> {
        let db = self.db();
        let mut read = rocksdb::ReadOptions::default();
        read.set_iterate_lower_bound(keys::group_prefix(self.group).to_vec());
        let mut it = db.raw_iterator_cf_opt(cf(db, CF_OFFSET_INDEX)?, read);
        it.seek_for_prev(keys::group_index(self.group, offset.0));
        let found = match (it.key(), it.value()) {
            (Some(key), Some(value)) => {
                let (_, base) = keys::split_group_index(key, "offset index key")?;
                Some((Offset(base), OffsetIndexEntry::decode(value)?))
            }
            _ => None,
        };
        it.status()?;
        Ok(found)
    }

    /// Offset index rows with base offsets at `from` or later, ascending, at most `limit`.
    pub fn offset_index_from(
        &self,
        from: Offset,
        limit: usize,
    ) -> Result<Vec<(Offset, OffsetIndexEntry)>, StorageError> {
        let db = self.db();
        let mut read = rocksdb::ReadOptions::default();
        read.set_iterate_upper_bound(keys::group_end(self.group).to_vec());
        let mut it = db.raw_iterator_cf_opt(cf(db, CF_OFFSET_INDEX)?, read);
        it.seek(keys::group_index(self.group, from.0));
        let mut out = Vec::new();
        while out.len() < limit {
            let (Some(key), Some(value)) = (it.key(), it.value()) else { break };
            let (_, base) = keys::split_group_index(key, "offset index key")?;
            out.push((Offset(base), OffsetIndexEntry::decode(value)?));
            it.next();
        }
        it.status()?;
        Ok(out)
    }
}
