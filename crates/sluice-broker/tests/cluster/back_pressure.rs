//! Producers far faster than the node's admission bounds get BUSY answers with a retry delay; the
//! node's memory stays bounded; every acknowledged batch is readable afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::proto as pb;
use sluice_client::proto::consumer_client::ConsumerClient;
use sluice_client::proto::producer_client::ProducerClient;
use sluice_types::{Record, RecordBatch};

use crate::harness::{Cluster, must_leader_of};

const PRODUCERS: u64 = 16;
const BATCHES_PER_PRODUCER: u64 = 24;
const BATCH_VALUE_BYTES: usize = 512 * 1024;
/// The node's configured memory budget (`limits.memory_budget_bytes` below): its config is
/// refused unless in-flight bytes, memtables, cache and the runtime allowance fit in it.
const RSS_BUDGET_BYTES: u64 = 256 << 20;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_producers_gets_busy_and_memory_stays_bounded() {
    let cluster = Cluster::start_with(
        1,
        0,
        "[limits]\npartition_inflight_bytes = 4194304\nnode_inflight_bytes = 8388608\nbusy_retry_after_ms = 5\n\
         memory_budget_bytes = 268435456\n\
         [storage]\nwrite_buffer_bytes = 8388608\nblock_cache_bytes = 8388608\n",
    );
    let admin = cluster.admin(&[1]);
    cluster.must_ready(1).await;
    let topic = admin.create_topic("flood", 1, 1, pb::TopicConfig::default()).await.unwrap();
    must_leader_of(&admin, topic.partitions[0].group_id, None).await;
    let endpoint = format!("http://{}", cluster.addr(1));
    let pid = cluster.pid(1);

    let busy = Arc::new(AtomicU64::new(0));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            // Bounded: the test aborts it when the flood is over.
            loop {
                peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let endpoint = endpoint.clone();
        let busy = busy.clone();
        tasks.push(tokio::spawn(async move {
            let mut client =
                ProducerClient::connect(endpoint).await.unwrap().max_decoding_message_size(64 << 20);
            let mut acked = Vec::new();
            for b in 0..BATCHES_PER_PRODUCER {
                let value = Bytes::from(vec![u8::try_from((p * 31 + b) % 251).unwrap(); BATCH_VALUE_BYTES]);
                let batch = RecordBatch {
                    records: vec![Record { value, ..Record::default() }],
                    ..RecordBatch::default()
                }
                .encode()
                .unwrap();
                // Retry this batch until acknowledged, honouring BUSY's delay; bounded in time.
                while Instant::now() < deadline {
                    let request =
                        pb::ProduceRequest { topic: "flood".into(), partition: 0, batch: batch.clone() };
                    let response = client.produce(request).await.unwrap().into_inner();
                    match response.error.filter(|e| e.code != 0) {
                        None => {
                            acked.push((response.base_offset, batch.clone()));
                            break;
                        }
                        Some(e) if e.code == pb::ErrorCode::Busy as i32 => {
                            assert!(e.retry_after_ms > 0, "BUSY carries a retry delay");
                            busy.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(u64::from(e.retry_after_ms))).await;
                        }
                        Some(e) => panic!("unexpected error {e:?}"),
                    }
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    sampler.abort();
    let busy = busy.load(Ordering::Relaxed);
    let peak = peak_rss.load(Ordering::Relaxed);
    println!("acked {} batches, {busy} BUSY answers, peak RSS {} MiB", acked.len(), peak >> 20);
    assert_eq!(
        acked.len() as u64,
        PRODUCERS * BATCHES_PER_PRODUCER,
        "every batch is acknowledged in the end"
    );
    assert!(busy > 0, "producers far faster than the bounds were told BUSY");
    assert!(peak > 0 && peak < RSS_BUDGET_BYTES, "peak RSS {peak} exceeds the budget {RSS_BUDGET_BYTES}");

    println!("--- every acknowledged batch is readable, as sent");
    let mut consumer = ConsumerClient::connect(endpoint).await.unwrap().max_decoding_message_size(64 << 20);
    acked.sort_by_key(|(offset, _)| *offset);
    for (i, (offset, batch)) in acked.iter().enumerate() {
        assert_eq!(*offset, i as u64, "dense offsets");
        let response = consumer
            .fetch(pb::FetchRequest {
                topic: "flood".into(),
                partition: 0,
                offset: *offset,
                max_bytes: 1,
                min_bytes: 1,
                max_wait_ms: 0,
                read_from_follower: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.batches.first().map(|b| &b.batch), Some(batch), "batch at {offset}");
    }
}
