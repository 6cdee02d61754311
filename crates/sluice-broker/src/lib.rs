//! The Sluice node (`sluiced`): one RocksDB, the registry replica on controllers, a Raft group
//! per hosted partition replica, and the gRPC (clients and peers) and HTTP servers.
//!
//! [`start_node`] wires storage, transport and Raft and spawns the node's tasks: the gRPC and
//! HTTP servers, registry bootstrap and liveness (controllers), heartbeats, and the reconciler
//! that keeps the hosted partitions equal to the registry's assignment. Main types:
//! [`NodeConfig`], [`Node`], [`NodeHandle`].

mod admin;
pub mod api_error;
mod clients;
pub mod config;
mod data;
mod heartbeat;
mod http;
mod liveness;
mod node;
mod peers;
mod reconciler;
mod registry_lease;
mod server;

pub use config::NodeConfig;
pub use node::{Node, NodeHandle, start_node};
