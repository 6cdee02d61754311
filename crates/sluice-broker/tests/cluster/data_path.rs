//! Produce 100,000 keyed records with the SDK while the partition leader is killed -9 twice; then read
//! everything back: every acknowledged record exactly once, at its acknowledged offset, in
//! produce order per key, with no gaps in offsets.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::{Cluster as Client, Consumer, ConsumerConfig, Producer, ProducerConfig, StartAt};

use crate::harness::{Cluster, must_eventually, must_leader_of};

const RECORDS: u64 = 100_000;
const KEYS: usize = 64;
const PARTITIONS: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_two_leader_kills_exactly_once() {
    let mut cluster = Cluster::start(3, 1500);
    let admin = cluster.admin(&[1, 2, 3]);
    cluster.must_ready(3).await;
    let topic = cluster.must_create_topic(&admin, "events", PARTITIONS, 3).await;
    let group0 = topic.partitions[0].group_id;
    must_leader_of(&admin, group0, None).await;

    println!("--- produce {RECORDS} keyed records in the background");
    let client = Client::new(&cluster.grpc).unwrap();
    let producer = Arc::new(Producer::new(client.clone(), ProducerConfig::default()));
    let acked = Arc::new(AtomicU64::new(0));
    let (futures_tx, mut futures_rx) = tokio::sync::mpsc::channel(1024);
    let sender = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut per_key = vec![0u64; KEYS];
            for i in 0..RECORDS {
                let key = usize::try_from(i).unwrap() % KEYS;
                let value = format!("k{key}-{}", per_key[key]);
                per_key[key] += 1;
                let delivery = producer
                    .send("events", Some(Bytes::from(format!("k{key}"))), Bytes::from(value.clone()))
                    .await;
                futures_tx.send((value, delivery)).await.unwrap();
            }
        })
    };
    let waiter = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            while let Some((value, delivery)) = futures_rx.recv().await {
                let outcome = match delivery {
                    Ok(future) => future.await,
                    Err(e) => Err(e),
                };
                if outcome.is_ok() {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                results.push((value, outcome));
            }
            results
        })
    };

    for round in 1..=2u64 {
        let threshold = RECORDS * round / 3;
        must_eventually("acknowledgements to progress", Duration::from_mins(1), || async {
            (acked.load(Ordering::Relaxed) >= threshold).then_some(())
        })
        .await;
        let leader = must_leader_of(&admin, group0, None).await;
        println!("--- kill -9 node {leader}, the leader of partition 0 (round {round})");
        cluster.kill(leader);
        let killed_at = Instant::now();
        let survivors: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
        let new_leader = must_leader_of(&cluster.admin(&survivors), group0, Some(leader)).await;
        println!("partition 0 led by node {new_leader} {:?} after the kill", killed_at.elapsed());
        cluster.start_node(leader);
    }

    sender.await.unwrap();
    let results = waiter.await.unwrap();
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).take(3).collect();
    assert!(failed.is_empty(), "every record is acknowledged in the end: {failed:?}");
    assert_eq!(results.len() as u64, RECORDS);

    println!("--- read every partition back");
    let mut found: HashMap<String, (u32, u64)> = HashMap::new();
    let mut last_seq_by_key: HashMap<String, i64> = HashMap::new();
    for partition in 0..PARTITIONS {
        let mut consumer =
            Consumer::new(client.clone(), "events", partition, StartAt::Earliest, ConsumerConfig::default());
        let (earliest, end) = consumer.offsets().await.unwrap();
        assert_eq!(earliest, 0);
        let mut expected_offset = 0u64;
        while expected_offset < end {
            for record in consumer.poll().await.unwrap() {
                assert_eq!(record.offset, expected_offset, "partition {partition}: offsets have no gaps");
                expected_offset += 1;
                let value = String::from_utf8(record.value.to_vec()).unwrap();
                let (key, seq) = value.split_once('-').unwrap();
                let seq: i64 = seq.parse().unwrap();
                let last = last_seq_by_key.entry(key.to_string()).or_insert(-1);
                assert!(seq > *last, "key {key}: {seq} after {last}, out of produce order");
                *last = seq;
                let previous = found.insert(value.clone(), (partition, record.offset));
                assert!(
                    previous.is_none(),
                    "{value} appears twice: {previous:?} and ({partition}, {})",
                    record.offset
                );
            }
        }
    }
    for (value, outcome) in &results {
        let delivery = outcome.as_ref().unwrap();
        assert_eq!(
            found.get(value),
            Some(&(delivery.partition, delivery.offset)),
            "{value} is where its acknowledgement said"
        );
    }
    assert_eq!(found.len() as u64, RECORDS, "nothing but the acknowledged records");

    println!("--- push mode delivers the same records, in the same order, within its credit");
    must_push_agree(&client, &found).await;
}

/// Reads every partition through push subscriptions with a small credit and checks each record
/// is where the pull consumer found it.
async fn must_push_agree(client: &std::sync::Arc<Client>, found: &HashMap<String, (u32, u64)>) {
    let mut pushed = 0u64;
    for partition in 0..PARTITIONS {
        let mut consumer =
            Consumer::new(client.clone(), "events", partition, StartAt::Earliest, ConsumerConfig::default());
        let (_, end) = consumer.offsets().await.unwrap();
        // A small credit makes the server stop and wait for the client many times.
        let mut subscription = consumer.subscribe(100, 1 << 20).await.unwrap();
        let mut expected_offset = 0u64;
        while expected_offset < end {
            for record in subscription.next().await.unwrap() {
                assert_eq!(record.offset, expected_offset, "partition {partition}: pushed in order, no gaps");
                expected_offset += 1;
                let value = String::from_utf8(record.value.to_vec()).unwrap();
                assert_eq!(found.get(&value), Some(&(partition, record.offset)), "push agrees with pull");
                pushed += 1;
            }
        }
    }
    assert_eq!(pushed, RECORDS);
}
