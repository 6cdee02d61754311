//! Push subscriptions send no more than the client's credit and wait for more.

use std::time::Duration;

use bytes::Bytes;
use sluice_client::proto as pb;
use sluice_client::proto::producer_client::ProducerClient;
use sluice_client::{Cluster as Client, Consumer, ConsumerConfig, StartAt};
use sluice_types::{Record, RecordBatch};

use crate::harness::{Cluster, must_eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_respects_the_credit_and_resumes_when_granted() {
    let cluster = Cluster::start(1, 0);
    let admin = cluster.admin(&[1]);
    cluster.must_ready(1).await;
    admin.create_topic("p", 1, 1, pb::TopicConfig::default()).await.unwrap();
    let producer = ProducerClient::connect(format!("http://{}", cluster.addr(1))).await.unwrap();
    // Fifty batches of one record each, so that the credit counts batches exactly.
    for i in 0..50u32 {
        let batch = RecordBatch {
            records: vec![Record { value: Bytes::from(i.to_string()), ..Record::default() }],
            ..RecordBatch::default()
        }
        .encode()
        .unwrap();
        must_eventually("an acknowledged batch", Duration::from_secs(20), || {
            let mut producer = producer.clone();
            let batch = batch.clone();
            async move {
                let r = producer
                    .produce(pb::ProduceRequest { topic: "p".into(), partition: 0, batch })
                    .await
                    .ok()?
                    .into_inner();
                r.error.is_none_or(|e| e.code == 0).then_some(())
            }
        })
        .await;
    }
    let client = Client::new(&cluster.grpc).unwrap();
    let mut consumer = Consumer::new(client, "p", 0, StartAt::Earliest, ConsumerConfig::default());
    let mut subscription = consumer.subscribe(10, 1 << 20).await.unwrap();
    let first = subscription.next().await.unwrap();
    assert_eq!(first.len(), 10, "exactly the credit of ten one-record batches");
    assert_eq!(first.last().unwrap().offset, 9);
    // Each `next` grants what the previous one consumed: the rest arrives in steps of ten.
    let mut offsets: Vec<u64> = first.iter().map(|r| r.offset).collect();
    while offsets.len() < 50 {
        let more = subscription.next().await.unwrap();
        assert!(more.len() <= 10, "never more than the credit: {}", more.len());
        offsets.extend(more.iter().map(|r| r.offset));
    }
    assert_eq!(offsets, (0..50).collect::<Vec<u64>>());
    // With nothing left, the server sends heartbeats (empty answers) instead of closing.
    assert!(subscription.next().await.unwrap().is_empty());
}

/// Opens a raw subscription to partition 0 of `topic`; returns the request sender (dropping it
/// ends the subscription) and the response stream.
async fn must_subscribe(
    addr: &str,
    topic: &str,
) -> (tokio::sync::mpsc::Sender<pb::SubscribeRequest>, tonic::Streaming<pb::SubscribeResponse>) {
    let mut client = sluice_client::proto::consumer_client::ConsumerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::SubscribeRequest {
        topic: topic.into(),
        partition: 0,
        offset: 0,
        read_from_follower: false,
        credit_records: 10,
        credit_bytes: 1 << 20,
    })
    .await
    .unwrap();
    let stream =
        client.subscribe(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    (tx, stream)
}

/// The first answer of a subscription: a heartbeat within a second if it runs, an error if not.
async fn must_first_answer(stream: &mut tonic::Streaming<pb::SubscribeResponse>) -> pb::SubscribeResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an answer within 10 s")
        .unwrap()
        .expect("the stream is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_beyond_the_limit_are_answered_busy_until_one_ends() {
    let cluster = Cluster::start_with(1, 0, "[limits]\nsubscriptions_max = 1\n");
    let admin = cluster.admin(&[1]);
    cluster.must_ready(1).await;
    admin.create_topic("capped", 1, 1, pb::TopicConfig::default()).await.unwrap();
    let addr = cluster.addr(1).to_string();

    tracing::info!("--- the first subscription runs: it heartbeats");
    let (first_tx, mut first) =
        must_eventually("a running subscription", Duration::from_secs(20), || async {
            let (tx, mut stream) = must_subscribe(&addr, "capped").await;
            let answer = must_first_answer(&mut stream).await;
            // Before the partition has a leader the answer is NOT_LEADER; ask again.
            answer.error.is_none().then_some((tx, stream))
        })
        .await;

    tracing::info!("--- a second one is answered BUSY with a retry delay, and the first goes on");
    let (_second_tx, mut second) = must_subscribe(&addr, "capped").await;
    let busy = must_first_answer(&mut second).await.error.expect("an error");
    assert_eq!(busy.code, pb::ErrorCode::Busy as i32, "{busy:?}");
    assert!(busy.retry_after_ms > 0, "{busy:?}");
    assert!(second.message().await.unwrap().is_none(), "the refused stream ends");
    assert!(must_first_answer(&mut first).await.error.is_none(), "the first still heartbeats");

    tracing::info!("--- once the first ends, its slot is free again");
    drop(first_tx);
    drop(first);
    must_eventually("a free subscription slot", Duration::from_secs(20), || async {
        let (tx, mut stream) = must_subscribe(&addr, "capped").await;
        let answer = must_first_answer(&mut stream).await;
        drop(tx);
        answer.error.is_none().then_some(())
    })
    .await;
}
