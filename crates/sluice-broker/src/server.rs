//! The gRPC server: clients' services (produce, consume, metadata, admin), peers' Raft messages
//! and node control, and the standard health service, on one port. This is the one place where
//! the services are assembled, so TLS and authentication plug in here.

use std::sync::Arc;

use sluice_proto::node::node_server::NodeServer;
use sluice_proto::raft::raft_service_server::RaftServiceServer;
use sluice_proto::v1::admin_server::AdminServer;
use sluice_proto::v1::consumer_server::ConsumerServer;
use sluice_proto::v1::metadata_server::MetadataServer;
use sluice_proto::v1::producer_server::ProducerServer;
use sluice_types::limits::{PRODUCE_REQUEST_BYTES_MAX, REQUEST_BYTES_MAX};
use tokio_util::sync::CancellationToken;

use crate::clients::PEER_MESSAGE_BYTES_MAX;
use crate::node::Node;
use crate::services::admin::AdminService;
use crate::services::fetch::ConsumerService;
use crate::services::metadata::MetadataService;
use crate::services::node_control::NodeControl;
use crate::services::produce::ProducerService;
use crate::services::raft::RaftService;
use crate::services::streams::StreamTasks;
use crate::services::subscribe::Subscriptions;
use crate::tasks::Task;

/// Concurrent requests per connection; beyond it new ones wait.
const CONCURRENCY_PER_CONNECTION: usize = 1024;

pub struct GrpcServer {
    pub node: Arc<Node>,
    pub listener: tokio::net::TcpListener,
    pub subscriptions: Subscriptions,
    pub produce_streams: StreamTasks,
}

impl Task for GrpcServer {
    const NAME: &'static str = "grpc";

    async fn run(self, shutdown: CancellationToken) {
        let GrpcServer { node, listener, subscriptions, produce_streams } = self;
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        // The standard gRPC health service: SERVING while the node runs, for load balancers and probes.
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", tonic_health::ServingStatus::Serving).await;
        let result = tonic::transport::Server::builder()
            .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
            .add_service(health_service)
            .add_service(
                RaftServiceServer::new(RaftService::new(node.clone()))
                    .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
            )
            .add_service(
                NodeServer::new(NodeControl::new(node.clone()))
                    .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
            )
            .add_service(
                AdminServer::new(AdminService::new(node.clone()))
                    .max_decoding_message_size(REQUEST_BYTES_MAX)
                    .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
            )
            .add_service(
                ProducerServer::new(ProducerService::new(node.clone(), produce_streams))
                    .max_decoding_message_size(PRODUCE_REQUEST_BYTES_MAX)
                    .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
            )
            .add_service(
                ConsumerServer::new(ConsumerService::new(node.clone(), subscriptions))
                    .max_decoding_message_size(REQUEST_BYTES_MAX)
                    .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
            )
            .add_service(MetadataServer::new(MetadataService::new(node.clone())))
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server failed");
            node.shutdown().cancel();
        }
    }
}
