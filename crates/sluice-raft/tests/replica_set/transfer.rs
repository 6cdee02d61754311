//! Handing leadership over: the target campaigns at once over the peer transport, becomes
//! leader, and continues the offsets; the old leader forwards writes.

use std::time::Duration;

use sluice_partition::BatchOutcome;
use sluice_raft::AppendFailure;
use sluice_types::Offset;

use crate::harness::{ReplicaSet, must_batch, must_eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_named_follower() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let set = ReplicaSet::start(&[1, 2, 3]).await;
    let old = set.must_leader(Duration::from_secs(10)).await;
    let outcome = set.group(old).append(vec![must_batch(9, 0, 4)]).await.unwrap();
    assert_eq!(outcome, vec![BatchOutcome::Appended { base_offset: Offset(0) }]);

    let to = set.running().into_iter().find(|n| *n != old).unwrap();
    set.must_catch_up(to, Offset(4), Duration::from_secs(10)).await;
    set.group(old).raft().trigger().transfer_leader(to).await.unwrap();

    // Well inside an election timeout: the target did not wait for the old leader to go quiet.
    let election_timeout_min = Duration::from_millis(crate::harness::settings().election_timeout_min_ms);
    let started = std::time::Instant::now();
    must_eventually("the named follower leads", Duration::from_secs(10), || async {
        let leads = set.group(to).with_metrics(|m| m.current_leader == Some(to) && m.state.is_leader());
        leads.then_some(())
    })
    .await;
    assert!(
        started.elapsed() < election_timeout_min,
        "leadership took {:?}, not less than an election timeout ({election_timeout_min:?})",
        started.elapsed()
    );

    match set.group(old).append(vec![must_batch(9, 4, 1)]).await {
        Err(AppendFailure::NotLeader { .. }) => {}
        other => panic!("the old leader must refuse writes, got {other:?}"),
    }
    let outcome = set.group(to).append(vec![must_batch(9, 4, 2)]).await.unwrap();
    assert_eq!(outcome, vec![BatchOutcome::Appended { base_offset: Offset(4) }]);
}
