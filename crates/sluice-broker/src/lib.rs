//! The Sluice node (`sluiced`): one RocksDB, the registry replica on controllers, a Raft group
//! per hosted partition replica, and the gRPC (clients and peers) and HTTP servers.
//!
//! [`start_node`] (in `start`) builds the shared [`Node`] (in `node`: state behind methods,
//! knowing none of its users) and spawns the long-lived `tasks`; `server` assembles the gRPC
//! `services`. Lower rooms: `registry` (proposing and forwarding), `routing` (partition
//! leaders), `admission` (back pressure), `api_error` (every wire error). Nothing here imports
//! upward: `start` → `server`/`tasks` → `services` → `routing` → `node` → `registry`/`admission`.
//! Main types: [`NodeConfig`], [`Node`], [`NodeHandle`].

mod admission;
pub mod api_error;
mod clients;
pub mod config;
mod exposition;
mod http;
mod metrics;
mod node;
mod peer_table;
mod registry;
mod routing;
mod server;
mod services;
mod start;
mod tasks;

pub use config::{NodeConfig, sabotage_from_env};
pub use node::Node;
pub use start::{NodeHandle, start_node};
