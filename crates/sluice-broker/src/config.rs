//! The node's configuration: TOML, every key optional (`#[serde(default)]`), checked by
//! [`NodeConfig::validate`] before anything starts. `cluster-configs/` holds examples and
//! `NodeConfig::template()` prints every key with its default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_partition::{Sabotage, UnknownSabotage};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id, unique in the cluster, greater than 0.
    pub node_id: u64,
    /// Where the node's RocksDB lives.
    pub data_dir: PathBuf,
    /// The gRPC listen address, for clients and peers alike.
    pub grpc_addr: SocketAddr,
    /// The address other nodes and clients use to reach `grpc_addr`; defaults to it.
    pub advertised_addr: Option<String>,
    /// The HTTP listen address (`/health`).
    pub http_addr: SocketAddr,
    /// The nodes that replicate the registry (Raft group 0). The lowest id forms it on first start.
    pub controllers: Vec<ControllerConfig>,
    /// Node-to-node connections for the first address go to the second instead (a proxy or NAT
    /// between nodes); clients still use the advertised addresses. The fault tests route peer
    /// traffic through their proxies with this.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_dial_overrides: BTreeMap<String, String>,
    pub raft: RaftConfig,
    pub liveness: LivenessConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    pub id: u64,
    /// Its advertised gRPC address.
    pub addr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Leader heartbeats per group. Modest: a node hosts many groups on few cores.
    pub heartbeat_interval_ms: u64,
    /// A follower that hears nothing for a random time in [min, max] calls an election. openraft
    /// also gives every leader a lease of `max`: no follower votes for another candidate before
    /// it has heard nothing for `max`, so `max` is what a leader's death costs (the failover
    /// time) and `min` only spreads the retries after a split vote.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Applied entries between partition checkpoints (the granularity of retention).
    pub checkpoint_interval_entries: u64,
    /// A partition replica with no new entries for this long stops its Raft timers until
    /// activity resumes, so idle partitions cost nothing; 0 keeps every replica awake.
    pub hibernate_after_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LivenessConfig {
    /// How often a broker heartbeats to the registry leader.
    pub heartbeat_interval_ms: u64,
    /// A broker not heard from for this long is declared dead (a Raft write).
    pub session_timeout_ms: u64,
}

/// Admission bounds of the produce path: beyond them a produce is answered BUSY with a retry
/// delay instead of queueing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Batch bytes accepted but not yet committed, per partition.
    pub partition_inflight_bytes: u64,
    /// Batch bytes accepted but not yet committed, for the whole node.
    pub node_inflight_bytes: u64,
    /// The delay a BUSY answer asks the producer to wait.
    pub busy_retry_after_ms: u32,
    /// Produce is refused while the data directory's file system has less free space.
    pub disk_free_bytes_min: u64,
    /// What the node may use in all. `validate` refuses a config whose bounded consumers
    /// (in-flight bytes, RocksDB memtables and cache, a fixed allowance for the runtime and
    /// connections) do not fit in it.
    pub memory_budget_bytes: u64,
    /// Push subscriptions served at once; beyond it a new one is answered BUSY.
    pub subscriptions_max: u32,
    /// Ordered produce streams served at once; beyond it a new one is answered BUSY (and the
    /// SDK produces by single calls instead).
    pub produce_streams_max: u32,
}

/// The most push subscriptions (and, separately, produce streams) a node may be configured to
/// serve.
pub const SUBSCRIPTIONS_MAX: u32 = 1 << 16;
/// The allowance for everything not sized by the config: the runtime, connections, Raft state.
pub const MEMORY_OVERHEAD_BYTES: u64 = 128 << 20;
/// RocksDB keeps up to this many memtables per column family before stalling writes.
const MEMTABLES_PER_COLUMN_FAMILY: u64 = 2;
/// The column families of the node's RocksDB.
const COLUMN_FAMILIES: u64 = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub write_buffer_bytes: usize,
    pub block_cache_bytes: usize,
    /// Memtable flushes and compactions bypass the page cache (`O_DIRECT`) where the
    /// filesystem allows it; ignored where it does not.
    pub direct_io_flush: bool,
}

impl Default for NodeConfig {
    /// A single node serving alone, data in `./data`: usable at once.
    fn default() -> Self {
        NodeConfig {
            node_id: 1,
            data_dir: PathBuf::from("./data"),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
            advertised_addr: None,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            controllers: vec![ControllerConfig { id: 1, addr: "127.0.0.1:7000".into() }],
            peer_dial_overrides: BTreeMap::new(),
            raft: RaftConfig::default(),
            liveness: LivenessConfig::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            partition_inflight_bytes: 32 << 20,
            node_inflight_bytes: 256 << 20,
            busy_retry_after_ms: 20,
            disk_free_bytes_min: 256 << 20,
            memory_budget_bytes: 1 << 30,
            subscriptions_max: 1024,
            produce_streams_max: 4096,
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 500,
            checkpoint_interval_entries: sluice_raft::CHECKPOINT_INTERVAL_ENTRIES,
            hibernate_after_ms: 5000,
        }
    }
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig { heartbeat_interval_ms: 500, session_timeout_ms: 3000 }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { write_buffer_bytes: 32 << 20, block_cache_bytes: 128 << 20, direct_io_flush: true }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let config: NodeConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// The address this node is known by.
    pub fn advertised(&self) -> String {
        self.advertised_addr.clone().unwrap_or_else(|| self.grpc_addr.to_string())
    }

    pub fn is_controller(&self) -> bool {
        self.controllers.iter().any(|c| c.id == self.node_id)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: String| Err(ConfigError::Invalid(m));
        if self.node_id == 0 {
            return fail("node_id must be greater than 0".into());
        }
        if self.controllers.is_empty() {
            return fail("controllers must name at least one node".into());
        }
        let mut ids: Vec<u64> = self.controllers.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.controllers.len() {
            return fail("controller ids must be unique".into());
        }
        if ids.contains(&0) {
            return fail("controller ids must be greater than 0".into());
        }
        if let Some(me) = self.controllers.iter().find(|c| c.id == self.node_id)
            && me.addr != self.advertised()
        {
            return fail(format!(
                "controller {} is listed at {} but this node advertises {}",
                me.id,
                me.addr,
                self.advertised()
            ));
        }
        if self.grpc_addr == self.http_addr {
            return fail("grpc_addr and http_addr must differ".into());
        }
        let r = &self.raft;
        if r.heartbeat_interval_ms == 0 || r.heartbeat_interval_ms >= r.election_timeout_min_ms {
            return fail(
                "raft.heartbeat_interval_ms must be positive and below election_timeout_min_ms".into(),
            );
        }
        if r.election_timeout_min_ms >= r.election_timeout_max_ms {
            return fail("raft.election_timeout_min_ms must be below election_timeout_max_ms".into());
        }
        if r.hibernate_after_ms != 0 && r.hibernate_after_ms < 2 * r.election_timeout_max_ms {
            return fail(
                "raft.hibernate_after_ms must be 0 or at least twice election_timeout_max_ms".into(),
            );
        }
        if r.checkpoint_interval_entries == 0 {
            return fail("raft.checkpoint_interval_entries must be positive".into());
        }
        let l = &self.liveness;
        if l.heartbeat_interval_ms == 0 || l.session_timeout_ms < 2 * l.heartbeat_interval_ms {
            return fail("liveness.session_timeout_ms must be at least twice heartbeat_interval_ms".into());
        }
        let limits = &self.limits;
        let batch_max = sluice_types::limits::BATCH_BYTES_MAX as u64;
        if limits.partition_inflight_bytes < batch_max
            || limits.node_inflight_bytes < limits.partition_inflight_bytes
        {
            return fail(format!(
                "limits: partition_inflight_bytes must hold one largest batch ({batch_max}) and node_inflight_bytes at \
                 least one partition's"
            ));
        }
        if limits.busy_retry_after_ms == 0 {
            return fail("limits.busy_retry_after_ms must be positive".into());
        }
        if limits.subscriptions_max == 0 || limits.subscriptions_max > SUBSCRIPTIONS_MAX {
            return fail(format!("limits.subscriptions_max must be between 1 and {SUBSCRIPTIONS_MAX}"));
        }
        if limits.produce_streams_max == 0 || limits.produce_streams_max > SUBSCRIPTIONS_MAX {
            return fail(format!("limits.produce_streams_max must be between 1 and {SUBSCRIPTIONS_MAX}"));
        }
        let needed = self.memory_needed_bytes();
        if needed > limits.memory_budget_bytes {
            return fail(format!(
                "limits.memory_budget_bytes ({}) is below what the other settings use ({needed}: in-flight bytes, \
                 memtables, block cache and {MEMORY_OVERHEAD_BYTES} for the runtime)",
                limits.memory_budget_bytes
            ));
        }
        if self.storage.write_buffer_bytes < (1 << 20) || self.storage.block_cache_bytes < (1 << 20) {
            return fail("storage sizes must be at least 1 MiB".into());
        }
        Ok(())
    }

    /// The memory the bounded parts of the node may use at most.
    pub fn memory_needed_bytes(&self) -> u64 {
        self.limits.node_inflight_bytes
            + COLUMN_FAMILIES * MEMTABLES_PER_COLUMN_FAMILY * self.storage.write_buffer_bytes as u64
            + self.storage.block_cache_bytes as u64
            + MEMORY_OVERHEAD_BYTES
    }

    /// Every key with its default, commented: `sluiced --print-config`.
    pub fn template() -> String {
        let body = toml::to_string_pretty(&NodeConfig::default()).expect("the default config serializes");
        format!(
            "# Sluice node configuration. Every key is optional; shown are the defaults (a single\n\
             # node serving alone). See cluster-configs/ for a three-node cluster on one machine.\n\
             # advertised_addr = \"host:port\"  # how others reach grpc_addr; defaults to grpc_addr\n\
             # peer_dial_overrides = {{ \"host:port\" = \"proxy:port\" }}  # node-to-node dials via a proxy\n\n{body}"
        )
    }

    /// The settings of every Raft group of the node; `sabotage` as read at start-up.
    pub fn raft_settings(&self, sabotage: Sabotage) -> sluice_raft::RaftSettings {
        sluice_raft::RaftSettings {
            heartbeat_interval_ms: self.raft.heartbeat_interval_ms,
            election_timeout_min_ms: self.raft.election_timeout_min_ms,
            election_timeout_max_ms: self.raft.election_timeout_max_ms,
            checkpoint_interval_entries: self.raft.checkpoint_interval_entries,
            sabotage,
        }
    }
}

/// Why the sabotage switch was refused.
#[derive(Debug, thiserror::Error)]
pub enum SabotageError {
    #[error("SLUICE_SABOTAGE: {0}")]
    Unknown(#[from] UnknownSabotage),
    #[error("SLUICE_SABOTAGE={0:?} is set, but release builds cannot be broken on purpose; unset it")]
    ReleaseBuild(String),
    #[error("SLUICE_SABOTAGE is not valid UTF-8")]
    NotUnicode,
}

/// The fault tests' deliberate bugs (`SLUICE_SABOTAGE=skip-dedup[,...]`, docs/CHAOS.md), read
/// once at start-up by `sluiced`. Only debug builds may be broken; a release build refuses to
/// start with the variable set rather than ignore it.
pub fn sabotage_from_env() -> Result<Sabotage, SabotageError> {
    match std::env::var("SLUICE_SABOTAGE") {
        Err(std::env::VarError::NotPresent) => Ok(Sabotage::NONE),
        Err(std::env::VarError::NotUnicode(_)) => Err(SabotageError::NotUnicode),
        Ok(value) if value.trim().is_empty() => Ok(Sabotage::NONE),
        Ok(value) if !cfg!(debug_assertions) => Err(SabotageError::ReleaseBuild(value)),
        Ok(value) => Ok(Sabotage::parse(&value)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_template_parses_back() {
        NodeConfig::default().validate().unwrap();
        let parsed: NodeConfig = toml::from_str(&NodeConfig::template()).unwrap();
        assert_eq!(parsed, NodeConfig::default());
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(toml::from_str::<NodeConfig>("").unwrap(), NodeConfig::default());
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let cases: Vec<(&str, &str)> = vec![
            ("node_id = 0", "node_id"),
            ("controllers = []", "at least one"),
            ("[raft]\nheartbeat_interval_ms = 900", "heartbeat_interval_ms"),
            ("[raft]\nelection_timeout_min_ms = 2000", "election_timeout_min_ms"),
            ("[liveness]\nsession_timeout_ms = 600", "session_timeout_ms"),
            ("http_addr = \"127.0.0.1:7000\"", "must differ"),
            ("[limits]\nmemory_budget_bytes = 268435456", "memory_budget_bytes"),
            ("[limits]\nsubscriptions_max = 0", "subscriptions_max"),
            ("[limits]\nproduce_streams_max = 0", "produce_streams_max"),
            ("node_id = 1\ncontrollers = [{ id = 1, addr = \"127.0.0.1:9\" }]", "advertises"),
        ];
        for (text, expected) in cases {
            let config: NodeConfig = toml::from_str(text).unwrap();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        assert!(toml::from_str::<NodeConfig>("unknown_key = 1").is_err());
    }
}
