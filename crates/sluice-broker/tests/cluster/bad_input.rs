//! Bad input on the data path gets a typed error, never a panic, and writes nothing.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use sluice_client::proto as pb;
use sluice_client::proto::consumer_client::ConsumerClient;
use sluice_client::proto::producer_client::ProducerClient;
use sluice_types::{Record, RecordBatch};

use crate::harness::{Cluster, must_eventually};

fn code(e: Option<&pb::Error>) -> pb::ErrorCode {
    e.and_then(|e| pb::ErrorCode::try_from(e.code).ok()).unwrap_or(pb::ErrorCode::None)
}

/// A batch with one record of `bytes` bytes, built with the generated types (the SDK's codec
/// refuses to build one this large), with a correct checksum.
fn oversize_record_batch(bytes: usize) -> Bytes {
    let record = pb::Record { value: Bytes::from(vec![7u8; bytes]), ..pb::Record::default() };
    let records = record.encode_length_delimited_to_vec();
    let wire = pb::RecordBatch {
        crc32c: 0,
        version: 1,
        record_count: 1,
        uncompressed_bytes: u32::try_from(records.len()).unwrap(),
        records: Bytes::from(records),
        ..pb::RecordBatch::default()
    };
    let mut out = vec![0x0d, 0, 0, 0, 0];
    wire.encode(&mut out).unwrap();
    let crc = crc32c::crc32c(&out[5..]);
    out[1..5].copy_from_slice(&crc.to_le_bytes());
    Bytes::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_errors_and_change_nothing() {
    let cluster = Cluster::start(1, 0);
    let admin = cluster.admin(&[1]);
    cluster.must_ready(1).await;
    admin.create_topic("t", 1, 1, pb::TopicConfig::default()).await.unwrap();
    let endpoint = format!("http://{}", cluster.addr(1));
    let mut producer =
        ProducerClient::connect(endpoint.clone()).await.unwrap().max_decoding_message_size(64 << 20);
    let mut consumer = ConsumerClient::connect(endpoint.clone()).await.unwrap();
    let good = RecordBatch {
        records: vec![Record { value: Bytes::from_static(b"ok"), ..Record::default() }],
        ..RecordBatch::default()
    }
    .encode()
    .unwrap();
    let produce = |topic: &str, partition: u32, batch: Bytes| pb::ProduceRequest {
        topic: topic.into(),
        partition,
        batch,
    };

    // The partition needs a leader before anything can be written.
    let first = must_eventually("a first acknowledged batch", Duration::from_secs(20), || {
        let mut producer = producer.clone();
        let request = produce("t", 0, good.clone());
        async move {
            let response = producer.produce(request).await.ok()?.into_inner();
            (code(response.error.as_ref()) == pb::ErrorCode::None).then_some(response.base_offset)
        }
    })
    .await;
    assert_eq!(first, 0);

    println!("--- unknown topic and partition");
    let r = producer.produce(produce("nope", 0, good.clone())).await.unwrap().into_inner();
    assert_eq!(code(r.error.as_ref()), pb::ErrorCode::UnknownTopicOrPartition);
    let r = producer.produce(produce("t", 9, good.clone())).await.unwrap().into_inner();
    assert_eq!(code(r.error.as_ref()), pb::ErrorCode::UnknownTopicOrPartition);

    println!("--- corrupted, garbage and oversize batches");
    let mut corrupted = good.to_vec();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0x40;
    for (name, batch, expected) in [
        ("corrupted", Bytes::from(corrupted), pb::ErrorCode::InvalidBatch),
        ("garbage", Bytes::from_static(b"definitely not a batch"), pb::ErrorCode::InvalidBatch),
        ("empty", Bytes::new(), pb::ErrorCode::InvalidBatch),
        ("oversize record", oversize_record_batch(1536 * 1024), pb::ErrorCode::RecordTooLarge),
        ("oversize batch", oversize_record_batch(4 * 1024 * 1024 + 10), pb::ErrorCode::BatchTooLarge),
        ("5 MiB batch", oversize_record_batch(5 << 20), pb::ErrorCode::BatchTooLarge),
        ("5 MiB of zeros", Bytes::from(vec![0u8; 5 << 20]), pb::ErrorCode::BatchTooLarge),
    ] {
        let r = producer.produce(produce("t", 0, batch)).await.unwrap().into_inner();
        assert_eq!(code(r.error.as_ref()), expected, "{name}: {:?}", r.error);
        if expected == pb::ErrorCode::BatchTooLarge {
            let message = &r.error.as_ref().unwrap().message;
            assert!(message.contains("limit of 4194304"), "{name}: the answer names the limit: {message}");
        }
    }
    // A request beyond the largest a node reads is refused by the transport with a status.
    let huge = producer.produce(produce("t", 0, Bytes::from(vec![0u8; 20 << 20]))).await;
    assert_eq!(huge.map(|_| ()).unwrap_err().code(), tonic::Code::OutOfRange, "a 20 MiB request is refused");

    println!("--- offsets beyond the end, max_bytes 0");
    let fetch = |offset: u64, max_bytes: u32| pb::FetchRequest {
        topic: "t".into(),
        partition: 0,
        offset,
        max_bytes,
        min_bytes: 1,
        max_wait_ms: 0,
        read_from_follower: false,
    };
    let r = consumer.fetch(fetch(1000, 1024)).await.unwrap().into_inner();
    assert_eq!(code(r.error.as_ref()), pb::ErrorCode::OffsetOutOfRange);
    assert_eq!(r.error.as_ref().unwrap().high_watermark, 1, "the error names the valid range");
    let r = consumer.fetch(fetch(u64::MAX, 1024)).await.unwrap().into_inner();
    assert_eq!(code(r.error.as_ref()), pb::ErrorCode::OffsetOutOfRange);
    let r = consumer.fetch(fetch(0, 0)).await.unwrap().into_inner();
    assert_eq!(code(r.error.as_ref()), pb::ErrorCode::None, "max_bytes 0 means the default");
    assert_eq!(r.batches.len(), 1, "max_bytes 0 returns what is there");
    println!("--- a max_wait_ms of u32::MAX is cut to the server's cap");
    let asked = std::time::Instant::now();
    let long_poll = tokio::time::timeout(
        Duration::from_secs(45),
        consumer.fetch(pb::FetchRequest { max_wait_ms: u32::MAX, ..fetch(1, 1024) }),
    )
    .await
    .expect("the fetch is answered within the server's 30 s cap")
    .unwrap()
    .into_inner();
    assert_eq!(code(long_poll.error.as_ref()), pb::ErrorCode::None);
    assert!(long_poll.batches.is_empty(), "nothing was there to wait for");
    assert!(asked.elapsed() >= Duration::from_secs(29), "the fetch waited as long as the cap allows");
    let r = consumer
        .fetch(pb::FetchRequest { topic: "nope".into(), ..fetch(0, 1024) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(r.error.as_ref()), pb::ErrorCode::UnknownTopicOrPartition);

    println!("--- garbage on the wire");
    for garbage in
        [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0xffu8; 512][..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"]
    {
        let mut socket = std::net::TcpStream::connect(cluster.addr(1)).unwrap();
        let _ = socket.write_all(garbage);
    }

    println!("--- nothing was written, and the node still serves");
    let r = consumer.fetch(fetch(0, 1 << 20)).await.unwrap().into_inner();
    assert_eq!(code(r.error.as_ref()), pb::ErrorCode::None);
    assert_eq!(r.high_watermark, 1, "only the one good batch was written");
    assert_eq!(r.batches.len(), 1);
    assert_eq!(r.batches[0].batch, good, "served as the producer's bytes");
    assert!(!cluster.log(1).contains("panicked"), "the node panicked");

    println!("--- the standard gRPC health service says SERVING");
    let channel = tonic::transport::Endpoint::from_shared(endpoint).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}
