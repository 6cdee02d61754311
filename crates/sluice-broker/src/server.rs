//! The gRPC server: peer Raft messages, node control and the admin API on one port.

use std::sync::Arc;

use sluice_meta::MetaCommand;
use sluice_proto::node::node_server::{Node as NodeRpc, NodeServer};
use sluice_proto::node::{
    BrokerLiveness, GroupStatusRequest, GroupStatusResponse, HeartbeatRequest, HeartbeatResponse,
    PingRequest, PingResponse, ProposeRequest, ProposeResponse, ReadRegistryRequest, ReadRegistryResponse,
};
use sluice_proto::raft as pb;
use sluice_proto::raft::raft_service_server::{RaftService, RaftServiceServer};
use sluice_proto::v1::admin_server::AdminServer;
use sluice_proto::v1::consumer_server::ConsumerServer;
use sluice_proto::v1::metadata_server::MetadataServer;
use sluice_proto::v1::producer_server::ProducerServer;
use sluice_raft::network::DispatchError;
use sluice_types::limits::REQUEST_BYTES_MAX;
use tonic::{Request, Response, Status};

use crate::api_error::ApiError;
use crate::clients::PEER_MESSAGE_BYTES_MAX;
use crate::node::Node;

/// Concurrent connections the server accepts; beyond it new ones wait.
const CONCURRENCY_PER_CONNECTION: usize = 1024;

pub async fn serve_grpc(node: Arc<Node>, listener: tokio::net::TcpListener) {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let shutdown = node.shutdown.clone();
    // The standard gRPC health service: SERVING while the node runs, for load balancers and probes.
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let result = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
        .add_service(health_service)
        .add_service(
            RaftServiceServer::new(RaftRpc { node: node.clone() })
                .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
        )
        .add_service(
            NodeServer::new(NodeControl { node: node.clone() })
                .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
        )
        .add_service(
            AdminServer::new(crate::admin::AdminRpc::new(node.clone()))
                .max_decoding_message_size(REQUEST_BYTES_MAX)
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
        )
        .add_service(
            ProducerServer::new(crate::data::DataRpc::new(node.clone()))
                .max_decoding_message_size(REQUEST_BYTES_MAX)
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
        )
        .add_service(
            ConsumerServer::new(crate::data::DataRpc::new(node.clone()))
                .max_decoding_message_size(REQUEST_BYTES_MAX)
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
        )
        .add_service(MetadataServer::new(crate::data::DataRpc::new(node.clone())))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "gRPC server failed");
        node.shutdown.cancel();
    }
}

fn dispatch_status(e: DispatchError) -> Status {
    match e {
        DispatchError::UnknownGroup(group) => {
            let mut status = Status::not_found(format!("group {group} is not hosted here"));
            if let Ok(value) = group.0.to_string().parse() {
                status.metadata_mut().insert("sluice-group", value);
            }
            status
        }
        DispatchError::Failed(reason) => Status::invalid_argument(reason),
    }
}

struct RaftRpc {
    node: Arc<Node>,
}

#[tonic::async_trait]
impl RaftService for RaftRpc {
    async fn vote(&self, request: Request<pb::VoteRequest>) -> Result<Response<pb::VoteResponse>, Status> {
        self.node.dispatcher.vote(request.into_inner()).await.map(Response::new).map_err(dispatch_status)
    }

    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        self.node
            .dispatcher
            .append_entries(request.into_inner())
            .await
            .map(Response::new)
            .map_err(dispatch_status)
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        self.node
            .dispatcher
            .install_snapshot(request.into_inner())
            .await
            .map(Response::new)
            .map_err(dispatch_status)
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        self.node
            .dispatcher
            .transfer_leader(request.into_inner())
            .await
            .map(Response::new)
            .map_err(dispatch_status)
    }
}

struct NodeControl {
    node: Arc<Node>,
}

#[tonic::async_trait]
impl NodeRpc for NodeControl {
    async fn propose(&self, request: Request<ProposeRequest>) -> Result<Response<ProposeResponse>, Status> {
        let command: MetaCommand = serde_json::from_slice(&request.into_inner().command)
            .map_err(|e| ApiError::InvalidArgument(format!("registry command: {e}")))?;
        let response = self.node.propose_local(command).await?;
        let body = serde_json::to_vec(&response).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Response::new(ProposeResponse { response: body.into() }))
    }

    async fn read_registry(
        &self,
        _request: Request<ReadRegistryRequest>,
    ) -> Result<Response<ReadRegistryResponse>, Status> {
        if !self.node.is_meta_leader() {
            let leader_addr = self.node.meta_leader().and_then(|l| self.node.addr_of(l));
            return Err(ApiError::NotLeader { leader_addr }.into());
        }
        let snapshot = self.node.read_registry_consistent().await?;
        Ok(Response::new(ReadRegistryResponse {
            state: snapshot.state.to_bytes().into(),
            applied_index: snapshot.index,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let request = request.into_inner();
        if !self.node.is_meta_leader() {
            let leader_addr = self.node.meta_leader().and_then(|l| self.node.addr_of(l));
            return Err(ApiError::NotLeader { leader_addr }.into());
        }
        let answer = crate::liveness::record_heartbeat(&self.node, &request);
        let registry = self.node.registry();
        let registry_bytes = if request.known_registry_index < registry.index {
            registry.state.to_bytes()
        } else {
            Vec::new()
        };
        Ok(Response::new(HeartbeatResponse {
            registered: registry.state.broker(sluice_types::NodeId(request.node_id)).is_some(),
            leaders: answer.leaders,
            liveness: answer
                .last_seen_ms_ago
                .into_iter()
                .map(|(node_id, last_seen_ms_ago)| BrokerLiveness { node_id, last_seen_ms_ago })
                .collect(),
            registry: registry_bytes.into(),
            registry_index: registry.index,
            meta_leader: self.node.id,
        }))
    }

    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse { node_id: self.node.id, incarnation: self.node.incarnation }))
    }

    async fn group_status(
        &self,
        _request: Request<GroupStatusRequest>,
    ) -> Result<Response<GroupStatusResponse>, Status> {
        Ok(Response::new(GroupStatusResponse { groups: crate::admin::local_group_status(&self.node) }))
    }
}
