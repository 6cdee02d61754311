//! Committed batches as pull and push consumers receive them.

use sluice_proto::v1 as pb;
use sluice_raft::StoredBatch;

/// The most bytes one fetch or push returns (at least one whole batch is returned even if larger).
pub const FETCH_BYTES_MAX: u32 = 16 * 1024 * 1024;

/// The bytes a fetch returns when the request leaves `max_bytes` at 0.
pub const FETCH_BYTES_DEFAULT: u32 = 1024 * 1024;

/// Batches as the wire carries them: the producer's bytes, unchanged.
pub fn batches_to_pb(batches: Vec<StoredBatch>) -> Vec<pb::StoredBatch> {
    batches.into_iter().map(|b| pb::StoredBatch { base_offset: b.base_offset.0, batch: b.bytes }).collect()
}
