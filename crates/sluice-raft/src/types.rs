//! Type configurations: what a Raft entry carries for each kind of group.

use std::fmt;

use bytes::Bytes;
use openraft::impls::BasicNode;
use openraft::impls::leader_id_adv::LeaderId;
use serde::{Deserialize, Serialize};
use sluice_partition::{BatchOutcome, SequenceRule};

use crate::codec::AppDataCodec;

/// The type configurations Sluice's log store and codec serve: u64 terms and node ids, the
/// "advanced" leader id (term + node id, one leader per term), nodes known by address.
pub trait GroupConfig:
    openraft::RaftTypeConfig<
        D: AppDataCodec,
        NodeId = u64,
        Term = u64,
        Node = BasicNode,
        LeaderId = LeaderId<u64, u64>,
        Vote = openraft::impls::Vote<LeaderId<u64, u64>>,
        Payload = openraft::EntryPayload<<Self as openraft::RaftTypeConfig>::D, u64, BasicNode>,
        Entry = openraft::Entry<
            LeaderId<u64, u64>,
            openraft::EntryPayload<<Self as openraft::RaftTypeConfig>::D, u64, BasicNode>,
        >,
    >
{
}

impl<T> GroupConfig for T where
    T: openraft::RaftTypeConfig<
            D: AppDataCodec,
            NodeId = u64,
            Term = u64,
            Node = BasicNode,
            LeaderId = LeaderId<u64, u64>,
            Vote = openraft::impls::Vote<LeaderId<u64, u64>>,
            Payload = openraft::EntryPayload<<T as openraft::RaftTypeConfig>::D, u64, BasicNode>,
            Entry = openraft::Entry<
                LeaderId<u64, u64>,
                openraft::EntryPayload<<T as openraft::RaftTypeConfig>::D, u64, BasicNode>,
            >,
        >
{
}

/// What a partition's Raft entry asks the partition to do. Each command has its own kind byte in
/// the entry encoding ([`crate::codec`]), so that new commands (offset commits, lease grants,
/// acknowledgements) replicate next to record batches without touching the ones stored before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionCommand {
    /// Appends record batches, each exactly as its producer encoded it and the leader validated
    /// it. The leader may coalesce concurrent batches into one entry. `rule` is the sequence
    /// rule the entry was written under: new entries always use [`SequenceRule::FromZero`].
    Append { batches: Vec<Bytes>, rule: SequenceRule },
}

/// A partition's Raft entry: a command, and the stored entry it was decoded from, if it was.
///
/// The leader encodes an entry once, when it appends it to its log; every replication stream
/// then reads it back from the log and sends the stored bytes as they are, and a follower stores
/// the bytes it received. So an entry is encoded once in the whole cluster, not once per
/// follower plus once per replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartitionRequest {
    pub command: PartitionCommand,
    /// The whole encoded entry (header included) this request was decoded from.
    #[serde(skip)]
    pub(crate) stored: Option<Bytes>,
}

impl PartitionRequest {
    pub fn new(command: PartitionCommand) -> Self {
        PartitionRequest { command, stored: None }
    }

    /// An append of `batches`.
    pub fn append(batches: Vec<Bytes>) -> Self {
        PartitionRequest::new(PartitionCommand::Append { batches, rule: SequenceRule::FromZero })
    }
}

/// Two requests are equal when their commands are: where the bytes came from does not matter.
impl PartialEq for PartitionRequest {
    fn eq(&self, other: &Self) -> bool {
        self.command == other.command
    }
}

impl Eq for PartitionRequest {}

impl fmt::Display for PartitionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.command {
            PartitionCommand::Append { batches, .. } => write!(f, "append {} batches", batches.len()),
        }
    }
}

/// What applying a [`PartitionRequest`] did, one variant per command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionResponse {
    /// What each batch of an append became, in order.
    Appended { outcomes: Vec<BatchOutcome> },
    /// A blank or membership entry: nothing to answer.
    Nothing,
}

impl fmt::Display for PartitionResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionResponse::Appended { outcomes } => write!(f, "{} outcomes", outcomes.len()),
            PartitionResponse::Nothing => f.write_str("nothing"),
        }
    }
}

openraft::declare_raft_types!(
    /// A partition replica set.
    pub PartitionRaft:
        D = PartitionRequest,
        R = PartitionResponse,
        Node = BasicNode,
);

/// A registry change, as a Raft entry of group 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRequest(pub sluice_meta::MetaCommand);

impl fmt::Display for MetaRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

openraft::declare_raft_types!(
    /// The metadata registry (group 0).
    pub MetaRaft:
        D = MetaRequest,
        R = sluice_meta::MetaResponse,
        Node = BasicNode,
);
