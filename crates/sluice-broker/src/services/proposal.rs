//! What every produce does before its commit, and its answer after: shared by the single
//! `Produce` call and the ordered `ProduceStream`.

use std::sync::Arc;
use std::time::Duration;

use sluice_meta::MetaState;
use sluice_partition::{AppendError, BatchOutcome};
use sluice_proto::v1 as pb;
use sluice_raft::{AppendFailure, ProposedAppend};
use sluice_types::limits::BATCH_BYTES_MAX;
use sluice_types::{BatchError, BatchHeader, ValidatedBatch};

use crate::admission::AdmissionPermit;
use crate::api_error::DataError;
use crate::node::Node;
use crate::routing;

/// A produce waits at most this many election timeouts for its commit.
const COMMIT_DEADLINE_ELECTIONS: u32 = 3;
/// A produce that finds no live leader waits at most this many election timeouts for one.
const ELECTION_WAIT_ELECTIONS: u32 = 2;

/// Hands produce requests to their partitions' Raft groups.
#[derive(Clone, Debug)]
pub struct Proposer {
    node: Arc<Node>,
}

impl Proposer {
    pub fn new(node: Arc<Node>) -> Self {
        Proposer { node }
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Everything a produce does before its commit: routing (parked for an election if the
    /// partition has no leader), validation, the producer check, admission, and handing the
    /// batch to Raft. Proposals made one after another reach the log in that order.
    pub async fn propose(&self, request: pb::ProduceRequest) -> Result<Proposed, DataError> {
        let started = tokio::time::Instant::now();
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
        let size = BatchSize { records: batch.header().record_count, bytes: batch.bytes().len() };
        self.check_producer(batch.header()).await?;
        let permit = node.admission().try_admit(replica.group(), batch.bytes().len())?;
        // A leader that cannot reach a quorum would hold the request forever; past the deadline
        // the client is told the outcome is unknown and retries (idempotently) elsewhere.
        let deadline = COMMIT_DEADLINE_ELECTIONS * node.election_timeout_max();
        let deadline = Deadline { at: tokio::time::Instant::now() + deadline, waited_ms: millis(deadline) };
        let proposal = match tokio::time::timeout_at(deadline.at, replica.propose(vec![batch])).await {
            Ok(Ok(proposal)) => proposal,
            Ok(Err(failure)) => return Err(append_failure(node, failure)),
            Err(_) => return Err(DataError::CommitTimeout { waited_ms: deadline.waited_ms }),
        };
        Ok(Proposed { proposal, deadline, started, size, _permit: permit })
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
}

/// A produce handed to Raft, holding its admitted bytes until it is answered.
#[derive(Debug)]
pub struct Proposed {
    proposal: ProposedAppend,
    deadline: Deadline,
    /// When the request arrived.
    started: tokio::time::Instant,
    size: BatchSize,
    _permit: AdmissionPermit,
}

#[derive(Clone, Copy, Debug)]
struct BatchSize {
    records: u32,
    bytes: usize,
}

#[derive(Clone, Copy, Debug)]
struct Deadline {
    at: tokio::time::Instant,
    waited_ms: u64,
}

impl Proposed {
    /// Waits for the commit (on a majority, fsynced) and apply, until the produce's deadline.
    pub async fn answer(self, node: &Node) -> Result<pb::ProduceResponse, DataError> {
        let outcomes = match tokio::time::timeout_at(self.deadline.at, self.proposal.outcomes()).await {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(failure)) => return Err(append_failure(node, failure)),
            Err(_) => return Err(DataError::CommitTimeout { waited_ms: self.deadline.waited_ms }),
        };
        let seconds = self.started.elapsed().as_secs_f64();
        match outcomes.into_iter().next() {
            Some(BatchOutcome::Appended { base_offset }) => {
                node.metrics().produced(self.size.records, self.size.bytes, seconds);
                Ok(pb::ProduceResponse { error: None, base_offset: base_offset.0, duplicate: false })
            }
            Some(BatchOutcome::Duplicate { base_offset }) => {
                // Acknowledged again, appended nothing: only its time counts.
                node.metrics().produced(0, 0, seconds);
                Ok(pb::ProduceResponse { error: None, base_offset: base_offset.0, duplicate: true })
            }
            Some(BatchOutcome::Rejected(reason)) => Err(DataError::Rejected(reason)),
            None => Err(DataError::NoOutcome),
        }
    }
}

fn append_failure(node: &Node, failure: AppendFailure) -> DataError {
    match failure {
        AppendFailure::NotLeader { leader } => routing::not_leader(node, leader),
        e @ AppendFailure::Indeterminate(_) => DataError::Indeterminate(e),
    }
}

/// A produce's answer on the wire: its error, if it failed, in the answer's `error` (and counted
/// by its code in the node's metrics).
pub fn to_pb(node: &Node, answer: Result<pb::ProduceResponse, DataError>) -> pb::ProduceResponse {
    answer.unwrap_or_else(|error| {
        let error = error.to_pb();
        let code = pb::ErrorCode::try_from(error.code).map_or("UNKNOWN", |c| c.as_str_name());
        node.metrics().produce_failed(code.trim_start_matches("ERROR_CODE_"));
        pb::ProduceResponse { error: Some(error), ..Default::default() }
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
