//! Appends of many groups to one peer, sent as one message (docs/decisions/0011).
//!
//! Every group of a node replicates through the node's one [`PeerBatcher`]. An append to a peer
//! whose link has a free slot goes at once, from the caller's own task, as it would without the
//! batcher. While a link's slots are all on the wire, appends of every group to that peer queue,
//! and the first slot to come back takes the whole queue as one `AppendEntriesBatch`. So at low
//! load nothing waits, and under load N partitions replicating to one peer cost about one round
//! trip, not N: fewer RPCs, socket writes and task wake-ups per Raft entry. A peer that does not
//! know `AppendEntriesBatch` (an older build, during a rolling upgrade) fails the first batch
//! sent to it; from then on its link sends each queued append as its own call.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use sluice_proto::raft as pb;
use sluice_types::sync::lock;
use tokio::sync::oneshot;

use crate::network::{AppendResult, BoxFuture, Transport, TransportError};

/// The bounds of one peer link.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Messages on the wire to one peer at once; appends beyond them queue and go together.
    pub in_flight: usize,
    /// Appends in one message.
    pub items_max: usize,
    /// Encoded bytes in one message (an append larger than this goes alone).
    pub bytes_max: usize,
    /// Appends queued for one peer; one more is refused as unreachable (Raft backs off).
    pub queue_max: usize,
    /// How long a batch may take before all its appends fail with a timeout.
    pub timeout: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            in_flight: 2,
            items_max: 512,
            bytes_max: 16 * 1024 * 1024,
            queue_max: 16 * 1024,
            timeout: Duration::from_secs(2),
        }
    }
}

/// A transport that batches appends per peer and passes every other message through.
pub struct PeerBatcher {
    inner: Arc<dyn Transport>,
    limits: BatchLimits,
    links: Mutex<HashMap<u64, Arc<Link>>>,
}

impl std::fmt::Debug for PeerBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerBatcher").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl PeerBatcher {
    pub fn new(inner: Arc<dyn Transport>, limits: BatchLimits) -> Self {
        PeerBatcher { inner, limits, links: Mutex::new(HashMap::new()) }
    }

    /// The link to `target` at `addr`; a peer at a new address gets a new link (the old one
    /// finishes what it holds).
    fn link(&self, target: u64, addr: &str) -> Arc<Link> {
        let mut links = lock(&self.links);
        if let Some(link) = links.get(&target)
            && link.addr == addr
        {
            return link.clone();
        }
        let link = Arc::new(Link {
            inner: self.inner.clone(),
            target,
            addr: addr.to_string(),
            limits: self.limits,
            state: Mutex::new(LinkState::default()),
            unary_only: AtomicBool::new(false),
        });
        links.insert(target, link.clone());
        link
    }
}

/// One group's append waiting for a slot.
struct Pending {
    req: pb::AppendEntriesRequest,
    reply: oneshot::Sender<AppendResult>,
}

#[derive(Default)]
struct LinkState {
    /// Slots in use: messages on the wire, or about to be.
    in_flight: usize,
    queue: VecDeque<Pending>,
}

struct Link {
    inner: Arc<dyn Transport>,
    target: u64,
    addr: String,
    limits: BatchLimits,
    state: Mutex<LinkState>,
    /// The peer answered a batch with UNIMPLEMENTED: send its appends one by one.
    unary_only: AtomicBool,
}

/// What an append does on arrival.
enum Admit {
    /// A slot was free and nothing queued: send it now.
    Send(Slot, pb::AppendEntriesRequest),
    /// Queued: the answer comes from whoever sends the batch.
    Wait(oneshot::Receiver<AppendResult>),
    Full,
}

impl Link {
    fn admit(self: &Arc<Self>, req: pb::AppendEntriesRequest) -> Admit {
        let mut state = lock(&self.state);
        if state.in_flight < self.limits.in_flight && state.queue.is_empty() {
            state.in_flight += 1;
            return Admit::Send(Slot { link: self.clone() }, req);
        }
        if state.queue.len() >= self.limits.queue_max {
            return Admit::Full;
        }
        let (reply, answer) = oneshot::channel();
        state.queue.push_back(Pending { req, reply });
        Admit::Wait(answer)
    }

    /// Takes the next batch off the queue, within the limits, skipping appends whose caller has
    /// given up (timed out): they would only be stale by the time they arrive.
    fn take_batch(state: &mut LinkState, limits: &BatchLimits) -> Vec<Pending> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = state.queue.front() {
            if next.reply.is_closed() {
                state.queue.pop_front();
                continue;
            }
            let len = next.req.encoded_len();
            if !batch.is_empty() && (batch.len() >= limits.items_max || bytes + len > limits.bytes_max) {
                break;
            }
            bytes += len;
            batch.extend(state.queue.pop_front());
        }
        batch
    }

    /// A slot came back: the queue, if any, goes as the next message on it.
    fn release(self: &Arc<Self>) {
        let batch = {
            let mut state = lock(&self.state);
            let batch = Link::take_batch(&mut state, &self.limits);
            if batch.is_empty() {
                state.in_flight -= 1;
                return;
            }
            batch
        };
        let slot = Slot { link: self.clone() };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(slot.send_batch(batch));
            }
            // The runtime is gone: the queued callers' answers drop, which they read as an
            // unreachable peer. The slot is released again by its drop.
            Err(_) => drop(batch),
        }
    }
}

/// A slot of a link, held while its message is on the wire; dropping it (also when the caller's
/// future is dropped mid-send) releases it.
struct Slot {
    link: Arc<Link>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.link.release();
    }
}

impl Slot {
    async fn send_one(&self, req: pb::AppendEntriesRequest) -> AppendResult {
        let link = &self.link;
        let timeout = link.limits.timeout;
        let answer =
            tokio::time::timeout(timeout, link.inner.append_entries(link.target, &link.addr, req)).await;
        answer.unwrap_or(Err(TransportError::Timeout(timeout)))
    }

    async fn send_batch(self, batch: Vec<Pending>) {
        let link = &self.link;
        if batch.len() == 1 || link.unary_only.load(Ordering::Relaxed) {
            // One slot for all of them, as one batch would have had.
            let sends = batch.into_iter().map(|pending| async {
                let _ = pending.reply.send(self.send_one(pending.req).await);
            });
            futures::future::join_all(sends).await;
            return;
        }
        let (reqs, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.req, p.reply)).unzip();
        let count = reqs.len();
        let timeout = link.limits.timeout;
        let sent =
            tokio::time::timeout(timeout, link.inner.append_entries_batch(link.target, &link.addr, reqs));
        match sent.await {
            Ok(Ok(answers)) if answers.len() == count => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            Ok(Ok(answers)) => {
                let reason = format!("{} answers to {count} appends", answers.len());
                let error = TransportError::Remote { node: link.target, reason };
                fail_all(replies, &error);
            }
            Ok(Err(error)) => {
                if matches!(error, TransportError::Unsupported { .. })
                    && !link.unary_only.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(peer = link.target, %error, "peer takes no batched appends; sending them one by one");
                }
                // Raft retries these appends; this link's next ones go one by one.
                fail_all(replies, &error);
            }
            Err(_) => fail_all(replies, &TransportError::Timeout(timeout)),
        }
    }
}

fn fail_all(replies: Vec<oneshot::Sender<AppendResult>>, error: &TransportError) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}

fn link_closed(target: u64) -> TransportError {
    TransportError::Unreachable { node: target, reason: "peer link dropped the append".into() }
}

impl Transport for PeerBatcher {
    fn vote(
        &self,
        target: u64,
        addr: &str,
        req: pb::VoteRequest,
    ) -> BoxFuture<Result<pb::VoteResponse, TransportError>> {
        self.inner.vote(target, addr, req)
    }

    fn append_entries(
        &self,
        target: u64,
        addr: &str,
        req: pb::AppendEntriesRequest,
    ) -> BoxFuture<Result<pb::AppendEntriesResponse, TransportError>> {
        let link = self.link(target, addr);
        Box::pin(async move {
            match link.admit(req) {
                Admit::Send(slot, req) => slot.send_one(req).await,
                Admit::Wait(answer) => answer.await.unwrap_or_else(|_| Err(link_closed(target))),
                Admit::Full => Err(TransportError::Unreachable {
                    node: target,
                    reason: format!("{} appends already queued for this peer", link.limits.queue_max),
                }),
            }
        })
    }

    fn append_entries_batch(
        &self,
        target: u64,
        addr: &str,
        reqs: Vec<pb::AppendEntriesRequest>,
    ) -> BoxFuture<Result<Vec<AppendResult>, TransportError>> {
        self.inner.append_entries_batch(target, addr, reqs)
    }

    fn install_snapshot(
        &self,
        target: u64,
        addr: &str,
        req: pb::InstallSnapshotRequest,
    ) -> BoxFuture<Result<pb::InstallSnapshotResponse, TransportError>> {
        self.inner.install_snapshot(target, addr, req)
    }

    fn transfer_leader(
        &self,
        target: u64,
        addr: &str,
        req: pb::TransferLeaderRequest,
    ) -> BoxFuture<Result<pb::TransferLeaderResponse, TransportError>> {
        self.inner.transfer_leader(target, addr, req)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Semaphore;

    use super::*;

    /// A peer that answers each append with its group id as the matching index, once the test
    /// lets it (`gate`), and counts the messages it got.
    struct FakePeer {
        gate: Arc<Semaphore>,
        unary: AtomicUsize,
        batches: Mutex<Vec<Vec<u64>>>,
        /// Groups whose append fails on its own.
        failing_group: Option<u64>,
        /// Whole batches fail.
        down: bool,
        /// Batches are answered UNIMPLEMENTED, as by an older build.
        old_build: bool,
    }

    impl FakePeer {
        fn new(failing_group: Option<u64>, down: bool) -> Arc<FakePeer> {
            FakePeer::build(failing_group, down, false)
        }

        fn build(failing_group: Option<u64>, down: bool, old_build: bool) -> Arc<FakePeer> {
            Arc::new(FakePeer {
                gate: Arc::new(Semaphore::new(0)),
                unary: AtomicUsize::new(0),
                batches: Mutex::new(Vec::new()),
                failing_group,
                down,
                old_build,
            })
        }

        fn answer(&self, req: &pb::AppendEntriesRequest) -> AppendResult {
            if Some(req.group_id) == self.failing_group {
                return Err(TransportError::UnknownGroup {
                    node: 2,
                    group: sluice_types::GroupId(req.group_id),
                });
            }
            let matching = pb::LogId { leader_id: None, index: req.group_id };
            let partial = pb::append_entries_response::PartialSuccess { matching: Some(matching) };
            Ok(pb::AppendEntriesResponse {
                result: Some(pb::append_entries_response::Result::PartialSuccess(partial)),
            })
        }
    }

    fn unimplemented<T>() -> BoxFuture<Result<T, TransportError>> {
        Box::pin(async { Err(TransportError::Remote { node: 2, reason: "not in this test".into() }) })
    }

    impl Transport for Arc<FakePeer> {
        fn vote(
            &self,
            _: u64,
            _: &str,
            _: pb::VoteRequest,
        ) -> BoxFuture<Result<pb::VoteResponse, TransportError>> {
            unimplemented()
        }

        fn append_entries(&self, _: u64, _: &str, req: pb::AppendEntriesRequest) -> BoxFuture<AppendResult> {
            let peer = self.clone();
            Box::pin(async move {
                peer.unary.fetch_add(1, Ordering::SeqCst);
                peer.gate.acquire().await.expect("gate open").forget();
                peer.answer(&req)
            })
        }

        fn append_entries_batch(
            &self,
            _: u64,
            _: &str,
            reqs: Vec<pb::AppendEntriesRequest>,
        ) -> BoxFuture<Result<Vec<AppendResult>, TransportError>> {
            let peer = self.clone();
            Box::pin(async move {
                lock(&peer.batches).push(reqs.iter().map(|r| r.group_id).collect());
                if peer.old_build {
                    return Err(TransportError::Unsupported { node: 2, what: "AppendEntriesBatch".into() });
                }
                peer.gate.acquire().await.expect("gate open").forget();
                if peer.down {
                    return Err(TransportError::Unreachable { node: 2, reason: "down".into() });
                }
                Ok(reqs.iter().map(|r| peer.answer(r)).collect())
            })
        }

        fn install_snapshot(
            &self,
            _: u64,
            _: &str,
            _: pb::InstallSnapshotRequest,
        ) -> BoxFuture<Result<pb::InstallSnapshotResponse, TransportError>> {
            unimplemented()
        }

        fn transfer_leader(
            &self,
            _: u64,
            _: &str,
            _: pb::TransferLeaderRequest,
        ) -> BoxFuture<Result<pb::TransferLeaderResponse, TransportError>> {
            unimplemented()
        }
    }

    fn append(group: u64) -> pb::AppendEntriesRequest {
        pb::AppendEntriesRequest { group_id: group, ..pb::AppendEntriesRequest::default() }
    }

    fn matching(answer: &AppendResult) -> Option<u64> {
        match answer.as_ref().ok()?.result.as_ref()? {
            pb::append_entries_response::Result::PartialSuccess(p) => p.matching.as_ref().map(|m| m.index),
            _ => None,
        }
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn limits(in_flight: usize) -> BatchLimits {
        BatchLimits { in_flight, queue_max: 8, ..BatchLimits::default() }
    }

    /// Starts an append of `group` to node 2 and returns its task.
    fn start(batcher: &Arc<PeerBatcher>, group: u64) -> tokio::task::JoinHandle<AppendResult> {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.append_entries(2, "peer", append(group)).await })
    }

    #[tokio::test]
    async fn appends_beyond_the_free_slots_go_together_and_each_gets_its_own_answer() {
        let peer = FakePeer::new(Some(13), false);
        let batcher = Arc::new(PeerBatcher::new(Arc::new(peer.clone()), limits(1)));
        // The first takes the only slot and goes alone, as a unary call.
        let first = start(&batcher, 10);
        until("the first append on the wire", || peer.unary.load(Ordering::SeqCst) == 1).await;
        // These queue behind it.
        let queued: Vec<_> = [11, 12, 13, 14].into_iter().map(|g| start(&batcher, g)).collect();
        until("four queued", || lock(&batcher.link(2, "peer").state).queue.len() == 4).await;
        peer.gate.add_permits(2);
        assert_eq!(matching(&first.await.expect("task")), Some(10));
        for (task, group) in queued.into_iter().zip([11, 12, 13, 14]) {
            let answer = task.await.expect("task");
            if group == 13 {
                assert!(matches!(answer, Err(TransportError::UnknownGroup { .. })), "{answer:?}");
            } else {
                assert_eq!(matching(&answer), Some(group), "group {group} got another's answer");
            }
        }
        assert_eq!(*lock(&peer.batches), vec![vec![11, 12, 13, 14]], "one message for the four queued");
        assert_eq!(peer.unary.load(Ordering::SeqCst), 1);
        assert_eq!(lock(&batcher.link(2, "peer").state).in_flight, 0, "every slot came back");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_append_in_it_and_a_full_queue_refuses() {
        let peer = FakePeer::new(None, true);
        let batcher = Arc::new(PeerBatcher::new(Arc::new(peer.clone()), limits(1)));
        let first = start(&batcher, 1);
        until("the first append on the wire", || peer.unary.load(Ordering::SeqCst) == 1).await;
        let queued: Vec<_> = (2..10).map(|g| start(&batcher, g)).collect();
        until("eight queued", || lock(&batcher.link(2, "peer").state).queue.len() == 8).await;
        // The queue holds 8: the ninth is refused at once, without waiting for a slot.
        let refused = batcher.append_entries(2, "peer", append(99)).await;
        assert!(matches!(refused, Err(TransportError::Unreachable { .. })), "{refused:?}");
        peer.gate.add_permits(2);
        assert_eq!(matching(&first.await.expect("task")), Some(1));
        for task in queued {
            let answer = task.await.expect("task");
            assert!(matches!(answer, Err(TransportError::Unreachable { .. })), "{answer:?}");
        }
    }

    #[tokio::test]
    async fn an_append_whose_caller_gave_up_is_not_sent() {
        let peer = FakePeer::new(None, false);
        let batcher = Arc::new(PeerBatcher::new(Arc::new(peer.clone()), limits(1)));
        let first = start(&batcher, 1);
        until("the first append on the wire", || peer.unary.load(Ordering::SeqCst) == 1).await;
        let abandoned = start(&batcher, 2);
        let kept = start(&batcher, 3);
        until("two queued", || lock(&batcher.link(2, "peer").state).queue.len() == 2).await;
        abandoned.abort();
        let _ = abandoned.await;
        peer.gate.add_permits(2);
        assert_eq!(matching(&first.await.expect("task")), Some(1));
        assert_eq!(matching(&kept.await.expect("task")), Some(3));
        // Group 3 went alone (unary): group 2's append was dropped from the queue.
        assert_eq!(peer.unary.load(Ordering::SeqCst), 2);
        assert!(lock(&peer.batches).is_empty());
    }

    #[tokio::test]
    async fn a_peer_without_batched_appends_gets_them_one_by_one_after_its_first_refusal() {
        let peer = FakePeer::build(None, false, true);
        let batcher = Arc::new(PeerBatcher::new(Arc::new(peer.clone()), limits(1)));
        let first = start(&batcher, 1);
        until("the first append on the wire", || peer.unary.load(Ordering::SeqCst) == 1).await;
        let refused: Vec<_> = [2, 3].into_iter().map(|g| start(&batcher, g)).collect();
        until("two queued", || lock(&batcher.link(2, "peer").state).queue.len() == 2).await;
        peer.gate.add_permits(1);
        assert_eq!(matching(&first.await.expect("task")), Some(1));
        for task in refused {
            let answer = task.await.expect("task");
            assert!(matches!(answer, Err(TransportError::Unsupported { .. })), "{answer:?}");
        }

        // The link now sends queued appends as unary calls, under one slot.
        let second = start(&batcher, 4);
        until("the next append on the wire", || peer.unary.load(Ordering::SeqCst) == 2).await;
        let queued: Vec<_> = [5, 6].into_iter().map(|g| start(&batcher, g)).collect();
        until("two queued again", || lock(&batcher.link(2, "peer").state).queue.len() == 2).await;
        peer.gate.add_permits(3);
        assert_eq!(matching(&second.await.expect("task")), Some(4));
        for (task, group) in queued.into_iter().zip([5, 6]) {
            assert_eq!(matching(&task.await.expect("task")), Some(group));
        }
        assert_eq!(*lock(&peer.batches), vec![vec![2, 3]], "one batch was tried, then no more");
        assert_eq!(peer.unary.load(Ordering::SeqCst), 4);
        assert_eq!(lock(&batcher.link(2, "peer").state).in_flight, 0, "every slot came back");
    }
}
