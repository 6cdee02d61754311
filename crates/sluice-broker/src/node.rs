//! The node: what `sluiced` runs. [`start_node`] opens storage, starts the registry replica (on
//! controllers), the gRPC and HTTP servers and the node's long-lived tasks, and returns a
//! [`NodeHandle`] whose `shutdown` stops them in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::impls::BasicNode;
use sluice_meta::{MetaCommand, MetaResponse, MetaState};
use sluice_proto::node::{ProposeRequest, ReadRegistryRequest};
use sluice_raft::{AppendFailure, MetaGroup, PartitionGroup, RaftDispatcher, Transport};
use sluice_storage::{Storage, StorageOptions};
use sluice_types::{GroupId, NodeId};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api_error::{ApiError, leader_hint};
use crate::clients::{Clients, GrpcTransport};
use crate::config::NodeConfig;

/// How long a registry write or consistent read may take, forwarding included.
const REGISTRY_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Leader hints followed per call at most (a stale hint can point at a non-leader).
const FORWARD_HOPS_MAX: usize = 4;
/// How long the registry leader waits before proposing again after openraft refused a proposal
/// because its quorum lease lapsed (an empty `ForwardToLeader`; see `registry_lease`).
const LEASE_RETRY: Duration = Duration::from_millis(100);

/// The registry as this node knows it, and the registry index it reflects.
#[derive(Clone, Debug, Default)]
pub struct RegistrySnapshot {
    pub state: Arc<MetaState>,
    pub index: u64,
}

/// What the registry leader told this node in its last heartbeat answer.
#[derive(Clone, Debug, Default)]
pub struct ClusterInfo {
    pub meta_leader: Option<u64>,
    /// Partition group -> leader node.
    pub leaders: HashMap<u64, u64>,
    /// Node -> milliseconds since the registry leader last heard from it.
    pub last_seen_ms_ago: HashMap<u64, u64>,
}

/// The registry leader's in-memory view of broker liveness (never replicated: only verdicts are).
#[derive(Debug, Default)]
pub struct LivenessTable {
    /// The registry term this table belongs to; a new leader starts a new table.
    pub term: u64,
    pub last_seen: HashMap<u64, Instant>,
    /// Partition group -> (leader, term) as reported in heartbeats.
    pub leaders: HashMap<u64, (u64, u64)>,
}

/// Everything the node's services and tasks share.
pub struct Node {
    pub config: NodeConfig,
    pub id: u64,
    pub addr: String,
    pub storage: Storage,
    pub dispatcher: Arc<RaftDispatcher>,
    pub transport: Arc<dyn Transport>,
    pub clients: Arc<Clients>,
    /// This node's registry replica, on controllers only.
    pub meta: Option<MetaGroup>,
    registry: watch::Sender<RegistrySnapshot>,
    pub partitions: Mutex<HashMap<GroupId, PartitionGroup>>,
    pub liveness: Mutex<LivenessTable>,
    pub cluster: Mutex<ClusterInfo>,
    pub peers: Mutex<HashMap<u64, crate::peers::PeerState>>,
    pub admission: crate::data::Admission,
    pub shutdown: CancellationToken,
    pub started: Instant,
    /// Identifies this run of the node (its start time, ms since the epoch).
    pub incarnation: u64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).field("addr", &self.addr).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Node {
    pub fn registry(&self) -> RegistrySnapshot {
        self.registry.borrow().clone()
    }

    pub fn watch_registry(&self) -> watch::Receiver<RegistrySnapshot> {
        self.registry.subscribe()
    }

    /// Replaces the registry copy if `index` is newer (non-controllers learn it from heartbeats).
    pub fn offer_registry(&self, state: MetaState, index: u64) {
        self.registry.send_if_modified(|current| {
            if index > current.index {
                *current = RegistrySnapshot { state: Arc::new(state), index };
                true
            } else {
                false
            }
        });
    }

    pub fn cluster_info(&self) -> ClusterInfo {
        lock(&self.cluster).clone()
    }

    pub fn set_cluster_info(&self, info: ClusterInfo) {
        *lock(&self.cluster) = info;
    }

    pub fn partition(&self, group: GroupId) -> Option<PartitionGroup> {
        lock(&self.partitions).get(&group).cloned()
    }

    pub fn partition_groups(&self) -> Vec<PartitionGroup> {
        lock(&self.partitions).values().cloned().collect()
    }

    /// The address of a node, from the controllers list or the registry.
    pub fn addr_of(&self, node: u64) -> Option<String> {
        if node == self.id {
            return Some(self.addr.clone());
        }
        if let Some(c) = self.config.controllers.iter().find(|c| c.id == node) {
            return Some(c.addr.clone());
        }
        self.registry().state.broker(NodeId(node)).map(|b| b.addr.clone())
    }

    /// The registry leader as far as this node knows.
    pub fn meta_leader(&self) -> Option<u64> {
        match &self.meta {
            Some(meta) => meta.metrics().current_leader,
            None => self.cluster_info().meta_leader,
        }
    }

    pub fn is_meta_leader(&self) -> bool {
        self.meta.as_ref().is_some_and(|m| m.metrics().current_leader == Some(self.id))
    }

    /// Where to send a registry call: the known leader first, then every controller.
    fn registry_targets(&self, hint: Option<String>) -> Vec<String> {
        let mut targets = Vec::new();
        if let Some(addr) = hint {
            targets.push(addr);
        }
        if let Some(addr) = self.meta_leader().and_then(|l| self.addr_of(l)) {
            targets.push(addr);
        }
        targets.extend(self.config.controllers.iter().map(|c| c.addr.clone()));
        targets.dedup();
        targets
    }

    /// Proposes a registry change here if this node leads the registry; never forwards.
    pub async fn propose_local(&self, command: MetaCommand) -> Result<MetaResponse, ApiError> {
        let Some(meta) = &self.meta else {
            return Err(ApiError::NotLeader {
                leader_addr: self.meta_leader().and_then(|l| self.addr_of(l)),
            });
        };
        // A leader cut off from its peers would hold the command forever.
        let deadline = 3 * self.election_timeout_max();
        match tokio::time::timeout(deadline, meta.write(command)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(AppendFailure::NotLeader { leader })) => {
                Err(ApiError::NotLeader { leader_addr: leader.and_then(|l| self.addr_of(l)) })
            }
            Ok(Err(AppendFailure::Indeterminate(e))) => Err(ApiError::Unavailable(e)),
            Err(_) => Err(ApiError::Unavailable(format!(
                "registry change not committed within {} ms; outcome unknown",
                deadline.as_millis()
            ))),
        }
    }

    fn election_timeout_max(&self) -> Duration {
        Duration::from_millis(self.config.raft.election_timeout_max_ms)
    }

    /// Proposes a registry change on the registry leader, wherever it is, and returns what
    /// applying it did. A refused command comes back as `ApiError::Meta`.
    pub async fn propose(&self, command: MetaCommand) -> Result<MetaResponse, ApiError> {
        let deadline = Instant::now() + REGISTRY_CALL_TIMEOUT;
        let body = serde_json::to_vec(&command).map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut last_error = ApiError::Unavailable("no registry leader reachable".into());
        let mut hint = None;
        for _ in 0..FORWARD_HOPS_MAX {
            if Instant::now() > deadline {
                break;
            }
            if self.is_meta_leader() {
                match self.propose_local(command.clone()).await {
                    Err(ApiError::NotLeader { leader_addr }) => {
                        if leader_addr.is_none() && self.is_meta_leader() {
                            // Still the leader, but its lease lapsed: a renewal may be on its way.
                            tokio::time::sleep(LEASE_RETRY).await;
                        }
                        hint = leader_addr;
                        continue;
                    }
                    other => return refused_as_error(other),
                }
            }
            for addr in self.registry_targets(hint.take()) {
                if addr == self.addr && !self.is_meta_leader() {
                    continue;
                }
                let Ok(mut client) = self.clients.node(&addr) else { continue };
                let mut request = tonic::Request::new(ProposeRequest { command: body.clone().into() });
                // One target may be a leader that lost its quorum: give it two election timeouts
                // (time for the others to elect), not the whole deadline.
                request.set_timeout(
                    deadline.saturating_duration_since(Instant::now()).min(2 * self.election_timeout_max()),
                );
                match client.propose(request).await {
                    Ok(response) => {
                        let response: MetaResponse = serde_json::from_slice(&response.into_inner().response)
                            .map_err(|e| ApiError::Internal(format!("registry answer: {e}")))?;
                        return refused_as_error(Ok(response));
                    }
                    Err(status) => {
                        if let Some(leader) = leader_hint(&status) {
                            hint = Some(leader);
                            break;
                        }
                        last_error = ApiError::Unavailable(format!("{addr}: {}", status.message()));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last_error)
    }

    /// The registry as of a linearizable barrier on its leader.
    pub async fn read_registry_consistent(&self) -> Result<RegistrySnapshot, ApiError> {
        if let Some(meta) = &self.meta
            && self.is_meta_leader()
        {
            match meta.linearizable_barrier().await {
                Ok(()) => {
                    let view = meta.view();
                    return Ok(RegistrySnapshot {
                        state: Arc::new(view.state.clone()),
                        index: view.last_applied.map_or(0, |id| id.index),
                    });
                }
                Err(AppendFailure::NotLeader { .. }) => {}
                Err(AppendFailure::Indeterminate(e)) => return Err(ApiError::Unavailable(e)),
            }
        }
        let deadline = Instant::now() + REGISTRY_CALL_TIMEOUT;
        let mut hint = None;
        for _ in 0..FORWARD_HOPS_MAX {
            for addr in self.registry_targets(hint.take()) {
                if addr == self.addr {
                    continue;
                }
                let Ok(mut client) = self.clients.node(&addr) else { continue };
                let mut request = tonic::Request::new(ReadRegistryRequest {});
                request.set_timeout(deadline.saturating_duration_since(Instant::now()));
                match client.read_registry(request).await {
                    Ok(response) => {
                        let response = response.into_inner();
                        let state = MetaState::from_bytes(&response.state)
                            .map_err(|e| ApiError::Internal(format!("registry state: {e}")))?;
                        return Ok(RegistrySnapshot {
                            state: Arc::new(state),
                            index: response.applied_index,
                        });
                    }
                    Err(status) => {
                        if let Some(leader) = leader_hint(&status) {
                            hint = Some(leader);
                            break;
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ApiError::Unavailable("no registry leader reachable".into()))
    }
}

fn refused_as_error(result: Result<MetaResponse, ApiError>) -> Result<MetaResponse, ApiError> {
    match result {
        Ok(MetaResponse::Refused(e)) => Err(ApiError::Meta(e)),
        other => other,
    }
}

/// A running node. Dropping it does not stop it; call [`NodeHandle::shutdown`].
#[derive(Debug)]
pub struct NodeHandle {
    pub node: Arc<Node>,
    pub grpc_addr: std::net::SocketAddr,
    pub http_addr: std::net::SocketAddr,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

/// Starts a node from a validated config.
pub async fn start_node(config: NodeConfig) -> anyhow::Result<NodeHandle> {
    use anyhow::Context as _;
    config.validate()?;
    let storage = Storage::open(
        &config.data_dir,
        &StorageOptions {
            write_buffer_bytes: config.storage.write_buffer_bytes,
            block_cache_bytes: config.storage.block_cache_bytes,
            direct_io_flush: config.storage.direct_io_flush,
        },
    )
    .with_context(|| format!("open storage in {}", config.data_dir.display()))?;

    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("bind gRPC {}", config.grpc_addr))?;
    let http_listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("bind HTTP {}", config.http_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let clients = Arc::new(Clients::new(config.peer_dial_overrides.clone()));
    let transport: Arc<dyn Transport> = Arc::new(GrpcTransport::new(clients.clone()));
    let dispatcher = Arc::new(RaftDispatcher::default());
    let settings = config.raft_settings();
    let meta = if config.is_controller() {
        Some(MetaGroup::open(config.node_id, &storage, transport.clone(), &dispatcher, &settings).await?)
    } else {
        None
    };
    let initial = meta.as_ref().map_or_else(RegistrySnapshot::default, |m| {
        let view = m.view();
        RegistrySnapshot {
            state: Arc::new(view.state.clone()),
            index: view.last_applied.map_or(0, |id| id.index),
        }
    });
    let (registry, _) = watch::channel(initial);
    let admission = crate::data::Admission::new(&config.limits);

    let node = Arc::new(Node {
        id: config.node_id,
        addr: config.advertised(),
        config,
        storage,
        dispatcher,
        transport,
        clients,
        meta,
        registry,
        partitions: Mutex::new(HashMap::new()),
        liveness: Mutex::new(LivenessTable::default()),
        cluster: Mutex::new(ClusterInfo::default()),
        peers: Mutex::new(HashMap::new()),
        admission,
        shutdown: CancellationToken::new(),
        started: Instant::now(),
        incarnation: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    });
    tracing::info!(node = node.id, %grpc_addr, %http_addr, controller = node.meta.is_some(), "node starting");

    let mut tasks = Vec::new();
    tasks.push(("grpc", tokio::spawn(crate::server::serve_grpc(node.clone(), grpc_listener))));
    tasks.push(("http", tokio::spawn(crate::http::serve_http(node.clone(), http_listener))));
    if node.meta.is_some() {
        tasks.push(("registry-follow", tokio::spawn(follow_registry(node.clone()))));
        tasks.push(("registry-bootstrap", tokio::spawn(bootstrap_registry(node.clone()))));
        tasks.push(("liveness", tokio::spawn(crate::liveness::run(node.clone()))));
        tasks.push(("registry-lease", tokio::spawn(crate::registry_lease::run(node.clone()))));
    }
    tasks.push(("heartbeat", tokio::spawn(crate::heartbeat::run(node.clone()))));
    tasks.push(("reconciler", tokio::spawn(crate::reconciler::run(node.clone()))));
    tasks.push(("peers", tokio::spawn(crate::peers::run(node.clone()))));
    tasks.push(("quiescer", tokio::spawn(crate::peers::quiesce(node.clone()))));
    tasks.push(("leadership-shedder", tokio::spawn(crate::peers::shed_leadership(node.clone()))));
    Ok(NodeHandle { node, grpc_addr, http_addr, tasks })
}

/// Publishes the local registry replica's applied state to the rest of the node.
async fn follow_registry(node: Arc<Node>) {
    let Some(meta) = node.meta.clone() else { return };
    let mut watch = meta.watch();
    loop {
        let view = watch.borrow_and_update().clone();
        node.offer_registry(view.state.clone(), view.last_applied.map_or(0, |id| id.index));
        tokio::select! {
            () = node.shutdown.cancelled() => return,
            changed = watch.changed() => if changed.is_err() { return },
        }
    }
}

/// Forms the registry on first start: the controller with the lowest id initializes it with all
/// controllers as voters; the others wait to be contacted.
async fn bootstrap_registry(node: Arc<Node>) {
    let Some(meta) = node.meta.clone() else { return };
    let lowest = node.config.controllers.iter().map(|c| c.id).min();
    if lowest != Some(node.id) {
        return;
    }
    match meta.is_initialized().await {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot tell whether the registry is formed");
            return;
        }
    }
    let members: BTreeMap<u64, BasicNode> =
        node.config.controllers.iter().map(|c| (c.id, BasicNode::new(c.addr.clone()))).collect();
    match meta.initialize(members).await {
        Ok(()) => tracing::info!(controllers = node.config.controllers.len(), "registry formed"),
        Err(e) => tracing::warn!(error = %e, "registry initialization refused (already formed?)"),
    }
}

impl NodeHandle {
    /// Stops accepting requests, lets in-flight ones finish, stops every task and Raft group,
    /// then closes storage.
    pub async fn shutdown(self) {
        let node = self.node;
        tracing::info!(node = node.id, "node shutting down");
        node.shutdown.cancel();
        for (name, task) in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(task = name, error = %e, "task ended abnormally");
            }
        }
        let groups: Vec<PartitionGroup> = lock(&node.partitions).drain().map(|(_, g)| g).collect();
        for group in groups {
            if let Err(e) = group.shutdown(&node.dispatcher).await {
                tracing::warn!(group = %group.group(), error = %e, "group shutdown failed");
            }
        }
        if let Some(meta) = &node.meta
            && let Err(e) = meta.shutdown(&node.dispatcher).await
        {
            tracing::warn!(error = %e, "registry shutdown failed");
        }
        node.storage.shutdown();
        tracing::info!(node = node.id, "node stopped");
    }
}
