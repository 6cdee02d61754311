//! Starting and stopping a node: [`start_node`] opens storage, binds the ports, starts the
//! registry replica (on controllers), builds the [`Node`] and spawns its tasks; the returned
//! [`NodeHandle`] stops them in order.

use std::sync::Arc;

use anyhow::Context as _;
use sluice_partition::Sabotage;
use sluice_raft::{BatchLimits, MetaGroup, PartitionGroup, PeerBatcher, RaftDispatcher, Transport};
use sluice_storage::{Storage, StorageOptions};
use tokio_util::sync::CancellationToken;

use crate::clients::{Clients, GrpcTransport};
use crate::config::NodeConfig;
use crate::http::HttpServer;
use crate::node::{Node, NodeParts};
use crate::registry::Registry;
use crate::server::GrpcServer;
use crate::services::streams::StreamTasks;
use crate::services::subscribe::Subscriptions;
use crate::tasks::TaskSet;
use crate::tasks::heartbeat::Heartbeater;
use crate::tasks::leadership_shedder::LeadershipShedder;
use crate::tasks::liveness::LivenessMonitor;
use crate::tasks::peers::PeerMonitor;
use crate::tasks::quiescer::Quiescer;
use crate::tasks::reconciler::Reconciler;
use crate::tasks::registry_follow::{RegistryBootstrap, RegistryFollower};
use crate::tasks::registry_lease::LeaseKeeper;

/// A running node. Dropping it does not stop it; call [`NodeHandle::shutdown`].
#[derive(Debug)]
pub struct NodeHandle {
    node: Arc<Node>,
    pub grpc_addr: std::net::SocketAddr,
    pub http_addr: std::net::SocketAddr,
    tasks: TaskSet,
    subscriptions: Subscriptions,
    produce_streams: StreamTasks,
}

/// Starts a node from a config; `sabotage` breaks it on purpose (fault tests only).
pub async fn start_node(config: NodeConfig, sabotage: Sabotage) -> anyhow::Result<NodeHandle> {
    config.validate()?;
    let storage = Storage::open(
        &config.data_dir,
        &StorageOptions {
            write_buffer_bytes: config.storage.write_buffer_bytes,
            block_cache_bytes: config.storage.block_cache_bytes,
            direct_io_flush: config.storage.direct_io_flush,
            skip_wal_fsync: sabotage.ack_before_fsync,
            tolerate_wal_damage: sabotage.tolerate_wal_damage,
        },
    )
    .with_context(|| format!("open storage in {}", config.data_dir.display()))?;

    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("bind gRPC {}", config.grpc_addr))?;
    let http_listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("bind HTTP {}", config.http_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let clients = Arc::new(Clients::new(config.peer_dial_overrides.clone()));
    let grpc: Arc<dyn Transport> = Arc::new(GrpcTransport::new(clients.clone()));
    let transport: Arc<dyn Transport> = Arc::new(PeerBatcher::new(grpc, BatchLimits::default()));
    let dispatcher = Arc::new(RaftDispatcher::default());
    let raft_settings = config.raft_settings(sabotage);
    let meta = if config.is_controller() {
        Some(MetaGroup::open(config.node_id, &storage, transport.clone(), &dispatcher, &raft_settings).await?)
    } else {
        None
    };
    let registry = Registry::new(
        config.node_id,
        config.advertised(),
        config.controllers.clone(),
        clients.clone(),
        meta,
        std::time::Duration::from_millis(config.raft.election_timeout_max_ms),
    );
    let shutdown = CancellationToken::new();
    let subscriptions = Subscriptions::new(config.limits.subscriptions_max, shutdown.clone());
    let produce_streams = StreamTasks::new(config.limits.produce_streams_max, shutdown.clone());
    let node = Arc::new(Node::new(NodeParts {
        config,
        raft_settings,
        storage,
        dispatcher,
        transport,
        clients,
        registry,
        shutdown: shutdown.clone(),
    }));
    let controller = node.registry().meta().is_some();
    tracing::info!(node = node.id(), %grpc_addr, %http_addr, controller, %sabotage, "node starting");

    let mut tasks = TaskSet::default();
    let grpc = GrpcServer {
        node: node.clone(),
        listener: grpc_listener,
        subscriptions: subscriptions.clone(),
        produce_streams: produce_streams.clone(),
    };
    tasks.spawn(grpc, &shutdown);
    tasks.spawn(HttpServer { node: node.clone(), listener: http_listener }, &shutdown);
    if controller {
        tasks.spawn(RegistryFollower { node: node.clone() }, &shutdown);
        tasks.spawn(RegistryBootstrap { node: node.clone() }, &shutdown);
        tasks.spawn(LivenessMonitor { node: node.clone() }, &shutdown);
        tasks.spawn(LeaseKeeper { node: node.clone() }, &shutdown);
    }
    tasks.spawn(Heartbeater { node: node.clone() }, &shutdown);
    tasks.spawn(Reconciler { node: node.clone() }, &shutdown);
    tasks.spawn(PeerMonitor { node: node.clone() }, &shutdown);
    tasks.spawn(Quiescer { node: node.clone() }, &shutdown);
    tasks.spawn(LeadershipShedder { node: node.clone() }, &shutdown);
    Ok(NodeHandle { node, grpc_addr, http_addr, tasks, subscriptions, produce_streams })
}

impl NodeHandle {
    pub fn node_id(&self) -> u64 {
        self.node.id()
    }

    /// Resolves when the node stopped itself (its gRPC server failed).
    pub async fn stopped(&self) {
        self.node.shutdown().cancelled().await;
    }

    /// Resolves with the reason when a write or fsync failed: the node must stop at once.
    pub async fn storage_failed(&self) -> sluice_storage::StorageError {
        self.node.storage().failed().await
    }

    /// Stops accepting requests, lets in-flight ones finish, stops every task, subscription and
    /// Raft group, then closes storage.
    pub async fn shutdown(self) {
        let node = self.node;
        tracing::info!(node = node.id(), "node shutting down");
        node.shutdown().cancel();
        self.tasks.join().await;
        self.subscriptions.closed().await;
        self.produce_streams.closed().await;
        let groups: Vec<PartitionGroup> = node.take_partitions();
        for group in groups {
            if let Err(e) = group.shutdown(node.dispatcher()).await {
                tracing::warn!(group = %group.group(), error = %e, "group shutdown failed");
            }
        }
        if let Some(meta) = node.registry().meta()
            && let Err(e) = meta.shutdown(node.dispatcher()).await
        {
            tracing::warn!(error = %e, "registry shutdown failed");
        }
        node.storage().shutdown();
        tracing::info!(node = node.id(), "node stopped");
    }
}
