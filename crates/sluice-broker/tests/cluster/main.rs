//! Three real `sluiced` processes on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod back_pressure;
mod bad_input;
mod data_path;
mod harness;
mod hibernation;
mod lookup;
mod metrics;
mod produce_stream;
mod producers;
mod push;
mod registry;
