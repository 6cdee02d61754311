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
