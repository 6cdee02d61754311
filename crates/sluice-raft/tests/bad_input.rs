//! Peer messages that are wrong in any way get a typed error and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::impls::BasicNode;
use sluice_proto::raft as pb;
use sluice_raft::network::{DispatchError, LocalNetwork};
use sluice_raft::{PartitionGroup, RaftDispatcher, RaftSettings};
use sluice_storage::{Storage, StorageOptions};
use sluice_types::GroupId;

async fn must_single_node() -> (tempfile::TempDir, Storage, Arc<RaftDispatcher>, PartitionGroup) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path(), &StorageOptions::default()).unwrap();
    let dispatcher = Arc::new(RaftDispatcher::default());
    let transport = LocalNetwork::new().add_node(1, dispatcher.clone());
    let group =
        PartitionGroup::open(1, GroupId(5), &storage, transport, &dispatcher, &RaftSettings::default())
            .await
            .unwrap();
    group.initialize(BTreeMap::from([(1, BasicNode::new("n1"))])).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while group.metrics().current_leader != Some(1) {
        assert!(Instant::now() < deadline, "single node never led");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (dir, storage, dispatcher, group)
}

fn vote(term: u64) -> pb::Vote {
    pb::Vote { leader_id: Some(pb::LeaderId { term, node_id: 2 }), committed: true }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_for_an_unknown_group_is_refused() {
    let (_dir, _storage, dispatcher, _group) = must_single_node().await;
    let err = dispatcher
        .append_entries(pb::AppendEntriesRequest { group_id: 99, vote: Some(vote(1)), ..Default::default() })
        .await
        .unwrap_err();
    assert!(matches!(err, DispatchError::UnknownGroup(GroupId(99))), "{err:?}");
    let err = dispatcher
        .vote(pb::VoteRequest { group_id: 99, vote: Some(vote(1)), ..Default::default() })
        .await
        .unwrap_err();
    assert!(matches!(err, DispatchError::UnknownGroup(GroupId(99))), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_entries_are_refused_and_nothing_is_written() {
    let (_dir, _storage, dispatcher, group) = must_single_node().await;
    let before = group.metrics();
    let garbage = vec![Bytes::from_static(b"\x01\x01not an entry"), Bytes::from(vec![0xffu8; 40])];
    let err = dispatcher
        .append_entries(pb::AppendEntriesRequest {
            group_id: 5,
            vote: Some(vote(before.current_term + 5)),
            prev_log_id: None,
            entries: garbage,
            leader_commit: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, DispatchError::Failed(_)), "{err:?}");
    let after = group.metrics();
    assert_eq!(after.last_log_index, before.last_log_index, "nothing was appended");
    assert_eq!(after.current_term, before.current_term, "a refused message does not move the term");

    let err =
        dispatcher.vote(pb::VoteRequest { group_id: 5, vote: None, ..Default::default() }).await.unwrap_err();
    assert!(matches!(err, DispatchError::Failed(_)), "a vote without a vote is refused: {err:?}");
    let err = dispatcher
        .install_snapshot(pb::InstallSnapshotRequest {
            group_id: 5,
            vote: Some(vote(before.current_term)),
            meta: Bytes::from_static(b"{not json"),
            data: Bytes::new(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, DispatchError::Failed(_)), "{err:?}");
    assert_eq!(group.metrics().snapshot, before.snapshot);
}
