//! Latency of one committed append at a time on a three-replica partition in one process
//! (in-memory transport, one RocksDB per replica): the Raft and storage share of a produce's
//! latency, without gRPC or the client.
//!
//! ```text
//! cargo run --release -p sluice-raft --example append_latency -- [APPENDS]
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::impls::BasicNode;
use sluice_raft::network::LocalNetwork;
use sluice_raft::{PartitionGroup, RaftDispatcher, RaftSettings};
use sluice_storage::{Storage, StorageOptions};
use sluice_types::{GroupId, Record, RecordBatch, ValidatedBatch};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let appends: usize = std::env::args().nth(1).map_or(3000, |a| a.parse().expect("APPENDS"));
    let network = LocalNetwork::new();
    let settings = RaftSettings::default();
    let mut keep = Vec::new();
    let mut groups = Vec::new();
    for node in 1..=3u64 {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let storage = Storage::open(dir.path(), &StorageOptions::default()).unwrap();
        let dispatcher = Arc::new(RaftDispatcher::default());
        let transport = network.add_node(node, dispatcher.clone());
        let group = PartitionGroup::open(node, GroupId(1), &storage, transport, &dispatcher, &settings)
            .await
            .unwrap();
        groups.push(group);
        keep.push((dir, storage, dispatcher));
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3).map(|n| (n, BasicNode::new(format!("n{n}")))).collect();
    groups[0].initialize(members).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while groups[0].metrics().current_leader != Some(1) {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let batch = ValidatedBatch::validate(
        RecordBatch {
            records: vec![Record { value: Bytes::from(vec![b'x'; 100]), ..Record::default() }],
            ..RecordBatch::default()
        }
        .encode()
        .unwrap(),
    )
    .unwrap();
    let mut micros = Vec::with_capacity(appends);
    for _ in 0..appends {
        let started = Instant::now();
        groups[0].append(vec![batch.clone()]).await.unwrap();
        micros.push(started.elapsed().as_micros() as u64);
    }
    micros.sort_unstable();
    let q = |p: f64| micros[((micros.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "{appends} sequential appends, 3 replicas in-process: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
}
