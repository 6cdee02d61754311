//! Three replicas of one partition in one process, over the in-memory transport: failover and
//! retention. Every replica has its own RocksDB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod failover;
mod harness;
mod retention;
mod slow_network;
mod transfer;
