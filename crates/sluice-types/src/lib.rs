//! Sluice's vocabulary, shared by every other crate.
//!
//! Ids and positions are newtypes ([`GroupId`], [`NodeId`], [`Offset`], [`ProducerId`]), never bare
//! integers across a crate boundary. [`batch`] is the record batch codec: producers encode a batch
//! once, the broker validates it without re-encoding and stores and serves those same bytes.
//! [`limits`] names every size bound; [`sync`] has the poison-tolerant lock helpers. This crate does no IO and depends on nothing that does.

pub mod batch;
mod ids;
pub mod limits;
pub mod sync;

pub use batch::{BatchError, BatchHeader, Compression, Record, RecordBatch, RecordHeader, ValidatedBatch};
pub use ids::{GroupId, NodeId, Offset, ProducerEpoch, ProducerId, Sequence};
