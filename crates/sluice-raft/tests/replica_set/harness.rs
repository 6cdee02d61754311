//! A replica set of one partition whose members can be killed and restarted.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::impls::BasicNode;
use sluice_raft::network::LocalNetwork;
use sluice_raft::{
    BatchLimits, PartitionGroup, PeerBatcher, RaftDispatcher, RaftSettings, StoredBatch, Transport,
};
use sluice_storage::{Storage, StorageOptions};
use sluice_types::{
    GroupId, Offset, ProducerEpoch, ProducerId, Record, RecordBatch, Sequence, ValidatedBatch,
};

pub const GROUP: GroupId = GroupId(1);

pub fn settings() -> RaftSettings {
    RaftSettings {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        checkpoint_interval_entries: 16,
        sabotage: sluice_partition::Sabotage::NONE,
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn must_eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Replica {
    storage: Storage,
    dispatcher: Arc<RaftDispatcher>,
    group: PartitionGroup,
}

pub struct ReplicaSet {
    network: Arc<LocalNetwork>,
    dirs: HashMap<u64, tempfile::TempDir>,
    replicas: HashMap<u64, Replica>,
    pub settings: RaftSettings,
}

impl ReplicaSet {
    pub async fn start(nodes: &[u64]) -> ReplicaSet {
        let mut set = ReplicaSet {
            network: LocalNetwork::new(),
            dirs: HashMap::new(),
            replicas: HashMap::new(),
            settings: settings(),
        };
        for &node in nodes {
            set.dirs.insert(node, tempfile::tempdir().unwrap());
            set.start_node(node).await;
        }
        let members: BTreeMap<u64, BasicNode> =
            nodes.iter().map(|&n| (n, BasicNode::new(format!("node-{n}")))).collect();
        set.group(nodes[0]).initialize(members).await.unwrap();
        set
    }

    pub async fn start_node(&mut self, node: u64) {
        let dir = self.dirs[&node].path().to_path_buf();
        let storage = Storage::open(&dir, &StorageOptions::default()).unwrap();
        let dispatcher = Arc::new(RaftDispatcher::default());
        // Through the per-peer batcher, as the broker sends.
        let local: Arc<dyn Transport> = self.network.add_node(node, dispatcher.clone());
        let transport = Arc::new(PeerBatcher::new(local, BatchLimits::default()));
        let group = PartitionGroup::open(node, GROUP, &storage, transport, &dispatcher, &self.settings)
            .await
            .unwrap();
        self.replicas.insert(node, Replica { storage, dispatcher, group });
    }

    /// Stops a node abruptly as far as its peers can tell: it vanishes from the network, then
    /// its Raft and storage are closed so that it can be reopened from disk.
    pub async fn kill(&mut self, node: u64) {
        self.network.remove_node(node);
        let replica = self.replicas.remove(&node).expect("node is running");
        replica.group.shutdown(&replica.dispatcher).await.unwrap();
        replica.storage.shutdown();
    }

    /// Delays every message between the replicas by `delay` each way.
    pub fn set_link_delay(&self, delay: Duration) {
        self.network.set_delay(delay);
    }

    pub fn group(&self, node: u64) -> &PartitionGroup {
        &self.replicas[&node].group
    }

    pub fn running(&self) -> Vec<u64> {
        let mut nodes: Vec<u64> = self.replicas.keys().copied().collect();
        nodes.sort_unstable();
        nodes
    }

    /// The node every running replica agrees is the leader, once there is one.
    pub async fn must_leader(&self, timeout: Duration) -> u64 {
        must_eventually("a leader", timeout, || async {
            let mut leader = None;
            for node in self.running() {
                let metrics = self.group(node).metrics().clone();
                if metrics.current_leader == Some(node) {
                    leader = Some(node);
                }
            }
            leader
        })
        .await
    }

    /// Waits until `node` has applied everything up to `high_watermark`.
    pub async fn must_catch_up(&self, node: u64, high_watermark: Offset, timeout: Duration) {
        let reader = self.group(node).reader().clone();
        must_eventually(&format!("node {node} to reach {high_watermark}"), timeout, || {
            let reader = reader.clone();
            async move { (reader.progress().high_watermark >= high_watermark).then_some(()) }
        })
        .await;
    }

    /// Every committed batch on `node` from `from` on, in order.
    pub fn must_read_all(&self, node: u64, from: Offset) -> Vec<StoredBatch> {
        let reader = self.group(node).reader();
        let end = reader.progress().high_watermark;
        let mut out: Vec<StoredBatch> = Vec::new();
        let mut next = from;
        while next < end {
            let batches = reader.read(next, 64 * 1024).unwrap();
            assert!(!batches.is_empty(), "node {node}: nothing at {next} below the high watermark {end}");
            for batch in batches {
                let count = ValidatedBatch::validate(batch.bytes.clone()).unwrap().header().record_count;
                next = batch.base_offset.plus(u64::from(count));
                out.push(batch);
            }
        }
        out
    }
}

/// The batch number `seq` of producer `pid`: `records` records with recognisable values.
pub fn must_batch(pid: u64, seq: u64, records: u32) -> ValidatedBatch {
    let batch = RecordBatch {
        producer_id: ProducerId(pid),
        producer_epoch: ProducerEpoch(1),
        base_sequence: Sequence(seq),
        records: (0..records)
            .map(|r| Record {
                key: Some(Bytes::from(format!("p{pid}"))),
                value: Bytes::from(format!("p{pid}-s{}", seq + u64::from(r))),
                ..Record::default()
            })
            .collect(),
        ..RecordBatch::default()
    };
    ValidatedBatch::validate(batch.encode().unwrap()).unwrap()
}
