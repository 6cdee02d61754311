//! Scenarios (CHAOS.md §4.3): a fresh three-node cluster, a load, a nemesis schedule, a final
//! drain and the checks. A run that was too light or whose faults never fired is INVALID.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use sluice_client::proto as pb;
use tokio::time::Instant;

mod damage;

use crate::checker::{self, Report};
use crate::cluster::{ChaosCluster, ClusterOptions, arm_crash_point, leader_of, status};
use crate::history::{Key, Offset, OpType, OpValue, Recorder};
use crate::net::{Topology, Unsupported};
use crate::replicas::{self, ReplicaCheck};
use crate::rng::Rng;
use crate::workload::{self, Shared, WorkloadConfig};

const TOPIC: &str = "chaos";
const KEYS: u32 = 3;
/// A restarted node is brought back after this long dead.
const DOWN_FOR: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// 1: kill -9 the leader of a key's partition, chasing the leader, restarting each.
    LeaderKill,
    /// 2: SIGSTOP the leader (a zombie holding its connections), then SIGCONT.
    LeaderPause,
    /// 3: the leader's responses to clients are lost, then it is killed: retries must dedup.
    ClientCutKill,
    /// 4: the leader is cut off from its peers while clients still reach it.
    LeaderIsolate,
    /// 6: a follower killed, then a follower paused: no unavailability.
    FollowerFaults,
    /// 10: all three nodes killed together, then restarted.
    KillAll,
    /// CHAOS.md §4.1: a leader stops dead at each crash point in turn (the `failpoints` build).
    CrashPoints,
    /// 16: every peer message of the leader delayed 75 ms, then of a follower (always runs on
    /// the loopback proxies: this kernel has no netem).
    SlowNetwork,
    /// 7: the registry leader cut off from its peers; partitions led elsewhere keep serving and
    /// a topic can be created on the majority side.
    RegistryIsolate,
    /// 8: one-way drops in a ring (1 hears nothing from 2, 2 nothing from 3, 3 nothing from 1):
    /// each node sees a majority, no two the same one.
    Ring,
    /// 10: every node in turn stopped with SIGTERM (draining) and restarted.
    RollingRestart,
    /// 13: a follower's disk fills up, then the leader's (each node on its own tmpfs; root only).
    DiskFull,
    /// 12: power cuts (each node's disk a `sluice-lazyfs` that loses what was not fsynced): the
    /// leader, then one node while another is paused, then all three at once (root only).
    PowerLoss,
    /// 14: bits flipped in the middle of a stopped node's WAL, in its MANIFEST, in an SST's
    /// footer; it must refuse to start, and comes back from an undamaged copy.
    Corruption,
    /// 15: every few seconds one node's wall clock jumps by ±1–300 s (libfaketime); its
    /// monotonic clock runs on.
    ClockJumps,
    /// 17: every 10 s a random few of {kill, pause, isolate, client cut, packet loss} on random
    /// nodes, about a quarter of the periods quiet.
    Mixed,
}

impl Kind {
    pub const ALL: [Kind; 16] = [
        Kind::LeaderKill,
        Kind::LeaderPause,
        Kind::ClientCutKill,
        Kind::LeaderIsolate,
        Kind::FollowerFaults,
        Kind::KillAll,
        Kind::CrashPoints,
        Kind::SlowNetwork,
        Kind::RegistryIsolate,
        Kind::Ring,
        Kind::RollingRestart,
        Kind::DiskFull,
        Kind::PowerLoss,
        Kind::Corruption,
        Kind::ClockJumps,
        Kind::Mixed,
    ];
    pub const QUICK: [Kind; 9] = [
        Kind::LeaderKill,
        Kind::LeaderPause,
        Kind::ClientCutKill,
        Kind::LeaderIsolate,
        Kind::FollowerFaults,
        Kind::CrashPoints,
        Kind::RegistryIsolate,
        Kind::Corruption,
        Kind::ClockJumps,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::LeaderKill => "leader-kill",
            Kind::LeaderPause => "leader-pause",
            Kind::ClientCutKill => "client-cut-kill",
            Kind::LeaderIsolate => "leader-isolate",
            Kind::FollowerFaults => "follower-faults",
            Kind::KillAll => "kill-all",
            Kind::CrashPoints => "crash-points",
            Kind::SlowNetwork => "slow-network",
            Kind::RegistryIsolate => "registry-isolate",
            Kind::Ring => "ring",
            Kind::RollingRestart => "rolling-restart",
            Kind::DiskFull => "disk-full",
            Kind::PowerLoss => "power-loss",
            Kind::Corruption => "corruption",
            Kind::ClockJumps => "clock-jumps",
            Kind::Mixed => "mixed",
        }
    }

    /// Why this scenario cannot run here, if it cannot.
    pub fn unavailable(self) -> Option<&'static str> {
        match self {
            Kind::DiskFull if !rustix::process::geteuid().is_root() => {
                Some("needs root to mount a size-capped tmpfs per node")
            }
            Kind::PowerLoss => sluice_lazyfs::mount::available().err().or_else(|| {
                let beside = std::env::current_exe().ok()?.with_file_name("sluice-lazyfs");
                (!beside.exists())
                    .then_some("needs sluice-lazyfs beside sluice-chaos (cargo build -p sluice-lazyfs)")
            }),
            Kind::ClockJumps if crate::cluster::libfaketime().is_none() => {
                Some("needs libfaketime (Debian's libfaketime package)")
            }
            _ => None,
        }
    }

    /// The acknowledged sends a valid run must reach: the profile's, except where the faults
    /// leave no quorum for much of the window by design (mixed: two faults at once, 3 of 4
    /// periods), which halves it.
    fn min_acked(self, profile: &Profile) -> usize {
        if self == Kind::Mixed { profile.min_acked / 2 } else { profile.min_acked }
    }

    /// Each node's disk size, for scenarios that fill disks.
    fn disk_bytes(self) -> Option<u64> {
        (self == Kind::DiskFull).then_some(256 << 20)
    }

    /// Each node's data directory on a lazy filesystem whose power can be cut.
    fn lazy_disks(self) -> bool {
        self == Kind::PowerLoss
    }

    /// How this scenario's cluster differs from the default one.
    fn cluster_options(self, options: &RunOptions) -> ClusterOptions {
        ClusterOptions {
            sabotage: options.sabotage.clone(),
            disk_bytes: self.disk_bytes(),
            lazyfs: self.lazy_disks().then(|| options.lazyfs.clone()),
            write_buffer_bytes: self.write_buffer_bytes(),
            faketime: (self == Kind::ClockJumps).then(crate::cluster::libfaketime).flatten(),
        }
    }

    /// The nodes' memtable size: small where a scenario needs SST files early.
    fn write_buffer_bytes(self) -> Option<u64> {
        (self == Kind::Corruption).then_some(1 << 20)
    }

    /// Needs the userspace proxies whatever the environment offers.
    fn needs_proxies(self) -> bool {
        self == Kind::SlowNetwork
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// How long each phase lasts and what a valid run must reach.
#[derive(Clone, Debug)]
pub struct Profile {
    pub name: &'static str,
    pub warmup: Duration,
    pub window: Duration,
    pub recovery: Duration,
    pub min_acked: usize,
    /// Seconds a leader stays paused or isolated.
    pub hold: Duration,
    /// Between two kills of the leader-kill scenario.
    pub kill_period: Duration,
    /// Concurrent client processes.
    pub workers: u64,
    /// The leader-kill scenario's limit from a kill -9 to the next acknowledged write: Sluice's
    /// failover target (1 s). The quick profile runs debug builds on a loaded CI machine and
    /// leaves half as much again; a build without the stand-in campaigns takes 1.5–2.9 s there.
    pub failover_limit_ms: u64,
}

impl Profile {
    pub fn quick() -> Profile {
        Profile {
            name: "quick",
            warmup: Duration::from_secs(10),
            window: Duration::from_secs(24),
            recovery: Duration::from_secs(8),
            min_acked: 2_000,
            hold: Duration::from_secs(10),
            kill_period: Duration::from_secs(8),
            workers: 6,
            failover_limit_ms: 1_500,
        }
    }

    pub fn full() -> Profile {
        Profile {
            name: "full",
            warmup: Duration::from_secs(10),
            window: Duration::from_secs(50),
            recovery: Duration::from_secs(15),
            min_acked: 20_000,
            hold: Duration::from_secs(15),
            kill_period: Duration::from_secs(10),
            workers: 10,
            failover_limit_ms: 1_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Installed,
    Skipped,
    Indeterminate,
}

#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub fault: String,
    pub node: Option<u64>,
    /// The key whose partition's leader was targeted, if any.
    pub key: Option<Key>,
    pub at_ms: u64,
    pub healed_ms: Option<u64>,
    pub outcome: Outcome,
    pub detail: String,
    /// From the fault to the next ok send on `key`.
    pub recovery_ms: Option<u64>,
    /// The longest any send to `key` begun while the fault was on waited for its answer.
    pub gap_ms: Option<u64>,
    /// Pass/fail limits (CHAOS.md §4.3's figures) on the two above.
    pub recovery_limit_ms: Option<u64>,
    pub gap_limit_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub profile: String,
    pub seed: u64,
    pub network: String,
    pub ops: usize,
    pub acked: usize,
    pub warmup_acked_per_s: f64,
    pub anomalies: usize,
    /// The largest time any key went without an ok send, during the faults and recovery.
    pub max_write_gap_ms: u64,
    pub faults: Vec<FaultRecord>,
    pub final_writes_failed: Vec<Key>,
    pub drain_short: Vec<Key>,
    pub replicas: ReplicaCheck,
    pub invalid: Vec<String>,
    pub failures: Vec<String>,
    pub report: Report,
    pub dir: PathBuf,
}

impl ScenarioResult {
    pub fn verdict(&self) -> &'static str {
        if !self.failures.is_empty() {
            "FAIL"
        } else if !self.invalid.is_empty() {
            "INVALID"
        } else {
            "PASS"
        }
    }
}

#[derive(Debug)]
pub struct RunOptions {
    pub sluiced: PathBuf,
    pub out: PathBuf,
    pub netns: bool,
    /// Run a deliberately broken build (`SLUICE_SABOTAGE`, debug builds only).
    pub sabotage: Option<String>,
    /// The `sluice-lazyfs` binary, for the power-loss scenario.
    pub lazyfs: PathBuf,
}

/// Waits, polling, until `check` yields a value or `timeout` passes.
async fn poll_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Nemesis<'a> {
    cluster: &'a mut ChaosCluster,
    groups: &'a [u64],
    recorder: &'a Recorder,
    faults: Vec<FaultRecord>,
    /// What the nemesis itself saw go wrong (beyond the history's anomalies).
    problems: Vec<String>,
    /// Anomalies the nemesis observed directly (not from the history), added to the report.
    anomalies: Vec<(&'static str, String)>,
    rng: Rng,
}

impl Nemesis<'_> {
    fn now_ms(&self) -> u64 {
        self.recorder.now_ns() / 1_000_000
    }

    async fn leader(&self, key: Key) -> Option<u64> {
        let group = self.groups[key as usize];
        let addrs = self.cluster.addrs();
        poll_until(Duration::from_secs(10), || async { leader_of(&status(&addrs).await?, group) }).await
    }

    async fn follower(&self, key: Key) -> Option<u64> {
        let leader = self.leader(key).await?;
        let ids: Vec<u64> = self.cluster.ids().into_iter().filter(|id| *id != leader).collect();
        let pick = usize::try_from(self.rng.clone().below(ids.len() as u64)).unwrap_or(0);
        ids.get(pick).copied()
    }

    /// Records the outcome of installing a fault; returns its index.
    fn record(
        &mut self,
        fault: &str,
        node: Option<u64>,
        key: Option<Key>,
        result: anyhow::Result<()>,
    ) -> usize {
        let (outcome, detail) = match result {
            Ok(()) => (Outcome::Installed, String::new()),
            Err(e) if e.downcast_ref::<Unsupported>().is_some() => (Outcome::Skipped, e.to_string()),
            Err(e) => (Outcome::Indeterminate, format!("{e:#}")),
        };
        println!(
            "  nemesis {:>6} ms: {fault} node {node:?} key {key:?}: {outcome:?} {detail}",
            self.now_ms()
        );
        self.faults.push(FaultRecord {
            fault: fault.to_string(),
            node,
            key,
            at_ms: self.now_ms(),
            healed_ms: None,
            outcome,
            detail,
            recovery_ms: None,
            gap_ms: None,
            recovery_limit_ms: None,
            gap_limit_ms: None,
        });
        self.faults.len() - 1
    }

    /// Sets the pass/fail limits of the fault just recorded.
    fn limits(&mut self, i: usize, recovery_ms: Option<u64>, gap_ms: Option<u64>) {
        self.faults[i].recovery_limit_ms = recovery_ms;
        self.faults[i].gap_limit_ms = gap_ms;
    }

    fn healed(&mut self, i: usize) {
        self.faults[i].healed_ms = Some(self.now_ms());
    }

    async fn wait(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    async fn kill_leader(&mut self, key: Key, fault: &str, recovery_limit_ms: u64) -> anyhow::Result<()> {
        let Some(leader) = self.leader(key).await else {
            self.record(fault, None, Some(key), Err(anyhow::anyhow!("no leader to kill")));
            return Ok(());
        };
        let result = self.cluster.kill(leader);
        let i = self.record(fault, Some(leader), Some(key), result);
        // Scenario 1: a new leader takes writes within 5 s of the kill (CHAOS.md's limit; the
        // leader-kill scenario holds Sluice to its own, tighter one).
        self.limits(i, Some(recovery_limit_ms), None);
        self.wait(DOWN_FOR).await;
        self.cluster.start_node(leader)?;
        self.healed(i);
        Ok(())
    }

    /// Waits up to 5 s for node `id` to stop by itself at crash point `point`.
    async fn crashed_at(&mut self, id: u64, point: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.cluster.is_running(id) {
            if Instant::now() > deadline {
                bail!("node {id} did not reach crash point {point} within 5 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = std::fs::read_to_string(self.cluster.log_path(id)).unwrap_or_default();
        if !log.contains(&format!("crash point {point}: aborting")) {
            bail!("node {id} exited, but not at crash point {point}");
        }
        Ok(())
    }

    /// Whether arming `point` on node `id` took: the node stopping at the point proves it, even
    /// when the arming request got no answer because the node crashed before replying (a busy
    /// leader reaches `log_after_fsync_before_ack` within microseconds).
    async fn armed_and_crashed(
        &mut self,
        id: u64,
        point: &str,
        armed: anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let crashed = self.crashed_at(id, point).await;
        match (armed, crashed) {
            (_, Ok(())) => Ok(()),
            (Err(e), Err(_)) | (Ok(()), Err(e)) => Err(e),
        }
    }

    /// Arms `point` on the leader of `key`'s partition, which then stops dead there; restarts it.
    async fn crash_leader_at(&mut self, point: &str, key: Key) -> anyhow::Result<()> {
        let fault = format!("crash-at-{point}");
        let Some(leader) = self.leader(key).await else {
            self.record(&fault, None, Some(key), Err(anyhow::anyhow!("no leader")));
            return Ok(());
        };
        let armed = arm_crash_point(&self.cluster.topology.http_addr(leader), point, "return").await;
        let result = self.armed_and_crashed(leader, point, armed).await;
        let i = self.record(&fault, Some(leader), Some(key), result);
        self.limits(i, Some(5_000), None);
        self.wait(DOWN_FOR).await;
        self.cluster.start_node(leader)?;
        self.healed(i);
        Ok(())
    }

    /// The registry leader stops dead while applying a topic creation; after its restart the
    /// creation must complete (retried by the admin client) and the topic serve.
    async fn crash_registry_at(&mut self, point: &str) -> anyhow::Result<()> {
        let fault = format!("crash-at-{point}");
        let addrs = self.cluster.addrs();
        let Some(meta_leader) =
            poll_until(Duration::from_secs(10), || async { status(&addrs).await?.meta_leader }).await
        else {
            self.record(&fault, None, None, Err(anyhow::anyhow!("no registry leader")));
            return Ok(());
        };
        let admin = self.cluster.admin()?;
        let result = match arm_crash_point(&self.cluster.topology.http_addr(meta_leader), point, "return")
            .await
        {
            Ok(()) => {
                let create = tokio::spawn({
                    let admin = admin.clone();
                    async move { admin.create_topic("chaos-registry", 1, 3, pb::TopicConfig::default()).await }
                });
                let crashed = self.crashed_at(meta_leader, point).await;
                create.abort();
                crashed
            }
            Err(e) => Err(e),
        };
        let i = self.record(&fault, Some(meta_leader), None, result);
        self.wait(DOWN_FOR).await;
        self.cluster.start_node(meta_leader)?;
        self.healed(i);
        let served = poll_until(Duration::from_secs(20), || async {
            match admin.create_topic("chaos-registry", 1, 3, pb::TopicConfig::default()).await {
                Ok(_) => {}
                Err(sluice_client::ClientError::Refused { code, .. }) if code == "TOPIC_EXISTS" => {}
                Err(_) => return None,
            }
            let topic = admin.describe_topic("chaos-registry").await.ok()?;
            let group = topic.partitions.first()?.group_id;
            leader_of(&status(&addrs).await?, group).map(|_| ())
        })
        .await;
        if served.is_none() {
            self.problems.push(format!(
                "after a crash at {point}, the topic it was creating did not serve within 20 s of the restart"
            ));
        }
        Ok(())
    }

    /// Cuts the registry leader off from its peers; meanwhile a partition led by another node must
    /// keep serving, and a topic creation (asked of the other nodes) must complete.
    async fn isolate_registry_leader(&mut self, profile: &Profile) -> anyhow::Result<()> {
        let addrs = self.cluster.addrs();
        let Some(meta_leader) =
            poll_until(Duration::from_secs(10), || async { status(&addrs).await?.meta_leader }).await
        else {
            bail!("no registry leader");
        };
        let mut key = None;
        for k in 0..KEYS {
            if self.leader(k).await.is_some_and(|l| l != meta_leader) {
                key = Some(k);
                break;
            }
        }
        let peers: Vec<u64> = self.cluster.ids().into_iter().filter(|id| *id != meta_leader).collect();
        let result = self.cluster.topology.isolate(meta_leader, &peers);
        let i = self.record("isolate-registry-leader", Some(meta_leader), key, result);
        // Partitions led on the majority side do not notice (scenario 7: keep serving).
        self.limits(i, None, Some(2_000));
        let majority: Vec<String> = peers.iter().map(|id| self.cluster.topology.grpc_addr(*id)).collect();
        let admin = sluice_client::Admin::new(&majority)?;
        let started = Instant::now();
        let created = poll_until(profile.hold, || async {
            match admin.create_topic("chaos-during-isolation", 1, 2, pb::TopicConfig::default()).await {
                Ok(_) => Some(()),
                Err(sluice_client::ClientError::Refused { code, .. }) if code == "TOPIC_EXISTS" => Some(()),
                Err(_) => None,
            }
        })
        .await;
        let took = started.elapsed();
        match created {
            Some(()) => {
                println!("  topic created on the majority side {} ms into the isolation", took.as_millis());
            }
            None => self.problems.push(format!(
                "no topic could be created on the majority side within {} s of isolating the registry leader",
                profile.hold.as_secs()
            )),
        }
        // Scenario 7: registry changes stall at most 5 s, then succeed.
        if created.is_some() && took > Duration::from_secs(5) {
            self.problems.push(format!("topic creation stalled {} ms (limit 5 s)", took.as_millis()));
        }
        tokio::time::sleep_until(started + profile.hold).await;
        self.cluster.topology.heal()?;
        self.healed(i);
        Ok(())
    }

    /// One-way drops in a ring for `hold`; afterwards every key must take writes within 10 s.
    async fn ring(&mut self, profile: &Profile) -> anyhow::Result<()> {
        let ids = self.cluster.ids();
        let mut result = Ok(());
        for (i, id) in ids.iter().enumerate() {
            let from = ids[(i + 1) % ids.len()];
            if let Err(e) = self.cluster.topology.drop_inbound(*id, from) {
                result = Err(e);
            }
        }
        let i = self.record("ring-one-way-drops", None, None, result);
        self.wait(profile.hold).await;
        self.cluster.topology.heal()?;
        self.healed(i);
        // Full service within 10 s of the heal, on every key.
        for key in 0..KEYS {
            let j = self.record("ring-healed", None, Some(key), Ok(()));
            self.limits(j, Some(10_000), None);
        }
        Ok(())
    }

    /// SIGTERM (a draining stop) and restart of every node in turn.
    async fn rolling_restart(&mut self) -> anyhow::Result<()> {
        for id in self.cluster.ids() {
            let led: Vec<Key> = {
                let addrs = self.cluster.addrs();
                let s = status(&addrs).await;
                (0..KEYS)
                    .filter(|k| s.as_ref().and_then(|s| leader_of(s, self.groups[*k as usize])) == Some(id))
                    .collect()
            };
            let result = self.cluster.stop(id, Duration::from_secs(15)).await;
            let i = self.record("sigterm-restart", Some(id), led.first().copied(), result);
            self.limits(i, Some(5_000), None);
            self.cluster.start_node(id)?;
            self.healed(i);
            self.wait(Duration::from_secs(5)).await;
        }
        Ok(())
    }

    /// Fills node `id`'s disk for `hold`, frees it and restarts the node (scenario 13: it must
    /// rejoin; the final replica check proves it caught up).
    async fn fill_disk(
        &mut self,
        fault: &str,
        id: u64,
        leave: u64,
        hold: Duration,
        recovery_ms: Option<u64>,
        gap_ms: Option<u64>,
    ) -> anyhow::Result<()> {
        let result = self
            .cluster
            .fill_disk(id, leave)
            .map(|bytes| println!("  filled node {id}'s disk with {bytes} bytes, leaving {leave}"));
        let i = self.record(fault, Some(id), Some(0), result);
        self.limits(i, recovery_ms, gap_ms);
        self.wait(hold).await;
        self.cluster.free_disk(id)?;
        if self.cluster.is_running(id) {
            self.cluster.kill(id)?;
        } else {
            println!("  node {id} had exited by itself: {}", last_line(&self.cluster.log_path(id)));
        }
        self.cluster.start_node(id)?;
        self.healed(i);
        Ok(())
    }

    /// Scenario 13: a follower's disk full, a leader's below its floor, a leader's full.
    async fn disk_full(&mut self, profile: &Profile) -> anyhow::Result<()> {
        // A follower's disk full to the last byte: key 0's leader does not need it
        // (scenario 13: the cluster stays available; the node stops at its first failed
        // write).
        let Some(follower) = self.follower(0).await else { bail!("no follower") };
        self.fill_disk("fill-follower-disk", follower, 0, profile.hold, None, Some(2_000)).await?;
        self.wait(Duration::from_secs(5)).await;
        // The leader's disk below its floor (64 MiB in NODE_CONFIG): it must refuse
        // writes, never acknowledge falsely, and hand its leadership to a node with
        // space.
        let Some(leader) = self.leader(0).await else { bail!("no leader") };
        let leave = 16 << 20;
        self.fill_disk("leader-disk-below-floor", leader, leave, profile.hold, Some(5_000), Some(4_000))
            .await?;
        self.wait(Duration::from_secs(5)).await;
        // And a leader's disk full to the last byte.
        let Some(leader) = self.leader(0).await else { bail!("no leader") };
        self.fill_disk("fill-leader-disk", leader, 0, profile.hold, Some(5_000), None).await?;
        Ok(())
    }

    /// Scenario 17: random faults in 10 s periods, each healed before the next.
    async fn mixed(&mut self, window_end: Instant) -> anyhow::Result<()> {
        const PERIOD: Duration = Duration::from_secs(10);
        const HOLD: Duration = Duration::from_secs(6);
        let mut faults = vec!["kill", "pause", "isolate", "cut-clients"];
        if self.cluster.topology.mode == crate::net::Mode::Netns {
            faults.push("lossy-peers");
        }
        while Instant::now() + PERIOD <= window_end {
            let next = Instant::now() + PERIOD;
            if self.rng.below(4) == 0 {
                println!("  nemesis {:>6} ms: quiet period", self.now_ms());
            } else {
                let mut installed = Vec::new();
                // One or two faults, on different nodes.
                let first = 1 + self.rng.below(3);
                let targets = if self.rng.below(2) == 0 { vec![first] } else { vec![first, 1 + first % 3] };
                for id in targets {
                    let fault = faults[usize::try_from(self.rng.below(faults.len() as u64)).unwrap_or(0)];
                    let result = match fault {
                        "kill" => self.cluster.kill(id),
                        "pause" => self.cluster.pause(id),
                        "isolate" => {
                            let peers: Vec<u64> =
                                self.cluster.ids().into_iter().filter(|p| *p != id).collect();
                            self.cluster.topology.isolate(id, &peers)
                        }
                        "cut-clients" => self.cluster.topology.cut_client_responses(id),
                        _ => self.cluster.topology.lossy_peers(id, 50),
                    };
                    installed.push(self.record(&format!("mixed-{fault}"), Some(id), None, result));
                }
                self.wait(HOLD).await;
                self.cluster.topology.heal()?;
                self.cluster.restore_all()?;
                for i in installed {
                    self.healed(i);
                }
            }
            tokio::time::sleep_until(next.min(window_end)).await;
        }
        Ok(())
    }

    async fn run(&mut self, kind: Kind, profile: &Profile, window_end: Instant) -> anyhow::Result<()> {
        match kind {
            Kind::LeaderKill => {
                let mut key = 0;
                while Instant::now() + DOWN_FOR < window_end {
                    let next = Instant::now() + profile.kill_period;
                    self.kill_leader(key % KEYS, "kill-leader", profile.failover_limit_ms).await?;
                    key += 1;
                    tokio::time::sleep_until(next.min(window_end)).await;
                }
            }
            Kind::LeaderPause => {
                let Some(leader) = self.leader(0).await else { bail!("no leader to pause") };
                let result = self.cluster.pause(leader);
                let i = self.record("pause-leader", Some(leader), Some(0), result);
                // Scenario 2: a new leader within 5 s.
                self.limits(i, Some(5_000), None);
                self.wait(profile.hold).await;
                self.cluster.resume(leader)?;
                self.healed(i);
            }
            Kind::ClientCutKill => {
                while Instant::now() + Duration::from_secs(10) < window_end {
                    let next = Instant::now() + profile.kill_period.max(Duration::from_secs(10));
                    let Some(leader) = self.leader(0).await else { bail!("no leader to cut") };
                    let result = self.cluster.topology.cut_client_responses(leader);
                    let i = self.record("cut-client-responses", Some(leader), Some(0), result);
                    self.wait(Duration::from_secs(5)).await;
                    let result = self.cluster.kill(leader);
                    self.cluster.topology.heal()?;
                    self.healed(i);
                    let j = self.record("kill-cut-leader", Some(leader), Some(0), result);
                    self.limits(j, Some(5_000), None);
                    self.wait(DOWN_FOR).await;
                    self.cluster.start_node(leader)?;
                    self.healed(j);
                    tokio::time::sleep_until(next.min(window_end)).await;
                }
            }
            Kind::LeaderIsolate => {
                let Some(leader) = self.leader(0).await else { bail!("no leader to isolate") };
                let peers: Vec<u64> = self.cluster.ids().into_iter().filter(|id| *id != leader).collect();
                let result = self.cluster.topology.isolate(leader, &peers);
                let i = self.record("isolate-leader", Some(leader), Some(0), result);
                // Scenario 4: clients fail over within 10 s.
                self.limits(i, Some(10_000), None);
                self.wait(profile.hold).await;
                self.cluster.topology.heal()?;
                self.healed(i);
            }
            Kind::FollowerFaults => {
                let Some(follower) = self.follower(0).await else { bail!("no follower") };
                let result = self.cluster.kill(follower);
                // Key 0's leader is not the target: its writes must not stall (scenario 6: ≤ 2 s).
                let i = self.record("kill-follower", Some(follower), Some(0), result);
                self.limits(i, None, Some(2_000));
                self.wait(profile.hold / 2).await;
                self.cluster.start_node(follower)?;
                self.healed(i);
                self.wait(Duration::from_secs(2)).await;
                let Some(follower) = self.follower(0).await else { bail!("no follower") };
                let result = self.cluster.pause(follower);
                let i = self.record("pause-follower", Some(follower), Some(0), result);
                self.limits(i, None, Some(2_000));
                self.wait(profile.hold).await;
                self.cluster.resume(follower)?;
                self.healed(i);
            }
            Kind::CrashPoints => {
                let points =
                    ["log_before_fsync", "log_after_fsync_before_ack", "sm_apply_before_commit_offset"];
                for (key, point) in (0..KEYS).zip(points) {
                    self.crash_leader_at(point, key).await?;
                }
                self.crash_registry_at("meta_before_assign").await?;
            }
            Kind::RegistryIsolate => self.isolate_registry_leader(profile).await?,
            Kind::Ring => self.ring(profile).await?,
            Kind::RollingRestart => self.rolling_restart().await?,
            Kind::DiskFull => self.disk_full(profile).await?,
            Kind::PowerLoss => self.power_loss(profile).await?,
            Kind::Corruption => self.corruption().await?,
            Kind::ClockJumps => self.clock_jumps(window_end).await?,
            Kind::Mixed => self.mixed(window_end).await?,
            Kind::SlowNetwork => {
                // The leader's links at least 75 ms each way (such a link once stalled the key
                // for the whole fault: the RPC-timeout fix), up to twice that; the follower's
                // anywhere from 25 ms. The seed picks both.
                let delay = Duration::from_millis(self.rng.between(75, 150));
                let Some(leader) = self.leader(0).await else { bail!("no leader to slow down") };
                let result = self.cluster.topology.delay_peers(leader, delay);
                let name = format!("delay-leader-peers-{}ms", delay.as_millis());
                let i = self.record(&name, Some(leader), Some(0), result);
                // Safety is what CHAOS.md asks here; the limit guards the RPC-timeout fix.
                self.limits(i, None, Some(3_000));
                self.wait(profile.hold).await;
                self.cluster.topology.heal()?;
                self.healed(i);
                let Some(follower) = self.follower(0).await else { bail!("no follower") };
                let delay = Duration::from_millis(self.rng.between(25, 150));
                let result = self.cluster.topology.delay_peers(follower, delay);
                let name = format!("delay-follower-peers-{}ms", delay.as_millis());
                let i = self.record(&name, Some(follower), Some(0), result);
                self.limits(i, None, Some(3_000));
                self.wait(profile.hold).await;
                self.cluster.topology.heal()?;
                self.healed(i);
            }
            Kind::KillAll => {
                let mut result = Ok(());
                for id in self.cluster.ids() {
                    if let Err(e) = self.cluster.kill(id) {
                        result = Err(e);
                    }
                }
                let i = self.record("kill-all", None, Some(0), result);
                // Scenario 10: serving again within 20 s.
                self.limits(i, Some(20_000), None);
                self.wait(DOWN_FOR).await;
                self.cluster.restore_all()?;
                self.healed(i);
            }
        }
        Ok(())
    }
}

/// The highest offset any ok operation observed, per key.
fn targets(history: &[crate::history::Op]) -> BTreeMap<Key, Offset> {
    let mut out: BTreeMap<Key, Offset> = BTreeMap::new();
    let mut see = |k: Key, o: Offset| {
        let e = out.entry(k).or_insert(o);
        *e = (*e).max(o);
    };
    for op in history.iter().filter(|op| op.kind == OpType::Ok) {
        match &op.value {
            OpValue::Send(sends) => {
                for s in sends {
                    if let Some(o) = s.offset {
                        see(s.key, o);
                    }
                }
            }
            OpValue::Poll(reads) => {
                for (k, pairs) in reads {
                    for (o, _) in pairs {
                        see(*k, *o);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

async fn wait_ready(cluster: &ChaosCluster) -> anyhow::Result<Vec<u64>> {
    let addrs = cluster.addrs();
    poll_until(Duration::from_mins(1), || async {
        let s = status(&addrs).await?;
        let alive = s.brokers.iter().filter(|b| b.state == "alive").count();
        (s.meta_leader.is_some() && alive == 3).then_some(())
    })
    .await
    .context("the cluster did not become ready in 60 s")?;
    let admin = cluster.admin()?;
    let topic = admin.create_topic(TOPIC, KEYS, 3, pb::TopicConfig::default()).await?;
    let groups: Vec<u64> = topic.partitions.iter().map(|p| p.group_id).collect();
    poll_until(Duration::from_secs(30), || async {
        let s = status(&addrs).await?;
        groups.iter().all(|g| leader_of(&s, *g).is_some()).then_some(())
    })
    .await
    .context("the partitions did not elect leaders in 30 s")?;
    Ok(groups)
}

/// Why a run is INVALID (too light, faults never installed) and why it FAILED.
fn judge(
    report: &Report,
    min_acked: usize,
    warmup_acked_per_s: f64,
    faults: &[FaultRecord],
    final_writes_failed: &[Key],
    drain_short: &[Key],
    replicas: &ReplicaCheck,
) -> (Vec<String>, Vec<String>) {
    let mut invalid = Vec::new();
    if warmup_acked_per_s < 50.0 {
        invalid.push(format!("{warmup_acked_per_s:.0} ok sends/s before the first fault (minimum 50)"));
    }
    if report.sends_ok < min_acked {
        invalid.push(format!("{} acked sends (minimum {min_acked})", report.sends_ok));
    }
    let mut by_fault: BTreeMap<&str, bool> = BTreeMap::new();
    for f in faults {
        *by_fault.entry(f.fault.as_str()).or_default() |= f.outcome == Outcome::Installed;
    }
    for (fault, installed) in &by_fault {
        if !installed {
            invalid.push(format!("fault {fault} was never installed"));
        }
    }
    if faults.is_empty() {
        invalid.push("no fault was scheduled".into());
    }
    let mut failures = Vec::new();
    for f in faults {
        if let (Some(got), Some(limit)) = (f.recovery_ms, f.recovery_limit_ms)
            && got > limit
        {
            failures.push(format!(
                "{} at {} ms: writes resumed after {got} ms (limit {limit})",
                f.fault, f.at_ms
            ));
        }
        if f.outcome == Outcome::Installed && f.recovery_limit_ms.is_some() && f.recovery_ms.is_none() {
            failures.push(format!("{} at {} ms: writes never resumed", f.fault, f.at_ms));
        }
        if let (Some(got), Some(limit)) = (f.gap_ms, f.gap_limit_ms)
            && got > limit
        {
            failures.push(format!("{} at {} ms: a send waited {got} ms (limit {limit})", f.fault, f.at_ms));
        }
    }
    for (name, anomaly) in &report.anomalies {
        failures.push(format!(
            "{name}: {} (e.g. {})",
            anomaly.count,
            anomaly.examples.first().map_or("", |s| s)
        ));
    }
    if !final_writes_failed.is_empty() {
        failures.push(format!("final writes failed on keys {final_writes_failed:?}"));
    }
    if !drain_short.is_empty() {
        failures.push(format!("the final drain could not read keys {drain_short:?} up to their last offset"));
    }
    failures.extend(replicas.problems.iter().cloned());

    (invalid, failures)
}

/// How the load ended: the final writes, every producer's retries, and the drain.
struct Ending {
    final_writes_failed: Vec<Key>,
    drain_short: Vec<Key>,
    /// Why the drain cannot be trusted to have seen everything, if it cannot.
    problems: Vec<String>,
}

/// After the faults: one acknowledged write per key; then every producer, crashed clients'
/// included, finishes its retries (each gives up after its 30 s delivery timeout), so nothing
/// can land after the drain; then the servers' high watermarks are recorded and every key is
/// read back to them, so that a late write or a hole below them is seen by the checker.
async fn finish_load(shared: &Shared, recorder: &Recorder) -> anyhow::Result<Ending> {
    let final_writes_failed =
        workload::final_writes(shared, Instant::now() + Duration::from_secs(30)).await?;
    let mut problems = Vec::new();
    if !workload::settle(shared, Instant::now() + Duration::from_secs(45)).await {
        problems
            .push("producers were still retrying 45 s after the load: the drain may miss late writes".into());
    }
    // A cluster that took none of the final writes is not serving: its offsets and the drain
    // get a short wait (they are still asked, so the checker sees what is left).
    let patience = if final_writes_failed.len() == KEYS as usize { 5 } else { 1 };
    let bounds = workload::final_offsets(shared, Instant::now() + Duration::from_secs(30) / patience).await?;
    let unbounded: Vec<Key> = (0..KEYS).filter(|k| !bounds.contains_key(k)).collect();
    if !unbounded.is_empty() {
        problems.push(format!("no high watermark for keys {unbounded:?}: their holes were not checked"));
    }
    let mut drain_targets = targets(&recorder.snapshot());
    for (key, (_, high_watermark)) in &bounds {
        if let Some(last) = high_watermark.checked_sub(1) {
            let target = drain_targets.entry(*key).or_insert(last);
            *target = (*target).max(last);
        }
    }
    let drain_short =
        workload::drain(shared, &drain_targets, Instant::now() + Duration::from_mins(1) / patience).await?;
    Ok(Ending { final_writes_failed, drain_short, problems })
}

/// Runs one scenario on a fresh cluster.
pub async fn run(
    kind: Kind,
    profile: &Profile,
    seed: u64,
    options: &RunOptions,
) -> anyhow::Result<ScenarioResult> {
    let dir = options.out.join(format!("{}-{seed}", kind.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let topology = Topology::create(3, options.netns && !kind.needs_proxies()).await?;
    let network = format!("{:?}", topology.mode).to_lowercase();
    if let Some(why) = kind.unavailable() {
        bail!("{} cannot run here: it {why}", kind.name());
    }
    let mut cluster =
        ChaosCluster::start(topology, 3, &dir, &options.sluiced, kind.cluster_options(options))?;
    let groups = wait_ready(&cluster).await?;

    let recorder = Arc::new(Recorder::new(std::time::Instant::now()));
    let config = WorkloadConfig {
        topic: TOPIC.into(),
        keys: KEYS,
        workers: profile.workers,
        op_timeout: Duration::from_secs(5),
        crash_every: Duration::from_secs(20),
    };
    let shared = Shared::new(recorder.clone(), cluster.addrs(), config);
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let window_start = start + profile.warmup;
    let window_end = window_start + profile.window;
    let load_end = window_end + profile.recovery;
    let workers: Vec<_> = (0..profile.workers)
        .map(|_| tokio::spawn(workload::run_worker(shared.clone(), rng.fork(), load_end)))
        .collect();

    tokio::time::sleep_until(window_start).await;
    let mut nemesis = Nemesis {
        cluster: &mut cluster,
        groups: &groups,
        recorder: &recorder,
        faults: Vec::new(),
        problems: Vec::new(),
        anomalies: Vec::new(),
        rng,
    };
    let nemesis_result = nemesis.run(kind, profile, window_end).await;
    let mut faults = std::mem::take(&mut nemesis.faults);
    let nemesis_problems = std::mem::take(&mut nemesis.problems);
    let nemesis_anomalies = std::mem::take(&mut nemesis.anomalies);
    // Heal everything, whatever happened.
    cluster.topology.heal()?;
    cluster.restore_all()?;
    nemesis_result?;
    for w in workers {
        w.await??;
    }

    let ending = finish_load(&shared, &recorder).await?;
    let (final_writes_failed, drain_short) = (ending.final_writes_failed, ending.drain_short);
    let history = recorder.snapshot();
    let replicas =
        replicas::compare(&cluster.addrs(), TOPIC, KEYS, &targets(&history), Duration::from_secs(15)).await;
    let mut report = checker::check(&history);
    let audit = kind.lazy_disks().then_some((&cluster, recorder.as_ref()));
    damage::add_findings(audit, &history, nemesis_anomalies, &mut report);
    crate::history::write_jsonl(&dir.join("history.jsonl"), &history)?;

    // Figures.
    let window_start_ns = u64::try_from((window_start - start).as_nanos()).unwrap_or(0);
    let load_end_ns = u64::try_from((load_end - start).as_nanos()).unwrap_or(0);
    let times = checker::ok_send_times(&history);
    let max_write_gap_ms =
        times.values().map(|t| checker::max_gap_in(t, window_start_ns, load_end_ns)).max().unwrap_or(0)
            / 1_000_000;
    for f in &mut faults {
        if let (Some(key), Outcome::Installed) = (f.key, f.outcome) {
            let at_ns = f.at_ms * 1_000_000;
            f.recovery_ms =
                checker::first_ack_invoked_after(&history, key, at_ns).map(|t| t / 1_000_000 - f.at_ms);
            let healed_ns = f.healed_ms.map_or(load_end_ns, |h| h * 1_000_000);
            f.gap_ms = Some(checker::max_send_wait(&history, key, at_ns, healed_ns) / 1_000_000);
        }
    }
    let warmup_acked = times.values().flatten().filter(|t| **t <= window_start_ns).count();
    let warmup_acked_per_s =
        f64::from(u32::try_from(warmup_acked).unwrap_or(u32::MAX)) / profile.warmup.as_secs_f64();

    let (invalid, mut failures) = judge(
        &report,
        kind.min_acked(profile),
        warmup_acked_per_s,
        &faults,
        &final_writes_failed,
        &drain_short,
        &replicas,
    );
    failures.extend(nemesis_problems);
    failures.extend(ending.problems);

    let result = ScenarioResult {
        scenario: kind.name().into(),
        profile: profile.name.into(),
        seed,
        network,
        ops: report.ops,
        acked: report.sends_ok,
        warmup_acked_per_s,
        anomalies: report.errors(),
        max_write_gap_ms,
        faults,
        final_writes_failed,
        drain_short,
        replicas,
        invalid,
        failures,
        report,
        dir: dir.clone(),
    };
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&result)?)?;
    drop(cluster);
    if result.verdict() == "PASS" {
        // Keep the history, the report and the logs; the data directories are large.
        for id in 1..=3 {
            let _ = std::fs::remove_dir_all(dir.join(format!("node{id}")));
        }
    }
    Ok(result)
}

/// The last line of a node's log (why it stopped, when it stopped by itself).
fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default().lines().last().unwrap_or_default().to_string()
}

pub fn out_dir_default() -> PathBuf {
    Path::new("target").join("chaos")
}
