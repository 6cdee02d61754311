//! The node's long-lived tasks. Each is a named struct whose `run` ends when the node's shutdown
//! token is cancelled; `start` spawns them and the node handle awaits them on shutdown.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod heartbeat;
pub mod leadership_shedder;
pub mod liveness;
pub mod peers;
pub mod quiescer;
pub mod reconciler;
pub mod registry_follow;
pub mod registry_lease;
pub mod stand_in;

/// A long-lived task of the node.
pub trait Task: Send + 'static {
    /// Named in logs.
    const NAME: &'static str;

    /// Runs until `shutdown` is cancelled (or the task's job is done).
    fn run(self, shutdown: CancellationToken) -> impl Future<Output = ()> + Send;
}

/// The running tasks of a node, awaited in order on shutdown.
#[derive(Debug, Default)]
pub struct TaskSet {
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl TaskSet {
    pub fn spawn<T: Task>(&mut self, task: T, shutdown: &CancellationToken) {
        self.tasks.push((T::NAME, tokio::spawn(task.run(shutdown.clone()))));
    }

    /// Waits for every task to end (after the shutdown token was cancelled).
    pub async fn join(self) {
        for (name, task) in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(task = name, error = %e, "task ended abnormally");
            }
        }
    }
}
