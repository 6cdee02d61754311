//! Outgoing gRPC: one lazily connected channel per peer address, shared by every group's Raft
//! messages and by the node's control calls (HTTP/2 multiplexes them).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::node::node_client::NodeClient;
use sluice_proto::raft as pb;
use sluice_proto::raft::raft_service_client::RaftServiceClient;
use sluice_proto::v1::admin_client::AdminClient;
use sluice_raft::network::BoxFuture;
use sluice_raft::{AppendResult, Transport, TransportError};
use sluice_types::GroupId;
use sluice_types::sync::lock;
use tonic::transport::{Channel, Endpoint};

/// The largest peer message; bounds what a peer can make this node allocate.
pub const PEER_MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Clients {
    channels: Mutex<HashMap<String, Channel>>,
    /// `peer_dial_overrides`: dial the value when asked for the key.
    overrides: BTreeMap<String, String>,
}

impl Clients {
    pub fn new(overrides: BTreeMap<String, String>) -> Clients {
        Clients { channels: Mutex::new(HashMap::new()), overrides }
    }

    pub fn channel(&self, addr: &str) -> Result<Channel, TransportError> {
        let addr = self.overrides.get(addr).map_or(addr, String::as_str);
        let mut channels = lock(&self.channels);
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| TransportError::Unreachable { node: 0, reason: format!("bad address {addr}: {e}") })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    pub fn raft(&self, addr: &str) -> Result<RaftServiceClient<Channel>, TransportError> {
        Ok(RaftServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX))
    }

    pub fn node(&self, addr: &str) -> Result<NodeClient<Channel>, TransportError> {
        Ok(NodeClient::new(self.channel(addr)?).max_decoding_message_size(PEER_MESSAGE_BYTES_MAX))
    }

    pub fn admin(&self, addr: &str) -> Result<AdminClient<Channel>, TransportError> {
        Ok(AdminClient::new(self.channel(addr)?).max_decoding_message_size(PEER_MESSAGE_BYTES_MAX))
    }
}

/// The Raft transport over gRPC.
#[derive(Debug)]
pub struct GrpcTransport {
    clients: Arc<Clients>,
}

impl GrpcTransport {
    pub fn new(clients: Arc<Clients>) -> Self {
        GrpcTransport { clients }
    }
}

/// Classifies a failed peer call: connection trouble means unreachable (Raft backs off).
pub fn transport_error(node: u64, status: &tonic::Status) -> TransportError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
            TransportError::Unreachable { node, reason: status.message().to_string() }
        }
        tonic::Code::NotFound => {
            let group = status
                .metadata()
                .get("sluice-group")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
            TransportError::UnknownGroup { node, group: GroupId(group) }
        }
        tonic::Code::Unimplemented => {
            TransportError::Unsupported { node, what: status.message().to_string() }
        }
        _ => TransportError::Remote { node, reason: status.message().to_string() },
    }
}

/// One group's answer within a batch, as the unary call would have given it.
fn append_outcome(target: u64, outcome: pb::AppendEntriesOutcome) -> AppendResult {
    use pb::append_entries_outcome::Outcome;
    match outcome.outcome {
        Some(Outcome::Response(response)) => Ok(response),
        Some(Outcome::UnknownGroup(group)) => {
            Err(TransportError::UnknownGroup { node: target, group: GroupId(group) })
        }
        Some(Outcome::Failed(reason)) => Err(TransportError::Remote { node: target, reason }),
        None => Err(TransportError::Remote { node: target, reason: "an empty outcome in a batch".into() }),
    }
}

impl Transport for GrpcTransport {
    fn vote(
        &self,
        target: u64,
        addr: &str,
        req: pb::VoteRequest,
    ) -> BoxFuture<Result<pb::VoteResponse, TransportError>> {
        let client = self.clients.raft(addr);
        Box::pin(async move {
            let mut client = client?;
            client.vote(req).await.map(tonic::Response::into_inner).map_err(|s| transport_error(target, &s))
        })
    }

    fn append_entries(
        &self,
        target: u64,
        addr: &str,
        req: pb::AppendEntriesRequest,
    ) -> BoxFuture<Result<pb::AppendEntriesResponse, TransportError>> {
        let client = self.clients.raft(addr);
        Box::pin(async move {
            let mut client = client?;
            client
                .append_entries(req)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| transport_error(target, &s))
        })
    }

    fn append_entries_batch(
        &self,
        target: u64,
        addr: &str,
        requests: Vec<pb::AppendEntriesRequest>,
    ) -> BoxFuture<Result<Vec<AppendResult>, TransportError>> {
        let client = self.clients.raft(addr);
        Box::pin(async move {
            let mut client = client?;
            let response = client
                .append_entries_batch(pb::AppendEntriesBatchRequest { requests })
                .await
                .map_err(|s| transport_error(target, &s))?;
            Ok(response.into_inner().outcomes.into_iter().map(|o| append_outcome(target, o)).collect())
        })
    }

    fn install_snapshot(
        &self,
        target: u64,
        addr: &str,
        req: pb::InstallSnapshotRequest,
    ) -> BoxFuture<Result<pb::InstallSnapshotResponse, TransportError>> {
        let client = self.clients.raft(addr);
        Box::pin(async move {
            let mut client = client?;
            client
                .install_snapshot(req)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| transport_error(target, &s))
        })
    }

    fn transfer_leader(
        &self,
        target: u64,
        addr: &str,
        req: pb::TransferLeaderRequest,
    ) -> BoxFuture<Result<pb::TransferLeaderResponse, TransportError>> {
        let client = self.clients.raft(addr);
        Box::pin(async move {
            let mut client = client?;
            client
                .transfer_leader(req)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| transport_error(target, &s))
        })
    }
}
