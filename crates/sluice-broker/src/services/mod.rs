//! The gRPC services, one handler family per file. Each holds the shared [`crate::node::Node`]
//! and maps its failures through [`crate::api_error`].

pub mod admin;
pub mod batches;
pub mod fetch;
pub mod group_status;
pub mod metadata;
pub mod node_control;
pub mod produce;
pub mod produce_stream;
pub mod proposal;
pub mod raft;
pub mod streams;
pub mod subscribe;
