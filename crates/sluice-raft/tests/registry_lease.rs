//! The registry stays writable over links slower than the heartbeat interval. openraft times
//! out every heartbeat after one heartbeat interval and refuses proposals once no quorum
//! acknowledged the leader for an election timeout (`CheckQuorum`); an idle registry therefore
//! lost its lease over slow links and refused every change (found by the fault tests'
//! slow-network scenario). `MetaGroup::renew_lease_if_aging` keeps it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::impls::BasicNode;
use sluice_meta::{MetaCommand, MetaResponse};
use sluice_raft::network::LocalNetwork;
use sluice_raft::{AppendFailure, MetaGroup, RaftDispatcher, RaftSettings};
use sluice_storage::{Storage, StorageOptions};

const SETTINGS: RaftSettings = RaftSettings {
    heartbeat_interval_ms: 50,
    election_timeout_min_ms: 300,
    election_timeout_max_ms: 600,
    checkpoint_interval_entries: 16,
    sabotage: sluice_partition::Sabotage::NONE,
};

/// Polls `check` every 10 ms until it returns `Some`, or panics after `timeout` naming `what`.
async fn must_eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn quorum_acked_ago(meta: &MetaGroup) -> Option<Duration> {
    meta.metrics().last_quorum_acked.as_ref().map(|acked| openraft::Instant::elapsed(&**acked))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_registry_keeps_its_lease_over_links_slower_than_the_heartbeat() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("error").try_init();
    let network = LocalNetwork::new();
    let mut dirs = Vec::new();
    let mut groups = BTreeMap::new();
    for node in 1..=3u64 {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), &StorageOptions::default()).unwrap();
        let dispatcher = Arc::new(RaftDispatcher::default());
        let transport = network.add_node(node, dispatcher.clone());
        let meta = MetaGroup::open(node, &storage, transport, &dispatcher, &SETTINGS).await.unwrap();
        groups.insert(node, (meta, storage, dispatcher));
        dirs.push(dir);
    }
    let members: BTreeMap<u64, BasicNode> =
        (1..=3).map(|n| (n, BasicNode::new(format!("node-{n}")))).collect();
    groups[&1].0.initialize(members).await.unwrap();
    let leader = must_eventually("a registry leader", Duration::from_secs(10), || {
        groups.values().find_map(|(m, _, _)| m.metrics().current_leader)
    })
    .await;
    let meta = &groups[&leader].0;
    let lease = Duration::from_millis(SETTINGS.election_timeout_max_ms);
    let write = |meta: &MetaGroup| {
        let meta = meta.clone();
        async move { meta.write(MetaCommand::AllocateProducerIds { count: 1 }).await }
    };
    // On a loaded machine the new leader's first heartbeats can be late enough that its lease
    // has not formed yet; it forms within a few heartbeats.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match write(meta).await {
            Ok(MetaResponse::ProducerIds { .. }) => break,
            other => assert!(Instant::now() < deadline, "the new leader takes no write: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(SETTINGS.heartbeat_interval_ms)).await;
    }

    println!("--- links slower than the heartbeat: an idle registry loses its lease");
    let one_way = Duration::from_millis(60);
    assert!(one_way * 2 > Duration::from_millis(SETTINGS.heartbeat_interval_ms));
    network.set_delay(one_way);
    must_eventually("the lease to lapse", Duration::from_secs(10), || {
        quorum_acked_ago(meta).is_some_and(|ago| ago > lease + Duration::from_millis(100)).then_some(())
    })
    .await;
    match write(meta).await {
        Err(AppendFailure::NotLeader { leader: None }) => {}
        other => panic!("a leader without a lease must refuse, got {other:?}"),
    }

    println!("--- heal, then slow links again, now with the lease kept");
    network.set_delay(Duration::ZERO);
    must_eventually("heartbeats to renew the lease", Duration::from_secs(10), || {
        quorum_acked_ago(meta).is_some_and(|ago| ago < lease / 4).then_some(())
    })
    .await;
    network.set_delay(one_way);
    let keeper = {
        let meta = meta.clone();
        tokio::spawn(async move {
            let mut renewals = 0u32;
            while renewals < 6 {
                if meta.renew_lease_if_aging(leader, lease).await.unwrap_or(false) {
                    renewals += 1;
                }
                tokio::time::sleep(Duration::from_millis(SETTINGS.heartbeat_interval_ms)).await;
            }
        })
    };
    // Six renewals span about three lease periods without a single acknowledged heartbeat.
    tokio::time::timeout(Duration::from_secs(20), keeper).await.expect("six lease renewals").unwrap();
    assert!(
        matches!(write(meta).await, Ok(MetaResponse::ProducerIds { .. })),
        "the registry takes writes over slow links while its lease is kept"
    );
    assert_eq!(meta.metrics().current_leader, Some(leader));
}
