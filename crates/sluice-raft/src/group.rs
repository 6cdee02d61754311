//! Starting one partition replica: storage, state machine, network, Raft.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sluice_proto::raft as pb;

use openraft::error::ClientWriteError;
use openraft::impls::BasicNode;
use openraft::{Config, SnapshotPolicy};
use sluice_partition::{BatchOutcome, Sabotage};
use sluice_storage::{Storage, StorageError};
use sluice_types::{GroupId, ValidatedBatch};

use crate::PartitionRaftHandle;
use crate::lease;
use crate::log_store::RocksLogStore;
use crate::network::{
    BoxFuture, GroupNetworkFactory, GroupRpc, GroupRpcError, RaftDispatcher, RaftGroupRpc, Transport,
};
use crate::partition_sm::{PartitionReader, PartitionStateMachine, RetentionFloor};
use crate::types::{PartitionRaft, PartitionRequest, PartitionResponse};
use sluice_types::sync::lock;

/// Raft timing. A node hosts many groups on few cores: heartbeats are per group, so they are
/// kept modest, and the election timeout leaves room for a loaded machine's scheduling delays.
#[derive(Clone, Debug)]
pub struct RaftSettings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Applied entries between partition checkpoints (the granularity of retention).
    pub checkpoint_interval_entries: u64,
    /// Deliberate bugs for the fault tests ([`Sabotage::NONE`] everywhere else).
    pub sabotage: Sabotage,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 600,
            election_timeout_max_ms: 1200,
            checkpoint_interval_entries: crate::partition_sm::CHECKPOINT_INTERVAL_ENTRIES,
            sabotage: Sabotage::NONE,
        }
    }
}

/// The openraft configuration of a Sluice group. Snapshots are never taken by openraft's policy:
/// retention decides them, and after one the log is purged exactly up to it.
pub fn group_config(settings: &RaftSettings) -> Result<Arc<Config>, GroupError> {
    let config = Config {
        cluster_name: "sluice".into(),
        heartbeat_interval: settings.heartbeat_interval_ms,
        election_timeout_min: settings.election_timeout_min_ms,
        election_timeout_max: settings.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        max_payload_entries: 256,
        ..Config::default()
    };
    Ok(Arc::new(config.validate().map_err(GroupError::Config)?))
}

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("invalid raft config: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("state machine: {0}")]
    StateMachine(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(Box<dyn std::error::Error + Send + Sync>),
}

impl GroupError {
    /// An error of openraft's, kept as it is.
    pub fn raft(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        GroupError::Raft(Box::new(e))
    }
}

/// Why an append was not committed.
#[derive(Debug, thiserror::Error)]
pub enum AppendFailure {
    /// This replica is not the leader; the leader's node id if known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// The outcome is unknown (the replica shut down or failed mid-write): the batch may or may
    /// not be committed. Idempotent producers retry safely.
    #[error("append outcome unknown: {0}")]
    Indeterminate(Box<dyn std::error::Error + Send + Sync>),
}

/// An append handed to Raft: its outcome once the entry is committed and applied.
#[derive(Debug)]
pub struct ProposedAppend {
    complete: tokio::sync::oneshot::Receiver<openraft::raft::ClientWriteResult<PartitionRaft>>,
}

impl ProposedAppend {
    /// What each batch of the entry became, in order; waits for the commit and apply.
    pub async fn outcomes(self) -> Result<Vec<BatchOutcome>, AppendFailure> {
        match self.complete.await {
            Ok(Ok(response)) => match response.data {
                PartitionResponse::Appended { outcomes } => Ok(outcomes),
                PartitionResponse::Nothing => {
                    unreachable!("an append entry is answered with its outcomes")
                }
            },
            Ok(Err(ClientWriteError::ForwardToLeader(forward))) => {
                Err(AppendFailure::NotLeader { leader: forward.leader_id })
            }
            Ok(Err(e)) => Err(AppendFailure::Indeterminate(Box::new(e))),
            // Raft dropped the responder: it stopped before the entry was applied.
            Err(closed) => Err(AppendFailure::Indeterminate(Box::new(closed))),
        }
    }
}

/// Whether an idle replica has stopped its Raft timers (no heartbeats, no elections), so that
/// hundreds of idle partitions cost a node nothing. Any activity wakes it; the node wakes the
/// followers of a leader whose node stops answering (see the broker's peer monitor).
#[derive(Debug)]
struct Hibernation {
    raft: PartitionRaftHandle,
    hibernating: AtomicBool,
    /// When the replica last woke (or started): it stays awake at least an idle period after.
    woke_at: Mutex<std::time::Instant>,
}

impl Hibernation {
    fn hibernate(&self) {
        if !self.hibernating.swap(true, Ordering::AcqRel) {
            self.raft.runtime_config().heartbeat(false);
            self.raft.runtime_config().tick(false);
        }
    }

    fn wake(&self) {
        if self.hibernating.swap(false, Ordering::AcqRel) {
            *lock(&self.woke_at) = std::time::Instant::now();
            self.raft.runtime_config().tick(true);
            self.raft.runtime_config().heartbeat(true);
        }
    }
}

/// Receives a partition's peer messages and wakes the replica when the group is active:
/// entries to append, a snapshot, or an election under way.
struct WakingRpc {
    inner: RaftGroupRpc<PartitionRaft, PartitionStateMachine>,
    hibernation: Arc<Hibernation>,
}

impl GroupRpc for WakingRpc {
    fn vote(&self, req: pb::VoteRequest) -> BoxFuture<Result<pb::VoteResponse, GroupRpcError>> {
        self.hibernation.wake();
        self.inner.vote(req)
    }

    fn append_entries(
        &self,
        req: pb::AppendEntriesRequest,
    ) -> BoxFuture<Result<pb::AppendEntriesResponse, GroupRpcError>> {
        if !req.entries.is_empty() {
            self.hibernation.wake();
        }
        self.inner.append_entries(req)
    }

    fn install_snapshot(
        &self,
        req: pb::InstallSnapshotRequest,
    ) -> BoxFuture<Result<pb::InstallSnapshotResponse, GroupRpcError>> {
        self.hibernation.wake();
        self.inner.install_snapshot(req)
    }

    fn transfer_leader(
        &self,
        req: pb::TransferLeaderRequest,
    ) -> BoxFuture<Result<pb::TransferLeaderResponse, GroupRpcError>> {
        // The target campaigns at once: it must be awake to.
        self.hibernation.wake();
        self.inner.transfer_leader(req)
    }
}

/// One partition replica on this node.
#[derive(Clone)]
pub struct PartitionGroup {
    group: GroupId,
    node: u64,
    raft: PartitionRaftHandle,
    reader: PartitionReader,
    retention: Arc<Mutex<RetentionFloor>>,
    hibernation: Arc<Hibernation>,
    /// openraft's leader lease (the election timeout's maximum): a leader that has heard from
    /// no quorum within it refuses writes until a heartbeat round renews it.
    lease: std::time::Duration,
}

impl std::fmt::Debug for PartitionGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionGroup")
            .field("group", &self.group)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl PartitionGroup {
    /// Opens (creating its storage on first use) and starts the replica of `group` on `node`,
    /// and registers it with the node's dispatcher so peers reach it.
    pub async fn open(
        node: u64,
        group: GroupId,
        storage: &Storage,
        transport: Arc<dyn Transport>,
        dispatcher: &RaftDispatcher,
        settings: &RaftSettings,
    ) -> Result<Self, GroupError> {
        let group_storage = storage.open_or_create_group(group).await?;
        let log_store = RocksLogStore::<PartitionRaft>::new(group_storage.clone());
        let sm = PartitionStateMachine::open(
            group_storage,
            settings.checkpoint_interval_entries,
            settings.sabotage,
        )?;
        let reader = sm.reader();
        let retention = sm.retention();
        let network = GroupNetworkFactory::new(group, transport)
            .with_fake_failed_appends(settings.sabotage.commit_without_quorum);
        let raft = openraft::Raft::new(node, group_config(settings)?, network, log_store, sm)
            .await
            .map_err(GroupError::raft)?;
        let hibernation = Arc::new(Hibernation {
            raft: raft.clone(),
            hibernating: AtomicBool::new(false),
            woke_at: Mutex::new(std::time::Instant::now()),
        });
        dispatcher.register(
            group,
            Arc::new(WakingRpc { inner: RaftGroupRpc::new(raft.clone()), hibernation: hibernation.clone() }),
        );
        let lease = std::time::Duration::from_millis(settings.election_timeout_max_ms);
        Ok(PartitionGroup { group, node, raft, reader, retention, hibernation, lease })
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn raft(&self) -> &PartitionRaftHandle {
        &self.raft
    }

    /// A copy of the replica's current Raft metrics (role, leader, term, log positions).
    pub fn metrics(&self) -> openraft::RaftMetrics<PartitionRaft> {
        self.with_metrics(Clone::clone)
    }

    /// Reads the current Raft metrics in place, without copying them: for loops over hundreds
    /// of groups.
    pub fn with_metrics<R>(&self, read: impl FnOnce(&openraft::RaftMetrics<PartitionRaft>) -> R) -> R {
        use openraft::type_config::async_runtime::WatchReceiver as _;
        read(&self.raft.metrics().borrow_watched())
    }

    /// Waits until `holds` is true of the replica's metrics, re-checking at each change, for at
    /// most `timeout`; whether it came to hold.
    pub async fn wait_until(
        &self,
        timeout: std::time::Duration,
        holds: impl Fn(&openraft::RaftMetrics<PartitionRaft>) -> bool + Send,
    ) -> bool {
        self.raft.wait(Some(timeout)).metrics(holds, "metrics condition").await.is_ok()
    }

    pub fn reader(&self) -> &PartitionReader {
        &self.reader
    }

    /// Forms the replica set on a pristine group (once, on one member).
    pub async fn initialize(&self, members: BTreeMap<u64, BasicNode>) -> Result<(), GroupError> {
        self.raft.initialize(members).await.map_err(GroupError::raft)
    }

    /// Appends validated batches as one Raft entry and waits until it is committed (on a
    /// majority, fsynced) and applied; returns what each batch became, in order.
    pub async fn append(&self, batches: Vec<ValidatedBatch>) -> Result<Vec<BatchOutcome>, AppendFailure> {
        self.propose(batches).await?.outcomes().await
    }

    /// Hands validated batches to Raft as one entry without waiting for its commit: entries
    /// proposed one after another by one caller reach the log in that order, which is what
    /// lets a producer keep several batches of one partition in flight (docs/decisions/0015).
    ///
    /// A leader that slept through an idle period (hibernation stops its heartbeats) has heard
    /// from no quorum for longer than its lease: the proposal renews the lease first
    /// ([`lease::renew_if_expired`]), so that the first produce after an idle period is served.
    pub async fn propose(&self, batches: Vec<ValidatedBatch>) -> Result<ProposedAppend, AppendFailure> {
        self.hibernation.wake();
        lease::renew_if_expired(&self.raft, self.node, self.lease).await;
        let request = PartitionRequest::append(batches.into_iter().map(ValidatedBatch::into_bytes).collect());
        let (responder, complete) = openraft::impls::ProgressResponder::complete_only();
        self.raft
            .client_write_ff(request, Some(responder))
            .await
            .map_err(|fatal| AppendFailure::Indeterminate(Box::new(fatal)))?;
        Ok(ProposedAppend { complete })
    }
    /// Stops this replica's Raft timers while the group is idle. Safety does not depend on
    /// timers, only liveness does: whoever hibernates a follower must wake it when its leader's
    /// node stops answering.
    pub fn hibernate(&self) {
        self.hibernation.hibernate();
    }

    /// Restarts the replica's Raft timers. Cheap when already awake.
    pub fn wake(&self) {
        self.hibernation.wake();
    }

    /// Asks the group to elect this replica, through a pre-vote: nothing changes (no term is
    /// spent, no leader disturbed) unless this replica and a quorum have all stopped hearing
    /// from the leader for its lease. The election timer would do the same a random election
    /// timeout later; this is for a caller that knows the leader's node is gone.
    pub async fn campaign(&self) -> Result<(), GroupError> {
        self.hibernation.wake();
        self.raft.trigger().elect(true).await.map_err(GroupError::raft)
    }

    /// When the replica last woke up or started.
    pub fn woke_at(&self) -> std::time::Instant {
        *lock(&self.hibernation.woke_at)
    }

    pub fn is_hibernating(&self) -> bool {
        self.hibernation.hibernating.load(Ordering::Acquire)
    }

    /// Lets retention purge the log up to `floor`: a snapshot is taken at the newest checkpoint
    /// within it and openraft purges the log up to that snapshot.
    pub async fn set_retention(&self, floor: RetentionFloor) -> Result<(), GroupError> {
        self.hibernation.wake();
        *lock(&self.retention) = floor;
        self.raft.trigger().snapshot().await.map_err(GroupError::raft)
    }

    /// Stops the replica and unregisters it.
    pub async fn shutdown(&self, dispatcher: &RaftDispatcher) -> Result<(), GroupError> {
        dispatcher.unregister(self.group);
        self.raft.shutdown().await.map_err(GroupError::raft)
    }
}
