//! The multiplexed Raft transport: every group of a node sends through one [`Transport`] (one
//! connection per peer), and every node receives through one [`RaftDispatcher`] that routes each
//! message to its group by the group id it carries.
//!
//! [`LocalTransport`] connects nodes of one process (tests); the gRPC transport of the broker
//! implements the same trait, so the same conversions and routing are exercised by both.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use openraft::Raft;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::impls::BasicNode;
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::storage::RaftStateMachine;
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use sluice_proto::raft as pb;
use sluice_types::GroupId;

use crate::pb as conv;
use crate::types::GroupConfig;
use sluice_types::sync::{lock, read, write};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a peer RPC did not get an answer from the target group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached; Raft backs off before retrying.
    #[error("node {node} unreachable: {reason}")]
    Unreachable { node: u64, reason: String },
    /// The peer is up but does not host the group (yet, or any more).
    #[error("node {node} does not host group {group}")]
    UnknownGroup { node: u64, group: GroupId },
    /// The peer answered with an error.
    #[error("node {node} failed the request: {reason}")]
    Remote { node: u64, reason: String },
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// The peer does not know the call: an older build, during a rolling upgrade.
    #[error("node {node} does not support {what}")]
    Unsupported { node: u64, what: String },
}

/// One group's answer to an append.
pub type AppendResult = Result<pb::AppendEntriesResponse, TransportError>;

/// Sends encoded Raft messages to other nodes; one per node, shared by all its groups.
pub trait Transport: Send + Sync + 'static {
    fn vote(
        &self,
        target: u64,
        addr: &str,
        req: pb::VoteRequest,
    ) -> BoxFuture<Result<pb::VoteResponse, TransportError>>;
    fn append_entries(
        &self,
        target: u64,
        addr: &str,
        req: pb::AppendEntriesRequest,
    ) -> BoxFuture<Result<pb::AppendEntriesResponse, TransportError>>;
    /// Many groups' appends to one peer as one message. The outer error fails every request; the
    /// inner results answer each request, in order.
    fn append_entries_batch(
        &self,
        target: u64,
        addr: &str,
        reqs: Vec<pb::AppendEntriesRequest>,
    ) -> BoxFuture<Result<Vec<AppendResult>, TransportError>>;
    fn install_snapshot(
        &self,
        target: u64,
        addr: &str,
        req: pb::InstallSnapshotRequest,
    ) -> BoxFuture<Result<pb::InstallSnapshotResponse, TransportError>>;
    fn transfer_leader(
        &self,
        target: u64,
        addr: &str,
        req: pb::TransferLeaderRequest,
    ) -> BoxFuture<Result<pb::TransferLeaderResponse, TransportError>>;
}

/// Why a group could not take a peer's message.
#[derive(Debug, thiserror::Error)]
pub enum GroupRpcError {
    #[error("undecodable message: {0}")]
    Decode(#[from] crate::codec::CodecError),
    #[error("undecodable snapshot meta: {0}")]
    SnapshotMeta(serde_json::Error),
    /// openraft refused or failed the request (the group is shutting down, say).
    #[error("raft: {0}")]
    Raft(Box<dyn std::error::Error + Send + Sync>),
}

fn raft_failed(e: impl std::error::Error + Send + Sync + 'static) -> GroupRpcError {
    GroupRpcError::Raft(Box::new(e))
}

/// The receiving side of one group: decodes a message, hands it to the group's Raft.
pub trait GroupRpc: Send + Sync + 'static {
    fn vote(&self, req: pb::VoteRequest) -> BoxFuture<Result<pb::VoteResponse, GroupRpcError>>;
    fn append_entries(
        &self,
        req: pb::AppendEntriesRequest,
    ) -> BoxFuture<Result<pb::AppendEntriesResponse, GroupRpcError>>;
    fn install_snapshot(
        &self,
        req: pb::InstallSnapshotRequest,
    ) -> BoxFuture<Result<pb::InstallSnapshotResponse, GroupRpcError>>;
    fn transfer_leader(
        &self,
        req: pb::TransferLeaderRequest,
    ) -> BoxFuture<Result<pb::TransferLeaderResponse, GroupRpcError>>;
}

/// Adapts a `Raft` whose snapshots are bytes to [`GroupRpc`].
pub struct RaftGroupRpc<C: GroupConfig, SM: RaftStateMachine<C, SnapshotData = Bytes>> {
    raft: Raft<C, SM>,
}

impl<C: GroupConfig, SM: RaftStateMachine<C, SnapshotData = Bytes>> std::fmt::Debug for RaftGroupRpc<C, SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftGroupRpc").finish_non_exhaustive()
    }
}

impl<C: GroupConfig, SM: RaftStateMachine<C, SnapshotData = Bytes>> RaftGroupRpc<C, SM> {
    pub fn new(raft: Raft<C, SM>) -> Self {
        RaftGroupRpc { raft }
    }
}

impl<C, SM> GroupRpc for RaftGroupRpc<C, SM>
where
    C: GroupConfig,
    SM: RaftStateMachine<C, SnapshotData = Bytes>,
{
    fn vote(&self, req: pb::VoteRequest) -> BoxFuture<Result<pb::VoteResponse, GroupRpcError>> {
        let raft = self.raft.clone();
        Box::pin(async move {
            let pre_vote = req.pre_vote;
            let request = conv::vote_request_from_pb::<C>(req)?;
            let response = if pre_vote { raft.pre_vote(request).await } else { raft.vote(request).await };
            Ok(conv::vote_response_to_pb(&response.map_err(raft_failed)?))
        })
    }

    fn append_entries(
        &self,
        req: pb::AppendEntriesRequest,
    ) -> BoxFuture<Result<pb::AppendEntriesResponse, GroupRpcError>> {
        let raft = self.raft.clone();
        Box::pin(async move {
            let request = conv::append_request_from_pb::<C>(req)?;
            let response = raft.append_entries(request).await.map_err(raft_failed)?;
            Ok(conv::append_response_to_pb(&response))
        })
    }

    fn transfer_leader(
        &self,
        req: pb::TransferLeaderRequest,
    ) -> BoxFuture<Result<pb::TransferLeaderResponse, GroupRpcError>> {
        let raft = self.raft.clone();
        Box::pin(async move {
            let request = conv::transfer_request_from_pb::<C>(req)?;
            let response = raft.handle_transfer_leader(request).await.map_err(raft_failed)?;
            Ok(conv::transfer_response_to_pb(&response))
        })
    }

    fn install_snapshot(
        &self,
        req: pb::InstallSnapshotRequest,
    ) -> BoxFuture<Result<pb::InstallSnapshotResponse, GroupRpcError>> {
        let raft = self.raft.clone();
        Box::pin(async move {
            let vote = conv::vote_from_pb(req.vote)?;
            let meta = serde_json::from_slice(&req.meta).map_err(GroupRpcError::SnapshotMeta)?;
            let snapshot = openraft::storage::Snapshot { meta, snapshot: req.data };
            let response = raft.install_full_snapshot(vote, snapshot).await.map_err(raft_failed)?;
            Ok(pb::InstallSnapshotResponse { vote: Some(conv::vote_to_pb(&response.vote)) })
        })
    }
}

/// Routes incoming peer messages to the groups this node hosts.
#[derive(Default)]
pub struct RaftDispatcher {
    groups: RwLock<HashMap<GroupId, Arc<dyn GroupRpc>>>,
}

impl std::fmt::Debug for RaftDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftDispatcher").field("groups", &self.groups().len()).finish()
    }
}

/// Why a received message could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("group {0} is not hosted here")]
    UnknownGroup(GroupId),
    #[error(transparent)]
    Failed(#[from] GroupRpcError),
}

impl RaftDispatcher {
    pub fn register(&self, group: GroupId, rpc: Arc<dyn GroupRpc>) {
        write(&self.groups).insert(group, rpc);
    }

    pub fn unregister(&self, group: GroupId) {
        write(&self.groups).remove(&group);
    }

    pub fn groups(&self) -> Vec<GroupId> {
        read(&self.groups).keys().copied().collect()
    }

    fn group(&self, group: u64) -> Result<Arc<dyn GroupRpc>, DispatchError> {
        let group = GroupId(group);
        read(&self.groups).get(&group).cloned().ok_or(DispatchError::UnknownGroup(group))
    }

    pub async fn vote(&self, req: pb::VoteRequest) -> Result<pb::VoteResponse, DispatchError> {
        self.group(req.group_id)?.vote(req).await.map_err(DispatchError::Failed)
    }

    pub async fn append_entries(
        &self,
        req: pb::AppendEntriesRequest,
    ) -> Result<pb::AppendEntriesResponse, DispatchError> {
        self.group(req.group_id)?.append_entries(req).await.map_err(DispatchError::Failed)
    }

    /// Hands each append to its group, all at once, and answers each in request order.
    pub async fn append_entries_batch(
        &self,
        reqs: Vec<pb::AppendEntriesRequest>,
    ) -> Vec<Result<pb::AppendEntriesResponse, DispatchError>> {
        futures::future::join_all(reqs.into_iter().map(|req| self.append_entries(req))).await
    }

    pub async fn install_snapshot(
        &self,
        req: pb::InstallSnapshotRequest,
    ) -> Result<pb::InstallSnapshotResponse, DispatchError> {
        self.group(req.group_id)?.install_snapshot(req).await.map_err(DispatchError::Failed)
    }

    pub async fn transfer_leader(
        &self,
        req: pb::TransferLeaderRequest,
    ) -> Result<pb::TransferLeaderResponse, DispatchError> {
        self.group(req.group_id)?.transfer_leader(req).await.map_err(DispatchError::Failed)
    }
}

/// Nodes of one process, connected in memory. Nodes can be cut off to simulate crashes and
/// partitions, and every link can be given a delay to simulate a slow network.
#[derive(Debug, Default)]
pub struct LocalNetwork {
    nodes: Mutex<HashMap<u64, Arc<RaftDispatcher>>>,
    cut: Mutex<HashSet<u64>>,
    /// How long a message takes each way (zero: delivered at once).
    delay: Mutex<Duration>,
}

impl LocalNetwork {
    pub fn new() -> Arc<Self> {
        Arc::new(LocalNetwork::default())
    }

    /// Connects a node; its groups receive through `dispatcher`.
    pub fn add_node(self: &Arc<Self>, node: u64, dispatcher: Arc<RaftDispatcher>) -> Arc<LocalTransport> {
        lock(&self.nodes).insert(node, dispatcher);
        lock(&self.cut).remove(&node);
        Arc::new(LocalTransport { from: node, network: self.clone() })
    }

    /// Disconnects a node: nothing reaches it and nothing it sends arrives.
    pub fn remove_node(&self, node: u64) {
        lock(&self.nodes).remove(&node);
    }

    /// Cuts a node off without removing it (a partition); `heal` reconnects it.
    pub fn isolate(&self, node: u64) {
        lock(&self.cut).insert(node);
    }

    pub fn heal(&self, node: u64) {
        lock(&self.cut).remove(&node);
    }

    /// Delays every message from now on by `delay` each way: a request and its response take
    /// twice that.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.delay) = delay;
    }

    fn delay(&self) -> Duration {
        *lock(&self.delay)
    }

    fn route(&self, from: u64, to: u64) -> Result<Arc<RaftDispatcher>, TransportError> {
        let cut = lock(&self.cut);
        if cut.contains(&from) || cut.contains(&to) {
            return Err(TransportError::Unreachable { node: to, reason: "partitioned".into() });
        }
        drop(cut);
        let nodes = lock(&self.nodes);
        if !nodes.contains_key(&from) {
            return Err(TransportError::Unreachable { node: to, reason: "sender is down".into() });
        }
        nodes.get(&to).cloned().ok_or(TransportError::Unreachable { node: to, reason: "down".into() })
    }
}

/// One node's view of a [`LocalNetwork`].
#[derive(Debug)]
pub struct LocalTransport {
    from: u64,
    network: Arc<LocalNetwork>,
}

/// Runs `call` after `delay` and holds its answer for `delay` again: one round trip on a slow link.
async fn delayed<T>(delay: Duration, call: impl Future<Output = T>) -> T {
    if delay.is_zero() {
        return call.await;
    }
    tokio::time::sleep(delay).await;
    let answer = call.await;
    tokio::time::sleep(delay).await;
    answer
}

fn dispatch_error(node: u64, e: DispatchError) -> TransportError {
    match e {
        DispatchError::UnknownGroup(group) => TransportError::UnknownGroup { node, group },
        DispatchError::Failed(e) => TransportError::Remote { node, reason: e.to_string() },
    }
}

impl Transport for LocalTransport {
    fn vote(
        &self,
        target: u64,
        _addr: &str,
        req: pb::VoteRequest,
    ) -> BoxFuture<Result<pb::VoteResponse, TransportError>> {
        let route = self.network.route(self.from, target);
        let delay = self.network.delay();
        Box::pin(delayed(delay, async move { route?.vote(req).await.map_err(|e| dispatch_error(target, e)) }))
    }

    fn append_entries(
        &self,
        target: u64,
        _addr: &str,
        req: pb::AppendEntriesRequest,
    ) -> BoxFuture<Result<pb::AppendEntriesResponse, TransportError>> {
        let route = self.network.route(self.from, target);
        let delay = self.network.delay();
        Box::pin(delayed(delay, async move {
            route?.append_entries(req).await.map_err(|e| dispatch_error(target, e))
        }))
    }

    fn append_entries_batch(
        &self,
        target: u64,
        _addr: &str,
        reqs: Vec<pb::AppendEntriesRequest>,
    ) -> BoxFuture<Result<Vec<AppendResult>, TransportError>> {
        let route = self.network.route(self.from, target);
        let delay = self.network.delay();
        Box::pin(delayed(delay, async move {
            let answers = route?.append_entries_batch(reqs).await;
            Ok(answers.into_iter().map(|a| a.map_err(|e| dispatch_error(target, e))).collect())
        }))
    }

    fn install_snapshot(
        &self,
        target: u64,
        _addr: &str,
        req: pb::InstallSnapshotRequest,
    ) -> BoxFuture<Result<pb::InstallSnapshotResponse, TransportError>> {
        let route = self.network.route(self.from, target);
        let delay = self.network.delay();
        Box::pin(delayed(delay, async move {
            route?.install_snapshot(req).await.map_err(|e| dispatch_error(target, e))
        }))
    }

    fn transfer_leader(
        &self,
        target: u64,
        _addr: &str,
        req: pb::TransferLeaderRequest,
    ) -> BoxFuture<Result<pb::TransferLeaderResponse, TransportError>> {
        let route = self.network.route(self.from, target);
        let delay = self.network.delay();
        Box::pin(delayed(delay, async move {
            route?.transfer_leader(req).await.map_err(|e| dispatch_error(target, e))
        }))
    }
}

/// openraft's network factory for one group: every client it makes shares the node's transport.
pub struct GroupNetworkFactory {
    group: GroupId,
    transport: Arc<dyn Transport>,
    /// The `commit-without-quorum` sabotage: an append unanswered after 50 ms is reported as stored.
    fake_failed_appends: bool,
}

impl std::fmt::Debug for GroupNetworkFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupNetworkFactory").field("group", &self.group).finish_non_exhaustive()
    }
}

impl GroupNetworkFactory {
    pub fn new(group: GroupId, transport: Arc<dyn Transport>) -> Self {
        GroupNetworkFactory { group, transport, fake_failed_appends: false }
    }

    /// Breaks Raft on purpose (the fault tests' `commit-without-quorum` sabotage): every append
    /// a peer did not answer within 50 ms is reported to openraft as stored, so the leader
    /// counts an unreachable follower in its quorum and commits alone.
    #[must_use]
    pub fn with_fake_failed_appends(mut self, on: bool) -> Self {
        self.fake_failed_appends = on;
        self
    }
}

impl<C: GroupConfig> RaftNetworkFactory<C> for GroupNetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> GroupNetwork {
        GroupNetwork {
            group: self.group,
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
            fake_failed_appends: self.fake_failed_appends,
        }
    }
}

/// A group's client to one peer. Holds no connection of its own.
pub struct GroupNetwork {
    group: GroupId,
    target: u64,
    addr: String,
    transport: Arc<dyn Transport>,
    fake_failed_appends: bool,
}

impl std::fmt::Debug for GroupNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupNetwork")
            .field("group", &self.group)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The shortest time any peer RPC is given. openraft allows `AppendEntries` (heartbeats included)
/// one heartbeat interval; on a link whose round trip is longer than that (a slow network, a peer
/// busy with a large fsync) no append would ever be acknowledged and the group could commit
/// nothing. Found by the fault tests' slow-network scenario (75 ms each way).
const RPC_TTL_FLOOR: Duration = Duration::from_secs(1);

/// How long the `commit-without-quorum` sabotage waits for a follower before counting it anyway:
/// short enough that a leader cut off from its peers answers its clients.
const FAKED_APPEND_PATIENCE: Duration = Duration::from_millis(50);

fn rpc_ttl(option: &RPCOption) -> Duration {
    option.hard_ttl().max(RPC_TTL_FLOOR)
}

async fn with_ttl<T>(
    ttl: Duration,
    fut: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    tokio::time::timeout(ttl, fut).await.unwrap_or(Err(TransportError::Timeout(ttl)))
}

fn rpc_error<C: GroupConfig>(e: &TransportError) -> RPCError<C> {
    match e {
        TransportError::Unreachable { .. } | TransportError::UnknownGroup { .. } => {
            RPCError::Unreachable(Unreachable::new(e))
        }
        TransportError::Remote { .. } | TransportError::Timeout(_) | TransportError::Unsupported { .. } => {
            RPCError::Network(NetworkError::new(e))
        }
    }
}

fn decode_error<C: GroupConfig>(e: &crate::codec::CodecError) -> RPCError<C> {
    RPCError::Network(NetworkError::new(e))
}

impl<C: GroupConfig> RaftNetworkV2<C> for GroupNetwork {
    type SnapshotData = Bytes;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let req = conv::append_request_to_pb(self.group.0, &rpc);
        let ttl = if self.fake_failed_appends { FAKED_APPEND_PATIENCE } else { rpc_ttl(&option) };
        let resp = with_ttl(ttl, self.transport.append_entries(self.target, &self.addr, req)).await;
        if self.fake_failed_appends && resp.is_err() {
            return Ok(AppendEntriesResponse::Success);
        }
        conv::append_response_from_pb(resp.map_err(|e| rpc_error::<C>(&e))?)
            .map_err(|e| decode_error::<C>(&e))
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        let req = conv::vote_request_to_pb(self.group.0, &rpc, false);
        let resp = with_ttl(rpc_ttl(&option), self.transport.vote(self.target, &self.addr, req))
            .await
            .map_err(|e| rpc_error::<C>(&e))?;
        conv::vote_response_from_pb(resp).map_err(|e| decode_error::<C>(&e))
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        let req = conv::vote_request_to_pb(self.group.0, &rpc, true);
        let resp = with_ttl(rpc_ttl(&option), self.transport.vote(self.target, &self.addr, req))
            .await
            .map_err(|e| rpc_error::<C>(&e))?;
        conv::vote_response_from_pb(resp).map_err(|e| decode_error::<C>(&e))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        let req = conv::transfer_request_to_pb(self.group.0, &req);
        let resp = with_ttl(rpc_ttl(&option), self.transport.transfer_leader(self.target, &self.addr, req))
            .await
            .map_err(|e| rpc_error::<C>(&e))?;
        conv::transfer_response_from_pb(&resp).map_err(|e| decode_error::<C>(&e))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Bytes>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let req = pb::InstallSnapshotRequest {
            group_id: self.group.0,
            vote: Some(conv::vote_to_pb(&vote)),
            meta: Bytes::from(
                serde_json::to_vec(&snapshot.meta).expect("snapshot meta is always serializable"),
            ),
            data: snapshot.snapshot,
        };
        let send = with_ttl(rpc_ttl(&option), self.transport.install_snapshot(self.target, &self.addr, req));
        let resp = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            resp = send => resp,
        };
        let resp = resp.map_err(|e| match rpc_error::<C>(&e) {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            _ => StreamingError::Network(NetworkError::new(&e)),
        })?;
        let vote =
            conv::vote_from_pb(resp.vote).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        Ok(SnapshotResponse::new(vote))
    }
}
