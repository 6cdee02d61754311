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
