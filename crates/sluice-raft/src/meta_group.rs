//! Starting the metadata registry's replica (group 0) on a controller node.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::impls::BasicNode;
use openraft::{Config, SnapshotPolicy};
use sluice_meta::{MetaCommand, MetaResponse};
use sluice_storage::Storage;
use sluice_types::GroupId;
use tokio::sync::watch;

use crate::group::{AppendFailure, GroupError, RaftSettings};
use crate::log_store::RocksLogStore;
use crate::meta_sm::{MetaStateMachine, MetaView};
use crate::network::{GroupNetworkFactory, RaftDispatcher, RaftGroupRpc, Transport};
use crate::types::{MetaRaft, MetaRequest};

/// The registry log is compacted like any Raft log: snapshot every this many entries.
const META_SNAPSHOT_EVERY_ENTRIES: u64 = 1000;

/// The Raft handle of the registry.
pub type MetaRaftHandle = openraft::Raft<MetaRaft, MetaStateMachine>;

fn meta_config(settings: &RaftSettings) -> Result<Arc<Config>, GroupError> {
    let config = Config {
        cluster_name: "sluice".into(),
        heartbeat_interval: settings.heartbeat_interval_ms,
        election_timeout_min: settings.election_timeout_min_ms,
        election_timeout_max: settings.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(META_SNAPSHOT_EVERY_ENTRIES),
        max_in_snapshot_log_to_keep: 100,
        ..Config::default()
    };
    Ok(Arc::new(config.validate().map_err(GroupError::Config)?))
}

/// This node's replica of the registry.
#[derive(Clone)]
pub struct MetaGroup {
    raft: MetaRaftHandle,
    view: watch::Receiver<Arc<MetaView>>,
}

impl std::fmt::Debug for MetaGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaGroup").finish_non_exhaustive()
    }
}

impl MetaGroup {
    pub async fn open(
        node: u64,
        storage: &Storage,
        transport: Arc<dyn Transport>,
        dispatcher: &RaftDispatcher,
        settings: &RaftSettings,
    ) -> Result<Self, GroupError> {
        let group_storage = storage.open_or_create_group(GroupId::META).await?;
        let log_store = RocksLogStore::<MetaRaft>::new(group_storage.clone());
        let sm = MetaStateMachine::open(group_storage)?;
        let view = sm.subscribe();
        let network = GroupNetworkFactory::new(GroupId::META, transport);
        let raft = openraft::Raft::new(node, meta_config(settings)?, network, log_store, sm)
            .await
            .map_err(GroupError::raft)?;
        dispatcher.register(GroupId::META, Arc::new(RaftGroupRpc::new(raft.clone())));
        Ok(MetaGroup { raft, view })
    }

    pub fn raft(&self) -> &MetaRaftHandle {
        &self.raft
    }

    /// The applied registry on this replica (possibly behind the leader's).
    pub fn view(&self) -> Arc<MetaView> {
        self.view.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Arc<MetaView>> {
        self.view.clone()
    }

    pub fn metrics(&self) -> openraft::RaftMetrics<MetaRaft> {
        use openraft::type_config::async_runtime::WatchReceiver as _;
        self.raft.metrics().borrow_watched().clone()
    }

    /// Asks the registry to elect this replica, through a pre-vote (see
    /// `PartitionGroup::campaign`).
    pub async fn campaign(&self) -> Result<(), GroupError> {
        self.raft.trigger().elect(true).await.map_err(GroupError::raft)
    }

    /// Whether this replica has ever been part of a formed registry.
    pub async fn is_initialized(&self) -> Result<bool, GroupError> {
        self.raft.is_initialized().await.map_err(GroupError::raft)
    }

    pub async fn initialize(&self, members: BTreeMap<u64, BasicNode>) -> Result<(), GroupError> {
        self.raft.initialize(members).await.map_err(GroupError::raft)
    }

    /// Commits a registry change on a majority and returns what applying it did. Only the leader
    /// accepts writes; others answer `NotLeader` with the leader's id when known.
    pub async fn write(&self, command: MetaCommand) -> Result<MetaResponse, AppendFailure> {
        match self.raft.client_write(MetaRequest(command)).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(AppendFailure::NotLeader { leader: forward.leader_id })
            }
            Err(e) => Err(AppendFailure::Indeterminate(Box::new(e))),
        }
    }

    /// On the leader, replicates a `Noop` when the last quorum acknowledgement is older than half
    /// of `lease` (openraft's `CheckQuorum` lease, `election_timeout_max`), and says whether it
    /// did. openraft renews the lease with heartbeats, whose timeout is one heartbeat interval:
    /// over links with a longer round trip none succeeds, and an idle registry would lose the
    /// lease and refuse every proposal. The `Noop` is acknowledged through the replication path
    /// instead (peer RPCs get at least a second), which renews it. With heartbeats answered in
    /// time the acknowledgement is always fresh and nothing is written.
    pub async fn renew_lease_if_aging(
        &self,
        node: u64,
        lease: std::time::Duration,
    ) -> Result<bool, AppendFailure> {
        let metrics = self.metrics();
        if metrics.current_leader != Some(node)
            || metrics.membership_config.membership().voter_ids().count() <= 1
        {
            return Ok(false);
        }
        let aging = metrics
            .last_quorum_acked
            .as_ref()
            .is_some_and(|acked| openraft::Instant::elapsed(&**acked) > lease / 2);
        if !aging {
            return Ok(false);
        }
        self.write(MetaCommand::Noop).await.map(|_| true)
    }

    /// Waits until this replica, as leader, has applied everything committed before the call:
    /// a read after this is linearizable.
    pub async fn linearizable_barrier(&self) -> Result<(), AppendFailure> {
        use openraft::error::LinearizableReadError;
        match self.raft.ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(forward))) => {
                Err(AppendFailure::NotLeader { leader: forward.leader_id })
            }
            Err(e) => Err(AppendFailure::Indeterminate(Box::new(e))),
        }
    }

    pub async fn shutdown(&self, dispatcher: &RaftDispatcher) -> Result<(), GroupError> {
        dispatcher.unregister(GroupId::META);
        self.raft.shutdown().await.map_err(GroupError::raft)
    }
}
