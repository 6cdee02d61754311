//! What a batch costs the CPU that handles it: the producer's encoding and the leader's
//! validation, per record, for batches of 100 B and 1 KiB records. Decision 0013 weighs a
//! record-level produce (the broker encoding for the client) with these figures.
//!
//!     cargo run --release -p sluice-types --example batch_cost
//!
//! A measurement, not a test: run it on a quiet machine and read the medians.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::cast_precision_loss)]

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use sluice_types::{Record, RecordBatch, ValidatedBatch};

/// Rounds per shape; the median is printed.
const ROUNDS: usize = 7;
/// Batches encoded or validated per round.
const BATCHES: usize = 2_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    for (size, records) in [(100usize, 256usize), (1024, 256), (100, 1)] {
        let batch = RecordBatch {
            records: (0..records)
                .map(|i| Record {
                    key: Some(Bytes::from(format!("key-{i}"))),
                    value: Bytes::from(vec![u8::try_from(i % 251).unwrap(); size]),
                    ..Record::default()
                })
                .collect(),
            ..RecordBatch::default()
        };
        let encoded = batch.encode().unwrap();
        let per_record_ns = |rounds: Vec<f64>| median(rounds) / (BATCHES * records) as f64;
        let encode: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..BATCHES {
                    black_box(black_box(&batch).encode().unwrap());
                }
                start.elapsed().as_nanos() as f64
            })
            .collect();
        let validate: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..BATCHES {
                    black_box(ValidatedBatch::validate(black_box(encoded.clone())).unwrap());
                }
                start.elapsed().as_nanos() as f64
            })
            .collect();
        println!(
            "RESULT test=batch_cost record_bytes={size} records_per_batch={records} batch_bytes={} \
             encode_ns_per_record={:.0} validate_ns_per_record={:.0}",
            encoded.len(),
            per_record_ns(encode),
            per_record_ns(validate),
        );
    }
}
