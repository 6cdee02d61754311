//! The binary encoding of [`PartitionState`], which checkpoints and snapshots carry.
//!
//! `version u8 | next_offset u64 | log_start_offset u64 | producer count u32 | producers`, each
//! producer `id u64 | epoch u32 | last_active u64 | recent count u8 | recent batches`, each
//! batch `base_sequence u64 | last_sequence u64 | base_offset u64`; integers big-endian,
//! producers in id order: 21 bytes per producer and 24 per remembered batch, less than half of
//! the JSON it replaces (and no parsing of numbers as text). The state grows with every table a
//! partition replicates (producers today; offsets and leases next), and a checkpoint is written
//! every few hundred entries.
//!
//! Checkpoints written before this encoding are JSON objects; they still decode.

use std::collections::{BTreeMap, VecDeque};

use sluice_types::{Offset, ProducerEpoch, ProducerId, Sequence};

use crate::state::{PRODUCER_DEDUP_WINDOW, PRODUCERS_MAX, PartitionState, ProducerState, RecentBatch};

const FORMAT_VERSION: u8 = 1;
const HEADER_BYTES: usize = 1 + 8 + 8 + 4;
const PRODUCER_BYTES_MIN: usize = 8 + 4 + 8 + 1;
const RECENT_BATCH_BYTES: usize = 8 * 3;

/// Why stored partition state could not be decoded. The bytes come from disk or a peer, so
/// every inconsistency is an error, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum StateDecodeError {
    #[error("partition state is truncated at byte {at}")]
    Truncated { at: usize },
    #[error("partition state format version {0} is unknown")]
    UnknownVersion(u8),
    #[error("partition state has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("partition state is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error("legacy JSON partition state: {0}")]
    Json(#[from] serde_json::Error),
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StateDecodeError> {
        let end = self.at.checked_add(N).filter(|end| *end <= self.bytes.len());
        let Some(end) = end else { return Err(StateDecodeError::Truncated { at: self.at }) };
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.at..end]);
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, StateDecodeError> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, StateDecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, StateDecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
}

impl PartitionState {
    /// The state in the binary encoding (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let recent: usize = self.producers.values().map(|p| p.recent.len()).sum();
        let mut out = Vec::with_capacity(
            HEADER_BYTES + self.producers.len() * PRODUCER_BYTES_MIN + recent * RECENT_BATCH_BYTES,
        );
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.next_offset.0.to_be_bytes());
        out.extend_from_slice(&self.log_start_offset.0.to_be_bytes());
        let count = u32::try_from(self.producers.len()).expect("producers are bounded by PRODUCERS_MAX");
        out.extend_from_slice(&count.to_be_bytes());
        for (id, producer) in &self.producers {
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&producer.epoch.0.to_be_bytes());
            out.extend_from_slice(&producer.last_active.0.to_be_bytes());
            let recent = u8::try_from(producer.recent.len()).expect("the dedup window is small");
            out.push(recent);
            for batch in &producer.recent {
                out.extend_from_slice(&batch.base_sequence.0.to_be_bytes());
                out.extend_from_slice(&batch.last_sequence.0.to_be_bytes());
                out.extend_from_slice(&batch.base_offset.0.to_be_bytes());
            }
        }
        out
    }

    /// Decodes [`PartitionState::to_bytes`] output, or a legacy JSON checkpoint.
    pub fn from_bytes(bytes: &[u8]) -> Result<PartitionState, StateDecodeError> {
        if bytes.first() == Some(&b'{') {
            return Ok(serde_json::from_slice(bytes)?);
        }
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(StateDecodeError::UnknownVersion(version));
        }
        let next_offset = Offset(r.u64()?);
        let log_start_offset = Offset(r.u64()?);
        if log_start_offset > next_offset {
            return Err(StateDecodeError::Inconsistent("log start is past the next offset"));
        }
        let count = r.u32()? as usize;
        if count > PRODUCERS_MAX || count > r.remaining() / PRODUCER_BYTES_MIN {
            return Err(StateDecodeError::Inconsistent("more producers than the bytes or the limit hold"));
        }
        let mut producers = BTreeMap::new();
        let mut previous: Option<ProducerId> = None;
        for _ in 0..count {
            let id = ProducerId(r.u64()?);
            if previous.is_some_and(|p| p >= id) {
                return Err(StateDecodeError::Inconsistent(
                    "producers are not in strictly increasing id order",
                ));
            }
            previous = Some(id);
            let epoch = ProducerEpoch(r.u32()?);
            let last_active = Offset(r.u64()?);
            let recent_count = r.u8()? as usize;
            if recent_count > PRODUCER_DEDUP_WINDOW {
                return Err(StateDecodeError::Inconsistent(
                    "a producer remembers more than the dedup window",
                ));
            }
            let mut recent = VecDeque::with_capacity(recent_count);
            for _ in 0..recent_count {
                let base_sequence = Sequence(r.u64()?);
                let last_sequence = Sequence(r.u64()?);
                let base_offset = Offset(r.u64()?);
                if last_sequence < base_sequence {
                    return Err(StateDecodeError::Inconsistent("a batch ends before it starts"));
                }
                recent.push_back(RecentBatch { base_sequence, last_sequence, base_offset });
            }
            producers.insert(id, ProducerState { epoch, recent, last_active });
        }
        if r.remaining() > 0 {
            return Err(StateDecodeError::TrailingBytes(r.remaining()));
        }
        Ok(PartitionState { next_offset, log_start_offset, producers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::header;

    fn busy_state() -> PartitionState {
        let mut s = PartitionState::default();
        for pid in 1..=20u64 {
            for seq in 0..10u64 {
                s.apply_batch(&header(pid, 2, seq * 3, 3));
            }
        }
        s.apply_batch(&header(0, 0, 0, 2));
        s.advance_log_start(Offset(17));
        s
    }

    #[test]
    fn state_round_trips_and_is_smaller_than_json() {
        let s = busy_state();
        let bytes = s.to_bytes();
        assert_eq!(PartitionState::from_bytes(&bytes).unwrap(), s);
        let json = serde_json::to_vec(&s).unwrap();
        assert!(bytes.len() * 2 < json.len(), "binary {} bytes, JSON {} bytes", bytes.len(), json.len());
        assert_eq!(
            PartitionState::from_bytes(&PartitionState::default().to_bytes()).unwrap(),
            PartitionState::default()
        );
    }

    #[test]
    fn legacy_json_checkpoints_still_decode() {
        let s = busy_state();
        assert_eq!(PartitionState::from_bytes(&serde_json::to_vec(&s).unwrap()).unwrap(), s);
        assert!(matches!(PartitionState::from_bytes(b"{garbage"), Err(StateDecodeError::Json(_))));
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error() {
        let bytes = busy_state().to_bytes();
        for cut in 0..bytes.len() {
            assert!(PartitionState::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(PartitionState::from_bytes(&longer), Err(StateDecodeError::TrailingBytes(1))));
        let mut version = bytes.clone();
        version[0] = 9;
        assert!(matches!(PartitionState::from_bytes(&version), Err(StateDecodeError::UnknownVersion(9))));
        let mut count = bytes.clone();
        count[17..21].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(PartitionState::from_bytes(&count), Err(StateDecodeError::Inconsistent(_))));
        let mut start = bytes;
        start[9..17].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(PartitionState::from_bytes(&start), Err(StateDecodeError::Inconsistent(_))));
    }

    proptest::proptest! {
        /// Whatever the bytes, decoding returns a value or an error; it never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = PartitionState::from_bytes(&bytes);
        }
    }
}
