//! `ProduceStream`: batches sent without waiting are appended in the order sent and answered in
//! that order; the first error answer ends the stream; a node serving as many produce streams as
//! it may answers a new one `BUSY`.

use std::time::Duration;

use bytes::Bytes;
use sluice_client::proto as pb;
use sluice_client::proto::consumer_client::ConsumerClient;
use sluice_client::proto::producer_client::ProducerClient;
use sluice_types::{ProducerEpoch, ProducerId, Record, RecordBatch, Sequence};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::harness::{Cluster, must_eventually, must_leader_of};

/// A batch of `count` records "sequence+i" of producer `id` at epoch 0.
fn batch(id: u64, sequence: u64, count: u64) -> Bytes {
    RecordBatch {
        producer_id: ProducerId(id),
        producer_epoch: ProducerEpoch(0),
        base_sequence: Sequence(sequence),
        records: (0..count)
            .map(|i| Record { value: Bytes::from(format!("{}", sequence + i)), ..Record::default() })
            .collect(),
        ..RecordBatch::default()
    }
    .encode()
    .unwrap()
}

fn produce(batch: Bytes) -> pb::ProduceRequest {
    pb::ProduceRequest { topic: "t".into(), partition: 0, batch }
}

fn code(answer: &pb::ProduceResponse) -> pb::ErrorCode {
    answer.error.as_ref().and_then(|e| pb::ErrorCode::try_from(e.code).ok()).unwrap_or(pb::ErrorCode::None)
}

/// Every record value of partition 0, in offset order.
async fn values(consumer: &mut ConsumerClient<tonic::transport::Channel>) -> Vec<String> {
    let request = pb::FetchRequest {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        max_bytes: 1 << 20,
        ..pb::FetchRequest::default()
    };
    let answer = consumer.fetch(request).await.unwrap().into_inner();
    assert!(answer.error.is_none(), "{:?}", answer.error);
    let (records, _next) = sluice_client::decode_batches(0, answer.batches, 0).unwrap();
    records.into_iter().map(|r| String::from_utf8(r.value.to_vec()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_appends_in_order_and_ends_at_its_first_error() {
    let cluster = Cluster::start_with(1, 0, "[limits]\nproduce_streams_max = 1\n");
    let admin = cluster.admin(&[1]);
    cluster.must_ready(1).await;
    let topic = cluster.must_create_topic(&admin, "t", 1, 1).await;
    must_leader_of(&admin, topic.partitions[0].group_id, None).await;
    let endpoint = format!("http://{}", cluster.addr(1));
    let mut producer = ProducerClient::connect(endpoint.clone()).await.unwrap();
    let mut consumer = ConsumerClient::connect(endpoint).await.unwrap();
    let issued = producer.init_producer(pb::InitProducerRequest { producer_id: None }).await.unwrap();
    let id = issued.into_inner().producer_id;
    println!("--- eight batches of three records, sent before any answer is read");
    let (requests, outgoing) = mpsc::channel(16);
    for i in 0..8 {
        requests.send(produce(batch(id, i * 3, 3))).await.unwrap();
    }
    let mut answers = producer.produce_stream(ReceiverStream::new(outgoing)).await.unwrap().into_inner();
    for i in 0..8 {
        let answer = answers.message().await.unwrap().expect("one answer per request");
        assert_eq!(code(&answer), pb::ErrorCode::None, "batch {i}: {:?}", answer.error);
        assert_eq!(answer.base_offset, i * 3, "batch {i} is answered in order, at its offset");
    }

    println!("--- a second stream while the first is open: BUSY");
    let (_held, idle) = mpsc::channel(1);
    let mut second = producer.produce_stream(ReceiverStream::new(idle)).await.unwrap().into_inner();
    let busy = second.message().await.unwrap().expect("one answer");
    assert_eq!(code(&busy), pb::ErrorCode::Busy, "{:?}", busy.error);
    assert!(second.message().await.unwrap().is_none(), "the refused stream ends");

    println!("--- a sequence gap, then the batch after it: the gap is refused, the stream ends");
    requests.send(produce(batch(id, 100, 1))).await.unwrap();
    requests.send(produce(batch(id, 101, 1))).await.unwrap();
    let refused = answers.message().await.unwrap().expect("the gap is answered");
    assert_eq!(code(&refused), pb::ErrorCode::OutOfOrderSequence, "{:?}", refused.error);
    assert!(answers.message().await.unwrap().is_none(), "no answer after the first error");
    drop(requests);

    let expected: Vec<String> = (0..24).map(|v| v.to_string()).collect();
    assert_eq!(values(&mut consumer).await, expected, "the 24 records in the order sent, and nothing else");

    println!("--- the first stream's place is free again; a resend of its last batch is a duplicate");
    let again = must_eventually("a new stream to be served", Duration::from_secs(10), || {
        let mut producer = producer.clone();
        async move {
            let (requests, outgoing) = mpsc::channel(1);
            requests.send(produce(batch(id, 21, 3))).await.ok()?;
            let mut answers = producer.produce_stream(ReceiverStream::new(outgoing)).await.ok()?.into_inner();
            let answer = answers.message().await.ok()??;
            (code(&answer) != pb::ErrorCode::Busy).then_some(answer)
        }
    })
    .await;
    assert_eq!(code(&again), pb::ErrorCode::None, "{:?}", again.error);
    assert!(again.duplicate, "the resent batch is recognised");
    assert_eq!(again.base_offset, 21);
    assert_eq!(values(&mut consumer).await.len(), 24, "the duplicate added nothing");
}
