//! The binary encoding of Raft entries, votes and log ids.
//!
//! An entry is stored in RocksDB and sent to followers as the same bytes:
//! `version u8 | kind u8 | term u64 | leader node u64 | index u64 | payload`, integers big-endian.
//! The payload of a normal partition entry is `command u8 | body`; an append's body is its
//! batches, each length-prefixed, so a batch can be served to a consumer as a slice of the stored
//! entry without re-encoding. Format version 1 had no command byte (every normal entry was an
//! append); its entries still decode.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::impls::BasicNode;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::{EntryPayload, LogId, Membership};
use sluice_partition::SequenceRule;
use sluice_types::limits::ENTRY_BYTES_MAX;

use crate::types::{GroupConfig, MetaRequest, PartitionCommand, PartitionRequest};

/// The log id of every Sluice group.
pub type GroupLogId = LogId<LeaderId<u64, u64>>;

/// The format written. Version 1 (no command byte) is still read.
const ENTRY_FORMAT_VERSION: u8 = 2;
const ENTRY_FORMAT_VERSION_V1: u8 = 1;
const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
/// The command bytes of a normal partition entry: an append written before producers had to
/// start at sequence 0, and one written since (decision 0013).
const COMMAND_APPEND: u8 = 1;
const COMMAND_APPEND_FROM_ZERO: u8 = 2;
/// Bytes before the payload.
pub const ENTRY_HEADER_BYTES: usize = 2 + 8 * 3;
/// The buffer reserved for a payload whose length is not known before encoding (registry
/// commands: a few hundred bytes of JSON).
const PAYLOAD_BYTES_GUESS: usize = 256;

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
    /// How many bytes [`AppDataCodec::encode_into`] writes, when that is known without encoding.
    fn encoded_len(&self) -> Option<usize>;
    fn encode_into(&self, out: &mut BytesMut);
    /// Decodes `payload`, a slice of `entry` (the whole stored entry, of format `version`):
    /// keep slices, do not copy.
    fn decode_from(payload: Bytes, version: u8, entry: Bytes) -> Result<Self, CodecError>;
    /// The stored entry this value was decoded from, to be sent or stored again as it is.
    fn stored_entry(&self) -> Option<&Bytes> {
        None
    }
}

fn append_body_len(batches: &[Bytes]) -> usize {
    4 + batches.iter().map(|b| 4 + b.len()).sum::<usize>()
}

fn put_append_body(out: &mut BytesMut, batches: &[Bytes]) {
    out.put_u32(u32::try_from(batches.len()).expect("entry batch count is bounded"));
    for batch in batches {
        out.put_u32(u32::try_from(batch.len()).expect("batches are bounded by BATCH_BYTES_MAX"));
        out.put_slice(batch);
    }
}

fn get_append_body(mut bytes: Bytes) -> Result<Vec<Bytes>, CodecError> {
    let what = "partition append";
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
    Ok(batches)
}

fn decode_partition_command(mut payload: Bytes, version: u8) -> Result<PartitionCommand, CodecError> {
    if version == ENTRY_FORMAT_VERSION_V1 {
        return Ok(PartitionCommand::Append {
            batches: get_append_body(payload)?,
            rule: SequenceRule::AnyStart,
        });
    }
    if !payload.has_remaining() {
        return Err(CodecError::invalid("partition entry", "no command"));
    }
    match payload.get_u8() {
        COMMAND_APPEND => {
            Ok(PartitionCommand::Append { batches: get_append_body(payload)?, rule: SequenceRule::AnyStart })
        }
        COMMAND_APPEND_FROM_ZERO => {
            Ok(PartitionCommand::Append { batches: get_append_body(payload)?, rule: SequenceRule::FromZero })
        }
        other => Err(CodecError::invalid("partition entry", format!("command {other}"))),
    }
}

impl AppDataCodec for PartitionRequest {
    fn encoded_len(&self) -> Option<usize> {
        match &self.command {
            PartitionCommand::Append { batches, .. } => Some(1 + append_body_len(batches)),
        }
    }

    fn encode_into(&self, out: &mut BytesMut) {
        match &self.command {
            PartitionCommand::Append { batches, rule } => {
                out.put_u8(match rule {
                    SequenceRule::AnyStart => COMMAND_APPEND,
                    SequenceRule::FromZero => COMMAND_APPEND_FROM_ZERO,
                });
                put_append_body(out, batches);
            }
        }
    }

    fn decode_from(payload: Bytes, version: u8, entry: Bytes) -> Result<Self, CodecError> {
        let command = decode_partition_command(payload, version)?;
        Ok(PartitionRequest { command, stored: Some(entry) })
    }

    fn stored_entry(&self) -> Option<&Bytes> {
        self.stored.as_ref()
    }
}

impl AppDataCodec for MetaRequest {
    fn encoded_len(&self) -> Option<usize> {
        // Registry changes are rare and small: not worth encoding twice to size the buffer.
        None
    }

    fn encode_into(&self, out: &mut BytesMut) {
        // JSON keeps registry changes readable in a debugger.
        out.put_slice(&serde_json::to_vec(&self.0).expect("meta commands are always serializable"));
    }

    fn decode_from(payload: Bytes, _version: u8, _entry: Bytes) -> Result<Self, CodecError> {
        serde_json::from_slice(&payload)
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

/// The entry's bytes: the stored bytes it was decoded from when it carries them (replication
/// and a follower's append re-encode nothing), otherwise encoded into a buffer of exactly the
/// right size.
pub fn encode_entry<C: GroupConfig>(entry: &C::Entry) -> Bytes {
    if let EntryPayload::Normal(data) = &entry.payload
        && let Some(stored) = data.stored_entry()
        && stored.first() == Some(&ENTRY_FORMAT_VERSION)
        && entry_log_id(stored).is_ok_and(|id| id == entry.log_id)
    {
        return stored.clone();
    }
    let membership = match &entry.payload {
        EntryPayload::Membership(m) => serde_json::to_vec(m).expect("membership is always serializable"),
        _ => Vec::new(),
    };
    let payload_len = match &entry.payload {
        EntryPayload::Blank => Some(0),
        EntryPayload::Normal(data) => data.encoded_len(),
        EntryPayload::Membership(_) => Some(membership.len()),
    };
    let mut out = BytesMut::with_capacity(ENTRY_HEADER_BYTES + payload_len.unwrap_or(PAYLOAD_BYTES_GUESS));
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
        EntryPayload::Membership(_) => out.put_slice(&membership),
    }
    debug_assert!(
        payload_len.is_none_or(|len| out.len() == ENTRY_HEADER_BYTES + len),
        "encoded_len is exact when given"
    );
    out.freeze()
}

/// Reads only the log id of an encoded entry.
pub fn entry_log_id(bytes: &Bytes) -> Result<GroupLogId, CodecError> {
    let (_, _, log_id, _) = split_entry(bytes.clone())?;
    Ok(log_id)
}

fn split_entry(mut bytes: Bytes) -> Result<(u8, u8, GroupLogId, Bytes), CodecError> {
    if bytes.len() > ENTRY_BYTES_MAX + ENTRY_HEADER_BYTES + 1024 {
        return Err(CodecError::invalid("entry", format!("{} bytes exceeds the entry limit", bytes.len())));
    }
    if bytes.remaining() < ENTRY_HEADER_BYTES {
        return Err(CodecError::invalid("entry", "shorter than its header"));
    }
    let version = bytes.get_u8();
    if version != ENTRY_FORMAT_VERSION && version != ENTRY_FORMAT_VERSION_V1 {
        return Err(CodecError::invalid("entry", format!("format version {version}")));
    }
    let kind = bytes.get_u8();
    let log_id = get_log_id(&mut bytes, "entry")?;
    Ok((version, kind, log_id, bytes))
}

pub fn decode_entry<C: GroupConfig>(bytes: Bytes) -> Result<C::Entry, CodecError> {
    let (version, kind, log_id, payload) = split_entry(bytes.clone())?;
    let payload = match kind {
        KIND_BLANK if payload.is_empty() => EntryPayload::Blank,
        KIND_BLANK => return Err(CodecError::invalid("entry", "blank entry with a payload")),
        KIND_NORMAL => EntryPayload::Normal(C::D::decode_from(payload, version, bytes)?),
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
/// entries and for commands other than appends.
pub fn partition_entry_batches(bytes: Bytes) -> Result<Vec<Bytes>, CodecError> {
    let (version, kind, _, payload) = split_entry(bytes)?;
    match kind {
        KIND_NORMAL => match decode_partition_command(payload, version)? {
            PartitionCommand::Append { batches, .. } => Ok(batches),
        },
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PartitionRaft;

    type Entry = <PartitionRaft as openraft::RaftTypeConfig>::Entry;

    fn log_id(term: u64, node: u64, index: u64) -> GroupLogId {
        LogId { leader_id: LeaderId { term, node_id: node }, index }
    }

    fn append(log_id: GroupLogId, batches: &[&'static [u8]]) -> Entry {
        let batches = batches.iter().map(|b| Bytes::from_static(b)).collect();
        openraft::Entry { log_id, payload: EntryPayload::Normal(PartitionRequest::append(batches)) }
    }

    #[test]
    fn entries_round_trip() {
        let membership = Membership::new_with_defaults(vec![[1u64, 2, 3].into_iter().collect()], [4u64]);
        let entries: Vec<Entry> = vec![
            openraft::Entry { log_id: log_id(1, 2, 3), payload: EntryPayload::Blank },
            append(log_id(4, 5, 6), &[b"one", b"", b"three"]),
            openraft::Entry { log_id: log_id(7, 8, 9), payload: EntryPayload::Membership(membership) },
        ];
        for entry in entries {
            let bytes = encode_entry::<PartitionRaft>(&entry);
            assert_eq!(entry_log_id(&bytes).unwrap(), entry.log_id);
            assert_eq!(decode_entry::<PartitionRaft>(bytes).unwrap(), entry);
        }
    }

    #[test]
    fn a_decoded_entry_is_sent_again_as_the_bytes_it_came_from() {
        let bytes = encode_entry::<PartitionRaft>(&append(log_id(4, 5, 6), &[b"abc", b"defg"]));
        let decoded = decode_entry::<PartitionRaft>(bytes.clone()).unwrap();
        let again = encode_entry::<PartitionRaft>(&decoded);
        assert_eq!(again, bytes);
        assert_eq!(again.as_ptr(), bytes.as_ptr(), "the stored bytes are reused, not re-encoded");

        // An entry whose log id differs from its stored bytes' (never done by openraft) is
        // encoded afresh, so the bytes always say what the entry is.
        let mut moved = decoded;
        moved.log_id = log_id(4, 5, 7);
        let fresh = encode_entry::<PartitionRaft>(&moved);
        assert_ne!(fresh.as_ptr(), bytes.as_ptr());
        assert_eq!(entry_log_id(&fresh).unwrap(), log_id(4, 5, 7));
    }

    #[test]
    fn a_fresh_entry_fills_its_buffer_exactly() {
        let batch = Bytes::from(vec![7u8; 10_000]);
        let entry: Entry = openraft::Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Normal(PartitionRequest::append(vec![batch.clone(), batch])),
        };
        let bytes = encode_entry::<PartitionRaft>(&entry);
        assert_eq!(bytes.len(), ENTRY_HEADER_BYTES + 1 + 4 + 2 * (4 + 10_000));
    }

    #[test]
    fn version_one_entries_still_decode_as_appends() {
        // Written by format version 1: no command byte before the batches.
        let mut v1 = BytesMut::new();
        v1.put_u8(ENTRY_FORMAT_VERSION_V1);
        v1.put_u8(KIND_NORMAL);
        put_log_id(&mut v1, &log_id(2, 1, 5));
        put_append_body(&mut v1, &[Bytes::from_static(b"old")]);
        let v1 = v1.freeze();
        assert_eq!(
            decode_entry::<PartitionRaft>(v1.clone()).unwrap(),
            legacy_append(log_id(2, 1, 5), &[b"old"])
        );
        assert_eq!(partition_entry_batches(v1.clone()).unwrap(), vec![Bytes::from_static(b"old")]);
        // Sent on in the current format, never as the old bytes.
        let again = encode_entry::<PartitionRaft>(&decode_entry::<PartitionRaft>(v1).unwrap());
        assert_eq!(again[0], ENTRY_FORMAT_VERSION);
    }

    fn legacy_append(log_id: GroupLogId, batches: &[&'static [u8]]) -> Entry {
        let batches = batches.iter().map(|b| Bytes::from_static(b)).collect();
        let command = PartitionCommand::Append { batches, rule: SequenceRule::AnyStart };
        openraft::Entry { log_id, payload: EntryPayload::Normal(PartitionRequest::new(command)) }
    }

    /// An append keeps the sequence rule it was written under through every re-encoding, so
    /// that replaying an old log assigns the offsets it assigned then.
    #[test]
    fn appends_keep_their_sequence_rule() {
        let new = encode_entry::<PartitionRaft>(&append(log_id(1, 1, 1), &[b"abc"]));
        assert_eq!(new[ENTRY_HEADER_BYTES], COMMAND_APPEND_FROM_ZERO);
        let old = encode_entry::<PartitionRaft>(&legacy_append(log_id(1, 1, 2), &[b"abc"]));
        assert_eq!(old[ENTRY_HEADER_BYTES], COMMAND_APPEND);
        let decoded = decode_entry::<PartitionRaft>(old.clone()).unwrap();
        assert_eq!(decoded, legacy_append(log_id(1, 1, 2), &[b"abc"]));
        let mut fresh = decoded.clone();
        if let EntryPayload::Normal(request) = &mut fresh.payload {
            request.stored = None;
        }
        assert_eq!(encode_entry::<PartitionRaft>(&fresh), old, "re-encoded with its own command byte");
    }

    #[test]
    fn an_unknown_command_is_an_error() {
        let mut bytes = encode_entry::<PartitionRaft>(&append(log_id(1, 1, 1), &[b"abc"])).to_vec();
        bytes[ENTRY_HEADER_BYTES] = 0xee;
        let error = decode_entry::<PartitionRaft>(Bytes::from(bytes.clone())).unwrap_err();
        assert!(error.to_string().contains("command 238"), "{error}");
        assert!(partition_entry_batches(Bytes::from(bytes)).is_err());
    }

    #[test]
    fn batches_are_slices_of_the_entry() {
        let bytes = encode_entry::<PartitionRaft>(&append(log_id(1, 1, 1), &[b"abc"]));
        let batches = partition_entry_batches(bytes.clone()).unwrap();
        assert_eq!(batches, vec![Bytes::from_static(b"abc")]);
        let start = bytes.as_ptr() as usize;
        let slice = batches[0].as_ptr() as usize;
        assert!(slice > start && slice < start + bytes.len(), "no copy was made");
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let bytes = encode_entry::<PartitionRaft>(&append(log_id(1, 1, 1), &[b"abc"]));
        for cut in 0..bytes.len() {
            assert!(decode_entry::<PartitionRaft>(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = bytes.to_vec();
        bad[ENTRY_HEADER_BYTES + 1] = 0xff; // batch count
        assert!(decode_entry::<PartitionRaft>(Bytes::from(bad)).is_err());
        assert!(decode_vote(Bytes::from_static(b"short")).is_err());
    }

    #[test]
    fn votes_round_trip() {
        let vote = openraft::impls::Vote { leader_id: LeaderId { term: 9, node_id: 2 }, committed: true };
        assert_eq!(decode_vote(encode_vote(&vote)).unwrap(), vote);
    }
}
