//! Producer ids, epochs and sequences are checked: a batch naming an id `InitProducer` never
//! issued, an epoch never issued, or a first sequence other than 0 gets its typed error and
//! writes nothing; `InitProducer` with an existing id bumps its epoch and fences the old one.

use std::time::Duration;

use bytes::Bytes;
use sluice_client::proto as pb;
use sluice_client::proto::consumer_client::ConsumerClient;
use sluice_client::proto::producer_client::ProducerClient;
use sluice_types::{ProducerEpoch, ProducerId, Record, RecordBatch, Sequence};

use crate::harness::{Cluster, must_eventually};

fn code(e: Option<&pb::Error>) -> pb::ErrorCode {
    e.and_then(|e| pb::ErrorCode::try_from(e.code).ok()).unwrap_or(pb::ErrorCode::None)
}

fn batch(producer: u64, epoch: u32, sequence: u64) -> Bytes {
    RecordBatch {
        producer_id: ProducerId(producer),
        producer_epoch: ProducerEpoch(epoch),
        base_sequence: Sequence(sequence),
        records: vec![Record {
            value: Bytes::from(format!("{producer}/{epoch}/{sequence}")),
            ..Record::default()
        }],
        ..RecordBatch::default()
    }
    .encode()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_epochs_and_first_sequences_are_checked() {
    let cluster = Cluster::start(1, 0);
    let admin = cluster.admin(&[1]);
    cluster.must_ready(1).await;
    admin.create_topic("t", 1, 1, pb::TopicConfig::default()).await.unwrap();
    let endpoint = format!("http://{}", cluster.addr(1));
    let mut producer = ProducerClient::connect(endpoint.clone()).await.unwrap();
    let mut consumer = ConsumerClient::connect(endpoint).await.unwrap();
    let init = |producer_id: Option<u64>| pb::InitProducerRequest { producer_id };
    let issued = producer.init_producer(init(None)).await.unwrap().into_inner();
    assert!(issued.error.is_none(), "{:?}", issued.error);
    let (id, epoch) = (issued.producer_id, issued.producer_epoch);
    assert_eq!(epoch, 0, "a new producer id starts at epoch 0");
    let produce = |batch: Bytes| pb::ProduceRequest { topic: "t".into(), partition: 0, batch };

    // The partition needs a leader first; a non-idempotent batch finds it.
    must_eventually("the partition to take a batch", Duration::from_secs(20), || {
        let mut producer = producer.clone();
        async move {
            let answer = producer.produce(produce(batch(0, 0, 0))).await.ok()?.into_inner();
            answer.error.is_none().then_some(())
        }
    })
    .await;

    println!("--- an id never issued, an epoch never issued, a first sequence of 1000");
    for (what, bad, expected) in [
        ("unknown producer id", batch(id + 1000, 0, 0), pb::ErrorCode::UnknownProducerId),
        ("unissued epoch", batch(id, 5, 0), pb::ErrorCode::InvalidProducerEpoch),
        ("first sequence 1000", batch(id, 0, 1000), pb::ErrorCode::OutOfOrderSequence),
    ] {
        let answer = producer.produce(produce(bad)).await.unwrap().into_inner();
        assert_eq!(code(answer.error.as_ref()), expected, "{what}: {:?}", answer.error);
    }

    println!("--- the real producer is not fenced by any of that");
    let first = producer.produce(produce(batch(id, 0, 0))).await.unwrap().into_inner();
    assert!(first.error.is_none(), "{:?}", first.error);
    assert_eq!(first.base_offset, 1);

    println!("--- a restarted producer bumps its epoch; the zombie is fenced");
    let bumped = producer.init_producer(init(Some(id))).await.unwrap().into_inner();
    assert!(bumped.error.is_none(), "{:?}", bumped.error);
    assert_eq!((bumped.producer_id, bumped.producer_epoch), (id, 1));
    let zombie = producer.produce(produce(batch(id, 0, 1))).await.unwrap().into_inner();
    assert_eq!(code(zombie.error.as_ref()), pb::ErrorCode::ProducerFenced, "{:?}", zombie.error);
    let restarted = producer.produce(produce(batch(id, 1, 0))).await.unwrap().into_inner();
    assert!(restarted.error.is_none(), "{:?}", restarted.error);
    assert_eq!(restarted.base_offset, 2);

    println!("--- bumping an id never issued is refused");
    let unknown = producer.init_producer(init(Some(id + 1000))).await.unwrap().into_inner();
    assert_eq!(code(unknown.error.as_ref()), pb::ErrorCode::UnknownProducerId, "{:?}", unknown.error);

    println!("--- only the three good batches were written");
    let fetched = consumer
        .fetch(pb::FetchRequest {
            topic: "t".into(),
            partition: 0,
            max_bytes: 1 << 20,
            ..pb::FetchRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(fetched.error.is_none(), "{:?}", fetched.error);
    assert_eq!(fetched.high_watermark, 3);
}
