//! [`Node`]: what the node's services and tasks share, behind methods. Built by `start`; it
//! starts nothing itself and knows none of the services or tasks that use it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_meta::{BrokerState, LivenessTable, MetaState};
use sluice_raft::{PartitionGroup, RaftDispatcher, RaftSettings, Transport};
use sluice_storage::Storage;
use sluice_types::{GroupId, NodeId};
use tokio_util::sync::CancellationToken;

use crate::admission::Admission;
use crate::clients::Clients;
use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::peer_table::{PeerChanges, PeerTable};
use crate::registry::Registry;
use sluice_types::sync::lock;

/// What the registry leader told this node in its last heartbeat answer.
#[derive(Clone, Debug, Default)]
pub struct ClusterInfo {
    /// Partition group -> leader node.
    pub leaders: HashMap<u64, u64>,
    /// Node -> milliseconds since the registry leader last heard from it.
    pub last_seen_ms_ago: HashMap<u64, u64>,
}

/// Everything the node's services and tasks share.
pub struct Node {
    id: u64,
    addr: String,
    config: NodeConfig,
    raft_settings: RaftSettings,
    storage: Storage,
    dispatcher: Arc<RaftDispatcher>,
    transport: Arc<dyn Transport>,
    clients: Arc<Clients>,
    registry: Registry,
    admission: Admission,
    metrics: Metrics,
    partitions: Mutex<HashMap<GroupId, PartitionGroup>>,
    /// On the registry leader: brokers' heartbeats and the partition leaders they report.
    liveness: Mutex<LivenessTable>,
    /// Elsewhere: what the registry leader's last heartbeat answer said.
    cluster: Mutex<ClusterInfo>,
    peers: Mutex<PeerTable>,
    shutdown: CancellationToken,
    started: Instant,
    /// Identifies this run of the node (its start time, ms since the epoch).
    incarnation: u64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// The parts a node is built from (see `start`).
pub struct NodeParts {
    pub config: NodeConfig,
    pub raft_settings: RaftSettings,
    pub storage: Storage,
    pub dispatcher: Arc<RaftDispatcher>,
    pub transport: Arc<dyn Transport>,
    pub clients: Arc<Clients>,
    pub registry: Registry,
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for NodeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeParts").field("node_id", &self.config.node_id).finish_non_exhaustive()
    }
}

impl Node {
    pub fn new(parts: NodeParts) -> Node {
        let NodeParts { config, raft_settings, storage, dispatcher, transport, clients, registry, shutdown } =
            parts;
        Node {
            id: config.node_id,
            addr: config.advertised(),
            admission: Admission::new(&config.limits, storage.path().to_path_buf()),
            metrics: Metrics::default(),
            config,
            raft_settings,
            storage,
            dispatcher,
            transport,
            clients,
            registry,
            partitions: Mutex::new(HashMap::new()),
            liveness: Mutex::new(LivenessTable::default()),
            cluster: Mutex::new(ClusterInfo::default()),
            peers: Mutex::new(PeerTable::default()),
            shutdown,
            started: Instant::now(),
            incarnation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The address other nodes and clients reach this node at.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Raft settings of every group this node opens (the sabotage switch included).
    pub fn raft_settings(&self) -> &RaftSettings {
        &self.raft_settings
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn dispatcher(&self) -> &RaftDispatcher {
        &self.dispatcher
    }

    pub fn transport(&self) -> Arc<dyn Transport> {
        self.transport.clone()
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Cancelled when the node stops.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn election_timeout_max(&self) -> Duration {
        Duration::from_millis(self.config.raft.election_timeout_max_ms)
    }

    /// The address of a node, from the controllers list or the registry.
    pub fn addr_of(&self, node: u64) -> Option<String> {
        self.registry.addr_of(node)
    }

    // --- hosted partition replicas

    pub fn partition(&self, group: GroupId) -> Option<PartitionGroup> {
        lock(&self.partitions).get(&group).cloned()
    }

    pub fn partition_groups(&self) -> Vec<PartitionGroup> {
        lock(&self.partitions).values().cloned().collect()
    }

    pub fn hosted_groups(&self) -> Vec<GroupId> {
        lock(&self.partitions).keys().copied().collect()
    }

    pub fn add_partition(&self, replica: PartitionGroup) {
        lock(&self.partitions).insert(replica.group(), replica);
    }

    pub fn remove_partition(&self, group: GroupId) -> Option<PartitionGroup> {
        self.admission.forget(group);
        lock(&self.partitions).remove(&group)
    }

    /// Removes every hosted replica (shutdown).
    pub fn take_partitions(&self) -> Vec<PartitionGroup> {
        lock(&self.partitions).drain().map(|(_, g)| g).collect()
    }

    // --- liveness, on the registry leader

    fn registry_term(&self) -> u64 {
        self.registry.meta().map_or(0, |m| m.metrics().current_term)
    }

    /// Records a broker's heartbeat (registry leader only).
    pub fn record_heartbeat(&self, from: u64, led: impl IntoIterator<Item = (GroupId, u64)>) {
        let term = self.registry_term();
        let registry = self.registry.snapshot();
        lock(&self.liveness).record_heartbeat(term, &registry.state, Instant::now(), NodeId(from), led);
    }

    /// The liveness verdicts that changed (registry leader only).
    pub fn liveness_verdicts(&self, session: Duration) -> Vec<(NodeId, BrokerState)> {
        let term = self.registry_term();
        let registry = self.registry.snapshot();
        lock(&self.liveness).verdicts(term, &registry.state, Instant::now(), NodeId(self.id), session)
    }

    // --- what this node knows of partition leaders and broker liveness

    /// The leader of `group` as the registry leader heard it: from its own table on the registry
    /// leader, from the last heartbeat answer elsewhere.
    pub fn reported_leader(&self, group: GroupId) -> Option<u64> {
        if self.registry.is_leader() {
            lock(&self.liveness).reported_leader(group).map(|n| n.0)
        } else {
            lock(&self.cluster).leaders.get(&group.0).copied()
        }
    }

    /// Every partition leader as the registry leader heard them.
    pub fn reported_leaders(&self) -> HashMap<u64, u64> {
        if self.registry.is_leader() {
            lock(&self.liveness).reported_leaders().into_iter().map(|(g, n)| (g.0, n.0)).collect()
        } else {
            lock(&self.cluster).leaders.clone()
        }
    }

    /// Milliseconds since each broker was last heard from by the registry leader.
    pub fn last_seen_ms_ago(&self) -> HashMap<u64, u64> {
        if self.registry.is_leader() {
            let ago = lock(&self.liveness).last_seen_ago(Instant::now());
            ago.into_iter().map(|(n, d)| (n.0, u64::try_from(d.as_millis()).unwrap_or(u64::MAX))).collect()
        } else {
            lock(&self.cluster).last_seen_ms_ago.clone()
        }
    }

    pub fn set_cluster_info(&self, info: ClusterInfo) {
        *lock(&self.cluster) = info;
    }

    // --- peers, from this node's own pings

    pub fn peer_up(&self, peer: u64) -> bool {
        lock(&self.peers).is_up(peer)
    }

    /// Whether `peer` answered this node's latest ping; this node itself always does.
    pub fn peer_answering(&self, peer: u64) -> bool {
        peer == self.id() || lock(&self.peers).is_answering(peer)
    }

    pub fn record_pings(
        &self,
        answers: impl IntoIterator<Item = (u64, Option<u64>)>,
        down_after: Duration,
    ) -> PeerChanges {
        lock(&self.peers).record(answers, Instant::now(), down_after)
    }

    /// The registry state as this node knows it.
    pub fn registry_state(&self) -> Arc<MetaState> {
        self.registry.snapshot().state
    }
}
