//! Storage micro-benchmark: durable appends of one record batch per entry, from 1 and from 64
//! partitions at once, each partition with one append in flight (as a Raft log waits for its
//! fsync). Shows what group commit buys: 64 partitions share fsyncs instead of paying 64 each.
//!
//! ```text
//! cargo run --release -p sluice-storage --example storage_bench -- [--secs 5] [--runs 3] [--dir /path]
//! ```
//! The directory defaults to one under the system temp dir; put it on the disk you care about.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_storage::{Storage, StorageOptions};
use sluice_types::{GroupId, Record, RecordBatch};

struct Args {
    secs: u64,
    runs: usize,
    dir: Option<std::path::PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args { secs: 5, runs: 3, dir: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => args.secs = value.parse().expect("--secs N"),
            "--runs" => args.runs = value.parse().expect("--runs N"),
            "--dir" => args.dir = Some(value.into()),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

struct RunResult {
    appends_per_s: f64,
    mb_per_s: f64,
    appends_per_fsync: f64,
}

async fn run(dir: &std::path::Path, partitions: u64, record_bytes: usize, secs: u64) -> RunResult {
    let storage = Storage::open(dir, &StorageOptions::default()).unwrap();
    let mut groups = Vec::new();
    for p in 0..partitions {
        groups.push(storage.create_group(GroupId(p + 1)).await.unwrap());
    }
    let batch = RecordBatch {
        records: vec![Record { value: Bytes::from(vec![b'x'; record_bytes]), ..Record::default() }],
        ..RecordBatch::default()
    }
    .encode()
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let appends = Arc::new(AtomicU64::new(0));
    let before = storage.stats();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for group in groups {
        let (stop, appends, batch) = (stop.clone(), appends.clone(), batch.clone());
        tasks.push(tokio::spawn(async move {
            let mut index = 1u64;
            // Bounded by the stop flag, set after `secs`.
            while !stop.load(Ordering::Relaxed) {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let mut b = group.batch();
                b.put_entry(index, batch.clone());
                group
                    .write_then(b, move |r| {
                        let _ = tx.send(r);
                    })
                    .await
                    .unwrap();
                rx.await.unwrap().unwrap();
                appends.fetch_add(1, Ordering::Relaxed);
                index += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = storage.stats();
    storage.shutdown();
    let n = appends.load(Ordering::Relaxed) as f64;
    let fsyncs = (after.fsyncs - before.fsyncs).max(1) as f64;
    RunResult {
        appends_per_s: n / elapsed,
        mb_per_s: n * record_bytes as f64 / elapsed / 1e6,
        appends_per_fsync: n / fsyncs,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    println!(
        "storage_bench: {} s per run, median of {} runs, data under {}",
        args.secs,
        args.runs,
        base.display()
    );
    println!();
    println!("| record | partitions | appends/s | MB/s (record payload) | appends per fsync |");
    println!("|---|---|---|---|---|");
    let mut rates_by = std::collections::HashMap::new();
    for record_bytes in [100usize, 1024] {
        for partitions in [1u64, 64] {
            let mut rates = Vec::new();
            let mut mbs = Vec::new();
            let mut per_fsync = Vec::new();
            for _ in 0..args.runs {
                let dir = tempfile::tempdir_in(&base).unwrap();
                let r = run(dir.path(), partitions, record_bytes, args.secs).await;
                rates.push(r.appends_per_s);
                mbs.push(r.mb_per_s);
                per_fsync.push(r.appends_per_fsync);
            }
            let rate = median(rates);
            rates_by.insert((record_bytes, partitions), rate);
            println!(
                "| {record_bytes} B | {partitions} | {rate:.0} | {:.2} | {:.1} |",
                median(mbs),
                median(per_fsync)
            );
        }
    }
    println!();
    for record_bytes in [100usize, 1024] {
        let ratio = rates_by[&(record_bytes, 64)] / rates_by[&(record_bytes, 1)];
        // With one fsync per append, 64 partitions would get no more appends/s than one.
        println!(
            "{record_bytes} B: 64 partitions reach {ratio:.1}x the appends/s of one partition; \
             an append costs {:.1}% of its single-partition cost",
            100.0 / ratio
        );
    }
}
