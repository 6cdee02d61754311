//! `Produce` and `InitProducer`: validated batches through admission into the partition's Raft
//! log, answered once a majority has them fsynced and applied.

use std::sync::Arc;

use sluice_meta::{MetaCommand, MetaError, MetaResponse};
use sluice_proto::v1 as pb;
use sluice_proto::v1::producer_server::Producer;
use sluice_types::ProducerId;
use tonic::{Request, Response, Status};

use crate::api_error::{ApiError, DataError};
use crate::node::Node;
use crate::services::produce_stream::{self, ProduceStream};
use crate::services::proposal::{Proposer, to_pb};
use crate::services::streams::StreamTasks;

#[derive(Debug)]
pub struct ProducerService {
    node: Arc<Node>,
    proposer: Proposer,
    streams: StreamTasks,
}

impl ProducerService {
    pub fn new(node: Arc<Node>, streams: StreamTasks) -> Self {
        ProducerService { proposer: Proposer::new(node.clone()), node, streams }
    }

    async fn produce(&self, request: pb::ProduceRequest) -> Result<pb::ProduceResponse, DataError> {
        self.proposer.propose(request).await?.answer(&self.node).await
    }

    async fn init_producer(
        &self,
        request: pb::InitProducerRequest,
    ) -> Result<pb::InitProducerResponse, DataError> {
        let command = match request.producer_id {
            None => MetaCommand::AllocateProducerIds { count: 1 },
            Some(id) => MetaCommand::BumpProducerEpoch { producer_id: ProducerId(id) },
        };
        let answer = self.node.registry().propose(command).await.map_err(|e| match e {
            ApiError::Meta(MetaError::UnknownProducerId(id)) => DataError::UnknownProducerId(id),
            ApiError::Meta(refused) => DataError::ProducerRefused(refused),
            other => DataError::Registry(other),
        })?;
        match answer {
            MetaResponse::ProducerIds { first, .. } => {
                Ok(pb::InitProducerResponse { error: None, producer_id: first.0, producer_epoch: 0 })
            }
            MetaResponse::ProducerEpoch { producer_id, epoch } => Ok(pb::InitProducerResponse {
                error: None,
                producer_id: producer_id.0,
                producer_epoch: epoch.0,
            }),
            other => Err(ApiError::UnexpectedAnswer(Box::new(other)).into()),
        }
    }
}

#[tonic::async_trait]
impl Producer for ProducerService {
    type ProduceStreamStream = ProduceStream;

    async fn produce_stream(
        &self,
        request: Request<tonic::Streaming<pb::ProduceRequest>>,
    ) -> Result<Response<ProduceStream>, Status> {
        Ok(Response::new(produce_stream::start(self.proposer.clone(), &self.streams, request.into_inner())))
    }

    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        Ok(Response::new(to_pb(&self.node, ProducerService::produce(self, request.into_inner()).await)))
    }

    async fn init_producer(
        &self,
        request: Request<pb::InitProducerRequest>,
    ) -> Result<Response<pb::InitProducerResponse>, Status> {
        let response =
            ProducerService::init_producer(self, request.into_inner()).await.unwrap_or_else(|error| {
                pb::InitProducerResponse { error: Some(error.to_pb()), ..pb::InitProducerResponse::default() }
            });
        Ok(Response::new(response))
    }
}
