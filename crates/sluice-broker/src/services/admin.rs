//! The admin API: cluster status and topics. Writes go to the registry leader through
//! `Registry::propose`; consistent reads through its linearizable barrier.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sluice_meta::{BrokerState, MetaCommand, MetaResponse, Topic, TopicConfig};
use sluice_proto::node::GroupStatusRequest;
use sluice_proto::v1 as pb;
use sluice_proto::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use crate::api_error::ApiError;
use crate::node::Node;
use crate::routing;
use crate::services::group_status::local_group_status;

const STATUS_CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct AdminService {
    node: Arc<Node>,
}

impl AdminService {
    pub fn new(node: Arc<Node>) -> Self {
        AdminService { node }
    }
}

fn config_to_pb(config: &TopicConfig) -> pb::TopicConfig {
    pb::TopicConfig { retention_ms: config.retention_ms, retention_bytes: config.retention_bytes }
}

fn topic_to_pb(topic: &Topic, leaders: &HashMap<u64, u64>) -> pb::TopicInfo {
    pb::TopicInfo {
        name: topic.name.clone(),
        replication_factor: topic.replication_factor,
        config: Some(config_to_pb(&topic.config)),
        partitions: topic
            .partitions
            .iter()
            .map(|p| pb::PartitionInfo {
                partition: p.partition,
                group_id: p.group.0,
                replicas: p.replicas.iter().map(|r| r.0).collect(),
                leader: leaders.get(&p.group.0).copied().filter(|l| p.replicas.iter().any(|r| r.0 == *l)),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let node = &self.node;
        let registry = node.registry().snapshot();
        let ages = node.last_seen_ms_ago();
        let controllers: Vec<u64> = node.registry().controllers().iter().map(|c| c.id).collect();
        let brokers: Vec<pb::BrokerStatus> = registry
            .state
            .brokers()
            .map(|b| pb::BrokerStatus {
                id: b.id.0,
                addr: b.addr.clone(),
                state: match b.state {
                    BrokerState::Alive => "alive".into(),
                    BrokerState::Dead => "dead".into(),
                },
                last_heartbeat_ms_ago: ages.get(&b.id.0).copied(),
                controller: controllers.contains(&b.id.0),
            })
            .collect();

        // Ask every registered broker for its groups, concurrently, each bounded in time.
        let calls = registry.state.brokers().map(|b| {
            let id = b.id.0;
            let addr = b.addr.clone();
            let node = node.clone();
            async move {
                if id == node.id() {
                    return (id, Some(local_group_status(&node)));
                }
                let Ok(mut client) = node.clients().node(&addr) else { return (id, None) };
                let mut request = Request::new(GroupStatusRequest {});
                request.set_timeout(STATUS_CALL_TIMEOUT);
                let answer = tokio::time::timeout(STATUS_CALL_TIMEOUT, client.group_status(request)).await;
                match answer {
                    Ok(Ok(response)) => (id, Some(response.into_inner().groups)),
                    _ => (id, None),
                }
            }
        });
        let answers = futures::future::join_all(calls).await;
        let mut unreachable = Vec::new();
        let mut groups: BTreeMap<u64, pb::GroupStatus> = BTreeMap::new();
        for (id, answer) in answers {
            let Some(reports) = answer else {
                unreachable.push(id);
                continue;
            };
            for report in reports {
                let from_leader = report.leader == Some(report.reported_by);
                match groups.get(&report.group_id) {
                    Some(existing) if existing.leader == Some(existing.reported_by) && !from_leader => {}
                    Some(existing) if !from_leader && existing.term >= report.term => {}
                    _ => {
                        groups.insert(report.group_id, report);
                    }
                }
            }
        }
        let (meta_leader, meta_term, meta_commit_index) = match node.registry().meta() {
            Some(meta) => {
                let m = meta.metrics();
                (m.current_leader, m.current_term, m.local_committed.map_or(0, |l| l.index))
            }
            None => (node.registry().leader(), 0, registry.index),
        };
        Ok(Response::new(pb::ClusterStatusResponse {
            meta_leader,
            meta_term,
            meta_commit_index,
            brokers,
            groups: groups.into_values().collect(),
            unreachable,
        }))
    }

    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let request = request.into_inner();
        let config = request.config.unwrap_or_default();
        let command = MetaCommand::CreateTopic {
            name: request.name,
            partitions: request.partitions,
            replication_factor: request.replication_factor,
            config: TopicConfig {
                retention_ms: config.retention_ms,
                retention_bytes: config.retention_bytes,
            },
        };
        match self.node.registry().propose(command).await? {
            MetaResponse::TopicCreated(topic) => Ok(Response::new(pb::CreateTopicResponse {
                topic: Some(topic_to_pb(&topic, &HashMap::new())),
            })),
            other => Err(ApiError::UnexpectedAnswer(Box::new(other)).into()),
        }
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let name = request.into_inner().name;
        self.node.registry().propose(MetaCommand::DeleteTopic { name }).await?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let registry = if request.into_inner().consistent {
            self.node.registry().read_consistent().await?
        } else {
            self.node.registry().snapshot()
        };
        let leaders = routing::known_leaders(&self.node);
        Ok(Response::new(pb::ListTopicsResponse {
            topics: registry.state.topics().map(|t| topic_to_pb(t, &leaders)).collect(),
        }))
    }

    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::DescribeTopicResponse>, Status> {
        let request = request.into_inner();
        let registry = if request.consistent {
            self.node.registry().read_consistent().await?
        } else {
            self.node.registry().snapshot()
        };
        let topic = registry
            .state
            .topic(&request.name)
            .ok_or_else(|| ApiError::Meta(sluice_meta::MetaError::UnknownTopic(request.name.clone())))?;
        Ok(Response::new(pb::DescribeTopicResponse {
            topic: Some(topic_to_pb(topic, &routing::known_leaders(&self.node))),
        }))
    }
}
