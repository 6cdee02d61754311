//! Killing the leader: a new leader continues with the same offsets, nothing acknowledged is
//! lost, and an idempotent producer's retry of an in-doubt batch is not duplicated.

use std::time::{Duration, Instant};

use sluice_partition::BatchOutcome;
use sluice_raft::AppendFailure;
use sluice_types::{Offset, ValidatedBatch};

use crate::harness::{ReplicaSet, must_batch, must_eventually};

const PRODUCER: u64 = 7;

/// Appends `batch` through whichever node is leader, retrying (same batch, same sequence) until
/// an outcome is known, as an idempotent producer does.
async fn must_append(set: &ReplicaSet, batch: &ValidatedBatch) -> BatchOutcome {
    must_eventually("an acknowledged append", Duration::from_secs(20), || async {
        for node in set.running() {
            match set.group(node).append(vec![batch.clone()]).await {
                Ok(response) => return Some(response[0].clone()),
                Err(AppendFailure::NotLeader { .. } | AppendFailure::Indeterminate(_)) => {}
            }
        }
        None
    })
    .await
}

fn must_base(outcome: &BatchOutcome) -> Offset {
    match outcome {
        BatchOutcome::Appended { base_offset } | BatchOutcome::Duplicate { base_offset } => *base_offset,
        BatchOutcome::Rejected(e) => panic!("batch rejected: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_leader_continues_offsets_and_loses_nothing_acknowledged() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let mut set = ReplicaSet::start(&[1, 2, 3]).await;
    let first_leader = set.must_leader(Duration::from_secs(10)).await;

    tracing::info!("--- append through the first leader");
    let mut seq = 0u64;
    let mut next = Offset(0);
    for i in 0..40u32 {
        let count = 1 + i % 5;
        let outcome = set.group(first_leader).append(vec![must_batch(PRODUCER, seq, count)]).await.unwrap();
        assert_eq!(outcome, vec![BatchOutcome::Appended { base_offset: next }]);
        seq += u64::from(count);
        next = next.plus(u64::from(count));
    }

    tracing::info!("--- kill the leader with a batch in flight");
    let in_doubt = must_batch(PRODUCER, seq, 3);
    let in_flight = {
        let group = set.group(first_leader).clone();
        let batch = in_doubt.clone();
        tokio::spawn(async move { group.append(vec![batch]).await })
    };
    let killed_at = Instant::now();
    set.kill(first_leader).await;
    let first_answer = in_flight.await.unwrap();

    tracing::info!("--- the producer retries the in-doubt batch on the new leader");
    let retried = must_append(&set, &in_doubt).await;
    let failover = killed_at.elapsed();
    println!("leader kill to next acknowledged write: {failover:?}");
    assert_eq!(must_base(&retried), next, "the in-doubt batch takes the next offsets exactly once");
    if let Ok(response) = first_answer {
        // The first attempt was committed: the retry must be recognised as its duplicate.
        assert_eq!(response, vec![BatchOutcome::Appended { base_offset: next }]);
        assert_eq!(retried, BatchOutcome::Duplicate { base_offset: next });
    }
    seq += 3;
    next = next.plus(3);
    let second_leader = set.must_leader(Duration::from_secs(10)).await;
    assert_ne!(second_leader, first_leader);

    tracing::info!("--- the new leader continues the same offsets");
    for i in 0..40u32 {
        let count = 1 + i % 3;
        let outcome = must_append(&set, &must_batch(PRODUCER, seq, count)).await;
        assert_eq!(outcome, BatchOutcome::Appended { base_offset: next });
        seq += u64::from(count);
        next = next.plus(u64::from(count));
    }

    tracing::info!("--- every acknowledged record is there once, in order, on every replica");
    set.start_node(first_leader).await;
    for node in [1, 2, 3] {
        set.must_catch_up(node, next, Duration::from_secs(20)).await;
        let batches = set.must_read_all(node, Offset(0));
        let mut expected_offset = 0u64;
        let mut values = Vec::new();
        for batch in &batches {
            assert_eq!(batch.base_offset, Offset(expected_offset), "node {node}: offsets are dense");
            let records = ValidatedBatch::validate(batch.bytes.clone()).unwrap().records().unwrap();
            expected_offset += records.len() as u64;
            values.extend(records.into_iter().map(|r| String::from_utf8(r.value.to_vec()).unwrap()));
        }
        let expected: Vec<String> = (0..seq).map(|s| format!("p{PRODUCER}-s{s}")).collect();
        assert_eq!(values, expected, "node {node}: exactly the acknowledged records, once each, in order");
        assert_eq!(expected_offset, next.0);
    }
}
