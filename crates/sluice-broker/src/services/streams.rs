//! The tasks behind long-lived gRPC streams (push subscriptions, ordered produce streams): at
//! most a configured number at once (a semaphore, as mini-redis caps connections), each a
//! tracked task that ends on shutdown, so that the node's shutdown waits for every one.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Debug)]
pub struct StreamTasks {
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl StreamTasks {
    pub fn new(max: u32, shutdown: CancellationToken) -> Self {
        StreamTasks { permits: Arc::new(Semaphore::new(max as usize)), tracker: TaskTracker::new(), shutdown }
    }

    /// A place for one more stream, or none when `max` are open; held for the stream's life.
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Runs a stream's task; it must end once [`StreamTasks::shutdown`] is cancelled.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Waits until every stream's task has ended (they end when `shutdown` is cancelled).
    pub async fn closed(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}
