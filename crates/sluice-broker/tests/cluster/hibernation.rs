//! Idle partitions hibernate (no Raft timers), and still fail over when their leader's node is
//! killed: the peer pings wake the followers.

use std::time::{Duration, Instant};

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
