//! The Rust SDK for Sluice. [`Admin`] manages topics and reads cluster status, trying every
//! bootstrap address in turn until one answers. Producer and consumer come with the data path.

mod admin;

pub use admin::{Admin, ClientError};
pub use sluice_proto::v1 as proto;
