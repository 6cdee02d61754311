//! Jepsen-style fault tests for Sluice (the specification is `../shared/CHAOS.md`, summarized in
//! `docs/CHAOS.md`): real `sluiced` processes in their own network namespaces, a nemesis that
//! kills, pauses and partitions them, clients that record every operation, and a checker that
//! looks for the anomalies Jepsen's Kafka workload defines.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod net;
pub mod proxy;
pub mod replicas;
pub mod rng;
pub mod scenario;
pub mod workload;
