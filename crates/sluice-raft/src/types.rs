//! Type configurations: what a Raft entry carries for each kind of group.

use std::fmt;

use bytes::Bytes;
use openraft::impls::BasicNode;
use openraft::impls::leader_id_adv::LeaderId;
use serde::{Deserialize, Serialize};
use sluice_partition::BatchOutcome;

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

/// A partition's Raft entry: one or more record batches, each exactly as its producer encoded it
/// and the leader validated it. The leader may coalesce concurrent batches into one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRequest {
    pub batches: Vec<Bytes>,
}

impl fmt::Display for PartitionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "append {} batches", self.batches.len())
    }
}

/// What applying a [`PartitionRequest`] did to each of its batches, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionResponse {
    pub outcomes: Vec<BatchOutcome>,
}

impl fmt::Display for PartitionResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} outcomes", self.outcomes.len())
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
