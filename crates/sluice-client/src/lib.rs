//! The Rust SDK for Sluice.
//!
//! [`Cluster`] keeps connections to the brokers and a metadata cache (partition leaders),
//! refreshed when a broker answers `NOT_LEADER`. [`Producer`] batches records per partition
//! (linger, size), encodes each batch once, is idempotent by default (a producer id from the
//! registry, per-partition sequences, retries that cannot duplicate) and honours `BUSY` answers'
//! retry delay. [`Consumer`] pulls with long polling. [`Admin`] manages topics.

mod admin;
mod cluster;
mod consumer;
mod error;
mod partition_worker;
mod producer;

pub use admin::Admin;
pub use cluster::Cluster;
pub use consumer::{
    ConsumedRecord, Consumer, ConsumerConfig, ProducerStamp, StartAt, Subscription, decode_batches,
};
pub use error::ClientError;
pub use producer::{Delivery, DeliveryFuture, Producer, ProducerConfig, partition_for_key};
pub use sluice_proto::v1 as proto;
pub use sluice_types::Compression;
