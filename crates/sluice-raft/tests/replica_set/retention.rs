//! Retention purges the log through a snapshot taken at the retention boundary; a follower that
//! missed the purged entries installs that snapshot and still receives every retained record.

use std::time::Duration;

use sluice_partition::BatchOutcome;
use sluice_raft::RetentionFloor;
use sluice_types::Offset;

use crate::harness::{ReplicaSet, must_batch, must_eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_keeps_every_retained_record_after_a_purge() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let mut set = ReplicaSet::start(&[1, 2, 3]).await;
    let leader = set.must_leader(Duration::from_secs(10)).await;
    let lagging = set.running().into_iter().find(|&n| n != leader).unwrap();

    tracing::info!("--- stop a follower, then append past several checkpoints");
    set.kill(lagging).await;
    let mut next = Offset(0);
    for seq in 0..100u64 {
        let response = set.group(leader).append(vec![must_batch(0, seq, 2)]).await.unwrap();
        assert_eq!(response, vec![BatchOutcome::Appended { base_offset: next }]);
        next = next.plus(2);
    }

    tracing::info!("--- retention lets the log before entry 50 go, on every running replica");
    for node in set.running() {
        set.group(node).set_retention(RetentionFloor::Through(50)).await.unwrap();
    }
    let log_start = must_eventually("the leader to purge its log", Duration::from_secs(10), || async {
        let metrics = set.group(leader).metrics().clone();
        let purged = metrics.purged.map(|id| id.index)?;
        let start = set.group(leader).reader().progress().log_start;
        (purged > 0 && start > Offset(0)).then_some(start)
    })
    .await;
    // A snapshot sits at a checkpoint within the floor: never past it.
    let snapshot = set.group(leader).metrics().snapshot.unwrap();
    assert!(snapshot.index <= 50, "snapshot at {} is past the retention floor", snapshot.index);
    assert!(set.group(leader).reader().read(Offset(0), 1024).is_err(), "purged offsets are out of range");
    let retained = set.must_read_all(leader, log_start);
    assert_eq!(retained.first().unwrap().base_offset, log_start);

    tracing::info!("--- the lagging follower returns and must hold every retained record");
    set.start_node(lagging).await;
    set.must_catch_up(lagging, next, Duration::from_secs(20)).await;
    let progress = set.group(lagging).reader().progress();
    assert_eq!(progress.log_start, log_start, "the follower's log starts where the leader's does");
    assert_eq!(set.must_read_all(lagging, log_start), retained, "identical retained records");
    let lagging_purged = set.group(lagging).metrics().purged.map(|id| id.index);
    assert_eq!(lagging_purged, Some(snapshot.index), "the follower installed the retention snapshot");
}
