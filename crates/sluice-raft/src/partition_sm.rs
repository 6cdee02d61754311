//! The partition state machine: applies committed batches, keeps the offset index, takes
//! checkpoints, and serves committed batches to readers.
//!
//! The Raft log is the message log: applying an entry writes only a small offset-index row per
//! batch; the records stay where Raft stored them. The state itself (`sluice_partition`) is
//! persisted as a checkpoint every [`CHECKPOINT_INTERVAL_ENTRIES`]; after a restart openraft
//! re-applies the committed entries after the newest checkpoint, which rewrites the same rows.
//!
//! Snapshots follow retention, not the apply position (DESIGN.md §2.2): a snapshot is the
//! checkpoint at the retention boundary, so a follower that installs it still receives every
//! retained entry after it from the leader's log. A snapshot at the last applied entry would let
//! the follower skip retained records, which would be gone after a failover.

use std::collections::BTreeSet;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use sluice_partition::{AppendError, BatchOutcome, PartitionState, Sabotage, SequenceRule};
use sluice_storage::{AppliedKey, Durability, GroupStorage, OffsetIndexEntry, StorageError};
use sluice_types::{BatchHeader, Offset};
use tokio::sync::watch;

use crate::log_store::io_error;
use crate::types::{PartitionCommand, PartitionRaft, PartitionResponse};
use crate::{codec, snapshot_store};
use sluice_types::sync::lock;

type C = PartitionRaft;

/// By default a checkpoint of the state is persisted at least every this many applied entries.
pub const CHECKPOINT_INTERVAL_ENTRIES: u64 = 1024;
/// Checkpoints kept at most; beyond it the most closely spaced one is dropped, so they stay
/// spread over the retained log.
pub const CHECKPOINTS_MAX: usize = 64;
/// Offset-index rows read per storage call while serving a fetch.
const FETCH_INDEX_ROWS_PER_READ: usize = 64;

/// Which applied entries retention allows to purge. Set by the retention policy of the topic
/// (time or size, evaluated elsewhere); the snapshot is built at this boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionFloor {
    /// Keep everything (the default).
    Nothing,
    /// Entries at this Raft index or below may be purged.
    Through(u64),
    /// Every applied entry may be purged.
    Everything,
}

/// The partition's state as of one applied entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    partition: PartitionState,
}

/// The checkpoint encoding written: `version u8 | has last applied u8 | log id (24 bytes, if
/// any) | membership length u32 | membership | partition state`, the membership as in membership
/// entries (openraft's type, JSON: a few dozen bytes, changed rarely) and the partition state in
/// its binary encoding, which is what grows. Checkpoints written before it are JSON objects.
const CHECKPOINT_FORMAT_VERSION: u8 = 1;

fn invalid_checkpoint(detail: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("checkpoint: {}", detail.into()))
}

impl Checkpoint {
    fn index(&self) -> u64 {
        self.last_applied.map_or(0, |id| id.index)
    }

    fn to_bytes(&self) -> Bytes {
        use bytes::BufMut as _;
        let membership = serde_json::to_vec(&self.membership).expect("membership is always serializable");
        let partition = self.partition.to_bytes();
        let mut out = bytes::BytesMut::with_capacity(2 + 24 + 4 + membership.len() + partition.len());
        out.put_u8(CHECKPOINT_FORMAT_VERSION);
        match &self.last_applied {
            Some(id) => {
                out.put_u8(1);
                codec::put_log_id(&mut out, id);
            }
            None => out.put_u8(0),
        }
        out.put_u32(u32::try_from(membership.len()).expect("a membership is small"));
        out.put_slice(&membership);
        out.put_slice(&partition);
        out.freeze()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, io::Error> {
        use bytes::Buf as _;
        if bytes.first() == Some(&b'{') {
            return serde_json::from_slice(bytes).map_err(|e| invalid_checkpoint(e.to_string()));
        }
        let mut rest = Bytes::copy_from_slice(bytes);
        if rest.remaining() < 2 {
            return Err(invalid_checkpoint("truncated header"));
        }
        let version = rest.get_u8();
        if version != CHECKPOINT_FORMAT_VERSION {
            return Err(invalid_checkpoint(format!("format version {version}")));
        }
        let last_applied = match rest.get_u8() {
            0 => None,
            1 => Some(codec::get_log_id(&mut rest, "checkpoint")?),
            other => return Err(invalid_checkpoint(format!("last-applied flag {other}"))),
        };
        if rest.remaining() < 4 {
            return Err(invalid_checkpoint("truncated membership length"));
        }
        let len = rest.get_u32() as usize;
        if rest.remaining() < len {
            return Err(invalid_checkpoint("truncated membership"));
        }
        let membership =
            serde_json::from_slice(&rest.split_to(len)).map_err(|e| invalid_checkpoint(e.to_string()))?;
        let partition = PartitionState::from_bytes(&rest).map_err(|e| invalid_checkpoint(e.to_string()))?;
        Ok(Checkpoint { last_applied, membership, partition })
    }
}

/// Where a partition's committed data begins and ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The first retained offset.
    pub log_start: Offset,
    /// One past the last committed offset.
    pub high_watermark: Offset,
}

/// A batch as a consumer receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: Offset,
    /// How many records it holds (from the offset index: counting needs no parse of the batch).
    pub record_count: u32,
    /// The producer's bytes, unchanged.
    pub bytes: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("offset {requested} is outside [{log_start}, {high_watermark}]")]
    OffsetOutOfRange { requested: Offset, log_start: Offset, high_watermark: Offset },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("partition data is inconsistent: {0}")]
    Corrupt(String),
}

/// Reads committed batches of one partition replica. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PartitionReader {
    storage: GroupStorage,
    progress: watch::Receiver<Progress>,
    /// Deliberate bugs for the fault tests; none in production.
    sabotage: Sabotage,
}

impl PartitionReader {
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// A receiver that changes whenever the high watermark or log start moves: what long polls
    /// wait on.
    pub fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Committed batches from the one holding `from` on, whole, until `max_bytes` is reached
    /// (at least one batch is returned when any is committed at `from`). The first batch may
    /// start before `from`: batches are served as stored.
    pub fn read(&self, from: Offset, max_bytes: usize) -> Result<Vec<StoredBatch>, FetchError> {
        let progress = self.progress();
        if self.sabotage.serve_past_high_watermark && from >= progress.high_watermark {
            return self.read_past_high_watermark(from, progress);
        }
        if from < progress.log_start || from > progress.high_watermark {
            return Err(FetchError::OffsetOutOfRange {
                requested: from,
                log_start: progress.log_start,
                high_watermark: progress.high_watermark,
            });
        }
        let mut out = Vec::new();
        if from == progress.high_watermark {
            return Ok(out);
        }
        let Some((first_base, first_row)) = self.storage.offset_index_floor(from)? else {
            return Err(FetchError::Corrupt(format!("no offset index row at or before {from}")));
        };
        if first_base.plus(u64::from(first_row.record_count)) <= from {
            return Err(FetchError::Corrupt(format!("offset {from} falls in no batch")));
        }
        let mut rows = vec![(first_base, first_row)];
        let mut bytes = 0usize;
        let mut cached: Option<(u64, Vec<Bytes>)> = None;
        let mut next_base = first_base;
        'outer: loop {
            for (base, row) in rows.drain(..) {
                if base >= progress.high_watermark || (!out.is_empty() && bytes >= max_bytes) {
                    break 'outer;
                }
                if base != next_base {
                    return Err(FetchError::Corrupt(format!(
                        "offset index gap: expected {next_base}, found {base}"
                    )));
                }
                if cached.as_ref().is_none_or(|(index, _)| *index != row.index) {
                    let entry = self.storage.entry(row.index)?.ok_or_else(|| {
                        FetchError::Corrupt(format!("entry {} of offset {base} is gone", row.index))
                    })?;
                    let batches = codec::partition_entry_batches(entry)
                        .map_err(|e| FetchError::Corrupt(e.to_string()))?;
                    cached = Some((row.index, batches));
                }
                let batch = cached
                    .as_ref()
                    .and_then(|(_, batches)| batches.get(row.position as usize))
                    .ok_or_else(|| {
                        FetchError::Corrupt(format!("entry {} has no batch {}", row.index, row.position))
                    })?
                    .clone();
                next_base = base.plus(u64::from(row.record_count));
                let skipped = Offset(Sabotage::SKIPPED_OFFSET);
                if self.sabotage.skip_fetch_batch && base <= skipped && skipped < next_base {
                    continue;
                }
                bytes += batch.len();
                out.push(StoredBatch { base_offset: base, record_count: row.record_count, bytes: batch });
            }
            rows = self.storage.offset_index_from(next_base, FETCH_INDEX_ROWS_PER_READ)?;
            if rows.is_empty() {
                break;
            }
        }
        Ok(out)
    }
}

impl PartitionReader {
    /// The `serve-past-hw` sabotage: batches of the log entries after the last applied batch,
    /// committed or not, numbered on from the high watermark as if they were committed.
    fn read_past_high_watermark(
        &self,
        from: Offset,
        progress: Progress,
    ) -> Result<Vec<StoredBatch>, FetchError> {
        const ENTRIES_MAX: u64 = 64;
        let first = match progress.high_watermark.0.checked_sub(1) {
            Some(last) => self.storage.offset_index_floor(Offset(last))?.map_or(1, |(_, row)| row.index + 1),
            None => 1,
        };
        let mut base = progress.high_watermark;
        let mut out = Vec::new();
        for index in first..first + ENTRIES_MAX {
            let Some(entry) = self.storage.entry(index)? else { break };
            for batch in
                codec::partition_entry_batches(entry).map_err(|e| FetchError::Corrupt(e.to_string()))?
            {
                let count =
                    BatchHeader::read(&batch).map_err(|e| FetchError::Corrupt(e.to_string()))?.record_count;
                let next = base.plus(u64::from(count));
                if next > from {
                    out.push(StoredBatch { base_offset: base, record_count: count, bytes: batch });
                }
                base = next;
            }
        }
        Ok(out)
    }
}

/// The state machine of one partition replica.
pub struct PartitionStateMachine {
    storage: GroupStorage,
    current: Checkpoint,
    /// Indexes of the persisted checkpoints.
    checkpoints: BTreeSet<u64>,
    /// The index of the snapshot currently offered (0 when none).
    snapshot_index: u64,
    retention: Arc<Mutex<RetentionFloor>>,
    progress: watch::Sender<Progress>,
    checkpoint_interval_entries: u64,
    /// Deliberate bugs for the fault tests; none in production.
    sabotage: Sabotage,
}

impl std::fmt::Debug for PartitionStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionStateMachine")
            .field("group", &self.storage.group())
            .field("last_applied", &self.current.last_applied)
            .field("next_offset", &self.current.partition.next_offset())
            .finish_non_exhaustive()
    }
}

impl PartitionStateMachine {
    /// Opens the state machine from its newest checkpoint (or empty). A checkpoint is taken
    /// every `checkpoint_interval_entries` applied entries: the granularity of retention.
    pub fn open(
        storage: GroupStorage,
        checkpoint_interval_entries: u64,
        sabotage: Sabotage,
    ) -> Result<Self, io::Error> {
        assert!(checkpoint_interval_entries > 0, "checkpoint interval must be positive");
        let checkpoints: BTreeSet<u64> =
            storage.checkpoint_indexes().map_err(io_error)?.into_iter().collect();
        let current = match checkpoints.last() {
            Some(&index) => {
                let bytes =
                    storage.applied(AppliedKey::Checkpoint(index)).map_err(io_error)?.ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, format!("checkpoint {index} vanished"))
                    })?;
                Checkpoint::from_bytes(&bytes)?
            }
            None => Checkpoint::default(),
        };
        let snapshot_index = match storage.applied(AppliedKey::Snapshot).map_err(io_error)? {
            Some(bytes) => snapshot_store::decode::<C>(bytes)?.0.last_log_id.map_or(0, |id| id.index),
            None => 0,
        };
        let (progress, _) = watch::channel(Progress {
            log_start: current.partition.log_start_offset(),
            high_watermark: current.partition.next_offset(),
        });
        Ok(PartitionStateMachine {
            storage,
            current,
            checkpoints,
            snapshot_index,
            retention: Arc::new(Mutex::new(RetentionFloor::Nothing)),
            progress,
            checkpoint_interval_entries,
            sabotage,
        })
    }

    pub fn reader(&self) -> PartitionReader {
        PartitionReader {
            storage: self.storage.clone(),
            progress: self.progress.subscribe(),
            sabotage: self.sabotage,
        }
    }

    /// The handle through which retention moves the purge boundary.
    pub fn retention(&self) -> Arc<Mutex<RetentionFloor>> {
        self.retention.clone()
    }

    fn publish_progress(&self) {
        let progress = Progress {
            log_start: self.current.partition.log_start_offset(),
            high_watermark: self.current.partition.next_offset(),
        };
        self.progress.send_if_modified(|p| {
            let changed = *p != progress;
            *p = progress;
            changed
        });
    }

    fn put_checkpoint(&mut self, batch: &mut sluice_storage::Batch) {
        let index = self.current.index();
        batch.put_applied(AppliedKey::Checkpoint(index), self.current.to_bytes());
        self.checkpoints.insert(index);
        while self.checkpoints.len() > CHECKPOINTS_MAX {
            // Drop the checkpoint closest to its predecessor, never the first or the newest.
            let list: Vec<u64> = self.checkpoints.iter().copied().collect();
            let victim = list
                .windows(2)
                .skip(1)
                .take(list.len().saturating_sub(2))
                .min_by_key(|w| w[1] - w[0])
                .map(|w| w[1]);
            let Some(victim) = victim else { break };
            self.checkpoints.remove(&victim);
            batch.delete_applied(AppliedKey::Checkpoint(victim));
        }
    }

    /// Applies an append: each readable batch gets its outcome and, if appended, its offset-index
    /// row in `write`.
    fn apply_append(
        &mut self,
        log_id: LogIdOf<C>,
        batches: &[Bytes],
        rule: SequenceRule,
        write: &mut sluice_storage::Batch,
    ) -> Vec<BatchOutcome> {
        let mut outcomes = Vec::with_capacity(batches.len());
        for (position, bytes) in batches.iter().enumerate() {
            let outcome = match BatchHeader::read(bytes) {
                Ok(header) => {
                    let outcome = self.current.partition.apply_batch_with(&header, rule, self.sabotage);
                    if let BatchOutcome::Appended { base_offset } = outcome {
                        write.put_offset_index(
                            base_offset,
                            OffsetIndexEntry {
                                index: log_id.index,
                                position: u32::try_from(position).expect("entry batch count is bounded"),
                                record_count: header.record_count,
                            },
                        );
                    }
                    outcome
                }
                Err(e) => BatchOutcome::Rejected(AppendError::Unreadable(e.to_string())),
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    /// The state at the retention boundary, if it is past the current snapshot.
    fn state_at_retention_boundary(&self) -> Result<Option<Checkpoint>, io::Error> {
        let floor = *lock(&self.retention);
        let applied = self.current.index();
        let target = match floor {
            RetentionFloor::Nothing => return Ok(None),
            RetentionFloor::Through(index) => index.min(applied),
            RetentionFloor::Everything => applied,
        };
        if target == 0 || target <= self.snapshot_index || self.current.last_applied.is_none() {
            return Ok(None);
        }
        if target == applied {
            return Ok(Some(self.current.clone()));
        }
        let Some(&index) = self.checkpoints.range(..=target).next_back() else { return Ok(None) };
        if index <= self.snapshot_index {
            return Ok(None);
        }
        let bytes =
            self.storage.applied(AppliedKey::Checkpoint(index)).map_err(io_error)?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("checkpoint {index} vanished"))
            })?;
        Ok(Some(Checkpoint::from_bytes(&bytes)?))
    }
}

/// Encodes the snapshot data: the partition state as of the snapshot's index, with the log start
/// moved to where the log then begins.
fn snapshot_data(checkpoint: &Checkpoint) -> Bytes {
    let mut state = checkpoint.partition.clone();
    state.advance_log_start(state.next_offset());
    Bytes::from(state.to_bytes())
}

/// Builds the snapshot chosen when it was created; holds its own copy of the state, so applying
/// may go on meanwhile.
pub struct PartitionSnapshotBuilder {
    storage: GroupStorage,
    checkpoint: Checkpoint,
    /// Checkpoints made useless by this snapshot (the log before it is purged).
    obsolete_checkpoints: Vec<u64>,
}

impl std::fmt::Debug for PartitionSnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionSnapshotBuilder")
            .field("index", &self.checkpoint.index())
            .finish_non_exhaustive()
    }
}

impl RaftSnapshotBuilder<C> for PartitionSnapshotBuilder {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Bytes>, io::Error> {
        let meta = SnapshotMetaOf::<C> {
            last_log_id: self.checkpoint.last_applied,
            last_membership: self.checkpoint.membership.clone(),
        };
        let data = snapshot_data(&self.checkpoint);
        let mut batch = self.storage.batch();
        batch.put_applied(AppliedKey::Snapshot, snapshot_store::encode::<C>(&meta, &data));
        for index in self.obsolete_checkpoints.drain(..) {
            batch.delete_applied(AppliedKey::Checkpoint(index));
        }
        self.storage.write(batch, Durability::Fsync).await.map_err(io_error)?;
        tracing::info!(group = %self.storage.group(), index = self.checkpoint.index(), "partition snapshot built");
        Ok(openraft::storage::Snapshot { meta, snapshot: data })
    }
}

impl RaftStateMachine<C> for PartitionStateMachine {
    type SnapshotData = Bytes;
    type SnapshotBuilder = PartitionSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        Ok((self.current.last_applied, self.current.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = self.storage.batch();
        let mut replies = Vec::new();
        let last_checkpoint = self.checkpoints.last().copied().unwrap_or(0);
        let mut checkpoint_due = false;
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id;
            self.current.last_applied = Some(log_id);
            let response = match entry.payload {
                EntryPayload::Blank => PartitionResponse::Nothing,
                EntryPayload::Membership(membership) => {
                    self.current.membership = StoredMembershipOf::<C>::new(Some(log_id), membership);
                    PartitionResponse::Nothing
                }
                EntryPayload::Normal(request) => match &request.command {
                    PartitionCommand::Append { batches, rule } => PartitionResponse::Appended {
                        outcomes: self.apply_append(log_id, batches, *rule, &mut batch),
                    },
                },
            };
            if log_id.index >= last_checkpoint + self.checkpoint_interval_entries {
                checkpoint_due = true;
            }
            replies.push((responder, response));
        }
        if checkpoint_due {
            self.put_checkpoint(&mut batch);
        }
        sluice_storage::crash_point("sm_apply_before_commit_offset");
        // The producers are answered first: what they wait for, a majority's fsync of the entry,
        // is already true, and nothing they are told depends on the offset index. Waiting for
        // the index write too put one more round trip to the writer thread into every
        // acknowledgement (docs/decisions/0011).
        for (responder, response) in replies {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        if !batch.is_empty() {
            // Not fsynced: everything here can be rebuilt by re-applying the durable log.
            // Readers learn of the new offsets only once their index rows are readable.
            self.storage.write(batch, Durability::Buffered).await.map_err(io_error)?;
        }
        self.publish_progress();
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<Self::SnapshotBuilder> {
        let chosen = match self.state_at_retention_boundary() {
            Ok(chosen) => chosen,
            Err(error) => {
                tracing::error!(group = %self.storage.group(), %error, "cannot read the retention checkpoint");
                None
            }
        };
        let checkpoint = match chosen {
            Some(checkpoint) => checkpoint,
            None if !force => return None,
            None => {
                // openraft forces a build only when the log was purged and no snapshot is
                // stored, which this state machine never leaves behind; offer what we have.
                tracing::warn!(group = %self.storage.group(), "forced snapshot without a retention boundary");
                self.current.clone()
            }
        };
        let index = checkpoint.index();
        let obsolete: Vec<u64> = self.checkpoints.range(..index).copied().collect();
        for i in &obsolete {
            self.checkpoints.remove(i);
        }
        self.snapshot_index = self.snapshot_index.max(index);
        self.current.partition.advance_log_start(checkpoint.partition.next_offset());
        self.publish_progress();
        Some(PartitionSnapshotBuilder {
            storage: self.storage.clone(),
            checkpoint,
            obsolete_checkpoints: obsolete,
        })
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.try_create_snapshot_builder(true).await.expect("a forced snapshot builder is always created")
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<C>, snapshot: Bytes) -> Result<(), io::Error> {
        sluice_storage::crash_point("snapshot_before_install");
        let partition = PartitionState::from_bytes(&snapshot)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot data: {e}")))?;
        self.current = Checkpoint {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            partition,
        };
        let index = self.current.index();
        let mut batch = self.storage.batch();
        // Every index row refers to entries this replica is about to drop or re-apply.
        batch.delete_offset_index_from(Offset(0));
        batch.delete_checkpoints_from(0);
        self.checkpoints.clear();
        batch.put_applied(AppliedKey::Checkpoint(index), self.current.to_bytes());
        self.checkpoints.insert(index);
        batch.put_applied(AppliedKey::Snapshot, snapshot_store::encode::<C>(meta, &snapshot));
        self.storage.write(batch, Durability::Fsync).await.map_err(io_error)?;
        self.snapshot_index = index;
        self.publish_progress();
        tracing::info!(group = %self.storage.group(), index, "partition snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Bytes>>, io::Error> {
        snapshot_store::load::<C>(&self.storage)
    }
}

#[cfg(test)]
mod tests {
    use openraft::Membership;
    use openraft::impls::leader_id_adv::LeaderId;
    use sluice_types::{BatchHeader, Compression, ProducerEpoch, ProducerId, Sequence};

    use super::*;

    fn checkpoint() -> Checkpoint {
        let mut partition = PartitionState::default();
        for pid in 1..=5u64 {
            partition.apply_batch(&BatchHeader {
                producer_id: ProducerId(pid),
                producer_epoch: ProducerEpoch(1),
                base_sequence: Sequence(0),
                record_count: 3,
                base_timestamp_ms: 0,
                compression: Compression::None,
            });
        }
        let log_id = openraft::LogId { leader_id: LeaderId { term: 3, node_id: 2 }, index: 41 };
        let membership = Membership::new_with_defaults(vec![[1u64, 2, 3].into_iter().collect()], []);
        Checkpoint {
            last_applied: Some(log_id),
            membership: StoredMembershipOf::<C>::new(Some(log_id), membership),
            partition,
        }
    }

    #[test]
    fn checkpoints_round_trip_in_binary_and_old_json_ones_still_read() {
        let checkpoint = checkpoint();
        let bytes = checkpoint.to_bytes();
        assert_ne!(bytes.first(), Some(&b'{'), "written in the binary encoding");
        assert_eq!(Checkpoint::from_bytes(&bytes).unwrap(), checkpoint);
        assert_eq!(Checkpoint::from_bytes(&Checkpoint::default().to_bytes()).unwrap(), Checkpoint::default());
        let json = serde_json::to_vec(&checkpoint).unwrap();
        assert_eq!(Checkpoint::from_bytes(&json).unwrap(), checkpoint);
        assert!(bytes.len() < json.len(), "binary {} bytes, JSON {} bytes", bytes.len(), json.len());
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error() {
        let bytes = checkpoint().to_bytes();
        for cut in 0..bytes.len() {
            assert!(Checkpoint::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut version = bytes.to_vec();
        version[0] = 7;
        assert!(Checkpoint::from_bytes(&version).is_err());
        let mut flag = bytes.to_vec();
        flag[1] = 2;
        assert!(Checkpoint::from_bytes(&flag).is_err());
    }
}
