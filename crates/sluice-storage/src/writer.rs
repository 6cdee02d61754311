//! Group commit. One writer thread takes the write requests of every group, merges what is queued
//! into one RocksDB `WriteBatch` and writes it without syncing, which makes it readable at once;
//! a syncer thread then makes everything written so far durable with one WAL fsync and only then
//! completes the requests that asked for durability. While the syncer waits on the disk the writer
//! keeps merging, so the more groups write at once, the more each fsync covers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot};

use crate::StorageError;
use crate::batch::Op;
use sluice_types::sync::lock;

/// How many requests the writer merges into one `WriteBatch` at most.
pub(crate) const MERGE_REQUESTS_MAX: usize = 4096;
/// How many payload bytes the writer merges into one `WriteBatch` at most.
pub(crate) const MERGE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Requests waiting for the writer. Submitters wait (asynchronously) when it is full.
pub(crate) const WRITE_QUEUE_REQUESTS_MAX: usize = 8192;
/// Merged writes waiting for the syncer; the writer blocks when it is full.
pub(crate) const SYNC_QUEUE_JOBS_MAX: usize = 256;

/// When a write counts as done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Readable, in RocksDB's WAL buffer, not yet fsynced. Lost on a crash unless a later fsync
    /// covered it; used for state that can be rebuilt from the log.
    Buffered,
    /// Fsynced to the WAL.
    Fsync,
}

pub(crate) type DurableCallback = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

pub(crate) struct Request {
    pub(crate) ops: Vec<Op>,
    pub(crate) bytes: usize,
    pub(crate) written: Option<oneshot::Sender<Result<(), StorageError>>>,
    /// Called once the write is durable; `Some` means the request asked for an fsync.
    pub(crate) on_durable: Option<DurableCallback>,
}

/// Counters of the write path, for benchmarks and metrics.
#[derive(Debug, Default)]
pub(crate) struct WriterStats {
    pub(crate) requests: AtomicU64,
    pub(crate) write_batches: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) bytes: AtomicU64,
}

/// The first failure of a write or fsync. Once set, every later write fails with it.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    first: Mutex<Option<StorageError>>,
    set: tokio::sync::Notify,
}

impl Poison {
    fn first(&self) -> Option<StorageError> {
        lock(&self.first).clone()
    }

    pub(crate) fn check(&self) -> Result<(), StorageError> {
        match self.first() {
            Some(first) => Err(StorageError::Poisoned { first: Box::new(first) }),
            None => Ok(()),
        }
    }

    fn set(&self, error: &StorageError) {
        let mut guard = lock(&self.first);
        if guard.is_none() {
            tracing::error!(%error, "storage write failed; refusing all further writes");
            *guard = Some(error.clone());
            self.set.notify_waiters();
        }
    }

    /// Resolves, with the first failure, once a write or fsync has failed.
    pub(crate) async fn failed(&self) -> StorageError {
        loop {
            // Registered before the check, so a failure between the two still wakes us.
            let notified = self.set.notified();
            if let Some(first) = self.first() {
                return first;
            }
            notified.await;
        }
    }
}

pub(crate) struct SyncJob {
    callbacks: Vec<DurableCallback>,
}

pub(crate) fn spawn(
    db: Arc<DB>,
    stats: Arc<WriterStats>,
    poison: Arc<Poison>,
    skip_wal_fsync: bool,
) -> std::io::Result<(mpsc::Sender<Request>, Vec<std::thread::JoinHandle<()>>)> {
    let (tx, rx) = mpsc::channel(WRITE_QUEUE_REQUESTS_MAX);
    let (sync_tx, sync_rx) = std_mpsc::sync_channel(SYNC_QUEUE_JOBS_MAX);
    let writer = {
        let (db, stats, poison) = (db.clone(), stats.clone(), poison.clone());
        std::thread::Builder::new()
            .name("sluice-writer".into())
            .spawn(move || run_writer(&db, rx, &sync_tx, &stats, &poison))?
    };
    let syncer = std::thread::Builder::new()
        .name("sluice-syncer".into())
        .spawn(move || run_syncer(&db, &sync_rx, &stats, &poison, skip_wal_fsync))?;
    Ok((tx, vec![writer, syncer]))
}

fn run_writer(
    db: &DB,
    mut rx: mpsc::Receiver<Request>,
    sync_tx: &std_mpsc::SyncSender<SyncJob>,
    stats: &WriterStats,
    poison: &Poison,
) {
    let mut no_sync = WriteOptions::default();
    no_sync.set_sync(false);
    let mut requests: Vec<Request> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.bytes;
        requests.push(first);
        while requests.len() < MERGE_REQUESTS_MAX && bytes < MERGE_BYTES_MAX {
            match rx.try_recv() {
                Ok(request) => {
                    bytes += request.bytes;
                    requests.push(request);
                }
                Err(_) => break,
            }
        }

        let result = poison.check().and_then(|()| {
            let mut batch = WriteBatch::default();
            for request in &mut requests {
                for op in request.ops.drain(..) {
                    apply_op(db, &mut batch, op)?;
                }
            }
            db.write_opt(batch, &no_sync)?;
            Ok(())
        });
        if let Err(error) = &result {
            poison.set(error);
        }
        stats.requests.fetch_add(requests.len() as u64, Ordering::Relaxed);
        stats.write_batches.fetch_add(1, Ordering::Relaxed);
        stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);

        let mut callbacks = Vec::new();
        for request in requests.drain(..) {
            if let Some(written) = request.written {
                // The submitter may have gone away; the write stands regardless.
                let _ = written.send(result.clone());
            }
            if let Some(callback) = request.on_durable {
                callbacks.push(callback);
            }
        }
        if callbacks.is_empty() {
            continue;
        }
        if let Err(error) = result {
            for callback in callbacks {
                callback(Err(error.clone()));
            }
        } else if let Err(std_mpsc::SendError(job)) = sync_tx.send(SyncJob { callbacks }) {
            for callback in job.callbacks {
                callback(Err(StorageError::Closed));
            }
        }
    }
}

fn apply_op(db: &DB, batch: &mut WriteBatch, op: Op) -> Result<(), StorageError> {
    let cf_handle = |name: &'static str| db.cf_handle(name).ok_or(StorageError::MissingColumnFamily(name));
    match op {
        Op::Put { cf, key, value } => batch.put_cf(&cf_handle(cf)?, key, value),
        Op::Delete { cf, key } => batch.delete_cf(&cf_handle(cf)?, key),
        Op::DeleteRange { cf, from, to } => batch.delete_range_cf(&cf_handle(cf)?, from, to),
    }
    Ok(())
}

fn run_syncer(
    db: &DB,
    rx: &std_mpsc::Receiver<SyncJob>,
    stats: &WriterStats,
    poison: &Poison,
    skip_wal_fsync: bool,
) {
    while let Ok(first) = rx.recv() {
        let mut callbacks = first.callbacks;
        while let Ok(job) = rx.try_recv() {
            callbacks.extend(job.callbacks);
        }
        // Everything these callbacks wait for was written before their job was queued, so one
        // WAL fsync now covers all of them.
        crate::crash_point("log_before_fsync");
        // `skip_wal_fsync` is the ack-before-fsync sabotage (StorageOptions): never in production.
        let result = poison.check().and_then(|()| db.flush_wal(!skip_wal_fsync).map_err(StorageError::from));
        crate::crash_point("log_after_fsync_before_ack");
        if let Err(error) = &result {
            poison.set(error);
        }
        stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        for callback in callbacks {
            callback(result.clone());
        }
    }
}
