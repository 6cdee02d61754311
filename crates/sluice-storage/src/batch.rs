//! A set of writes to one group, applied atomically with whatever else the writer merges it with.

use bytes::Bytes;
use sluice_types::{GroupId, Offset};

use crate::keys::{self, AppliedKey, CF_APPLIED, CF_LOG, CF_OFFSET_INDEX, CF_RAFT_STATE, RaftStateKey};
use crate::storage::OffsetIndexEntry;

#[derive(Debug)]
pub(crate) enum Op {
    Put { cf: &'static str, key: Vec<u8>, value: Bytes },
    Delete { cf: &'static str, key: Vec<u8> },
    DeleteRange { cf: &'static str, from: Vec<u8>, to: Vec<u8> },
}

/// Writes for one group. Built by the owner of a [`GroupStorage`](crate::GroupStorage), which
/// checked that the group exists, and submitted through it.
#[derive(Debug)]
pub struct Batch {
    group: GroupId,
    pub(crate) ops: Vec<Op>,
    pub(crate) bytes: usize,
}

impl Batch {
    pub(crate) fn new(group: GroupId) -> Self {
        Batch { group, ops: Vec::new(), bytes: 0 }
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The payload bytes this batch writes; bounds what the writer queues.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn put(&mut self, cf: &'static str, key: Vec<u8>, value: Bytes) {
        self.bytes += key.len() + value.len();
        self.ops.push(Op::Put { cf, key, value });
    }

    /// Stores the log entry at `index`.
    pub fn put_entry(&mut self, index: u64, entry: Bytes) {
        self.put(CF_LOG, keys::group_index(self.group, index).to_vec(), entry);
    }

    /// Deletes every log entry at `index` or later.
    pub fn delete_entries_from(&mut self, index: u64) {
        self.ops.push(Op::DeleteRange {
            cf: CF_LOG,
            from: keys::group_index(self.group, index).to_vec(),
            to: keys::group_end(self.group).to_vec(),
        });
    }

    /// Deletes every log entry at `index` or earlier.
    pub fn delete_entries_through(&mut self, index: u64) {
        self.ops.push(Op::DeleteRange {
            cf: CF_LOG,
            from: keys::group_prefix(self.group).to_vec(),
            to: keys::group_index(self.group, index.saturating_add(1)).to_vec(),
        });
    }

    pub fn put_raft_state(&mut self, key: RaftStateKey, value: Bytes) {
        self.put(CF_RAFT_STATE, keys::raft_state(self.group, key).to_vec(), value);
    }

    pub fn delete_raft_state(&mut self, key: RaftStateKey) {
        self.ops.push(Op::Delete { cf: CF_RAFT_STATE, key: keys::raft_state(self.group, key).to_vec() });
    }

    pub fn put_applied(&mut self, key: AppliedKey, value: Bytes) {
        self.put(CF_APPLIED, keys::applied(self.group, key), value);
    }

    pub fn delete_applied(&mut self, key: AppliedKey) {
        self.ops.push(Op::Delete { cf: CF_APPLIED, key: keys::applied(self.group, key) });
    }

    /// Deletes the checkpoints at indexes below `index`.
    pub fn delete_checkpoints_before(&mut self, index: u64) {
        self.ops.push(Op::DeleteRange {
            cf: CF_APPLIED,
            from: keys::checkpoint_prefix(self.group).to_vec(),
            to: keys::applied(self.group, AppliedKey::Checkpoint(index)),
        });
    }

    /// Deletes every checkpoint at `index` or later.
    pub fn delete_checkpoints_from(&mut self, index: u64) {
        let mut end = keys::checkpoint_prefix(self.group).to_vec();
        end.extend_from_slice(&[0xff; 9]);
        self.ops.push(Op::DeleteRange {
            cf: CF_APPLIED,
            from: keys::applied(self.group, AppliedKey::Checkpoint(index)),
            to: end,
        });
    }

    /// Records that the batch starting at `base_offset` is batch `position` of Raft entry `index`.
    pub fn put_offset_index(&mut self, base_offset: Offset, entry: OffsetIndexEntry) {
        self.put(CF_OFFSET_INDEX, keys::group_index(self.group, base_offset.0).to_vec(), entry.encode());
    }

    /// Deletes the offset index rows of batches starting at `from` or later.
    pub fn delete_offset_index_from(&mut self, from: Offset) {
        self.ops.push(Op::DeleteRange {
            cf: CF_OFFSET_INDEX,
            from: keys::group_index(self.group, from.0).to_vec(),
            to: keys::group_end(self.group).to_vec(),
        });
    }

    /// Deletes the offset index rows of batches starting before `before`.
    pub fn delete_offset_index_before(&mut self, before: Offset) {
        self.ops.push(Op::DeleteRange {
            cf: CF_OFFSET_INDEX,
            from: keys::group_prefix(self.group).to_vec(),
            to: keys::group_index(self.group, before.0).to_vec(),
        });
    }
}
