//! Looking one record up by topic, partition and offset (`Consumer::record_at`, what
//! `sluice message get` prints): value, key, timestamp and the producer's id and sequence; an
//! offset or partition that is not there is a typed error naming the bounds, at once. And by
//! time: the first record stamped at or after it (`Consumer::offset_for_time`,
//! `StartAt::Timestamp`); a time in the future is refused.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::proto::producer_client::ProducerClient;
use sluice_client::{
    ClientError, Cluster as Client, Consumer, ConsumerConfig, Producer, ProducerConfig, StartAt, proto as pb,
};
use sluice_types::{Record, RecordBatch};

use crate::harness::{Cluster, must_leader_of};

fn code(e: &ClientError) -> &str {
    match e {
        ClientError::Refused { code, .. } => code,
        _ => "",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_is_found_by_offset_or_time_and_a_missing_one_is_refused_at_once() {
    let cluster = Cluster::start(1, 0);
    let admin = cluster.admin(&[1]);
    cluster.must_ready(1).await;
    let topic = cluster.must_create_topic(&admin, "t", 2, 1).await;
    must_leader_of(&admin, topic.partitions[1].group_id, None).await;
    let client = Client::new(&cluster.grpc).unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let mut deliveries = Vec::new();
    for i in 0..5 {
        let delivery =
            producer.send_to("t", 1, Some(Bytes::from(format!("k{i}"))), Bytes::from(format!("v{i}")));
        deliveries.push(delivery.await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await;

    let config = ConsumerConfig::default();
    let mut consumer = Consumer::new(client.clone(), "t", 1, StartAt::Earliest, config.clone());
    let third = consumer.record_at(3).await.unwrap();
    assert_eq!((third.partition, third.offset), (1, 3));
    assert_eq!(third.value, Bytes::from("v3"));
    assert_eq!(third.key, Some(Bytes::from("k3")));
    assert!(i128::from(third.timestamp_ms) >= i128::try_from(before).unwrap(), "stamped when sent");
    let stamp = third.producer.expect("the SDK's producer is idempotent");
    assert_eq!(stamp.sequence, 3, "the fourth record of its producer in this partition");
    let first = consumer.record_at(0).await.unwrap();
    assert_eq!(first.producer.map(|p| (p.id, p.epoch)), Some((stamp.id, stamp.epoch)));

    println!("--- past the end, an empty partition, a partition that does not exist: refused at once");
    let started = Instant::now();
    let past = consumer.record_at(5).await.unwrap_err();
    assert_eq!(code(&past), "OFFSET_OUT_OF_RANGE", "{past}");
    assert!(past.to_string().contains("offsets 0 to 4"), "{past}");
    let mut empty = Consumer::new(client.clone(), "t", 0, StartAt::Earliest, config.clone());
    let empty = empty.record_at(0).await.unwrap_err();
    assert_eq!(code(&empty), "OFFSET_OUT_OF_RANGE", "{empty}");
    assert!(empty.to_string().contains("t/0 is empty"), "{empty}");
    let mut missing = Consumer::new(client.clone(), "t", 9, StartAt::Earliest, config);
    let missing = missing.record_at(0).await.unwrap_err();
    assert_eq!(code(&missing), "UNKNOWN_TOPIC_OR_PARTITION", "{missing}");
    assert!(started.elapsed() < Duration::from_secs(5), "no lookup waited: {:?}", started.elapsed());

    println!("--- by time: two batches written with known stamps to partition 0");
    let mut raw = ProducerClient::connect(format!("http://{}", cluster.addr(1))).await.unwrap();
    for (base, deltas) in [(1_000_000_i64, vec![0_i64, 10, 20]), (1_000_100, vec![0, 5])] {
        let batch = RecordBatch {
            base_timestamp_ms: base,
            records: deltas
                .iter()
                .map(|d| Record {
                    timestamp_delta_ms: *d,
                    value: Bytes::from(format!("at {}", base + d)),
                    ..Record::default()
                })
                .collect(),
            ..RecordBatch::default()
        };
        let request = pb::ProduceRequest { topic: "t".into(), partition: 0, batch: batch.encode().unwrap() };
        let answer = raw.produce(request).await.unwrap().into_inner();
        assert!(answer.error.is_none(), "{:?}", answer.error);
    }
    let mut by_time = Consumer::new(client.clone(), "t", 0, StartAt::Earliest, ConsumerConfig::default());
    for (t, expected) in [
        (0, 0),
        (1_000_000, 0),
        (1_000_010, 1),
        (1_000_015, 2),
        (1_000_050, 3),
        (1_000_105, 4),
        (1_000_106, 5),
    ] {
        assert_eq!(
            by_time.offset_for_time(t).await.unwrap(),
            expected,
            "the first record stamped at or after {t}"
        );
    }
    let future = by_time.offset_for_time(i64::MAX / 2).await.unwrap_err();
    assert_eq!(code(&future), "INVALID_REQUEST", "{future}");
    let mut from_time =
        Consumer::new(client.clone(), "t", 0, StartAt::Timestamp(1_000_050), ConsumerConfig::default());
    let first = from_time.poll().await.unwrap();
    assert_eq!(
        first.first().map(|r| (r.offset, r.timestamp_ms)),
        Some((3, 1_000_100)),
        "a consumer starts there"
    );
}
