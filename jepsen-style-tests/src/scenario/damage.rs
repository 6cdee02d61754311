//! Faults that damage a node's disk: power cuts (scenario 12) and corrupted files (14).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::{DOWN_FOR, Nemesis, Profile};
use crate::checker::{self, Report};
use crate::cluster::ChaosCluster;
use crate::history::{Key, Op, Recorder};

/// How long a damaged node is given to refuse to start.
const REFUSAL_WAIT: Duration = Duration::from_secs(10);

/// How long to wait for a node to write its first SST file.
const SST_WAIT: Duration = Duration::from_secs(30);

/// The line of a node's log that says why it stopped: the deepest cause of its last error
/// (`sluiced` prints anyhow's chain, innermost last), or its last line.
fn error_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let Some(start) = text.rfind("Error: ") else { return super::last_line(log) };
    let chain = text[start..].lines().take_while(|l| !l.starts_with("Stack backtrace"));
    let cause = chain.map(str::trim).filter(|l| !l.is_empty() && *l != "Caused by:").last();
    cause.unwrap_or_default().chars().take(300).collect()
}

/// Which of a stopped node's files a corruption fault damages.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// One byte a third of the way into the largest WAL file: damage before the tail, which
    /// decision 0014 says must stop the node (a torn tail is the power-loss scenario's).
    WalMiddle,
    /// One byte in the middle of the MANIFEST named by CURRENT (the list of live files).
    Manifest,
    /// One byte of the footer of the newest SST file (its magic number and block handles).
    SstFooter,
}

impl Damage {
    const ALL: [Damage; 3] = [Damage::WalMiddle, Damage::Manifest, Damage::SstFooter];

    fn name(self) -> &'static str {
        match self {
            Damage::WalMiddle => "corrupt-wal-middle",
            Damage::Manifest => "corrupt-manifest",
            Damage::SstFooter => "corrupt-sst-footer",
        }
    }

    /// The file to damage in `dir` and the offset of the byte to flip.
    fn target(self, dir: &Path) -> anyhow::Result<(PathBuf, u64)> {
        let with_ext = |ext: &str| -> anyhow::Result<Vec<(PathBuf, u64)>> {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == ext) {
                    let len = std::fs::metadata(&path)?.len();
                    files.push((path, len));
                }
            }
            files.sort();
            Ok(files)
        };
        match self {
            Damage::WalMiddle => {
                let (path, len) =
                    with_ext("log")?.into_iter().max_by_key(|(_, len)| *len).context("no WAL file")?;
                Ok((path, len / 3))
            }
            Damage::Manifest => {
                let name = std::fs::read_to_string(dir.join("CURRENT"))?;
                let path = dir.join(name.trim());
                let len = std::fs::metadata(&path)?.len();
                Ok((path, len / 2))
            }
            Damage::SstFooter => {
                // A settled SST (see `settled_sst`), not one a flush is still writing: that one
                // is not in the MANIFEST yet and is deleted at the next open, damage and all.
                let path = settled_sst(dir).context("no SST file older than a second")?;
                let len = std::fs::metadata(&path)?.len();
                Ok((path, len.saturating_sub(4)))
            }
        }
    }

    /// Flips every bit of one byte; says which.
    fn apply(self, dir: &Path) -> anyhow::Result<String> {
        let (path, at) = self.target(dir)?;
        let mut bytes = std::fs::read(&path)?;
        let len = bytes.len();
        let byte = bytes
            .get_mut(usize::try_from(at)?)
            .with_context(|| format!("{} has only {len} bytes", path.display()))?;
        *byte ^= 0xff;
        std::fs::write(&path, &bytes)?;
        Ok(format!("byte {at} of {} ({len} bytes)", path.file_name().unwrap_or_default().to_string_lossy()))
    }
}

/// The oldest SST file in `dir` last written over a second ago: its flush is over and the
/// MANIFEST names it.
fn settled_sst(dir: &Path) -> Option<PathBuf> {
    let settled = std::time::SystemTime::now().checked_sub(Duration::from_secs(1))?;
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sst"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(modified, _)| *modified < settled)
        .min()
        .map(|(_, path)| path)
}

/// Adds to the checker's report what the history alone does not show: the fsync audit of a
/// cluster on lazy filesystems (`audit`), and the anomalies the nemesis saw itself.
pub(super) fn add_findings(
    audit: Option<(&ChaosCluster, &Recorder)>,
    history: &[Op],
    nemesis_anomalies: Vec<(&'static str, String)>,
    report: &mut Report,
) {
    if let Some((cluster, recorder)) = audit {
        fsync_audit(cluster, recorder, history, report);
    }
    for (anomaly, example) in nemesis_anomalies {
        report.flag(anomaly, || example);
    }
}

/// Scenario 12's fsync audit: the nodes' lazy filesystems logged their fsyncs; every
/// acknowledged send must have seen WAL fsyncs complete on two nodes while it was in flight.
fn fsync_audit(cluster: &ChaosCluster, recorder: &Recorder, history: &[Op], report: &mut Report) {
    let syncs: Vec<Vec<u64>> = cluster
        .ids()
        .into_iter()
        .map(|id| {
            let log = std::fs::read_to_string(cluster.sync_log(id)).unwrap_or_default();
            checker::wal_sync_times(&log, recorder.start_mono_ns())
        })
        .collect();
    checker::fsync_audit(history, &syncs, report);
}

/// Copies the files of `from` (and its directories) into a new `to`.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

impl Nemesis<'_> {
    /// Scenario 12: what was acknowledged survives power cuts, which lose every write a node
    /// had not fsynced (kill -9 keeps them in the page cache).
    pub(super) async fn power_loss(&mut self, profile: &Profile) -> anyhow::Result<()> {
        // The leader of key 0: its unsynced tail goes, and a new leader takes over.
        let Some(leader) = self.leader(0).await else { bail!("no leader to cut") };
        let result = self.cluster.power_cut(leader);
        let i = self.record("power-cut-leader", Some(leader), Some(0), result);
        self.limits(i, Some(5_000), None);
        self.wait(DOWN_FOR).await;
        self.cluster.start_node(leader)?;
        self.healed(i);
        self.wait(profile.hold / 3).await;

        // One node paused and another cut: no quorum until both are back, and the cut node
        // restarts while the paused one still holds what it had not fsynced.
        let Some(leader) = self.leader(1).await else { bail!("no leader to pause") };
        let Some(other) = self.cluster.ids().into_iter().find(|id| *id != leader) else { bail!("one node") };
        let paused = self.cluster.pause(leader);
        let i = self.record("pause-leader", Some(leader), Some(1), paused);
        let cut = self.cluster.power_cut(other);
        let j = self.record("power-cut-other", Some(other), Some(1), cut);
        self.wait(DOWN_FOR).await;
        self.cluster.start_node(other)?;
        self.healed(j);
        self.wait(DOWN_FOR).await;
        self.cluster.resume(leader)?;
        self.healed(i);
        self.limits(j, Some(20_000), None);
        self.wait(profile.hold / 3).await;

        // All three at once: only what a majority fsynced can still be there.
        let mut result = Ok(());
        for id in self.cluster.ids() {
            if let Err(e) = self.cluster.power_cut(id) {
                result = Err(e);
            }
        }
        let i = self.record("power-cut-all", None, Some(0), result);
        self.limits(i, Some(20_000), None);
        self.wait(DOWN_FOR).await;
        self.cluster.restore_all()?;
        self.healed(i);
        Ok(())
    }

    /// Scenario 14: a stopped node's files damaged. It must notice and refuse to start (it
    /// never serves from a damaged disk, and never votes from a vote it lost); then it comes
    /// back from an undamaged copy, as an operator would restore it, and leaders are killed
    /// while the load goes on.
    pub(super) async fn corruption(&mut self) -> anyhow::Result<()> {
        for (key, damage) in (0..).zip(Damage::ALL) {
            let Some(target) = self.follower(key).await else { bail!("no follower") };
            self.corrupt(target, key, damage).await?;
            self.kill_leader(key, "kill-leader", 5_000).await?;
        }
        Ok(())
    }

    async fn corrupt(&mut self, id: u64, key: Key, damage: Damage) -> anyhow::Result<()> {
        if matches!(damage, Damage::SstFooter) {
            // A memtable reaches an SST file some seconds into the load (1 MiB memtables).
            let data = self.cluster.data_dir(id);
            super::poll_until(SST_WAIT, || async { settled_sst(&data) }).await;
        }
        self.cluster.kill(id)?;
        let data = self.cluster.data_dir(id);
        let pristine = data.with_file_name("pristine");
        let _ = std::fs::remove_dir_all(&pristine);
        copy_dir(&data, &pristine)?;
        let applied = damage.apply(&data);
        let detail = applied.as_ref().map_or_else(|e| format!("{e:#}"), Clone::clone);
        let i = self.record(damage.name(), Some(id), Some(key), applied.map(|_| ()));
        println!("  damaged node {id}: {detail}");
        if self.faults[i].outcome != super::Outcome::Installed {
            std::fs::remove_dir_all(&pristine)?;
            return self.cluster.start_node(id);
        }
        self.cluster.start_node(id)?;
        let deadline = tokio::time::Instant::now() + REFUSAL_WAIT;
        let refused = loop {
            if let Some(status) = self.cluster.exited(id) {
                let why = error_line(&self.cluster.log_path(id));
                break Some(format!("refused to start ({status}): {why}"));
            }
            if tokio::time::Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let Some(verdict) = refused else {
            // It serves from the damaged disk: the checks at the end say whether it served
            // bad data. Its copy from before the damage is stale now (it has voted and stored
            // since) and must not be put back.
            self.anomalies.push((
                checker::UNDETECTED_DAMAGE,
                format!(
                    "node {id} started on a damaged disk ({}: {detail}) and was still running {REFUSAL_WAIT:?} later",
                    damage.name()
                ),
            ));
            self.faults[i].detail = format!("{detail}; started");
            std::fs::remove_dir_all(&pristine)?;
            return Ok(());
        };
        println!("  node {id}: {verdict}");
        self.faults[i].detail = format!("{detail}; {verdict}");
        // Back from the copy taken before the damage: the node never ran on the damaged
        // disk, so the copy holds its vote and log as they were.
        std::fs::remove_dir_all(&data)?;
        std::fs::rename(&pristine, &data)?;
        self.cluster.start_node(id)?;
        self.healed(i);
        self.wait(DOWN_FOR).await;
        Ok(())
    }

    /// Scenario 15: wall-clock jumps of ±1–300 s, one node at a time, every 4 s. Raft's
    /// timers, leases and the registry's liveness run on the monotonic clock, so writes must
    /// not stall and nothing may be lost; every clock is set right before the end.
    pub(super) async fn clock_jumps(&mut self, window_end: tokio::time::Instant) -> anyhow::Result<()> {
        const PERIOD: Duration = Duration::from_secs(4);
        while tokio::time::Instant::now() + PERIOD < window_end {
            let ids = self.cluster.ids();
            let id = ids[usize::try_from(self.rng.below(ids.len() as u64))?];
            let seconds = i64::try_from(self.rng.between(1, 300))?;
            let offset = if self.rng.below(2) == 0 { -seconds } else { seconds };
            let result = if self.cluster.has_loaded(id, "libfaketime") {
                self.cluster.jump_clock(id, offset)
            } else {
                Err(anyhow::anyhow!("libfaketime is not loaded in node {id}: its clock cannot jump"))
            };
            let i = self.record(&format!("clock-jump{offset:+}s"), Some(id), Some(0), result);
            self.limits(i, None, Some(3_000));
            self.wait(PERIOD).await;
            self.healed(i);
        }
        for id in self.cluster.ids() {
            self.cluster.jump_clock(id, 0)?;
        }
        Ok(())
    }
}
