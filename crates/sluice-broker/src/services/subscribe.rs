//! Push subscriptions: each is a task that sends committed batches within the client's credit
//! and heartbeats when idle. They are capped (`limits.subscriptions_max`) and tracked, so that
//! shutdown waits for every one to end ([`StreamTasks`]).

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1 as pb;
use sluice_raft::PartitionGroup;
use sluice_types::Offset;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::admission::BusyReason;
use crate::api_error::DataError;
use crate::metrics::{Metrics, Mode};
use crate::node::Node;
use crate::routing;
use crate::services::batches::{FETCH_BYTES_MAX, batches_to_pb};
use crate::services::streams::StreamTasks;

/// Responses a subscription may queue before waiting for the client to read them.
const SUBSCRIBE_QUEUE_RESPONSES: usize = 4;
/// A subscription with nothing to send says so this often.
const SUBSCRIBE_HEARTBEAT: Duration = Duration::from_secs(1);

pub type SubscribeStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::SubscribeResponse, Status>> + Send + 'static>>;

/// The node's push subscriptions: at most `max` at once, each a tracked task.
#[derive(Clone, Debug)]
pub struct Subscriptions {
    tasks: StreamTasks,
}

fn failure(error: &DataError) -> pb::SubscribeResponse {
    pb::SubscribeResponse { error: Some(error.to_pb()), ..pb::SubscribeResponse::default() }
}

impl Subscriptions {
    pub fn new(max: u32, shutdown: CancellationToken) -> Self {
        Subscriptions { tasks: StreamTasks::new(max, shutdown) }
    }

    /// Starts a subscription from its first request; beyond the cap the stream carries one
    /// `BUSY` answer and ends.
    pub fn start(
        &self,
        node: &Arc<Node>,
        first: &pb::SubscribeRequest,
        inbound: tonic::Streaming<pb::SubscribeRequest>,
    ) -> SubscribeStream {
        let (tx, rx) = mpsc::channel(SUBSCRIBE_QUEUE_RESPONSES);
        let stream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        let Some(permit) = self.tasks.try_admit() else {
            let busy = DataError::Busy(node.admission().busy(BusyReason::Subscriptions));
            // The channel is empty and bounded above one: this cannot fail.
            let _ = tx.try_send(Ok(failure(&busy)));
            return stream;
        };
        let replica = routing::serving_replica(node, &first.topic, first.partition, first.read_from_follower);
        match replica {
            Err(error) => {
                let _ = tx.try_send(Ok(failure(&error)));
            }
            Ok(replica) => {
                let subscription = Subscription {
                    replica,
                    metrics: node.metrics().clone(),
                    cursor: Cursor {
                        position: Offset(first.offset),
                        credit_records: u64::from(first.credit_records),
                        credit_bytes: first.credit_bytes,
                    },
                    inbound,
                    tx,
                    _permit: permit,
                };
                self.tasks.spawn(subscription.run(self.tasks.shutdown().clone()));
            }
        }
        stream
    }

    /// Waits until every subscription has ended (they end when `shutdown` is cancelled).
    pub async fn closed(&self) {
        self.tasks.closed().await;
    }
}

/// Queues `response` for the client, waiting while its queue is full but not past shutdown, so a
/// client that stops reading cannot hold the node's shutdown. Whether it was queued.
async fn send(
    tx: &mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    response: pb::SubscribeResponse,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        sent = tx.send(Ok(response)) => sent.is_ok(),
        () = shutdown.cancelled() => false,
    }
}

/// One push subscription.
struct Subscription {
    replica: PartitionGroup,
    metrics: Metrics,
    cursor: Cursor,
    inbound: tonic::Streaming<pb::SubscribeRequest>,
    tx: mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    _permit: OwnedSemaphorePermit,
}

/// Where a subscription is and what the client still accepts.
struct Cursor {
    position: Offset,
    credit_records: u64,
    credit_bytes: u64,
}

impl Cursor {
    /// The committed batches the credit allows from the position on (whole batches, at least
    /// one when any credit is left), with the cursor moved past them.
    fn take(&mut self, replica: &PartitionGroup) -> Result<Vec<sluice_raft::StoredBatch>, DataError> {
        if self.credit_records == 0 || self.credit_bytes == 0 {
            return Ok(Vec::new());
        }
        let max_bytes =
            usize::try_from(self.credit_bytes.min(u64::from(FETCH_BYTES_MAX))).unwrap_or(usize::MAX);
        let mut batches = replica.reader().read(self.position, max_bytes)?;
        let mut taken = 0;
        for batch in &batches {
            if self.credit_records == 0 {
                break;
            }
            // The count comes from the offset index: no batch header is parsed here.
            let count = u64::from(batch.record_count);
            let skipped = self.position.0.saturating_sub(batch.base_offset.0);
            self.credit_records = self.credit_records.saturating_sub(count.saturating_sub(skipped));
            self.credit_bytes = self.credit_bytes.saturating_sub(batch.bytes.len() as u64);
            self.position = batch.base_offset.plus(count);
            taken += 1;
        }
        batches.truncate(taken);
        Ok(batches)
    }

    fn add_credit(&mut self, more: &pb::SubscribeRequest) {
        self.credit_records = self.credit_records.saturating_add(u64::from(more.credit_records));
        self.credit_bytes = self.credit_bytes.saturating_add(more.credit_bytes);
    }
}

impl Subscription {
    async fn run(self, shutdown: CancellationToken) {
        let Subscription { replica, metrics, mut cursor, mut inbound, tx, _permit } = self;
        let high_watermark = || replica.reader().progress().high_watermark.0;
        let mut watch = replica.reader().watch();
        let mut heartbeat = tokio::time::interval(SUBSCRIBE_HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            watch.borrow_and_update();
            match cursor.take(&replica) {
                Ok(batches) if !batches.is_empty() => {
                    let records = batches.iter().map(|b| u64::from(b.record_count)).sum();
                    let bytes = batches.iter().map(|b| b.bytes.len() as u64).sum();
                    metrics.consumed(Mode::Push, records, bytes);
                    let response = pb::SubscribeResponse {
                        error: None,
                        batches: batches_to_pb(batches),
                        high_watermark: high_watermark(),
                        heartbeat: false,
                    };
                    if !send(&tx, response, &shutdown).await {
                        return;
                    }
                    heartbeat.reset();
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    send(&tx, failure(&error), &shutdown).await;
                    return;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                changed = watch.changed() => if changed.is_err() {
                    send(&tx, failure(&DataError::ReplicaStopped), &shutdown).await;
                    return;
                },
                message = inbound.message() => match message {
                    Ok(Some(more)) => cursor.add_credit(&more),
                    // The client closed its side or the stream broke: the subscription is over.
                    Ok(None) | Err(_) => return,
                },
                _ = heartbeat.tick() => {
                    let beat = pb::SubscribeResponse {
                        heartbeat: true,
                        high_watermark: high_watermark(),
                        ..pb::SubscribeResponse::default()
                    };
                    if !send(&tx, beat, &shutdown).await {
                        return;
                    }
                }
            }
        }
    }
}
