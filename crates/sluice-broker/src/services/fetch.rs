//! The consumer service: `Fetch` (long poll), `ListOffsets`, and `Subscribe` (push, handed to
//! [`super::subscribe`]).

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1 as pb;
use sluice_proto::v1::consumer_server::Consumer;
use sluice_types::Offset;
use tonic::{Request, Response, Status};

use crate::api_error::DataError;
use crate::metrics::Mode;
use crate::node::Node;
use crate::routing;
use crate::services::batches::{FETCH_BYTES_DEFAULT, FETCH_BYTES_MAX, batches_to_pb};
use crate::services::subscribe::{SubscribeStream, Subscriptions};

/// The longest a fetch may wait for data; a longer `max_wait_ms` is cut to this.
pub const FETCH_WAIT_MS_MAX: u32 = 30_000;

#[derive(Debug)]
pub struct ConsumerService {
    node: Arc<Node>,
    subscriptions: Subscriptions,
}

impl ConsumerService {
    pub fn new(node: Arc<Node>, subscriptions: Subscriptions) -> Self {
        ConsumerService { node, subscriptions }
    }

    async fn fetch(&self, request: pb::FetchRequest) -> Result<pb::FetchResponse, DataError> {
        let node = &self.node;
        let replica =
            routing::serving_replica(node, &request.topic, request.partition, request.read_from_follower)?;
        let reader = replica.reader().clone();
        // 0 (a client that left the field unset) means the default, as in every protobuf API.
        let max_bytes = match request.max_bytes {
            0 => FETCH_BYTES_DEFAULT,
            asked => asked.min(FETCH_BYTES_MAX),
        } as usize;
        let min_bytes = (request.min_bytes as usize).clamp(1, max_bytes);
        let wait = Duration::from_millis(u64::from(request.max_wait_ms.min(FETCH_WAIT_MS_MAX)));
        let deadline = tokio::time::Instant::now() + wait;
        let mut watch = reader.watch();
        loop {
            watch.borrow_and_update();
            let progress = reader.progress();
            let batches = reader.read(Offset(request.offset), max_bytes)?;
            let bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
            if bytes >= min_bytes || tokio::time::Instant::now() >= deadline || node.shutdown().is_cancelled()
            {
                let records = batches.iter().map(|b| u64::from(b.record_count)).sum();
                node.metrics().consumed(Mode::Fetch, records, bytes as u64);
                return Ok(pb::FetchResponse {
                    error: None,
                    batches: batches_to_pb(batches),
                    high_watermark: progress.high_watermark.0,
                    log_start_offset: progress.log_start.0,
                });
            }
            tokio::select! {
                changed = watch.changed() => if changed.is_err() { return Err(DataError::ReplicaStopped) },
                () = tokio::time::sleep_until(deadline) => {}
                () = node.shutdown().cancelled() => {}
            }
        }
    }

    fn list_offsets(&self, request: &pb::ListOffsetsRequest) -> Result<pb::ListOffsetsResponse, DataError> {
        // Any replica answers: its committed range is a prefix of the leader's.
        let replica = routing::serving_replica(&self.node, &request.topic, request.partition, true)?;
        let progress = replica.reader().progress();
        let timestamp_offset = match request.timestamp_ms {
            Some(t) if t > now_ms().saturating_add(CLOCK_SKEW_MS) => {
                return Err(DataError::InvalidRequest("timestamp_ms is in the future"));
            }
            Some(t) => Some(sluice_raft::offset_for_time(replica.reader(), t)?.0),
            None => None,
        };
        Ok(pb::ListOffsetsResponse {
            error: None,
            earliest: progress.log_start.0,
            latest: progress.high_watermark.0,
            timestamp_offset,
        })
    }
}

/// How far a looked-up time may be ahead of this node's clock: producers' clocks drift.
const CLOCK_SKEW_MS: i64 = 60_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[tonic::async_trait]
impl Consumer for ConsumerService {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<tonic::Streaming<pb::SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| {
            Status::invalid_argument("a subscription starts with a request naming the partition")
        })?;
        Ok(Response::new(self.subscriptions.start(&self.node, &first, inbound)))
    }

    async fn fetch(&self, request: Request<pb::FetchRequest>) -> Result<Response<pb::FetchResponse>, Status> {
        let response = ConsumerService::fetch(self, request.into_inner()).await.unwrap_or_else(|error| {
            pb::FetchResponse { error: Some(error.to_pb()), ..pb::FetchResponse::default() }
        });
        Ok(Response::new(response))
    }

    async fn list_offsets(
        &self,
        request: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        let response = ConsumerService::list_offsets(self, &request.into_inner()).unwrap_or_else(|error| {
            pb::ListOffsetsResponse { error: Some(error.to_pb()), ..pb::ListOffsetsResponse::default() }
        });
        Ok(Response::new(response))
    }
}
