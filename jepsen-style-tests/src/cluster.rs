//! Three real `sluiced` processes: start, kill -9, stop, pause, resume; who leads what.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};
use sluice_client::Admin;
use sluice_client::proto as pb;
use sluice_lazyfs::mount::LazyMount;

use crate::net::Topology;

/// The nodes run Sluice's default Raft timings (heartbeat 100 ms, election timeout 250..500 ms),
/// so that the failover measured here is the one users get; openraft's own defaults (50 ms,
/// 150..300 ms) flap on a loaded 2-core machine (CHAOS.md §4.1).
const NODE_CONFIG: &str = "\
[liveness]
heartbeat_interval_ms = 300
session_timeout_ms = 2000

[storage]
write_buffer_bytes = {write_buffer_bytes}
block_cache_bytes = 16777216

[limits]
disk_free_bytes_min = 67108864
memory_budget_bytes = 536870912
";

/// The nodes' memtable size unless a scenario asks for another (each node's config).
const WRITE_BUFFER_BYTES: u64 = 8 << 20;

/// How a scenario wants its cluster set up beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// `SLUICE_SABOTAGE` for the nodes: a deliberately broken (debug) build.
    pub sabotage: Option<String>,
    /// Each node's directory a tmpfs of this many bytes (root only), so its disk can fill.
    pub disk_bytes: Option<u64>,
    /// The `sluice-lazyfs` binary: each node's data directory a lazy filesystem whose power can
    /// be cut (root only).
    pub lazyfs: Option<PathBuf>,
    /// The nodes' memtable size (small ones flush often, so a run has SST files).
    pub write_buffer_bytes: Option<u64>,
    /// libfaketime, preloaded into every node so that its wall clock can jump
    /// ([`ChaosCluster::jump_clock`]); the monotonic clock is left alone.
    pub faketime: Option<PathBuf>,
}

/// Where Debian's libfaketime (multi-threaded build) may be.
const LIBFAKETIME: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
];

/// libfaketime, if installed.
pub fn libfaketime() -> Option<PathBuf> {
    LIBFAKETIME.iter().map(PathBuf::from).find(|p| p.exists())
}

#[derive(Debug)]
struct Node {
    child: Option<Child>,
    paused: bool,
}

#[derive(Debug)]
pub struct ChaosCluster {
    pub topology: Topology,
    dir: PathBuf,
    sluiced: PathBuf,
    /// `SLUICE_SABOTAGE` for the nodes: a deliberately broken (debug) build.
    sabotage: Option<String>,
    nodes: Vec<Node>,
    /// Each node's directory is a tmpfs of this many bytes (root only), so its disk can fill.
    disk_bytes: Option<u64>,
    /// The `sluice-lazyfs` binary, when each node's data directory is a lazy filesystem whose
    /// power can be cut (root only).
    lazyfs: Option<PathBuf>,
    /// Node `id`'s lazy filesystem at index `id - 1`, while mounted.
    mounts: Vec<Option<LazyMount>>,
    faketime: Option<PathBuf>,
}

/// The file that fills a node's disk.
const FILLER: &str = "filler";

impl ChaosCluster {
    /// Writes the configs of nodes `1..=n` (all controllers) under `dir` and starts them.
    pub fn start(
        topology: Topology,
        n: u64,
        dir: &Path,
        sluiced: &Path,
        options: ClusterOptions,
    ) -> anyhow::Result<ChaosCluster> {
        let ClusterOptions { sabotage, disk_bytes, lazyfs, write_buffer_bytes, faketime } = options;
        let write_buffer_bytes = write_buffer_bytes.unwrap_or(WRITE_BUFFER_BYTES);
        let controllers: Vec<String> =
            (1..=n).map(|id| format!("{{ id = {id}, addr = \"{}\" }}", topology.grpc_addr(id))).collect();
        for id in 1..=n {
            let overrides: Vec<String> = topology
                .peer_overrides(id)
                .iter()
                .map(|(addr, via)| format!("\"{addr}\" = \"{via}\""))
                .collect();
            let config = format!(
                "node_id = {id}\ndata_dir = \"{data}\"\ngrpc_addr = \"{bind}\"\nadvertised_addr = \"{grpc}\"\n\
                 http_addr = \"{http}\"\ncontrollers = [{controllers}]\npeer_dial_overrides = {{ {overrides} }}\n\n\
                 {node_config}",
                data = data_dir(dir, id).display(),
                bind = topology.bind_addr(id),
                grpc = topology.grpc_addr(id),
                http = topology.http_addr(id),
                controllers = controllers.join(", "),
                overrides = overrides.join(", "),
                node_config = NODE_CONFIG.replace("{write_buffer_bytes}", &write_buffer_bytes.to_string()),
            );
            std::fs::write(dir.join(format!("node{id}.toml")), config)?;
        }
        let mut cluster = ChaosCluster {
            topology,
            dir: dir.to_path_buf(),
            sluiced: sluiced.to_path_buf(),
            sabotage,
            nodes: (0..n).map(|_| Node { child: None, paused: false }).collect(),
            disk_bytes,
            lazyfs,
            mounts: (0..n).map(|_| None).collect(),
            faketime,
        };
        if let Some(bytes) = disk_bytes {
            for id in 1..=n {
                let root = cluster.disk_root(id);
                std::fs::create_dir_all(&root)?;
                let size = format!("size={bytes}");
                let out = std::process::Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
                    .arg(&root)
                    .output()
                    .context("running mount")?;
                if !out.status.success() {
                    bail!(
                        "mount tmpfs on {}: {}",
                        root.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
        for id in 1..=n {
            cluster.mount(id)?;
            cluster.start_node(id)?;
        }
        Ok(cluster)
    }

    /// Mounts node `id`'s lazy filesystem over its data directory (when the cluster has them).
    fn mount(&mut self, id: u64) -> anyhow::Result<()> {
        let Some(binary) = &self.lazyfs else { return Ok(()) };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{id}-lazyfs.log")))?;
        let backing = self.disk_root(id).join("backing");
        let syncs = self.sync_log(id);
        let mount = LazyMount::start(binary, &backing, &data_dir(&self.dir, id), Some(&syncs), log.into())?;
        self.mounts[index(id)] = Some(mount);
        Ok(())
    }

    /// Where node `id`'s lazy filesystem logs its fsyncs (see `sluice_lazyfs::fs::SyncLog`).
    pub fn sync_log(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}-syncs.log"))
    }

    /// Cuts node `id`'s power: the process dies with everything its disk had not fsynced.
    /// The node stays down (its disk is mounted again, empty of the lost writes) until
    /// [`ChaosCluster::start_node`].
    pub fn power_cut(&mut self, id: u64) -> anyhow::Result<()> {
        let Some(mount) = self.mounts[index(id)].take() else {
            bail!("node {id} has no lazy filesystem: this scenario needs one per node")
        };
        if self.is_running(id) || self.node(id).paused {
            self.resume(id)?;
            self.kill(id)?;
        }
        mount.power_cut()?;
        self.mount(id)
    }

    pub fn ids(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64).collect()
    }

    pub fn addrs(&self) -> Vec<String> {
        self.ids().into_iter().map(|id| self.topology.grpc_addr(id)).collect()
    }

    pub fn admin(&self) -> anyhow::Result<Admin> {
        Ok(Admin::new(&self.addrs())?)
    }

    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[index(id)]
    }

    fn clock_file(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.faketime"))
    }

    /// Sets node `id`'s wall clock `offset_secs` away from the real one (taking effect within a
    /// second). Needs a cluster started with libfaketime.
    pub fn jump_clock(&self, id: u64, offset_secs: i64) -> anyhow::Result<()> {
        if self.faketime.is_none() {
            bail!("the nodes run without libfaketime");
        }
        std::fs::write(self.clock_file(id), format!("{offset_secs:+}\n"))?;
        Ok(())
    }

    /// Whether node `id`'s running process has `library` mapped (say, a preloaded one).
    pub fn has_loaded(&mut self, id: u64, library: &str) -> bool {
        let Some(child) = &self.node(id).child else { return false };
        std::fs::read_to_string(format!("/proc/{}/maps", child.id())).is_ok_and(|maps| maps.contains(library))
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        data_dir(&self.dir, id)
    }

    /// How node `id`'s process ended, once it has (it is then no longer counted as running).
    pub fn exited(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let node = self.node(id);
        let status = node.child.as_mut().and_then(|c| c.try_wait().ok().flatten())?;
        node.child = None;
        Some(status)
    }

    /// The directory holding node `id`'s data directory (its own tmpfs when disks are sized).
    pub fn disk_root(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }

    /// Fills node `id`'s disk (a tmpfs: see `disk_bytes`) until `leave` bytes are free, or to
    /// the last byte; returns the bytes written. The loop is bounded by the disk's size.
    pub fn fill_disk(&self, id: u64, leave: u64) -> anyhow::Result<u64> {
        use std::io::Write;
        let Some(size) = self.disk_bytes else {
            return Err(anyhow::Error::new(crate::net::Unsupported("the cluster has no sized disks".into())));
        };
        let chunk = vec![0xA5_u8; 1 << 16];
        let root = self.disk_root(id);
        let free = || rustix::fs::statvfs(&root).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize));
        let mut file = std::fs::File::create(root.join(FILLER))?;
        let mut written = 0_u64;
        if leave > 0 {
            for _ in 0..=size / chunk.len() as u64 {
                if free() <= leave + chunk.len() as u64 {
                    break;
                }
                file.write_all(&chunk)?;
                written += chunk.len() as u64;
            }
            file.sync_all()?;
            return Ok(written);
        }
        for _ in 0..=size / chunk.len() as u64 {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) => break,
                Err(e) => return Err(e.into()),
            }
        }
        // Whatever is left (less than a chunk) goes byte by byte, bounded the same way.
        for _ in 0..chunk.len() {
            match file.write(&chunk[..1]) {
                Ok(1) => written += 1,
                _ => break,
            }
        }
        Ok(written)
    }

    /// Frees what [`ChaosCluster::fill_disk`] took.
    pub fn free_disk(&self, id: u64) -> anyhow::Result<()> {
        match std::fs::remove_file(self.disk_root(id).join(FILLER)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.log"))
    }

    /// Starts node `id` if it is not running; its log is appended to across restarts.
    pub fn start_node(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(child) = &mut self.node(id).child
            && matches!(child.try_wait(), Ok(None))
        {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(id))?;
        let mut command = self.topology.command(id, &self.sluiced);
        if let Some(sabotage) = &self.sabotage {
            command.env("SLUICE_SABOTAGE", sabotage);
        }
        if let Some(library) = &self.faketime {
            let clock = self.clock_file(id);
            if !clock.exists() {
                std::fs::write(&clock, "+0\n")?;
            }
            // The offset is read from the file again every second; CLOCK_MONOTONIC is not faked.
            command
                .env("LD_PRELOAD", library)
                .env("FAKETIME_TIMESTAMP_FILE", clock)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = command
            .arg("--config")
            .arg(self.dir.join(format!("node{id}.toml")))
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.sluiced.display()))?;
        *self.node(id) = Node { child: Some(child), paused: false };
        Ok(())
    }

    fn signal(&mut self, id: u64, signal: Signal) -> anyhow::Result<()> {
        let Some(child) = &self.node(id).child else { bail!("node {id} is not running") };
        let pid = Pid::from_raw(i32::try_from(child.id())?).context("pid 0")?;
        kill_process(pid, signal)?;
        Ok(())
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.node(id);
        let Some(mut child) = node.child.take() else { bail!("node {id} is not running") };
        child.kill()?;
        child.wait()?;
        node.paused = false;
        Ok(())
    }

    /// SIGTERM and wait for the node to drain and exit (SIGKILL after `grace`).
    pub async fn stop(&mut self, id: u64, grace: Duration) -> anyhow::Result<()> {
        self.resume(id)?;
        self.signal(id, Signal::TERM)?;
        let deadline = tokio::time::Instant::now() + grace;
        while self.is_running(id) {
            if tokio::time::Instant::now() > deadline {
                return self.kill(id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.node(id).child = None;
        Ok(())
    }

    /// SIGSTOP: the process keeps its connections open and answers nothing (a zombie).
    pub fn pause(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, Signal::STOP)?;
        self.node(id).paused = true;
        Ok(())
    }

    pub fn resume(&mut self, id: u64) -> anyhow::Result<()> {
        if self.node(id).paused {
            self.signal(id, Signal::CONT)?;
            self.node(id).paused = false;
        }
        Ok(())
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        self.node(id).child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Brings every node back: resumes the paused, restarts the dead.
    pub fn restore_all(&mut self) -> anyhow::Result<()> {
        for id in self.ids() {
            self.resume(id)?;
            if !self.is_running(id) {
                self.node(id).child = None;
                self.start_node(id)?;
            }
        }
        Ok(())
    }

    /// Kills every node (the end of a run).
    pub fn kill_all(&mut self) {
        for id in self.ids() {
            let _ = self.resume(id);
            let _ = self.kill(id);
        }
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        self.kill_all();
        if self.disk_bytes.is_some() {
            for id in self.ids() {
                let _ = std::process::Command::new("umount").arg(self.disk_root(id)).output();
            }
        }
    }
}

fn index(id: u64) -> usize {
    usize::try_from(id).unwrap_or(usize::MAX) - 1
}

/// Node `id`'s data directory under the cluster's directory `dir`.
fn data_dir(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node{id}")).join("data")
}

/// The cluster as the live nodes report it (asked of `nodes` only).
pub async fn status(addrs: &[String]) -> Option<pb::ClusterStatusResponse> {
    let admin = Admin::new(addrs).ok()?;
    tokio::time::timeout(Duration::from_secs(2), admin.cluster_status()).await.ok()?.ok()
}

/// The node leading `group`, as reported by live nodes.
pub fn leader_of(status: &pb::ClusterStatusResponse, group: u64) -> Option<u64> {
    status.groups.iter().find(|g| g.group_id == group).and_then(|g| g.leader)
}

/// Arms crash point `name` on node `id` through its HTTP port (`PUT /failpoints/NAME`); the node
/// must be built with the `failpoints` feature.
pub async fn arm_crash_point(http_addr: &str, name: &str, action: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(http_addr)).await??;
    let request = format!(
        "PUT /failpoints/{name} HTTP/1.1\r\nHost: {http_addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{action}",
        action.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response)).await??;
    let response = String::from_utf8_lossy(&response);
    if !response.starts_with("HTTP/1.1 200") {
        bail!("arming {name} on {http_addr}: {}", response.lines().last().unwrap_or_default());
    }
    Ok(())
}
