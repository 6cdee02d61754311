//! The record batch: the unit a producer sends, a Raft entry carries and a consumer receives.
//!
//! Its layout is protobuf (`proto/sluice/v1/record.proto` documents it for other languages), with
//! one rule protobuf itself does not impose: the `crc32c` field (number 1, `fixed32`) is encoded
//! first, and its value is the CRC32C of every byte after it. Any corrupted byte of a batch is
//! therefore caught by one checksum over the whole encoding, header fields included, and the
//! broker validates a batch without re-encoding it: it stores and serves the producer's bytes.
//!
//! `records` holds the records as length-delimited `Record` messages, one after another,
//! compressed as a whole when `compression` says so.

use std::io::Read as _;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use crate::ids::{ProducerEpoch, ProducerId, Sequence};
use crate::limits::{BATCH_BYTES_MAX, BATCH_RECORDS_MAX, BATCH_UNCOMPRESSED_BYTES_MAX, RECORD_BYTES_MAX};

/// The layout version this code writes and reads.
pub const BATCH_VERSION: u32 = 1;

/// The tag byte of field 1 with wire type 5 (`fixed32`): every valid batch starts with it.
const CRC_TAG: u8 = (1 << 3) | 5;
/// The tag byte plus the four checksum bytes.
const CRC_PREFIX_BYTES: usize = 5;

/// How the `records` payload is compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    #[default]
    None,
    Lz4,
    Zstd,
}

impl Compression {
    fn to_wire(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    fn from_wire(v: i32) -> Result<Self, BatchError> {
        match v {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            2 => Ok(Compression::Zstd),
            other => Err(BatchError::UnknownCompression(other)),
        }
    }
}

/// Why a batch was refused. Every variant means nothing of the batch was accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch is {bytes} bytes, more than the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("batch does not start with the crc32c field")]
    MissingChecksum,
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("batch is not a valid protobuf RecordBatch: {0}")]
    Malformed(String),
    #[error("unsupported batch version {0}")]
    UnsupportedVersion(u32),
    #[error("unknown compression codec {0}")]
    UnknownCompression(i32),
    #[error("compressed records could not be decompressed: {0}")]
    Decompression(String),
    #[error("batch header says {header} records, payload holds {actual}")]
    RecordCountMismatch { header: u32, actual: u32 },
    #[error("batch holds no records")]
    Empty,
    #[error("batch holds {0} records, more than the limit")]
    TooManyRecords(u32),
    #[error("a record of {bytes} bytes exceeds the limit of {max}")]
    RecordTooLarge { bytes: usize, max: usize },
    #[error("uncompressed size {declared} in the header disagrees with the payload ({actual})")]
    UncompressedSizeMismatch { declared: usize, actual: usize },
    #[error("base sequence plus record count overflows")]
    SequenceOverflow,
}

/// One record header (a key/value pair of metadata).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct RecordHeader {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// One record as a producer gives it and a consumer receives it.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Record {
    /// Milliseconds relative to the batch's `base_timestamp_ms`.
    #[prost(sint64, tag = "1")]
    pub timestamp_delta_ms: i64,
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub key: Option<Bytes>,
    #[prost(bytes = "bytes", tag = "3")]
    pub value: Bytes,
    #[prost(message, repeated, tag = "4")]
    pub headers: Vec<RecordHeader>,
}

/// The wire message. Field 1 must be encoded first; prost encodes in field order.
#[derive(Clone, PartialEq, Message)]
struct RecordBatchWire {
    #[prost(fixed32, tag = "1")]
    crc32c: u32,
    #[prost(uint32, tag = "2")]
    version: u32,
    #[prost(uint64, tag = "3")]
    producer_id: u64,
    #[prost(uint32, tag = "4")]
    producer_epoch: u32,
    #[prost(uint64, tag = "5")]
    base_sequence: u64,
    #[prost(uint32, tag = "6")]
    record_count: u32,
    #[prost(int64, tag = "7")]
    base_timestamp_ms: i64,
    #[prost(int32, tag = "8")]
    compression: i32,
    #[prost(uint32, tag = "9")]
    uncompressed_bytes: u32,
    #[prost(bytes = "bytes", tag = "10")]
    records: Bytes,
}

/// What the broker needs to know of a batch: who sent it and how many records it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: Sequence,
    pub record_count: u32,
    pub base_timestamp_ms: i64,
    pub compression: Compression,
}

impl BatchHeader {
    /// Reads the header of a batch that was validated before (by the leader that appended it),
    /// without checking the checksum or walking the records: what every replica does on apply.
    /// Still never panics on bad bytes.
    pub fn read(bytes: &Bytes) -> Result<BatchHeader, BatchError> {
        if bytes.len() < CRC_PREFIX_BYTES || bytes[0] != CRC_TAG {
            return Err(BatchError::MissingChecksum);
        }
        let wire =
            RecordBatchWire::decode(bytes.clone()).map_err(|e| BatchError::Malformed(e.to_string()))?;
        if wire.version != BATCH_VERSION {
            return Err(BatchError::UnsupportedVersion(wire.version));
        }
        if wire.record_count == 0 {
            return Err(BatchError::Empty);
        }
        wire.base_sequence.checked_add(u64::from(wire.record_count)).ok_or(BatchError::SequenceOverflow)?;
        Ok(BatchHeader {
            producer_id: ProducerId(wire.producer_id),
            producer_epoch: ProducerEpoch(wire.producer_epoch),
            base_sequence: Sequence(wire.base_sequence),
            record_count: wire.record_count,
            base_timestamp_ms: wire.base_timestamp_ms,
            compression: Compression::from_wire(wire.compression)?,
        })
    }

    /// The sequence of the batch's last record.
    pub fn last_sequence(&self) -> Sequence {
        Sequence(self.base_sequence.0 + u64::from(self.record_count) - 1)
    }
}

/// A batch being built by a producer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordBatch {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: Sequence,
    pub base_timestamp_ms: i64,
    pub compression: Compression,
    pub records: Vec<Record>,
}

impl RecordBatch {
    /// Encodes the batch once; the result is what the broker stores and serves.
    ///
    /// Fails only when the result would break a limit, so a producer finds out before sending.
    pub fn encode(&self) -> Result<Bytes, BatchError> {
        let count = u32::try_from(self.records.len()).map_err(|_| BatchError::TooManyRecords(u32::MAX))?;
        if count == 0 {
            return Err(BatchError::Empty);
        }
        if count > BATCH_RECORDS_MAX {
            return Err(BatchError::TooManyRecords(count));
        }
        self.base_sequence.0.checked_add(u64::from(count)).ok_or(BatchError::SequenceOverflow)?;

        let mut plain = BytesMut::new();
        for record in &self.records {
            let len = record.encoded_len();
            if len > RECORD_BYTES_MAX {
                return Err(BatchError::RecordTooLarge { bytes: len, max: RECORD_BYTES_MAX });
            }
            record.encode_length_delimited(&mut plain).map_err(|e| BatchError::Malformed(e.to_string()))?;
        }
        if plain.len() > BATCH_UNCOMPRESSED_BYTES_MAX {
            return Err(BatchError::TooLarge { bytes: plain.len(), max: BATCH_UNCOMPRESSED_BYTES_MAX });
        }
        let uncompressed_bytes = u32::try_from(plain.len()).expect("bounded by BATCH_UNCOMPRESSED_BYTES_MAX");
        let records = compress(self.compression, plain.freeze())?;

        let wire = RecordBatchWire {
            crc32c: 0,
            version: BATCH_VERSION,
            producer_id: self.producer_id.0,
            producer_epoch: self.producer_epoch.0,
            base_sequence: self.base_sequence.0,
            record_count: count,
            base_timestamp_ms: self.base_timestamp_ms,
            compression: self.compression.to_wire(),
            uncompressed_bytes,
            records,
        };
        // Encode with a zero checksum: `fixed32` is always encoded, even when zero, as
        // `[CRC_TAG, 0, 0, 0, 0]`, so the prefix is in place and only its value is patched.
        let mut out = BytesMut::with_capacity(wire.encoded_len());
        // prost omits a default-valued proto3 scalar; write field 1 by hand, then the rest.
        out.put_u8(CRC_TAG);
        out.put_u32_le(0);
        let rest = RecordBatchWire { crc32c: 0, ..wire };
        rest.encode(&mut out).map_err(|e| BatchError::Malformed(e.to_string()))?;
        let crc = crc32c::crc32c(&out[CRC_PREFIX_BYTES..]);
        out[1..CRC_PREFIX_BYTES].copy_from_slice(&crc.to_le_bytes());
        if out.len() > BATCH_BYTES_MAX {
            return Err(BatchError::TooLarge { bytes: out.len(), max: BATCH_BYTES_MAX });
        }
        Ok(out.freeze())
    }
}

/// A batch whose bytes passed every check. It keeps the producer's bytes untouched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedBatch {
    header: BatchHeader,
    max_timestamp_ms: i64,
    bytes: Bytes,
}

impl ValidatedBatch {
    /// Checks a batch received from the network or read from disk: size limits, checksum over
    /// every byte, layout, version, compression, the record count and every record's size.
    /// Never panics, whatever the bytes.
    pub fn validate(bytes: Bytes) -> Result<ValidatedBatch, BatchError> {
        let (header, max_timestamp_ms, _) = check(&bytes)?;
        Ok(ValidatedBatch { header, max_timestamp_ms, bytes })
    }

    /// Validates like [`ValidatedBatch::validate`] and also returns the records, which checking
    /// the count decoded anyway: a consumer checks and decodes each batch in one pass.
    pub fn validate_with_records(bytes: Bytes) -> Result<(ValidatedBatch, Vec<Record>), BatchError> {
        let (header, max_timestamp_ms, records) = check(&bytes)?;
        Ok((ValidatedBatch { header, max_timestamp_ms, bytes }, records))
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The latest record timestamp in the batch.
    pub fn max_timestamp_ms(&self) -> i64 {
        self.max_timestamp_ms
    }

    /// The producer's bytes, exactly as received.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Decodes the records. The batch is valid, so this only fails on an internal bug.
    pub fn records(&self) -> Result<Vec<Record>, BatchError> {
        Ok(check(&self.bytes)?.2)
    }
}

/// Validates and, because checking the count needs it, decodes the records.
fn check(bytes: &Bytes) -> Result<(BatchHeader, i64, Vec<Record>), BatchError> {
    if bytes.len() > BATCH_BYTES_MAX {
        return Err(BatchError::TooLarge { bytes: bytes.len(), max: BATCH_BYTES_MAX });
    }
    if bytes.len() < CRC_PREFIX_BYTES || bytes[0] != CRC_TAG {
        return Err(BatchError::MissingChecksum);
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let computed = crc32c::crc32c(&bytes[CRC_PREFIX_BYTES..]);
    if stored != computed {
        return Err(BatchError::ChecksumMismatch { stored, computed });
    }
    let wire = RecordBatchWire::decode(bytes.clone()).map_err(|e| BatchError::Malformed(e.to_string()))?;
    if wire.version != BATCH_VERSION {
        return Err(BatchError::UnsupportedVersion(wire.version));
    }
    let compression = Compression::from_wire(wire.compression)?;
    if wire.record_count == 0 {
        return Err(BatchError::Empty);
    }
    if wire.record_count > BATCH_RECORDS_MAX {
        return Err(BatchError::TooManyRecords(wire.record_count));
    }
    wire.base_sequence.checked_add(u64::from(wire.record_count)).ok_or(BatchError::SequenceOverflow)?;
    let declared = wire.uncompressed_bytes as usize;
    if declared > BATCH_UNCOMPRESSED_BYTES_MAX {
        return Err(BatchError::TooLarge { bytes: declared, max: BATCH_UNCOMPRESSED_BYTES_MAX });
    }
    let mut plain = decompress(compression, wire.records, declared)?;
    if plain.len() != declared {
        return Err(BatchError::UncompressedSizeMismatch { declared, actual: plain.len() });
    }

    let mut records = Vec::with_capacity(wire.record_count.min(1024) as usize);
    // Records beyond the header's count are decoded only to be counted, so that the error says
    // how many the batch holds; the payload's size bounds that work.
    let mut beyond_count = 0usize;
    let mut max_delta = i64::MIN;
    while plain.has_remaining() {
        let before = plain.remaining();
        let record =
            Record::decode_length_delimited(&mut plain).map_err(|e| BatchError::Malformed(e.to_string()))?;
        let len = before - plain.remaining();
        if len > RECORD_BYTES_MAX {
            return Err(BatchError::RecordTooLarge { bytes: len, max: RECORD_BYTES_MAX });
        }
        if records.len() < wire.record_count as usize {
            max_delta = max_delta.max(record.timestamp_delta_ms);
            records.push(record);
        } else {
            beyond_count += 1;
        }
    }
    let actual = u32::try_from(records.len() + beyond_count).unwrap_or(u32::MAX);
    if actual != wire.record_count {
        return Err(BatchError::RecordCountMismatch { header: wire.record_count, actual });
    }
    let header = BatchHeader {
        producer_id: ProducerId(wire.producer_id),
        producer_epoch: ProducerEpoch(wire.producer_epoch),
        base_sequence: Sequence(wire.base_sequence),
        record_count: wire.record_count,
        base_timestamp_ms: wire.base_timestamp_ms,
        compression,
    };
    Ok((header, wire.base_timestamp_ms.saturating_add(max_delta), records))
}

fn compress(compression: Compression, plain: Bytes) -> Result<Bytes, BatchError> {
    match compression {
        Compression::None => Ok(plain),
        Compression::Lz4 => Ok(Bytes::from(lz4_flex::block::compress(&plain))),
        Compression::Zstd => zstd::bulk::compress(&plain, 1)
            .map(Bytes::from)
            .map_err(|e| BatchError::Decompression(e.to_string())),
    }
}

/// Decompresses at most `declared` bytes: a batch claiming a small size cannot make the broker
/// allocate more.
fn decompress(compression: Compression, data: Bytes, declared: usize) -> Result<Bytes, BatchError> {
    match compression {
        Compression::None => Ok(data),
        Compression::Lz4 => lz4_flex::block::decompress(&data, declared)
            .map(Bytes::from)
            .map_err(|e| BatchError::Decompression(e.to_string())),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(&data[..])
                .map_err(|e| BatchError::Decompression(e.to_string()))?;
            let mut out = Vec::with_capacity(declared.min(1 << 20));
            // Read one byte more than declared so that an oversize payload is noticed.
            (&mut decoder)
                .take(declared as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BatchError::Decompression(e.to_string()))?;
            Ok(Bytes::from(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            any::<i32>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(("[a-z]{0,6}", proptest::collection::vec(any::<u8>(), 0..8)), 0..3),
        )
            .prop_map(|(ts, key, value, headers)| Record {
                timestamp_delta_ms: i64::from(ts),
                key: key.map(Bytes::from),
                value: Bytes::from(value),
                headers: headers
                    .into_iter()
                    .map(|(key, value)| RecordHeader { key, value: Bytes::from(value) })
                    .collect(),
            })
    }

    fn arb_batch() -> impl Strategy<Value = RecordBatch> {
        (
            any::<u64>(),
            any::<u32>(),
            0..u64::MAX / 2,
            any::<i64>(),
            prop_oneof![Just(Compression::None), Just(Compression::Lz4), Just(Compression::Zstd)],
            proptest::collection::vec(arb_record(), 1..20),
        )
            .prop_map(|(pid, epoch, seq, ts, compression, records)| RecordBatch {
                producer_id: ProducerId(pid),
                producer_epoch: ProducerEpoch(epoch),
                base_sequence: Sequence(seq),
                base_timestamp_ms: ts / 2,
                compression,
                records,
            })
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity(batch in arb_batch()) {
            let bytes = batch.encode().unwrap();
            let valid = ValidatedBatch::validate(bytes.clone()).unwrap();
            prop_assert_eq!(valid.bytes(), &bytes);
            let header = valid.header();
            prop_assert_eq!(header.producer_id, batch.producer_id);
            prop_assert_eq!(header.producer_epoch, batch.producer_epoch);
            prop_assert_eq!(header.base_sequence, batch.base_sequence);
            prop_assert_eq!(header.record_count as usize, batch.records.len());
            prop_assert_eq!(header.compression, batch.compression);
            prop_assert_eq!(valid.records().unwrap(), batch.records.clone());
            prop_assert_eq!(&BatchHeader::read(&bytes).unwrap(), header);
            let (again, records) = ValidatedBatch::validate_with_records(bytes.clone()).unwrap();
            prop_assert_eq!(&again, &valid);
            prop_assert_eq!(records, batch.records.clone());
        }

        #[test]
        fn any_corrupted_byte_is_detected(batch in arb_batch(), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let bytes = batch.encode().unwrap();
            let mut corrupted = bytes.to_vec();
            let i = pos.index(corrupted.len());
            corrupted[i] ^= flip;
            prop_assert!(ValidatedBatch::validate(Bytes::from(corrupted)).is_err());
        }

        #[test]
        fn truncation_is_detected(batch in arb_batch(), cut in any::<prop::sample::Index>()) {
            let bytes = batch.encode().unwrap();
            let keep = cut.index(bytes.len());
            prop_assert!(ValidatedBatch::validate(bytes.slice(..keep)).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let bytes = Bytes::from(data);
            let _ = ValidatedBatch::validate(bytes.clone());
            let _ = BatchHeader::read(&bytes);
        }

        #[test]
        fn arbitrary_bytes_with_a_valid_checksum_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            // Random payloads almost never pass the checksum; fix it so that the decoder proper
            // sees garbage too.
            let mut bytes = vec![CRC_TAG, 0, 0, 0, 0];
            bytes.extend_from_slice(&data);
            let crc = crc32c::crc32c(&bytes[CRC_PREFIX_BYTES..]);
            bytes[1..CRC_PREFIX_BYTES].copy_from_slice(&crc.to_le_bytes());
            let _ = ValidatedBatch::validate(Bytes::from(bytes));
        }
    }

    fn one_record_batch(value: &[u8]) -> RecordBatch {
        RecordBatch {
            records: vec![Record { value: Bytes::copy_from_slice(value), ..Record::default() }],
            ..RecordBatch::default()
        }
    }

    /// Re-encodes a wire message with a correct checksum, to build batches that are intact but
    /// lie about their contents.
    fn seal(wire: &RecordBatchWire) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(CRC_TAG);
        out.put_u32_le(0);
        RecordBatchWire { crc32c: 0, ..wire.clone() }.encode(&mut out).unwrap();
        let crc = crc32c::crc32c(&out[CRC_PREFIX_BYTES..]);
        out[1..CRC_PREFIX_BYTES].copy_from_slice(&crc.to_le_bytes());
        out.freeze()
    }

    fn wire_of(batch: &RecordBatch) -> RecordBatchWire {
        RecordBatchWire::decode(batch.encode().unwrap()).unwrap()
    }

    #[test]
    fn wrong_record_count_is_refused() {
        let mut wire = wire_of(&one_record_batch(b"x"));
        wire.record_count = 2;
        assert_eq!(
            ValidatedBatch::validate(seal(&wire)),
            Err(BatchError::RecordCountMismatch { header: 2, actual: 1 })
        );
    }

    /// An outside client's batch whose header said 1 record but held 3 was refused with
    /// "payload holds 2": the error must count every record.
    #[test]
    fn a_count_below_the_payload_is_refused_with_the_true_count() {
        let three = RecordBatch {
            records: (0..3u8).map(|i| Record { value: Bytes::from(vec![i]), ..Record::default() }).collect(),
            ..RecordBatch::default()
        };
        let mut wire = wire_of(&three);
        wire.record_count = 1;
        assert_eq!(
            ValidatedBatch::validate(seal(&wire)),
            Err(BatchError::RecordCountMismatch { header: 1, actual: 3 })
        );
    }

    #[test]
    fn empty_batch_is_refused() {
        assert_eq!(RecordBatch::default().encode(), Err(BatchError::Empty));
    }

    #[test]
    fn unknown_version_and_codec_are_refused() {
        let mut wire = wire_of(&one_record_batch(b"x"));
        wire.version = 9;
        assert_eq!(ValidatedBatch::validate(seal(&wire)), Err(BatchError::UnsupportedVersion(9)));
        let mut wire = wire_of(&one_record_batch(b"x"));
        wire.compression = 7;
        assert_eq!(ValidatedBatch::validate(seal(&wire)), Err(BatchError::UnknownCompression(7)));
    }

    #[test]
    fn oversize_record_is_refused_by_producer() {
        let batch = one_record_batch(&vec![0u8; RECORD_BYTES_MAX + 1]);
        assert!(matches!(batch.encode(), Err(BatchError::RecordTooLarge { .. })));
    }

    #[test]
    fn oversize_batch_is_refused_before_any_decoding() {
        let bytes = Bytes::from(vec![0u8; BATCH_BYTES_MAX + 1]);
        assert!(matches!(ValidatedBatch::validate(bytes), Err(BatchError::TooLarge { .. })));
    }

    #[test]
    fn decompression_bomb_is_bounded_by_declared_size() {
        // 8 MiB of zeros compresses to almost nothing; declaring 1 KiB must not let it expand.
        let plain = vec![0u8; 8 << 20];
        let compressed = zstd::bulk::compress(&plain, 1).unwrap();
        let wire = RecordBatchWire {
            crc32c: 0,
            version: BATCH_VERSION,
            record_count: 1,
            compression: Compression::Zstd.to_wire(),
            uncompressed_bytes: 1024,
            records: Bytes::from(compressed),
            ..RecordBatchWire::default()
        };
        assert!(matches!(
            ValidatedBatch::validate(seal(&wire)),
            Err(BatchError::UncompressedSizeMismatch { declared: 1024, actual: 1025 })
        ));
    }

    #[test]
    fn encoding_starts_with_the_checksum_field() {
        let bytes = one_record_batch(b"hello").encode().unwrap();
        assert_eq!(bytes[0], CRC_TAG);
        // The generic protobuf decoder reads the same message: any language can decode it.
        let wire = RecordBatchWire::decode(bytes.clone()).unwrap();
        assert_eq!(wire.crc32c, crc32c::crc32c(&bytes[CRC_PREFIX_BYTES..]));
    }
}
