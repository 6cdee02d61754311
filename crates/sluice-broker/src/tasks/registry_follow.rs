//! On controllers: publishing the local registry replica's applied state to the rest of the
//! node, and forming the registry on first start.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::impls::BasicNode;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::tasks::Task;

/// Publishes every state the local registry replica applies.
pub struct RegistryFollower {
    pub node: Arc<Node>,
}

impl Task for RegistryFollower {
    const NAME: &'static str = "registry-follow";

    async fn run(self, shutdown: CancellationToken) {
        let node = self.node;
        let Some(meta) = node.registry().meta() else { return };
        let mut watch = meta.watch();
        loop {
            let view = watch.borrow_and_update().clone();
            node.registry().offer(view.state.clone(), view.last_applied.map_or(0, |id| id.index));
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = watch.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// Forms the registry on first start: the controller with the lowest id initializes it with all
/// controllers as voters; the others wait to be contacted. Ends once done.
pub struct RegistryBootstrap {
    pub node: Arc<Node>,
}

impl Task for RegistryBootstrap {
    const NAME: &'static str = "registry-bootstrap";

    async fn run(self, _shutdown: CancellationToken) {
        let node = self.node;
        let Some(meta) = node.registry().meta() else { return };
        let controllers = node.registry().controllers();
        if controllers.iter().map(|c| c.id).min() != Some(node.id()) {
            return;
        }
        match meta.is_initialized().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot tell whether the registry is formed");
                return;
            }
        }
        let members: BTreeMap<u64, BasicNode> =
            controllers.iter().map(|c| (c.id, BasicNode::new(c.addr.clone()))).collect();
        match meta.initialize(members).await {
            Ok(()) => tracing::info!(controllers = controllers.len(), "registry formed"),
            Err(e) => tracing::warn!(error = %e, "registry initialization refused (already formed?)"),
        }
    }
}
