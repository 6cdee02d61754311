//! Idle partitions hibernate (no Raft timers), and still fail over when their leader's node is
//! killed: the peer pings wake the followers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::proto as pb;
use sluice_client::proto::metadata_client::MetadataClient;
use sluice_client::proto::producer_client::ProducerClient;
use sluice_types::{Record, RecordBatch};

use crate::harness::{Cluster, must_eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernating_partitions_fail_over_when_their_leader_is_killed() {
    let mut cluster = Cluster::start(3, 1500);
    let admin = cluster.admin(&[1, 2, 3]);
    cluster.must_ready(3).await;
    let topic = cluster.must_create_topic(&admin, "quiet", 6, 3).await;
    let groups: Vec<u64> = topic.partitions.iter().map(|p| p.group_id).collect();

    println!("--- every partition goes idle and hibernates");
    let status = must_eventually("all partitions to hibernate", Duration::from_secs(30), || async {
        let status = admin.cluster_status().await.ok()?;
        let all = groups.iter().all(|g| {
            status.groups.iter().any(|s| s.group_id == *g && s.hibernating && s.leader == Some(s.reported_by))
        });
        all.then_some(status)
    })
    .await;

    println!("--- kill -9 a node that leads partitions but not the registry");
    let victim = (1..=3u64)
        .filter(|n| Some(*n) != status.meta_leader)
        .find(|n| status.groups.iter().any(|g| g.group_id != 0 && g.leader == Some(*n)))
        .expect("some non-registry-leader node leads a partition");
    let survivors: Vec<u64> = (1..=3).filter(|n| *n != victim).collect();
    let survivor_admin = cluster.admin(&survivors);
    cluster.kill(victim);
    let killed_at = Instant::now();
    must_eventually("every partition to have a live leader", Duration::from_secs(10), || async {
        let status = survivor_admin.cluster_status().await.ok()?;
        groups
            .iter()
            .all(|g| {
                status
                    .groups
                    .iter()
                    .any(|s| s.group_id == *g && s.leader.is_some_and(|l| survivors.contains(&l)))
            })
            .then_some(())
    })
    .await;
    let failover = killed_at.elapsed();
    println!("partitions led by node {victim} failed over in {failover:?}");
    assert!(failover < Duration::from_secs(5), "failover of hibernating partitions took {failover:?}");

    println!("--- the node returns; every partition has a leader and its replicas catch up");
    cluster.start_node(victim);
    must_eventually("the restarted node to host every partition again", Duration::from_secs(30), || async {
        let status = admin.cluster_status().await.ok()?;
        let hosted = cluster.node_groups(victim).await?;
        groups
            .iter()
            .all(|g| {
                let leader = status.groups.iter().find(|s| s.group_id == *g);
                let mine = hosted.iter().find(|s| s.group_id == *g);
                matches!((leader, mine), (Some(l), Some(m)) if l.leader.is_some() && m.commit_index >= l.commit_index)
            })
            .then_some(())
    })
    .await;
}

/// The leader Metadata names for `partition` of `topic`, by address.
async fn metadata_leader(addr: &str, topic: &str, partition: u32) -> Option<String> {
    let mut client = MetadataClient::connect(format!("http://{addr}")).await.ok()?;
    let answer = client.metadata(pb::MetadataRequest { topics: vec![topic.into()] }).await.ok()?.into_inner();
    let p = answer.topics.first()?.partitions.iter().find(|p| p.partition == partition)?.clone();
    (!p.leader_addr.is_empty()).then_some(p.leader_addr)
}

/// A client written from the proto alone found that the first produce to a partition idle for
/// 10 s or more was refused with `NOT_LEADER` and no leader to name: the hibernating leader had
/// heard from no quorum within its lease, so openraft refused the write. It must be served on
/// the first try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_produce_after_a_long_idle_period_succeeds_on_the_first_try() {
    const IDLE: Duration = Duration::from_secs(30);
    const PARTITIONS: u32 = 3;
    let cluster = Cluster::start(3, 1500);
    let admin = cluster.admin(&[1, 2, 3]);
    cluster.must_ready(3).await;
    let topic = cluster.must_create_topic(&admin, "idle", PARTITIONS, 3).await;
    let groups: Vec<u64> = topic.partitions.iter().map(|p| p.group_id).collect();
    let batch = |text: &'static str| {
        RecordBatch {
            records: vec![Record { value: Bytes::from_static(text.as_bytes()), ..Record::default() }],
            ..RecordBatch::default()
        }
        .encode()
        .unwrap()
    };
    let produce_at = |addr: String, partition: u32, batch: Bytes| async move {
        let mut client = ProducerClient::connect(format!("http://{addr}")).await.ok()?;
        let request = pb::ProduceRequest { topic: "idle".into(), partition, batch };
        Some(client.produce(request).await.ok()?.into_inner())
    };

    println!("--- one record per partition, retried until a leader takes it");
    for partition in 0..PARTITIONS {
        must_eventually("a first acknowledged record", Duration::from_secs(20), || async {
            let leader = metadata_leader(cluster.addr(1), "idle", partition).await?;
            let answer = produce_at(leader, partition, batch("before")).await?;
            answer.error.is_none().then_some(())
        })
        .await;
    }
    let last_write = Instant::now();

    println!("--- every replica hibernates, and the partitions stay idle for {IDLE:?}");
    must_eventually("every replica to hibernate", Duration::from_secs(30), || async {
        let mut asleep = 0;
        for node in 1..=3 {
            let hosted = cluster.node_groups(node).await?;
            asleep += hosted.iter().filter(|g| groups.contains(&g.group_id) && g.hibernating).count();
        }
        (asleep == groups.len() * 3).then_some(())
    })
    .await;
    // The idle period is what is tested, not a wait for some condition.
    tokio::time::sleep(IDLE.saturating_sub(last_write.elapsed())).await;

    println!("--- the first produce to each partition's named leader is served");
    for partition in 0..PARTITIONS {
        let leader =
            metadata_leader(cluster.addr(1), "idle", partition).await.expect("Metadata names a leader");
        let answer = produce_at(leader.clone(), partition, batch("after")).await.expect("the leader answers");
        assert!(
            answer.error.is_none(),
            "partition {partition}: the first produce after {IDLE:?} idle to {leader} was refused: {:?}",
            answer.error
        );
        assert_eq!(answer.base_offset, 1, "partition {partition}: appended after the first record");
    }
}
