//! A network slower than the heartbeat interval still commits. openraft gives an `AppendEntries`
//! one heartbeat interval; on links whose round trip is longer, every append timed out and the
//! group committed nothing (found by the fault tests' slow-network scenario, 75 ms each way
//! against a 100 ms heartbeat). Peer RPCs now get at least a second.

use std::time::Duration;

use sluice_partition::BatchOutcome;
use sluice_types::Offset;

use crate::harness::{ReplicaSet, must_batch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_commit_when_a_round_trip_outlasts_the_heartbeat() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let set = ReplicaSet::start(&[1, 2, 3]).await;
    let leader = set.must_leader(Duration::from_secs(10)).await;

    // A round trip of 2 x 60 ms against a 50 ms heartbeat interval, well inside the election
    // timeout (300-600 ms), so the followers keep hearing from the leader (each append below goes
    // to the same leader and would fail with NotLeader after an election it lost).
    let heartbeat = Duration::from_millis(set.settings.heartbeat_interval_ms);
    let one_way = Duration::from_millis(60);
    assert!(one_way * 2 > heartbeat, "the round trip must outlast the heartbeat interval");
    set.set_link_delay(one_way);

    for seq in 0..5u64 {
        let append = set.group(leader).append(vec![must_batch(3, seq * 2, 2)]);
        let outcome = tokio::time::timeout(Duration::from_secs(10), append)
            .await
            .unwrap_or_else(|_| panic!("append {seq} not committed within 10 s over slow links"))
            .unwrap();
        assert_eq!(outcome, vec![BatchOutcome::Appended { base_offset: Offset(seq * 2) }]);
    }
}
