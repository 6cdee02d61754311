//! `Metadata`: brokers, and for each topic asked its partitions with their leaders. O(partitions):
//! each partition's leader is one lookup.

use std::sync::Arc;

use sluice_proto::v1 as pb;
use sluice_proto::v1::metadata_server::Metadata;
use tonic::{Request, Response, Status};

use crate::api_error::DataError;
use crate::node::Node;
use crate::routing;

#[derive(Debug)]
pub struct MetadataService {
    node: Arc<Node>,
}

impl MetadataService {
    pub fn new(node: Arc<Node>) -> Self {
        MetadataService { node }
    }
}

#[tonic::async_trait]
impl Metadata for MetadataService {
    async fn metadata(
        &self,
        request: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        let request = request.into_inner();
        let node = &self.node;
        let state = node.registry_state();
        let brokers =
            state.brokers().map(|b| pb::BrokerAddress { id: b.id.0, addr: b.addr.clone() }).collect();
        let names: Vec<String> = if request.topics.is_empty() {
            state.topics().map(|t| t.name.clone()).collect()
        } else {
            request.topics
        };
        let topics = names
            .into_iter()
            .map(|name| match state.topic(&name) {
                None => pb::TopicMetadata {
                    error: Some(DataError::UnknownTopic(name.clone()).to_pb()),
                    name,
                    partitions: Vec::new(),
                },
                Some(topic) => pb::TopicMetadata {
                    name,
                    error: None,
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|p| {
                            let local = node.partition(p.group);
                            let leader = routing::leader_of(node, p.group, local.as_ref());
                            pb::PartitionMetadata {
                                partition: p.partition,
                                leader_id: leader,
                                leader_addr: leader.and_then(|l| node.addr_of(l)).unwrap_or_default(),
                                replicas: p.replicas.iter().map(|r| r.0).collect(),
                            }
                        })
                        .collect(),
                },
            })
            .collect();
        Ok(Response::new(pb::MetadataResponse { brokers, topics }))
    }
}
