//! The registry survives losing its leader: a new one is elected, the dead broker is declared
//! dead, topics can still be created, and the killed node rejoins and catches up.

use std::time::{Duration, Instant};

use sluice_client::{ClientError, proto as pb};

use crate::harness::{Cluster, must_eventually};

async fn must_status(admin: &sluice_client::Admin) -> pb::ClusterStatusResponse {
    admin.cluster_status().await.expect("cluster status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_fails_over_and_the_killed_node_rejoins() {
    let mut cluster = Cluster::start(3, 0);
    let admin = cluster.admin(&[1, 2, 3]);

    println!("--- wait for the registry and three live brokers");
    cluster.must_ready(3).await;

    println!("--- create 6 partitions with replication factor 3: each node leads 2");
    let topic = admin.create_topic("orders", 6, 3, pb::TopicConfig::default()).await.unwrap();
    assert_eq!(topic.partitions.len(), 6);
    for node in 1..=3u64 {
        let preferred = topic.partitions.iter().filter(|p| p.replicas[0] == node).count();
        assert_eq!(preferred, 2, "node {node} is the preferred leader of {preferred} partitions");
        assert!(topic.partitions.iter().all(|p| p.replicas.len() == 3));
    }
    let groups: Vec<u64> = topic.partitions.iter().map(|p| p.group_id).collect();
    let leaders =
        must_eventually("every partition to elect its preferred leader", Duration::from_secs(30), || async {
            let status = admin.cluster_status().await.ok()?;
            let leaders: Vec<u64> = groups
                .iter()
                .map(|g| status.groups.iter().find(|s| s.group_id == *g).and_then(|s| s.leader))
                .collect::<Option<_>>()?;
            Some(leaders)
        })
        .await;
    for node in 1..=3u64 {
        assert_eq!(leaders.iter().filter(|l| **l == node).count(), 2, "node {node} leads 2: {leaders:?}");
    }

    println!("--- kill -9 the registry leader");
    let old_leader = must_status(&admin).await.meta_leader.unwrap();
    let survivors: Vec<u64> = (1..=3).filter(|n| *n != old_leader).collect();
    let survivor_admin = cluster.admin(&survivors);
    cluster.kill(old_leader);
    let killed_at = Instant::now();
    let new_leader = must_eventually("a new registry leader", Duration::from_secs(10), || async {
        let status = survivor_admin.cluster_status().await.ok()?;
        status.meta_leader.filter(|l| *l != old_leader)
    })
    .await;
    println!("new registry leader {new_leader} after {:?}", killed_at.elapsed());

    println!("--- the killed broker is declared dead after the session timeout");
    must_eventually("the killed broker to be marked dead", cluster.session_timeout * 4, || async {
        let status = survivor_admin.cluster_status().await.ok()?;
        let broker = status.brokers.iter().find(|b| b.id == old_leader)?;
        (broker.state == "dead").then_some(())
    })
    .await;
    let declared_dead = killed_at.elapsed();
    println!("broker {old_leader} declared dead {declared_dead:?} after the kill");
    assert!(declared_dead >= cluster.session_timeout, "declared dead before the session timeout ran out");

    println!("--- topics can still be created; three replicas no longer fit");
    let after =
        survivor_admin.create_topic("after-failover", 2, 2, pb::TopicConfig::default()).await.unwrap();
    assert!(after.partitions.iter().all(|p| !p.replicas.contains(&old_leader)));
    match survivor_admin.create_topic("too-wide", 1, 3, pb::TopicConfig::default()).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, "NOT_ENOUGH_BROKERS"),
        other => panic!("expected NOT_ENOUGH_BROKERS, got {other:?}"),
    }

    println!("--- the killed node restarts, is alive again and catches up");
    cluster.start_node(old_leader);
    must_eventually("the restarted broker to be alive", Duration::from_secs(20), || async {
        let status = survivor_admin.cluster_status().await.ok()?;
        let broker = status.brokers.iter().find(|b| b.id == old_leader)?;
        (broker.state == "alive").then_some(())
    })
    .await;
    let expected: Vec<u64> = std::iter::once(0).chain(groups.iter().copied()).collect();
    must_eventually("the restarted node to catch up on every group", Duration::from_secs(30), || async {
        let status = admin.cluster_status().await.ok()?;
        let hosted = cluster.node_groups(old_leader).await?;
        for group in &expected {
            let leader_report = status.groups.iter().find(|g| g.group_id == *group)?;
            let mine = hosted.iter().find(|g| g.group_id == *group)?;
            if mine.commit_index < leader_report.commit_index || mine.leader.is_none() {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(!cluster.log(old_leader).contains("panicked"), "the restarted node panicked");
}
