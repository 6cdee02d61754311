//! Node-to-node control: registry proposals and reads forwarded to the registry leader,
//! heartbeats, pings, and the status of the groups hosted here.

use std::sync::Arc;

use sluice_meta::MetaCommand;
use sluice_proto::node::node_server::Node as NodeRpc;
use sluice_proto::node::{
    BrokerLiveness, GroupStatusRequest, GroupStatusResponse, HeartbeatRequest, HeartbeatResponse,
    PingRequest, PingResponse, ProposeRequest, ProposeResponse, ReadRegistryRequest, ReadRegistryResponse,
};
use sluice_types::GroupId;
use tonic::{Request, Response, Status};

use crate::api_error::ApiError;
use crate::node::Node;
use crate::services::group_status::local_group_status;

#[derive(Debug)]
pub struct NodeControl {
    node: Arc<Node>,
}

impl NodeControl {
    pub fn new(node: Arc<Node>) -> Self {
        NodeControl { node }
    }

    /// Registry calls from peers are served by the registry leader only.
    fn must_lead_registry(&self) -> Result<(), ApiError> {
        if self.node.registry().is_leader() {
            return Ok(());
        }
        let leader_addr = self.node.registry().leader().and_then(|l| self.node.addr_of(l));
        Err(ApiError::NotLeader { leader_addr })
    }
}

#[tonic::async_trait]
impl NodeRpc for NodeControl {
    async fn propose(&self, request: Request<ProposeRequest>) -> Result<Response<ProposeResponse>, Status> {
        let command: MetaCommand =
            serde_json::from_slice(&request.into_inner().command).map_err(ApiError::InvalidCommand)?;
        let response = self.node.registry().propose_local(command).await?;
        let body = serde_json::to_vec(&response).expect("registry answers are always serializable");
        Ok(Response::new(ProposeResponse { response: body.into() }))
    }

    async fn read_registry(
        &self,
        _request: Request<ReadRegistryRequest>,
    ) -> Result<Response<ReadRegistryResponse>, Status> {
        self.must_lead_registry()?;
        let snapshot = self.node.registry().read_consistent().await?;
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
        self.must_lead_registry()?;
        self.node
            .record_heartbeat(request.node_id, request.led.iter().map(|l| (GroupId(l.group_id), l.term)));
        let registry = self.node.registry().snapshot();
        let registry_bytes = if request.known_registry_index < registry.index {
            registry.state.to_bytes()
        } else {
            Vec::new()
        };
        Ok(Response::new(HeartbeatResponse {
            registered: registry.state.broker(sluice_types::NodeId(request.node_id)).is_some(),
            leaders: self.node.reported_leaders(),
            liveness: self
                .node
                .last_seen_ms_ago()
                .into_iter()
                .map(|(node_id, last_seen_ms_ago)| BrokerLiveness { node_id, last_seen_ms_ago })
                .collect(),
            registry: registry_bytes.into(),
            registry_index: registry.index,
            meta_leader: self.node.id(),
        }))
    }

    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse { node_id: self.node.id(), incarnation: self.node.incarnation() }))
    }

    async fn group_status(
        &self,
        _request: Request<GroupStatusRequest>,
    ) -> Result<Response<GroupStatusResponse>, Status> {
        Ok(Response::new(GroupStatusResponse { groups: local_group_status(&self.node) }))
    }
}
