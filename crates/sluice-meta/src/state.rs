use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_types::{GroupId, NodeId, ProducerEpoch, ProducerId};

use crate::placement::place_replicas;
use crate::topic_name::validate_topic_name;

/// Most partitions one topic may have.
pub const PARTITIONS_MAX: u32 = 4096;
/// Most replicas a partition may have.
pub const REPLICATION_FACTOR_MAX: u32 = 7;
/// Most topics a cluster may hold.
pub const TOPICS_MAX: usize = 10_000;
/// Most producer ids one allocation may take.
pub const PRODUCER_ID_BLOCK_MAX: u64 = 1_000_000;
/// Most producer ids whose epoch was ever bumped that the registry remembers. Beyond it a bump is
/// refused (the client takes a fresh producer id instead), so the registry's state stays bounded.
pub const BUMPED_PRODUCERS_MAX: usize = 100_000;

/// Whether the controller currently believes a broker is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerState {
    Alive,
    /// Missed heartbeats for longer than the session timeout.
    Dead,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    pub id: NodeId,
    /// The gRPC address serving clients and peers.
    pub addr: String,
    pub state: BrokerState,
}

/// Per-topic settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Records older than this may be deleted; `None` keeps them forever.
    pub retention_ms: Option<u64>,
    /// A partition's log beyond this many bytes may be trimmed from the front; `None`: no limit.
    pub retention_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    pub partition: u32,
    /// The partition's Raft group.
    pub group: GroupId,
    /// The replicas; the first is the preferred leader, which forms the group.
    pub replicas: Vec<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub name: String,
    pub replication_factor: u32,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionAssignment>,
}

/// A change to the registry. Every one is a Raft entry, applied identically on every controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// A broker announces itself (or a new address). A registered broker is alive.
    RegisterBroker {
        id: NodeId,
        addr: String,
    },
    /// The controller's liveness verdict changed.
    SetBrokerState {
        id: NodeId,
        state: BrokerState,
    },
    CreateTopic {
        name: String,
        partitions: u32,
        replication_factor: u32,
        config: TopicConfig,
    },
    DeleteTopic {
        name: String,
    },
    /// Takes `count` fresh producer ids, each at epoch 0.
    AllocateProducerIds {
        count: u64,
    },
    /// Starts a new incarnation of an issued producer id: its epoch goes up by one, and every
    /// partition then refuses the older epoch's batches (a zombie is fenced).
    BumpProducerEpoch {
        producer_id: ProducerId,
    },
    /// Changes nothing. A registry leader whose heartbeats do not get through (links slower
    /// than the heartbeat interval) replicates one to renew its quorum lease.
    Noop,
}

/// Why a command changed nothing. Deterministic: every replica reaches the same verdict.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MetaError {
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("partition count {0} must be between 1 and {PARTITIONS_MAX}")]
    InvalidPartitionCount(u32),
    #[error("replication factor {requested} must be between 1 and {REPLICATION_FACTOR_MAX}")]
    InvalidReplicationFactor { requested: u32 },
    #[error("replication factor {requested} exceeds the {alive} live brokers")]
    NotEnoughBrokers { requested: u32, alive: u32 },
    #[error("the cluster already holds {TOPICS_MAX} topics")]
    TooManyTopics,
    #[error("broker {0} is not registered")]
    UnknownBroker(NodeId),
    #[error("broker address must not be empty")]
    EmptyAddress,
    #[error("producer id allocation of {0} must be between 1 and {PRODUCER_ID_BLOCK_MAX}")]
    InvalidProducerIdCount(u64),
    #[error("producer id {0} was never issued")]
    UnknownProducerId(ProducerId),
    #[error("producer id {0} has used every epoch; take a new producer id")]
    ProducerEpochsExhausted(ProducerId),
    #[error(
        "the registry already remembers {BUMPED_PRODUCERS_MAX} bumped producer ids; take a new producer id"
    )]
    TooManyBumpedProducers,
}

/// What applying a command returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    #[default]
    Done,
    TopicCreated(Topic),
    ProducerIds {
        first: ProducerId,
        count: u64,
    },
    ProducerEpoch {
        producer_id: ProducerId,
        epoch: ProducerEpoch,
    },
    Refused(MetaError),
}

/// The registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    brokers: BTreeMap<NodeId, Broker>,
    topics: BTreeMap<String, Topic>,
    /// The next Raft group id to hand out; group 0 is this registry's own.
    next_group: u64,
    /// The next producer id to hand out; 0 means "no idempotence".
    next_producer_id: u64,
    /// The current epoch of every producer id whose epoch was bumped; every other issued id is
    /// at epoch 0. At most [`BUMPED_PRODUCERS_MAX`].
    #[serde(default)]
    producer_epochs: BTreeMap<ProducerId, ProducerEpoch>,
}

impl Default for MetaState {
    fn default() -> Self {
        MetaState {
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            next_group: 1,
            next_producer_id: 1,
            producer_epochs: BTreeMap::new(),
        }
    }
}

impl MetaState {
    pub fn brokers(&self) -> impl Iterator<Item = &Broker> {
        self.brokers.values()
    }

    pub fn broker(&self, id: NodeId) -> Option<&Broker> {
        self.brokers.get(&id)
    }

    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// The current epoch of an issued producer id; `None` for an id never issued (0, which
    /// means "no idempotence", included).
    pub fn producer_epoch(&self, id: ProducerId) -> Option<ProducerEpoch> {
        let issued = id.0 != 0 && id.0 < self.next_producer_id;
        issued.then(|| self.producer_epochs.get(&id).copied().unwrap_or(ProducerEpoch(0)))
    }

    /// Every group id below this was handed out at some time.
    pub fn next_group(&self) -> GroupId {
        GroupId(self.next_group)
    }

    /// The partitions whose replica sets include `node`, with their topic.
    pub fn assignments_of(&self, node: NodeId) -> impl Iterator<Item = (&Topic, &PartitionAssignment)> {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter(move |(_, p)| p.replicas.contains(&node))
    }

    /// Checks a command against the current state without applying it; the leader uses this to
    /// refuse bad requests before they reach the log. `apply` checks again.
    pub fn check(&self, command: &MetaCommand) -> Result<(), MetaError> {
        match command {
            MetaCommand::RegisterBroker { addr, .. } => {
                if addr.is_empty() {
                    return Err(MetaError::EmptyAddress);
                }
            }
            MetaCommand::SetBrokerState { id, .. } => {
                if !self.brokers.contains_key(id) {
                    return Err(MetaError::UnknownBroker(*id));
                }
            }
            MetaCommand::CreateTopic { name, partitions, replication_factor, .. } => {
                validate_topic_name(name)?;
                if self.topics.contains_key(name) {
                    return Err(MetaError::TopicExists(name.clone()));
                }
                if self.topics.len() >= TOPICS_MAX {
                    return Err(MetaError::TooManyTopics);
                }
                if *partitions == 0 || *partitions > PARTITIONS_MAX {
                    return Err(MetaError::InvalidPartitionCount(*partitions));
                }
                if *replication_factor == 0 || *replication_factor > REPLICATION_FACTOR_MAX {
                    return Err(MetaError::InvalidReplicationFactor { requested: *replication_factor });
                }
                let alive = u32::try_from(self.alive_brokers().count()).unwrap_or(u32::MAX);
                if *replication_factor > alive {
                    return Err(MetaError::NotEnoughBrokers { requested: *replication_factor, alive });
                }
            }
            MetaCommand::DeleteTopic { name } => {
                if !self.topics.contains_key(name) {
                    return Err(MetaError::UnknownTopic(name.clone()));
                }
            }
            MetaCommand::AllocateProducerIds { count } => {
                if *count == 0 || *count > PRODUCER_ID_BLOCK_MAX {
                    return Err(MetaError::InvalidProducerIdCount(*count));
                }
            }
            MetaCommand::BumpProducerEpoch { producer_id } => {
                let epoch =
                    self.producer_epoch(*producer_id).ok_or(MetaError::UnknownProducerId(*producer_id))?;
                if epoch.0 == u32::MAX {
                    return Err(MetaError::ProducerEpochsExhausted(*producer_id));
                }
                if epoch.0 == 0 && self.producer_epochs.len() >= BUMPED_PRODUCERS_MAX {
                    return Err(MetaError::TooManyBumpedProducers);
                }
            }
            MetaCommand::Noop => {}
        }
        Ok(())
    }

    fn alive_brokers(&self) -> impl Iterator<Item = &Broker> {
        self.brokers.values().filter(|b| b.state == BrokerState::Alive)
    }

    /// Applies one committed command. A refused command changes nothing.
    pub fn apply(&mut self, command: MetaCommand) -> MetaResponse {
        if let Err(e) = self.check(&command) {
            return MetaResponse::Refused(e);
        }
        match command {
            MetaCommand::RegisterBroker { id, addr } => {
                self.brokers.insert(id, Broker { id, addr, state: BrokerState::Alive });
                MetaResponse::Done
            }
            MetaCommand::SetBrokerState { id, state } => {
                if let Some(broker) = self.brokers.get_mut(&id) {
                    broker.state = state;
                }
                MetaResponse::Done
            }
            MetaCommand::CreateTopic { name, partitions, replication_factor, config } => {
                let topic = self.create_topic(name, partitions, replication_factor, config);
                MetaResponse::TopicCreated(topic)
            }
            MetaCommand::DeleteTopic { name } => {
                self.topics.remove(&name);
                MetaResponse::Done
            }
            MetaCommand::AllocateProducerIds { count } => {
                let first = ProducerId(self.next_producer_id);
                self.next_producer_id += count;
                MetaResponse::ProducerIds { first, count }
            }
            MetaCommand::BumpProducerEpoch { producer_id } => {
                let epoch = self.producer_epochs.entry(producer_id).or_insert(ProducerEpoch(0));
                epoch.0 += 1;
                MetaResponse::ProducerEpoch { producer_id, epoch: *epoch }
            }
            MetaCommand::Noop => MetaResponse::Done,
        }
    }

    fn create_topic(
        &mut self,
        name: String,
        partitions: u32,
        replication_factor: u32,
        config: TopicConfig,
    ) -> Topic {
        // Load of every live broker: replicas and preferred leaderships it already has.
        let mut load: BTreeMap<NodeId, (u32, u32)> = self.alive_brokers().map(|b| (b.id, (0, 0))).collect();
        for topic in self.topics.values() {
            for p in &topic.partitions {
                for (i, id) in p.replicas.iter().enumerate() {
                    if let Some(entry) = load.get_mut(id) {
                        entry.0 += 1;
                        if i == 0 {
                            entry.1 += 1;
                        }
                    }
                }
            }
        }
        let placed = place_replicas(&mut load, partitions, replication_factor as usize);
        let partitions = placed
            .into_iter()
            .zip(0u32..)
            .map(|(replicas, partition)| {
                let group = GroupId(self.next_group);
                self.next_group += 1;
                PartitionAssignment { partition, group, replicas }
            })
            .collect();
        let topic = Topic { name: name.clone(), replication_factor, config, partitions };
        self.topics.insert(name, topic.clone());
        topic
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("meta state is always serializable")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<MetaState, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_brokers(n: u64) -> MetaState {
        let mut s = MetaState::default();
        for id in 1..=n {
            assert_eq!(
                s.apply(MetaCommand::RegisterBroker { id: NodeId(id), addr: format!("127.0.0.1:{id}") }),
                MetaResponse::Done
            );
        }
        s
    }

    fn create(name: &str, partitions: u32, rf: u32) -> MetaCommand {
        MetaCommand::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            config: TopicConfig::default(),
        }
    }

    #[test]
    fn topic_creation_assigns_fresh_groups_and_balanced_replicas() {
        let mut s = with_brokers(3);
        let MetaResponse::TopicCreated(topic) = s.apply(create("orders", 6, 3)) else { panic!() };
        let groups: Vec<u64> = topic.partitions.iter().map(|p| p.group.0).collect();
        assert_eq!(groups, vec![1, 2, 3, 4, 5, 6]);
        for id in 1..=3 {
            assert_eq!(topic.partitions.iter().filter(|p| p.replicas[0] == NodeId(id)).count(), 2);
            assert_eq!(s.assignments_of(NodeId(id)).count(), 6);
        }
        let MetaResponse::TopicCreated(second) = s.apply(create("audit", 1, 1)) else { panic!() };
        assert_eq!(second.partitions[0].group, GroupId(7), "group ids are never reused");
    }

    #[test]
    fn bad_requests_are_refused_and_change_nothing() {
        let mut s = with_brokers(2);
        let before = s.clone();
        for (command, expected) in [
            (create("bad name", 1, 1), "invalid topic name"),
            (create("t", 0, 1), "partition count"),
            (create("t", PARTITIONS_MAX + 1, 1), "partition count"),
            (create("t", 1, 0), "replication factor"),
            (create("t", 1, 3), "exceeds the 2 live brokers"),
            (MetaCommand::DeleteTopic { name: "nope".into() }, "does not exist"),
            (MetaCommand::SetBrokerState { id: NodeId(9), state: BrokerState::Dead }, "not registered"),
            (MetaCommand::AllocateProducerIds { count: 0 }, "producer id allocation"),
            (MetaCommand::RegisterBroker { id: NodeId(3), addr: String::new() }, "address"),
        ] {
            match s.apply(command) {
                MetaResponse::Refused(e) => assert!(e.to_string().contains(expected), "{e}"),
                other => panic!("expected a refusal containing {expected:?}, got {other:?}"),
            }
        }
        assert_eq!(s, before);
        s.apply(create("t", 1, 1));
        assert_eq!(s.apply(create("t", 1, 1)), MetaResponse::Refused(MetaError::TopicExists("t".into())));
    }

    #[test]
    fn dead_brokers_get_no_new_replicas() {
        let mut s = with_brokers(3);
        s.apply(MetaCommand::SetBrokerState { id: NodeId(2), state: BrokerState::Dead });
        assert!(matches!(
            s.apply(create("t", 3, 3)),
            MetaResponse::Refused(MetaError::NotEnoughBrokers { .. })
        ));
        let MetaResponse::TopicCreated(topic) = s.apply(create("t", 4, 2)) else { panic!() };
        assert!(topic.partitions.iter().all(|p| !p.replicas.contains(&NodeId(2))));
        // A broker that re-registers is alive again.
        s.apply(MetaCommand::RegisterBroker { id: NodeId(2), addr: "127.0.0.1:2".into() });
        assert_eq!(s.broker(NodeId(2)).unwrap().state, BrokerState::Alive);
    }

    #[test]
    fn producer_ids_are_never_handed_out_twice() {
        let mut s = MetaState::default();
        assert_eq!(
            s.apply(MetaCommand::AllocateProducerIds { count: 10 }),
            MetaResponse::ProducerIds { first: ProducerId(1), count: 10 }
        );
        assert_eq!(
            s.apply(MetaCommand::AllocateProducerIds { count: 1 }),
            MetaResponse::ProducerIds { first: ProducerId(11), count: 1 }
        );
    }

    #[test]
    fn only_issued_producer_ids_have_epochs_and_a_bump_fences_the_older_one() {
        let mut s = MetaState::default();
        assert_eq!(s.producer_epoch(ProducerId(1)), None, "nothing issued yet");
        s.apply(MetaCommand::AllocateProducerIds { count: 2 });
        assert_eq!(s.producer_epoch(ProducerId(0)), None, "0 means no idempotence");
        assert_eq!(s.producer_epoch(ProducerId(2)), Some(ProducerEpoch(0)));
        assert_eq!(s.producer_epoch(ProducerId(3)), None, "never issued");
        for expected in 1..=2 {
            assert_eq!(
                s.apply(MetaCommand::BumpProducerEpoch { producer_id: ProducerId(2) }),
                MetaResponse::ProducerEpoch { producer_id: ProducerId(2), epoch: ProducerEpoch(expected) }
            );
        }
        assert_eq!(s.producer_epoch(ProducerId(2)), Some(ProducerEpoch(2)));
        assert_eq!(s.producer_epoch(ProducerId(1)), Some(ProducerEpoch(0)), "other ids keep theirs");
        let before = s.clone();
        assert_eq!(
            s.apply(MetaCommand::BumpProducerEpoch { producer_id: ProducerId(7) }),
            MetaResponse::Refused(MetaError::UnknownProducerId(ProducerId(7)))
        );
        assert_eq!(s, before, "a refused bump changes nothing");
        assert_eq!(MetaState::from_bytes(&s.to_bytes()).unwrap(), s, "epochs survive a snapshot");
    }

    #[test]
    fn a_state_written_before_producer_epochs_still_reads() {
        let mut s = with_brokers(1);
        s.apply(MetaCommand::AllocateProducerIds { count: 3 });
        let mut json: serde_json::Value = serde_json::from_slice(&s.to_bytes()).unwrap();
        json.as_object_mut().unwrap().remove("producer_epochs");
        let old = MetaState::from_bytes(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(old, s);
    }

    #[test]
    fn deleting_a_topic_removes_its_assignments() {
        let mut s = with_brokers(3);
        s.apply(create("t", 3, 3));
        assert_eq!(s.apply(MetaCommand::DeleteTopic { name: "t".into() }), MetaResponse::Done);
        assert!(s.topic("t").is_none());
        assert_eq!(s.assignments_of(NodeId(1)).count(), 0);
        assert_eq!(s.next_group(), GroupId(4));
    }

    #[test]
    fn noop_changes_nothing() {
        let mut s = with_brokers(3);
        s.apply(create("t", 3, 2));
        let before = s.clone();
        assert_eq!(s.apply(MetaCommand::Noop), MetaResponse::Done);
        assert_eq!(s, before);
    }

    #[test]
    fn state_round_trips_through_bytes() {
        let mut s = with_brokers(3);
        s.apply(create("t", 3, 2));
        assert_eq!(MetaState::from_bytes(&s.to_bytes()).unwrap(), s);
    }
}
