//! Offsets for a time (Kafka's `offsetsForTimes`): the first record stamped at or after a time,
//! found by a binary search over the partition's committed batches, each probe one batch read.
//!
//! Producers stamp records when they send them, so stamps grow with offsets but for clock skew
//! between producers; the search takes them as growing (as Kafka's time index does) and may
//! land a little early or late around a record stamped out of order, never outside the log.

use sluice_types::{Offset, ValidatedBatch};

use crate::partition_sm::{FetchError, PartitionReader, StoredBatch};

/// Batches read at most by one lookup: the search halves the offsets left at each probe, so
/// 64 cover any log.
const PROBES_MAX: u32 = 64;

/// The offset of the first committed record of `reader`'s partition stamped at or after
/// `timestamp_ms`, or the high watermark when none is.
pub fn offset_for_time(reader: &PartitionReader, timestamp_ms: i64) -> Result<Offset, FetchError> {
    let progress = reader.progress();
    search(progress.log_start.0, progress.high_watermark.0, timestamp_ms, |at| {
        let batch = reader
            .read(Offset(at), 1)?
            .into_iter()
            .next()
            .ok_or_else(|| FetchError::Corrupt(format!("no committed batch holds offset {at}")))?;
        stamps(&batch)
    })
}

/// A batch's first offset and its records' stamps, in order.
fn stamps(batch: &StoredBatch) -> Result<(u64, Vec<i64>), FetchError> {
    let (validated, records) = ValidatedBatch::validate_with_records(batch.bytes.clone())
        .map_err(|e| FetchError::Corrupt(format!("batch at {}: {e}", batch.base_offset)))?;
    let base = validated.header().base_timestamp_ms;
    Ok((batch.base_offset.0, records.iter().map(|r| base.saturating_add(r.timestamp_delta_ms)).collect()))
}

/// The search over offsets `[start, end)`; `batch_at(o)` gives the batch holding `o`.
fn search(
    start: u64,
    end: u64,
    timestamp_ms: i64,
    mut batch_at: impl FnMut(u64) -> Result<(u64, Vec<i64>), FetchError>,
) -> Result<Offset, FetchError> {
    // Every batch before `lo` ends before the time; the first batch that reaches it starts at
    // or after `lo` and before `hi` (or there is none, and the answer is `end`).
    let (mut lo, mut hi) = (start, end);
    let mut found: Option<(u64, Vec<i64>)> = None;
    for _ in 0..PROBES_MAX {
        if lo >= hi {
            break;
        }
        let (base, stamps) = batch_at(lo + (hi - lo) / 2)?;
        let next = base + stamps.len() as u64;
        if stamps.iter().all(|t| *t < timestamp_ms) {
            lo = next;
        } else {
            hi = base;
            found = Some((base, stamps));
        }
    }
    Ok(Offset(match found {
        Some((base, stamps)) if base == lo => {
            base + stamps.iter().position(|t| *t >= timestamp_ms).unwrap_or(stamps.len()) as u64
        }
        _ => lo.min(end),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of batches of `sizes` records, record `o` stamped `stamp(o)`.
    fn log(sizes: &[u64], stamp: impl Fn(u64) -> i64) -> Vec<(u64, Vec<i64>)> {
        let mut base = 0;
        sizes
            .iter()
            .map(|n| {
                let batch = (base, (base..base + n).map(&stamp).collect());
                base += n;
                batch
            })
            .collect()
    }

    fn lookup(batches: &[(u64, Vec<i64>)], start: u64, t: i64) -> (u64, u32) {
        let end = batches.last().map_or(0, |(b, s)| b + s.len() as u64);
        let mut probes = 0;
        let found = search(start, end, t, |at| {
            probes += 1;
            Ok(batches.iter().find(|(b, s)| *b <= at && at < b + s.len() as u64).cloned().unwrap())
        })
        .unwrap();
        (found.0, probes)
    }

    #[test]
    fn finds_the_first_record_at_or_after_the_time() {
        // 1,000 records in batches of 1 to 7, stamped 10 ms apart from 1,000.
        let sizes: Vec<u64> = (0..300).map(|i| 1 + i % 7).collect();
        let total: u64 = sizes.iter().sum();
        let batches = log(&sizes, |o| 1_000 + 10 * i64::try_from(o).unwrap());
        for o in [0, 1, 2, 17, 500, total - 1] {
            let t = 1_000 + 10 * i64::try_from(o).unwrap();
            assert_eq!(lookup(&batches, 0, t).0, o, "exactly a record's stamp");
            assert_eq!(lookup(&batches, 0, t - 5).0, o, "between two records' stamps");
        }
        assert_eq!(lookup(&batches, 0, 0).0, 0, "before everything: the start");
        assert_eq!(lookup(&batches, 0, i64::MAX).0, total, "after everything: the end");
        let (_, probes) = lookup(&batches, 0, 1_000 + 10 * 700);
        assert!(probes <= 12, "a binary search: {probes} probes for {} batches", sizes.len());
    }

    #[test]
    fn records_with_equal_stamps_resolve_to_the_first_and_a_log_start_is_honoured() {
        // Ten batches of 5, every record of batch i stamped 100 * i.
        let batches = log(&[5; 10], |o| 100 * i64::try_from(o / 5).unwrap());
        assert_eq!(lookup(&batches, 0, 300).0, 15);
        assert_eq!(lookup(&batches, 0, 301).0, 20);
        // Retention removed the first four batches: nothing before the log start is answered.
        assert_eq!(lookup(&batches[4..], 20, 0).0, 20);
        assert_eq!(lookup(&[], 0, 5).0, 0, "an empty log answers its end");
    }
}
