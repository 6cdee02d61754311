//! The admin API: cluster status and topics. Writes go to the registry leader through
//! `Node::propose`; consistent reads through its linearizable barrier.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sluice_meta::{BrokerState, MetaCommand, MetaResponse, Topic, TopicConfig};
use sluice_proto::node::GroupStatusRequest;
use sluice_proto::v1 as pb;
use sluice_proto::v1::admin_server::Admin;
use sluice_types::GroupId;
use tonic::{Request, Response, Status};

use crate::api_error::ApiError;
use crate::node::Node;

const STATUS_CALL_TIMEOUT: Duration = Duration::from_secs(2);

pub struct AdminRpc {
    node: Arc<Node>,
}

impl AdminRpc {
    pub fn new(node: Arc<Node>) -> Self {
        AdminRpc { node }
    }
}

fn config_to_pb(config: &TopicConfig) -> pb::TopicConfig {
    pb::TopicConfig { retention_ms: config.retention_ms, retention_bytes: config.retention_bytes }
}

/// The partition leaders this node knows: its own, then what the registry leader reported.
fn known_leaders(node: &Node) -> HashMap<u64, u64> {
    let mut leaders = if node.is_meta_leader() {
        crate::liveness::reported_leaders(node)
    } else {
        node.cluster_info().leaders
    };
    for group in node.partition_groups() {
        if group.with_metrics(|m| m.current_leader) == Some(node.id) {
            leaders.insert(group.group().0, node.id);
        }
    }
    leaders
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

/// The status of every Raft group hosted on this node.
pub fn local_group_status(node: &Node) -> Vec<pb::GroupStatus> {
    let registry = node.registry();
    let names: HashMap<GroupId, (String, u32)> = registry
        .state
        .topics()
        .flat_map(|t| t.partitions.iter().map(move |p| (p.group, (t.name.clone(), p.partition))))
        .collect();
    let mut out = Vec::new();
    if let Some(meta) = &node.meta {
        let m = meta.metrics();
        out.push(group_status(node.id, 0, String::new(), 0, &m, 0, false));
    }
    for group in node.partition_groups() {
        let m = group.metrics();
        let (topic, partition) = names.get(&group.group()).cloned().unwrap_or_default();
        let high_watermark = group.reader().progress().high_watermark.0;
        out.push(group_status(
            node.id,
            group.group().0,
            topic,
            partition,
            &m,
            high_watermark,
            group.is_hibernating(),
        ));
    }
    out
}

fn group_status<C: openraft::RaftTypeConfig<NodeId = u64, Term = u64>>(
    reporter: u64,
    group_id: u64,
    topic: String,
    partition: u32,
    m: &openraft::RaftMetrics<C>,
    high_watermark: u64,
    hibernating: bool,
) -> pb::GroupStatus {
    let last_log_index = m.last_log_index.unwrap_or(0);
    let replicas = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, matched)| {
                    let matched_index = matched.as_ref().map(|l| l.index);
                    pb::ReplicaProgress {
                        node_id: *id,
                        matched_index,
                        lag: last_log_index.saturating_sub(matched_index.unwrap_or(0)),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    pb::GroupStatus {
        group_id,
        topic,
        partition,
        leader: m.current_leader,
        term: m.current_term,
        commit_index: m.local_committed.as_ref().map_or(0, |l| l.index),
        last_log_index,
        replicas,
        reported_by: reporter,
        high_watermark,
        hibernating,
    }
}

#[tonic::async_trait]
impl Admin for AdminRpc {
    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let node = &self.node;
        let registry = node.registry();
        let ages = if node.is_meta_leader() {
            crate::liveness::last_seen_ms_ago(node)
        } else {
            node.cluster_info().last_seen_ms_ago
        };
        let controllers: Vec<u64> = node.config.controllers.iter().map(|c| c.id).collect();
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
                if id == node.id {
                    return (id, Some(local_group_status(&node)));
                }
                let Ok(mut client) = node.clients.node(&addr) else { return (id, None) };
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
        let (meta_leader, meta_term, meta_commit_index) = match &node.meta {
            Some(meta) => {
                let m = meta.metrics();
                (m.current_leader, m.current_term, m.local_committed.map_or(0, |l| l.index))
            }
            None => (node.cluster_info().meta_leader, 0, registry.index),
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
        match self.node.propose(command).await? {
            MetaResponse::TopicCreated(topic) => Ok(Response::new(pb::CreateTopicResponse {
                topic: Some(topic_to_pb(&topic, &HashMap::new())),
            })),
            other => Err(ApiError::Internal(format!("unexpected registry answer {other:?}")).into()),
        }
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let name = request.into_inner().name;
        self.node.propose(MetaCommand::DeleteTopic { name }).await?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let registry = if request.into_inner().consistent {
            self.node.read_registry_consistent().await?
        } else {
            self.node.registry()
        };
        let leaders = known_leaders(&self.node);
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
            self.node.read_registry_consistent().await?
        } else {
            self.node.registry()
        };
        let topic = registry
            .state
            .topic(&request.name)
            .ok_or_else(|| ApiError::Meta(sluice_meta::MetaError::UnknownTopic(request.name.clone())))?;
        Ok(Response::new(pb::DescribeTopicResponse {
            topic: Some(topic_to_pb(topic, &known_leaders(&self.node))),
        }))
    }
}
