//! `/metrics` on every node, in the Prometheus (`OpenMetrics`) text format: after acknowledged
//! produces, the leader counts the records and their latency, and the records consumed by fetch
//! and by push; every replica shows its group's Raft state, exactly one names itself leader, and
//! refused produces are counted by code.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use sluice_client::proto::producer_client::ProducerClient;
use sluice_client::{
    Cluster as Client, Consumer, ConsumerConfig, Producer, ProducerConfig, StartAt, proto as pb,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Cluster, must_eventually, must_leader_of};

/// `GET /metrics` from `addr`: the content type and the body.
async fn scrape(addr: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type =
        head.lines().find_map(|l| l.strip_prefix("content-type: ")).unwrap_or_default().to_string();
    (content_type, body.to_string())
}

/// Every sample of the scrape: `name{labels}` to its value as written.
fn samples(body: &str) -> HashMap<String, String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(series, value)| (series.to_string(), value.to_string()))
        .collect()
}

fn text<'a>(samples: &'a HashMap<String, String>, series: &str) -> &'a str {
    samples.get(series).unwrap_or_else(|| panic!("no {series} in the scrape"))
}

/// A counter's or gauge's value: integers are written as such.
fn value(samples: &HashMap<String, String>, series: &str) -> i64 {
    let written = text(samples, series);
    written.parse().unwrap_or_else(|_| panic!("{series} = {written} is not an integer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_exposes_its_counters_and_its_groups_raft_state() {
    let cluster = Cluster::start(3, 0);
    let admin = cluster.admin(&[1, 2, 3]);
    cluster.must_ready(3).await;
    let topic = cluster.must_create_topic(&admin, "m", 1, 3).await;
    let group = topic.partitions[0].group_id;
    let leader = must_leader_of(&admin, group, None).await;

    let client = Client::new(&cluster.grpc).unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let mut deliveries = Vec::new();
    for i in 0..100 {
        deliveries.push(producer.send_to("m", 0, None, Bytes::from(format!("{i:04}"))).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await;
    println!("--- the 100 records consumed once by fetch and once by push, from the leader");
    let mut pulled = Consumer::new(client.clone(), "m", 0, StartAt::Earliest, ConsumerConfig::default());
    let mut seen = 0;
    while seen < 100 {
        seen += pulled.poll().await.unwrap().len();
    }
    let mut pushed = Consumer::new(client.clone(), "m", 0, StartAt::Earliest, ConsumerConfig::default());
    let mut subscription = pushed.subscribe(1_000, 1 << 20).await.unwrap();
    let mut seen = 0;
    while seen < 100 {
        seen += subscription.next().await.unwrap().len();
    }
    drop(subscription);
    println!("--- a refused produce (a batch that is not a batch) is counted by its code");
    let mut raw = ProducerClient::connect(format!("http://{}", cluster.addr(leader))).await.unwrap();
    let garbage =
        pb::ProduceRequest { topic: "m".into(), partition: 0, batch: Bytes::from_static(b"nonsense") };
    let refused = raw.produce(garbage).await.unwrap().into_inner();
    assert!(refused.error.is_some());

    let series = format!("{{group=\"{group}\",topic=\"m\",partition=\"0\"}}");
    let leader_http = &cluster.http[usize::try_from(leader - 1).unwrap()];
    let (content_type, body) = scrape(leader_http).await;
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(body.ends_with("# EOF\n"), "a complete exposition");
    let on_leader = samples(&body);
    assert_eq!(value(&on_leader, "sluice_produce_records_total"), 100, "every record acknowledged, once");
    assert!(value(&on_leader, "sluice_produce_bytes_total") > 400);
    assert!(value(&on_leader, "sluice_produce_latency_seconds_count") >= 1);
    let latency: f64 = text(&on_leader, "sluice_produce_latency_seconds_sum").parse().unwrap();
    assert!(latency > 0.0);
    let refusals: Vec<&String> =
        on_leader.keys().filter(|k| k.starts_with("sluice_produce_errors_total{")).collect();
    assert_eq!(refusals.len(), 1, "{body}");
    assert_eq!(value(&on_leader, refusals[0]), 1, "the one refused produce, by its code");
    for mode in ["fetch", "push"] {
        let consumed = value(&on_leader, &format!("sluice_consume_records_total{{mode=\"{mode}\"}}"));
        assert!(consumed >= 100, "{mode}: {consumed} records sent, all 100 read");
    }
    assert!(value(&on_leader, "sluice_storage_fsyncs_total") >= 1);
    assert!(value(&on_leader, "sluice_disk_free_bytes") > 0);
    assert!(value(&on_leader, &format!("sluice_partition_high_watermark{series}")) >= 100);
    for replica in 1..=3u64 {
        let lag = format!(
            "sluice_raft_replica_lag_entries{{group=\"{group}\",topic=\"m\",partition=\"0\",replica=\"{replica}\"}}"
        );
        assert!(on_leader.contains_key(&lag), "the leader reports replica {replica}'s lag");
    }

    println!("--- every replica shows the group; exactly one leads it, in one term");
    let scrapes =
        must_eventually("every replica to have applied the records", Duration::from_secs(10), || async {
            let mut all = Vec::new();
            for http in &cluster.http {
                let s = samples(&scrape(http).await.1);
                (value(&s, &format!("sluice_partition_high_watermark{series}")) >= 100).then_some(())?;
                all.push(s);
            }
            Some(all)
        })
        .await;
    let leaders: i64 = scrapes.iter().map(|s| value(s, &format!("sluice_raft_leader{series}"))).sum();
    assert_eq!(leaders, 1);
    let terms: Vec<i64> = scrapes.iter().map(|s| value(s, &format!("sluice_raft_term{series}"))).collect();
    assert!(terms.iter().all(|t| *t == terms[0] && *t >= 1), "{terms:?}");
    assert!(scrapes.iter().all(|s| value(s, &format!("sluice_raft_commit_index{series}")) >= 1));
    assert!(
        scrapes.iter().all(|s| s.contains_key("sluice_raft_term{group=\"0\",topic=\"\",partition=\"0\"}"))
    );
}
