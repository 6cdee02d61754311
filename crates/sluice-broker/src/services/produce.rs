//! `Produce` and `InitProducer`: validated batches through admission into the partition's Raft
//! log, answered once a majority has them fsynced and applied.

use std::sync::Arc;
use std::time::Duration;

use sluice_meta::{MetaCommand, MetaError, MetaResponse, MetaState};
use sluice_partition::{AppendError, BatchOutcome};
use sluice_proto::v1 as pb;
use sluice_proto::v1::producer_server::Producer;
use sluice_raft::AppendFailure;
use sluice_types::limits::BATCH_BYTES_MAX;
use sluice_types::{BatchError, BatchHeader, ProducerId, ValidatedBatch};
use tonic::{Request, Response, Status};

use crate::api_error::{ApiError, DataError};
use crate::node::Node;
use crate::routing;

/// A produce waits at most this many election timeouts for its commit.
const COMMIT_DEADLINE_ELECTIONS: u32 = 3;
/// A produce that finds no live leader waits at most this many election timeouts for one.
const ELECTION_WAIT_ELECTIONS: u32 = 2;

#[derive(Debug)]
pub struct ProducerService {
    node: Arc<Node>,
}

impl ProducerService {
    pub fn new(node: Arc<Node>) -> Self {
        ProducerService { node }
    }

    async fn produce(&self, request: pb::ProduceRequest) -> Result<pb::ProduceResponse, DataError> {
        let node = &self.node;
        // The size first: an oversized batch is refused for what it is wherever it lands, never
        // parked for an election or answered BUSY by admission.
        if request.batch.len() > BATCH_BYTES_MAX {
            return Err(BatchError::TooLarge { bytes: request.batch.len(), max: BATCH_BYTES_MAX }.into());
        }
        let replica = match routing::serving_replica(node, &request.topic, request.partition, false) {
            Err(DataError::NotLeader { leader: None, .. }) => {
                // A request parked for the election holds its bytes as a queued one does, so
                // admission bounds the parked ones too.
                let (group, _) = routing::resolve(node, &request.topic, request.partition)?;
                let _parked = node.admission().try_admit(group, request.batch.len())?;
                let bound = ELECTION_WAIT_ELECTIONS * node.election_timeout_max();
                routing::serving_replica_after_election(node, &request.topic, request.partition, bound)
                    .await?
            }
            answer => answer?,
        };
        let batch = ValidatedBatch::validate(request.batch)?;
        self.check_producer(batch.header()).await?;
        let _permit = node.admission().try_admit(replica.group(), batch.bytes().len())?;
        // A leader that cannot reach a quorum would hold the request forever; past the deadline
        // the client is told the outcome is unknown and retries (idempotently) elsewhere.
        let deadline = COMMIT_DEADLINE_ELECTIONS * node.election_timeout_max();
        let outcomes = match tokio::time::timeout(deadline, replica.append(vec![batch])).await {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(AppendFailure::NotLeader { leader })) => return Err(routing::not_leader(node, leader)),
            Ok(Err(e)) => return Err(DataError::Indeterminate(e)),
            Err(_) => return Err(DataError::CommitTimeout { waited_ms: millis(deadline) }),
        };
        match outcomes.into_iter().next() {
            Some(BatchOutcome::Appended { base_offset }) => {
                Ok(pb::ProduceResponse { error: None, base_offset: base_offset.0, duplicate: false })
            }
            Some(BatchOutcome::Duplicate { base_offset }) => {
                Ok(pb::ProduceResponse { error: None, base_offset: base_offset.0, duplicate: true })
            }
            Some(BatchOutcome::Rejected(reason)) => Err(DataError::Rejected(reason)),
            None => Err(DataError::NoOutcome),
        }
    }

    /// An idempotent batch must name a producer id the registry issued, at an epoch it issued;
    /// an epoch older than the current one is fenced here already, before any partition has
    /// seen the new one. This node's copy of the registry may lag the leader's by a moment (an
    /// `InitProducer` answered just now), so an id or epoch it does not know yet is looked up
    /// on the registry leader before it is refused.
    async fn check_producer(&self, header: &BatchHeader) -> Result<(), DataError> {
        if header.producer_id.is_none() {
            return Ok(());
        }
        let verdict = |state: &MetaState| match state.producer_epoch(header.producer_id) {
            None => Err(DataError::UnknownProducerId(header.producer_id)),
            Some(current) if header.producer_epoch > current => Err(DataError::InvalidProducerEpoch {
                producer_id: header.producer_id,
                epoch: header.producer_epoch,
                current,
            }),
            Some(current) if header.producer_epoch < current => {
                Err(DataError::Rejected(AppendError::ProducerFenced {
                    producer_id: header.producer_id,
                    epoch: header.producer_epoch,
                    current,
                }))
            }
            Some(_) => Ok(()),
        };
        match verdict(&self.node.registry_state()) {
            // Epochs only grow: a fenced epoch stays fenced whatever a newer registry says.
            Ok(()) => Ok(()),
            Err(fenced @ DataError::Rejected(_)) => Err(fenced),
            Err(_) => verdict(&self.node.registry().read_consistent().await?.state),
        }
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[tonic::async_trait]
impl Producer for ProducerService {
    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let response = ProducerService::produce(self, request.into_inner()).await.unwrap_or_else(|error| {
            pb::ProduceResponse { error: Some(error.to_pb()), ..pb::ProduceResponse::default() }
        });
        Ok(Response::new(response))
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
