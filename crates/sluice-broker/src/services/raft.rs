//! Peers' Raft messages, handed to the group they name through the node's dispatcher.

use std::sync::Arc;

use sluice_proto::raft as pb;
use sluice_proto::raft::raft_service_server::RaftService as RaftServiceRpc;
use sluice_raft::network::{DispatchError, GroupRpcError};
use tonic::{Request, Response, Status};

use crate::node::Node;

/// The most appends one batch may carry: every group a node can host, many times over. The
/// message size is bounded separately (`PEER_MESSAGE_BYTES_MAX`).
const BATCH_APPENDS_MAX: usize = 64 * 1024;

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

    async fn append_entries_batch(
        &self,
        request: Request<pb::AppendEntriesBatchRequest>,
    ) -> Result<Response<pb::AppendEntriesBatchResponse>, Status> {
        use pb::append_entries_outcome::Outcome;
        let requests = request.into_inner().requests;
        if requests.len() > BATCH_APPENDS_MAX {
            return Err(Status::invalid_argument(format!(
                "{} appends in one batch; at most {BATCH_APPENDS_MAX}",
                requests.len()
            )));
        }
        let answers = self.node.dispatcher().append_entries_batch(requests).await;
        let outcomes = answers
            .into_iter()
            .map(|answer| pb::AppendEntriesOutcome {
                outcome: Some(match answer {
                    Ok(response) => Outcome::Response(response),
                    Err(DispatchError::UnknownGroup(group)) => Outcome::UnknownGroup(group.0),
                    Err(DispatchError::Failed(e)) => Outcome::Failed(e.to_string()),
                }),
            })
            .collect();
        Ok(Response::new(pb::AppendEntriesBatchResponse { outcomes }))
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
