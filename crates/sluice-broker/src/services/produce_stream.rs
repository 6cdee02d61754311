//! `ProduceStream`: one producer's batches for one partition, several in flight at once and
//! answered in order (docs/decisions/0015).
//!
//! A task reads the requests one after another and proposes each (routing, validation,
//! admission, the hand-off to Raft) before it reads the next, so the batches reach the Raft log
//! in the order the producer sent them; it does not wait for a commit before the next proposal.
//! The answers are awaited in the same order as tonic pulls the response stream. The first
//! answer that carries an error ends the stream: a batch after a refused one would be refused
//! as out of sequence, and the producer resends from the refused one.

use std::sync::Arc;

use futures::StreamExt;
use sluice_proto::v1 as pb;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::Status;

use crate::admission::BusyReason;
use crate::api_error::DataError;
use crate::services::proposal::{Proposed, Proposer, to_pb};
use crate::services::streams::StreamTasks;

/// Requests of one stream proposed and not yet answered, at most: the partitions' sequence
/// dedup window, so that a producer resending all of them after a failure is still recognised.
pub const STREAM_IN_FLIGHT_MAX: usize = 8;

pub type ProduceStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::ProduceResponse, Status>> + Send + 'static>>;

/// A proposal (or why there is none), with its place in the stream's in-flight window.
type Slot = (Result<Proposed, DataError>, OwnedSemaphorePermit);

/// Starts serving one produce stream; beyond the node's cap the stream carries one `BUSY`
/// answer and ends.
pub fn start(
    proposer: Proposer,
    tasks: &StreamTasks,
    inbound: tonic::Streaming<pb::ProduceRequest>,
) -> ProduceStream {
    let Some(stream_permit) = tasks.try_admit() else {
        let busy = DataError::Busy(proposer.node().admission().busy(BusyReason::ProduceStreams));
        return Box::pin(futures::stream::iter([Ok(to_pb(proposer.node(), Err(busy)))]));
    };
    let (tx, rx) = mpsc::channel::<Slot>(STREAM_IN_FLIGHT_MAX);
    let node = proposer.node().clone();
    let answering = node.clone();
    tasks.spawn(intake(proposer, inbound, tx, tasks.shutdown().clone()));
    let answers = tokio_stream::wrappers::ReceiverStream::new(rx)
        .then(move |(proposed, window)| {
            let node = node.clone();
            async move {
                let answer = match proposed {
                    Ok(proposed) => proposed.answer(&node).await,
                    Err(refused) => Err(refused),
                };
                drop(window);
                answer
            }
        })
        .scan(false, move |ended, answer| {
            let _open = &stream_permit;
            let item = (!*ended).then(|| {
                *ended = answer.is_err();
                Ok(to_pb(&answering, answer))
            });
            std::future::ready(item)
        });
    Box::pin(answers)
}

/// Reads and proposes the stream's requests in order, never more than the window ahead of the
/// answers; stops at the first refusal, when the client or the answer side goes away, or at
/// shutdown.
async fn intake(
    proposer: Proposer,
    mut inbound: tonic::Streaming<pb::ProduceRequest>,
    tx: mpsc::Sender<Slot>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let window = Arc::new(Semaphore::new(STREAM_IN_FLIGHT_MAX));
    loop {
        let next = async {
            let place = window.clone().acquire_owned().await.ok()?;
            let request = inbound.message().await.ok()??;
            Some((request, place))
        };
        let (request, place) = tokio::select! {
            () = shutdown.cancelled() => return,
            () = tx.closed() => return,
            next = next => match next {
                Some(next) => next,
                // The client closed its side or the stream broke.
                None => return,
            },
        };
        let proposed = proposer.propose(request).await;
        let refused = proposed.is_err();
        if tx.send((proposed, place)).await.is_err() || refused {
            return;
        }
    }
}
