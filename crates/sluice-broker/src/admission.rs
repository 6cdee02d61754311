//! The bounded funnel in front of every partition: bytes accepted but not committed are counted
//! per partition and per node; beyond either bound, and while the disk is nearly full, produce
//! answers BUSY with a retry delay instead of queueing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_types::GroupId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;
use sluice_types::sync::lock;

/// Admission counts memory in units of this many bytes.
const ADMISSION_UNIT_BYTES: u64 = 1024;
/// How long a measured free-space figure is trusted.
const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Why a produce was answered BUSY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusyReason {
    #[error("disk free space is below the floor")]
    DiskLow,
    #[error("partition in-flight bytes are at their limit")]
    PartitionFull,
    #[error("node memory budget is exhausted")]
    NodeFull,
    #[error("the node serves as many subscriptions as it may")]
    Subscriptions,
    #[error("the node serves as many produce streams as it may")]
    ProduceStreams,
}

/// A BUSY answer: try again after `retry_after_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("busy ({reason}); retry after {retry_after_ms} ms")]
pub struct Busy {
    pub reason: BusyReason,
    pub retry_after_ms: u32,
}

pub struct Admission {
    node: Arc<Semaphore>,
    partition_units: u32,
    partitions: std::sync::Mutex<HashMap<GroupId, Arc<Semaphore>>>,
    retry_after_ms: u32,
    data_dir: PathBuf,
    disk_free_min: u64,
    /// (when measured, free bytes)
    disk: std::sync::Mutex<(Option<Instant>, u64)>,
    busy_answers: AtomicU64,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").field("partition_units", &self.partition_units).finish_non_exhaustive()
    }
}

/// Held while a produce is in flight; releases its bytes when dropped.
#[derive(Debug)]
pub struct AdmissionPermit {
    _node: OwnedSemaphorePermit,
    _partition: OwnedSemaphorePermit,
}

fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(ADMISSION_UNIT_BYTES)).unwrap_or(u32::MAX)
}

impl Admission {
    /// Bounds from `limits`; the free space is that of the file system holding `data_dir`.
    pub fn new(limits: &LimitsConfig, data_dir: PathBuf) -> Self {
        Admission {
            node: Arc::new(Semaphore::new(units(limits.node_inflight_bytes) as usize)),
            partition_units: units(limits.partition_inflight_bytes),
            partitions: std::sync::Mutex::new(HashMap::new()),
            retry_after_ms: limits.busy_retry_after_ms,
            data_dir,
            disk_free_min: limits.disk_free_bytes_min,
            disk: std::sync::Mutex::new((None, u64::MAX)),
            busy_answers: AtomicU64::new(0),
        }
    }

    /// A BUSY answer for `reason`, counted.
    pub fn busy(&self, reason: BusyReason) -> Busy {
        self.busy_answers.fetch_add(1, Ordering::Relaxed);
        Busy { reason, retry_after_ms: self.retry_after_ms }
    }

    /// BUSY answers given since the node started.
    pub fn busy_answers(&self) -> u64 {
        self.busy_answers.load(Ordering::Relaxed)
    }

    /// Free bytes of the data directory's file system, measured at most once a second.
    pub fn disk_free(&self) -> u64 {
        let mut disk = lock(&self.disk);
        if disk.0.is_none_or(|at| at.elapsed() > DISK_CHECK_INTERVAL) {
            let free = rustix::fs::statvfs(&self.data_dir)
                .map_or(u64::MAX, |s| s.f_bavail.saturating_mul(s.f_frsize));
            *disk = (Some(Instant::now()), free);
        }
        disk.1
    }

    /// Whether the disk's free space is below the floor (produce answers BUSY).
    pub fn disk_low(&self) -> bool {
        self.disk_free() < self.disk_free_min
    }

    /// Admits `bytes` for `group`, or says why not.
    pub fn try_admit(&self, group: GroupId, bytes: usize) -> Result<AdmissionPermit, Busy> {
        if self.disk_low() {
            return Err(self.busy(BusyReason::DiskLow));
        }
        let needed = units(bytes as u64);
        let partition = lock(&self.partitions)
            .entry(group)
            .or_insert_with(|| Arc::new(Semaphore::new(self.partition_units as usize)))
            .clone();
        let partition =
            partition.try_acquire_many_owned(needed).map_err(|_| self.busy(BusyReason::PartitionFull))?;
        let node =
            self.node.clone().try_acquire_many_owned(needed).map_err(|_| self.busy(BusyReason::NodeFull))?;
        Ok(AdmissionPermit { _node: node, _partition: partition })
    }

    /// Forgets a deleted partition's counter.
    pub fn forget(&self, group: GroupId) {
        lock(&self.partitions).remove(&group);
    }
}
