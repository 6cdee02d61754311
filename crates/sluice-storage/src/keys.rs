//! Key layouts. Every key starts with the group id, big-endian, so one group's keys are one
//! contiguous range and a group can be dropped with range deletes.

use sluice_types::GroupId;

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_RAFT_STATE: &str = "raft_state";
pub(crate) const CF_APPLIED: &str = "applied";
pub(crate) const CF_OFFSET_INDEX: &str = "offset_index";
pub(crate) const CF_GROUPS: &str = "groups";
pub(crate) const COLUMN_FAMILIES: [&str; 5] = [CF_LOG, CF_RAFT_STATE, CF_APPLIED, CF_OFFSET_INDEX, CF_GROUPS];

/// Small per-group Raft values, one key each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RaftStateKey {
    Vote = 1,
    Committed = 2,
    Purged = 3,
}

/// Per-group state machine values. `Checkpoint` keys carry the Raft index they describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppliedKey {
    /// The state as of the last applied entry.
    State,
    /// The snapshot currently offered to followers (its metadata and state).
    Snapshot,
    /// The state as of the given Raft index, kept where the log may later be purged.
    Checkpoint(u64),
}

pub(crate) fn group_index(group: GroupId, index: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

pub(crate) fn group_prefix(group: GroupId) -> [u8; 8] {
    group.to_be_bytes()
}

/// The first key after every key of `group`. `u64::MAX` is never a group id we hand out, so the
/// addition cannot overflow for real groups; saturate anyway.
pub(crate) fn group_end(group: GroupId) -> [u8; 8] {
    group.0.saturating_add(1).to_be_bytes()
}

pub(crate) fn raft_state(group: GroupId, key: RaftStateKey) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = key as u8;
    k
}

pub(crate) fn applied(group: GroupId, key: AppliedKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.extend_from_slice(&group.to_be_bytes());
    match key {
        AppliedKey::State => k.push(1),
        AppliedKey::Snapshot => k.push(2),
        AppliedKey::Checkpoint(index) => {
            k.push(3);
            k.extend_from_slice(&index.to_be_bytes());
        }
    }
    k
}

pub(crate) fn checkpoint_prefix(group: GroupId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = 3;
    k
}

pub(crate) fn read_u64(bytes: &[u8], what: &'static str) -> Result<u64, crate::StorageError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| crate::StorageError::Corrupt {
        what,
        detail: format!("expected 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// Splits a `(group, u64)` key.
pub(crate) fn split_group_index(
    key: &[u8],
    what: &'static str,
) -> Result<(GroupId, u64), crate::StorageError> {
    if key.len() != 16 {
        return Err(crate::StorageError::Corrupt { what, detail: format!("key of {} bytes", key.len()) });
    }
    Ok((GroupId(read_u64(&key[..8], what)?), read_u64(&key[8..], what)?))
}
