//! `/metrics`: the node's counters and its Raft groups' state in the `OpenMetrics` text format,
//! which Prometheus scrapes, made with `prometheus-client`. The counters live as long as the node
//! (`metrics`); the group gauges and the storage totals are read at each scrape.
//! docs/OPERATIONS.md lists every metric.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::node::Node;
use crate::services::group_status::local_group_status;

/// The content type of the text `render` returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: u64,
    /// Empty for the registry (group 0).
    topic: String,
    partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    group: u64,
    topic: String,
    partition: u32,
    replica: u64,
}

fn gauge(value: u64) -> ConstGauge {
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Everything the node exposes, as the text of one scrape.
pub fn render(node: &Node) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("sluice");
    node.metrics().register(&mut registry);
    let admission = node.admission();
    registry.register(
        "busy_answers",
        "BUSY answers (back pressure) given",
        ConstCounter::new(admission.busy_answers()),
    );
    registry.register(
        "disk_free_bytes",
        "Free space of the data directory's file system",
        gauge(admission.disk_free()),
    );
    let storage = node.storage().stats();
    registry.register(
        "storage_write_requests",
        "Log writes submitted by the groups",
        ConstCounter::new(storage.requests),
    );
    registry.register(
        "storage_write_batches",
        "RocksDB write batches the writes were merged into (group commit)",
        ConstCounter::new(storage.write_batches),
    );
    registry.register(
        "storage_fsyncs",
        "WAL fsyncs that made writes durable",
        ConstCounter::new(storage.fsyncs),
    );
    registry.register("storage_bytes", "Bytes written to the log", ConstCounter::new(storage.bytes));
    registry.register("uptime_seconds", "Seconds since the node started", gauge(node.uptime().as_secs()));
    register_groups(&mut registry, node);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// The Raft state of every group hosted on this node, one series per group.
fn register_groups(registry: &mut Registry, node: &Node) {
    let term = Family::<GroupLabels, Gauge>::default();
    let commit = Family::<GroupLabels, Gauge>::default();
    let last_log = Family::<GroupLabels, Gauge>::default();
    let leader = Family::<GroupLabels, Gauge>::default();
    let hibernating = Family::<GroupLabels, Gauge>::default();
    let high_watermark = Family::<GroupLabels, Gauge>::default();
    let lag = Family::<ReplicaLabels, Gauge>::default();
    let set = |family: &Family<GroupLabels, Gauge>, labels: &GroupLabels, value: u64| {
        family.get_or_create(labels).set(i64::try_from(value).unwrap_or(i64::MAX));
    };
    for g in local_group_status(node) {
        let labels = GroupLabels { group: g.group_id, topic: g.topic.clone(), partition: g.partition };
        set(&term, &labels, g.term);
        set(&commit, &labels, g.commit_index);
        set(&last_log, &labels, g.last_log_index);
        set(&leader, &labels, u64::from(g.leader == Some(node.id())));
        set(&hibernating, &labels, u64::from(g.hibernating));
        if g.group_id != 0 {
            set(&high_watermark, &labels, g.high_watermark);
        }
        for r in &g.replicas {
            let replica = ReplicaLabels {
                group: g.group_id,
                topic: g.topic.clone(),
                partition: g.partition,
                replica: r.node_id,
            };
            lag.get_or_create(&replica).set(i64::try_from(r.lag).unwrap_or(i64::MAX));
        }
    }
    registry.register("raft_term", "The group's Raft term on this replica (each election raises it)", term);
    registry.register("raft_commit_index", "The group's committed log index on this replica", commit);
    registry.register("raft_last_log_index", "The group's last log index on this replica", last_log);
    registry.register("raft_leader", "1 if this replica leads its group", leader);
    registry.register(
        "raft_hibernating",
        "1 if the replica stopped its Raft timers (idle group)",
        hibernating,
    );
    registry.register(
        "partition_high_watermark",
        "The partition's next offset to be committed",
        high_watermark,
    );
    registry.register(
        "raft_replica_lag_entries",
        "Entries a replica is behind its leader's log (reported by the leader)",
        lag,
    );
}
