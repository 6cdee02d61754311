//! openraft's own storage conformance suite, run against the RocksDB log store and the partition
//! state machine.

use sluice_raft::{PartitionRaft, PartitionStateMachine, RetentionFloor, RocksLogStore};
use sluice_storage::{Storage, StorageOptions};
use sluice_types::GroupId;

struct Builder;

impl
    openraft::testing::log::StoreBuilder<
        PartitionRaft,
        RocksLogStore<PartitionRaft>,
        PartitionStateMachine,
        tempfile::TempDir,
    > for Builder
{
    async fn build(
        &self,
    ) -> Result<
        (tempfile::TempDir, RocksLogStore<PartitionRaft>, PartitionStateMachine),
        openraft::StorageError<PartitionRaft>,
    > {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path(), &StorageOptions::default()).expect("open storage");
        let group = storage.create_group(GroupId(1)).await.expect("create group");
        let log = RocksLogStore::new(group.clone());
        let sm = PartitionStateMachine::open(group, 4, sluice_partition::Sabotage::NONE)
            .expect("open state machine");
        // The suite builds snapshots of everything applied: that is retention that keeps nothing.
        *sm.retention().lock().expect("retention lock") = RetentionFloor::Everything;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    openraft::testing::log::Suite::test_all(Builder).await.expect("storage suite");
}

/// The log store keeps its newest entries in memory (decision 0011). Entries Raft truncated or
/// purged must never be read back from there, also when the range asked for is wholly inside
/// what the memory once held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_truncated_or_purged_are_never_read_back() {
    use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
    use openraft::testing::{blank_ent, log_id};

    let (_dir, mut log, _sm) = openraft::testing::log::StoreBuilder::build(&Builder).await.expect("build");
    let entries = |term: u64, range: std::ops::RangeInclusive<u64>| {
        range.map(move |i| blank_ent::<PartitionRaft>(term, 1, i)).collect::<Vec<_>>()
    };
    let terms = |read: Vec<openraft::type_config::alias::EntryOf<PartitionRaft>>| {
        read.iter().map(|e| (e.log_id.index, e.log_id.leader_id.term)).collect::<Vec<_>>()
    };
    log.append(entries(1, 1..=10), IOFlushed::noop()).await.expect("append");
    assert_eq!(terms(log.try_get_log_entries(3..8).await.expect("read")).len(), 5);

    // A new leader replaces 6..=10 with 6..=7 of term 2.
    log.truncate_after(Some(log_id::<PartitionRaft>(1, 1, 5))).await.expect("truncate");
    assert_eq!(terms(log.try_get_log_entries(4..11).await.expect("read")), vec![(4, 1), (5, 1)]);
    log.append(entries(2, 6..=7), IOFlushed::noop()).await.expect("append");
    let read = terms(log.try_get_log_entries(4..8).await.expect("read"));
    assert_eq!(read, vec![(4, 1), (5, 1), (6, 2), (7, 2)]);

    // The log before 4 goes.
    log.purge(log_id::<PartitionRaft>(1, 1, 3)).await.expect("purge");
    let read = terms(log.try_get_log_entries(1..8).await.expect("read"));
    assert_eq!(read.first(), Some(&(4, 1)), "purged entries came back: {read:?}");
}
