//! Peers' Raft messages, handed to the group they name through the node's dispatcher.

use std::sync::Arc;

use sluice_proto::raft as pb;
use sluice_proto::raft::raft_service_server::RaftService as RaftServiceRpc;
use sluice_raft::network::{DispatchError, GroupRpcError};
use tonic::{Request, Response, Status};

use crate::node::Node;

fn dispatch_status(e: DispatchError) -> Status {
    match e {
        DispatchError::UnknownGroup(group) => {
            let mut status = Status::not_found(format!("group {group} is not hosted here"));
            if let Ok(value) = group.0.to_string().parse() {
                status.metadata_mut().insert("sluice-group", value);
            }
            status
        }
        DispatchError::Failed(e @ (GroupRpcError::Decode(_) | GroupRpcError::SnapshotMeta(_))) => {
            Status::invalid_argument(e.to_string())
        }
        DispatchError::Failed(e @ GroupRpcError::Raft(_)) => Status::internal(e.to_string()),
    }
}

#[derive(Debug)]
pub struct RaftService {
    node: Arc<Node>,
}

impl RaftService {
    pub fn new(node: Arc<Node>) -> Self {
        RaftService { node }
    }
}

#[tonic::async_trait]
impl RaftServiceRpc for RaftService {
    async fn vote(&self, request: Request<pb::VoteRequest>) -> Result<Response<pb::VoteResponse>, Status> {
        self.node.dispatcher().vote(request.into_inner()).await.map(Response::new).map_err(dispatch_status)
    }

    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        self.node
            .dispatcher()
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
            .dispatcher()
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
            .dispatcher()
            .transfer_leader(request.into_inner())
            .await
            .map(Response::new)
            .map_err(dispatch_status)
    }
}
