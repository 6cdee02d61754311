//! The binary encoding of Raft entries, votes and log ids.
//!
//! An entry is stored in RocksDB and sent to followers as the same bytes:
//! `version u8 | kind u8 | term u64 | leader node u64 | index u64 | payload`, integers big-endian.
//! A partition entry's payload is its batches, each length-prefixed, so a batch can be served to a
//! consumer as a slice of the stored entry without re-encoding.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::impls::BasicNode;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::{EntryPayload, LogId, Membership};
use sluice_types::limits::ENTRY_BYTES_MAX;

use crate::types::{GroupConfig, MetaRequest, PartitionRequest};

/// The log id of every Sluice group.
pub type GroupLogId = LogId<LeaderId<u64, u64>>;

const ENTRY_FORMAT_VERSION: u8 = 1;
const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
/// Bytes before the payload.
pub const ENTRY_HEADER_BYTES: usize = 2 + 8 * 3;

/// Why stored or received bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

impl CodecError {
    fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        CodecError::Invalid { what, detail: detail.into() }
    }
}

impl From<CodecError> for std::io::Error {
    fn from(e: CodecError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// How a group's application data is laid out inside an entry.
pub trait AppDataCodec: Sized {
    fn encode_into(&self, out: &mut BytesMut);
    /// Decodes from `bytes`, which is a slice of the stored entry: keep slices, do not copy.
    fn decode_from(bytes: Bytes) -> Result<Self, CodecError>;
}

impl AppDataCodec for PartitionRequest {
    fn encode_into(&self, out: &mut BytesMut) {
        out.put_u32(u32::try_from(self.batches.len()).expect("entry batch count is bounded"));
        for batch in &self.batches {
            out.put_u32(u32::try_from(batch.len()).expect("batches are bounded by BATCH_BYTES_MAX"));
            out.put_slice(batch);
        }
    }

    fn decode_from(mut bytes: Bytes) -> Result<Self, CodecError> {
        let what = "partition entry";
        if bytes.remaining() < 4 {
            return Err(CodecError::invalid(what, "no batch count"));
        }
        let count = bytes.get_u32() as usize;
        // Every batch takes at least its 4-byte length: a count beyond that is a lie.
        if count > bytes.remaining() / 4 {
            return Err(CodecError::invalid(what, format!("{count} batches in {} bytes", bytes.remaining())));
        }
        let mut batches = Vec::with_capacity(count);
        for _ in 0..count {
            if bytes.remaining() < 4 {
                return Err(CodecError::invalid(what, "truncated batch length"));
            }
            let len = bytes.get_u32() as usize;
            if bytes.remaining() < len {
                return Err(CodecError::invalid(what, "truncated batch"));
            }
            batches.push(bytes.split_to(len));
        }
        if bytes.has_remaining() {
            return Err(CodecError::invalid(what, "trailing bytes"));
        }
        Ok(PartitionRequest { batches })
    }
}

impl AppDataCodec for MetaRequest {
    fn encode_into(&self, out: &mut BytesMut) {
        // Registry changes are rare and small; JSON keeps them readable in a debugger.
        out.put_slice(&serde_json::to_vec(&self.0).expect("meta commands are always serializable"));
    }

    fn decode_from(bytes: Bytes) -> Result<Self, CodecError> {
        serde_json::from_slice(&bytes)
            .map(MetaRequest)
            .map_err(|e| CodecError::invalid("meta entry", e.to_string()))
    }
}

/// A log id in 24 bytes: term, leader node, index.
pub fn put_log_id(out: &mut BytesMut, log_id: &GroupLogId) {
    out.put_u64(log_id.leader_id.term);
    out.put_u64(log_id.leader_id.node_id);
    out.put_u64(log_id.index);
}

pub fn get_log_id(bytes: &mut Bytes, what: &'static str) -> Result<GroupLogId, CodecError> {
    if bytes.remaining() < 24 {
        return Err(CodecError::invalid(what, "truncated log id"));
    }
    let term = bytes.get_u64();
    let node_id = bytes.get_u64();
    let index = bytes.get_u64();
    Ok(LogId { leader_id: LeaderId { term, node_id }, index })
}

pub fn encode_log_id(log_id: &GroupLogId) -> Bytes {
    let mut out = BytesMut::with_capacity(24);
    put_log_id(&mut out, log_id);
    out.freeze()
}

pub fn decode_log_id(mut bytes: Bytes, what: &'static str) -> Result<GroupLogId, CodecError> {
    let id = get_log_id(&mut bytes, what)?;
    if bytes.has_remaining() {
        return Err(CodecError::invalid(what, "trailing bytes"));
    }
    Ok(id)
}

pub fn encode_vote(vote: &openraft::impls::Vote<LeaderId<u64, u64>>) -> Bytes {
    let mut out = BytesMut::with_capacity(17);
    out.put_u64(vote.leader_id.term);
    out.put_u64(vote.leader_id.node_id);
    out.put_u8(u8::from(vote.committed));
    out.freeze()
}

pub fn decode_vote(mut bytes: Bytes) -> Result<openraft::impls::Vote<LeaderId<u64, u64>>, CodecError> {
    if bytes.len() != 17 {
        return Err(CodecError::invalid("vote", format!("{} bytes", bytes.len())));
    }
    let term = bytes.get_u64();
    let node_id = bytes.get_u64();
    let committed = match bytes.get_u8() {
        0 => false,
        1 => true,
        other => return Err(CodecError::invalid("vote", format!("committed flag {other}"))),
    };
    Ok(openraft::impls::Vote { leader_id: LeaderId { term, node_id }, committed })
}

pub fn encode_entry<C: GroupConfig>(entry: &C::Entry) -> Bytes {
    let mut out = BytesMut::with_capacity(ENTRY_HEADER_BYTES + 64);
    out.put_u8(ENTRY_FORMAT_VERSION);
    let kind = match &entry.payload {
        EntryPayload::Blank => KIND_BLANK,
        EntryPayload::Normal(_) => KIND_NORMAL,
        EntryPayload::Membership(_) => KIND_MEMBERSHIP,
    };
    out.put_u8(kind);
    put_log_id(&mut out, &entry.log_id);
    match &entry.payload {
        EntryPayload::Blank => {}
        EntryPayload::Normal(data) => data.encode_into(&mut out),
        EntryPayload::Membership(m) => {
            out.put_slice(&serde_json::to_vec(m).expect("membership is always serializable"));
        }
    }
    out.freeze()
}

/// Reads only the log id of an encoded entry.
pub fn entry_log_id(bytes: &Bytes) -> Result<GroupLogId, CodecError> {
    let (_, log_id, _) = split_entry(bytes.clone())?;
    Ok(log_id)
}

fn split_entry(mut bytes: Bytes) -> Result<(u8, GroupLogId, Bytes), CodecError> {
    if bytes.len() > ENTRY_BYTES_MAX + ENTRY_HEADER_BYTES + 1024 {
        return Err(CodecError::invalid("entry", format!("{} bytes exceeds the entry limit", bytes.len())));
    }
    if bytes.remaining() < ENTRY_HEADER_BYTES {
        return Err(CodecError::invalid("entry", "shorter than its header"));
    }
    let version = bytes.get_u8();
    if version != ENTRY_FORMAT_VERSION {
        return Err(CodecError::invalid("entry", format!("format version {version}")));
    }
    let kind = bytes.get_u8();
    let log_id = get_log_id(&mut bytes, "entry")?;
    Ok((kind, log_id, bytes))
}

pub fn decode_entry<C: GroupConfig>(bytes: Bytes) -> Result<C::Entry, CodecError> {
    let (kind, log_id, payload) = split_entry(bytes)?;
    let payload = match kind {
        KIND_BLANK if payload.is_empty() => EntryPayload::Blank,
        KIND_BLANK => return Err(CodecError::invalid("entry", "blank entry with a payload")),
        KIND_NORMAL => EntryPayload::Normal(C::D::decode_from(payload)?),
        KIND_MEMBERSHIP => {
            let m: Membership<u64, BasicNode> = serde_json::from_slice(&payload)
                .map_err(|e| CodecError::invalid("membership", e.to_string()))?;
            EntryPayload::Membership(m)
        }
        other => return Err(CodecError::invalid("entry", format!("kind {other}"))),
    };
    Ok(openraft::Entry { log_id, payload })
}

/// The batches of an encoded partition entry, as slices of it; empty for blank and membership
/// entries.
pub fn partition_entry_batches(bytes: Bytes) -> Result<Vec<Bytes>, CodecError> {
    let (kind, _, payload) = split_entry(bytes)?;
    match kind {
        KIND_NORMAL => Ok(PartitionRequest::decode_from(payload)?.batches),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PartitionRaft;

    fn log_id(term: u64, node: u64, index: u64) -> GroupLogId {
        LogId { leader_id: LeaderId { term, node_id: node }, index }
    }

    #[test]
    fn entries_round_trip() {
        let membership = Membership::new_with_defaults(vec![[1u64, 2, 3].into_iter().collect()], [4u64]);
        let entries: Vec<<PartitionRaft as openraft::RaftTypeConfig>::Entry> = vec![
            openraft::Entry { log_id: log_id(1, 2, 3), payload: EntryPayload::Blank },
            openraft::Entry {
                log_id: log_id(4, 5, 6),
                payload: EntryPayload::Normal(PartitionRequest {
                    batches: vec![Bytes::from_static(b"one"), Bytes::new(), Bytes::from_static(b"three")],
                }),
            },
            openraft::Entry { log_id: log_id(7, 8, 9), payload: EntryPayload::Membership(membership) },
        ];
        for entry in entries {
            let bytes = encode_entry::<PartitionRaft>(&entry);
            assert_eq!(entry_log_id(&bytes).unwrap(), entry.log_id);
            assert_eq!(decode_entry::<PartitionRaft>(bytes).unwrap(), entry);
        }
    }

    #[test]
    fn batches_are_slices_of_the_entry() {
        let entry: <PartitionRaft as openraft::RaftTypeConfig>::Entry = openraft::Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Normal(PartitionRequest { batches: vec![Bytes::from_static(b"abc")] }),
        };
        let bytes = encode_entry::<PartitionRaft>(&entry);
        let batches = partition_entry_batches(bytes.clone()).unwrap();
        assert_eq!(batches, vec![Bytes::from_static(b"abc")]);
        let start = bytes.as_ptr() as usize;
        let slice = batches[0].as_ptr() as usize;
        assert!(slice > start && slice < start + bytes.len(), "no copy was made");
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let entry: <PartitionRaft as openraft::RaftTypeConfig>::Entry = openraft::Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Normal(PartitionRequest { batches: vec![Bytes::from_static(b"abc")] }),
        };
        let bytes = encode_entry::<PartitionRaft>(&entry);
        for cut in 0..bytes.len() {
            assert!(decode_entry::<PartitionRaft>(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = bytes.to_vec();
        bad[ENTRY_HEADER_BYTES] = 0xff; // batch count
        assert!(decode_entry::<PartitionRaft>(Bytes::from(bad)).is_err());
        assert!(decode_vote(Bytes::from_static(b"short")).is_err());
    }

    #[test]
    fn votes_round_trip() {
        let vote = openraft::impls::Vote { leader_id: LeaderId { term: 9, node_id: 2 }, committed: true };
        assert_eq!(decode_vote(encode_vote(&vote)).unwrap(), vote);
    }
}
