//! Starts, kills and restarts `sluiced` processes with their own ports and data dirs.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_client::Admin;
use sluice_client::proto as pb;

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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `group` has a leader other than `not` and returns it.
pub async fn must_leader_of(admin: &Admin, group: u64, not: Option<u64>) -> u64 {
    must_eventually("a partition leader", Duration::from_secs(20), || async {
        let status = admin.cluster_status().await.ok()?;
        let leader = status.groups.iter().find(|g| g.group_id == group)?.leader?;
        (Some(leader) != not).then_some(leader)
    })
    .await
}

pub struct Cluster {
    dir: tempfile::TempDir,
    pub grpc: Vec<String>,
    /// Each node's HTTP address (`/health`, `/metrics`).
    pub http: Vec<String>,
    children: Vec<Option<Child>>,
    pub session_timeout: Duration,
}

impl Cluster {
    /// Starts `n` nodes, all controllers; idle partition replicas hibernate after
    /// `hibernate_after_ms` (0: never).
    pub fn start(n: usize, hibernate_after_ms: u64) -> Cluster {
        Cluster::start_with(n, hibernate_after_ms, "")
    }

    /// Like [`Cluster::start`], with `extra` TOML (whole sections) appended to every config.
    pub fn start_with(n: usize, hibernate_after_ms: u64, extra: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let grpc: Vec<String> = (0..n).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let http: Vec<String> = (0..n).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let controllers: Vec<String> = grpc
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{{ id = {}, addr = \"{addr}\" }}", i + 1))
            .collect();
        for (i, addr) in grpc.iter().enumerate() {
            let id = i + 1;
            let config = format!(
                "node_id = {id}\ndata_dir = \"{data}\"\ngrpc_addr = \"{addr}\"\nhttp_addr = \"{http}\"\n\
                 controllers = [{controllers}]\n\
                 [raft]\nheartbeat_interval_ms = 50\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n\
                 hibernate_after_ms = {hibernate_after_ms}\n\
                 [liveness]\nheartbeat_interval_ms = 200\nsession_timeout_ms = 1500\n{extra}",
                data = dir.path().join(format!("node{id}")).display(),
                http = http[i],
                controllers = controllers.join(", "),
            );
            std::fs::write(dir.path().join(format!("node{id}.toml")), config).unwrap();
        }
        let mut cluster = Cluster {
            dir,
            grpc,
            http,
            children: (0..n).map(|_| None).collect(),
            session_timeout: Duration::from_millis(1500),
        };
        for id in 1..=n as u64 {
            cluster.start_node(id);
        }
        cluster
    }

    fn config(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.toml"))
    }

    pub fn start_node(&mut self, id: u64) {
        let log = std::fs::File::create(self.dir.path().join(format!("node{id}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluiced"))
            .arg("--config")
            .arg(self.config(id))
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[usize::try_from(id).unwrap() - 1] = Some(child);
    }

    pub fn pid(&self, id: u64) -> u32 {
        self.children[usize::try_from(id).unwrap() - 1].as_ref().expect("node is running").id()
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children[usize::try_from(id).unwrap() - 1].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Waits until the registry has a leader and `brokers` brokers are alive.
    pub async fn must_ready(&self, brokers: usize) {
        let admin = self.admin(&(1..=self.grpc.len() as u64).collect::<Vec<_>>());
        must_eventually(
            &format!("a registry leader and {brokers} live brokers"),
            Duration::from_secs(30),
            || async {
                let status = admin.cluster_status().await.ok()?;
                let alive = status.brokers.iter().filter(|b| b.state == "alive").count();
                (status.meta_leader.is_some() && alive >= brokers).then_some(())
            },
        )
        .await;
    }

    /// Creates a topic once the registry counts enough live brokers for it. Under a loaded test
    /// run a broker can miss its session timeout right after `must_ready` and be counted dead for
    /// a moment (`NOT_ENOUGH_BROKERS`); any other answer is final.
    pub async fn must_create_topic(
        &self,
        admin: &Admin,
        name: &str,
        partitions: u32,
        replicas: u32,
    ) -> pb::TopicInfo {
        must_eventually(&format!("topic {name} created"), Duration::from_secs(30), || async {
            match admin.create_topic(name, partitions, replicas, pb::TopicConfig::default()).await {
                Ok(topic) => Some(topic),
                Err(sluice_client::ClientError::Refused { code, .. }) if code == "NOT_ENOUGH_BROKERS" => None,
                Err(e) => panic!("creating topic {name}: {e}"),
            }
        })
        .await
    }

    /// An admin client that talks to the given nodes only.
    pub fn admin(&self, nodes: &[u64]) -> Admin {
        let addrs: Vec<String> =
            nodes.iter().map(|id| self.grpc[usize::try_from(*id).unwrap() - 1].clone()).collect();
        Admin::new(&addrs).unwrap()
    }

    pub fn addr(&self, id: u64) -> &str {
        &self.grpc[usize::try_from(id).unwrap() - 1]
    }

    /// The groups a node reports hosting.
    pub async fn node_groups(&self, id: u64) -> Option<Vec<pb::GroupStatus>> {
        let mut client =
            sluice_proto::node::node_client::NodeClient::connect(format!("http://{}", self.addr(id)))
                .await
                .ok()?;
        let response = client.group_status(sluice_proto::node::GroupStatusRequest {}).await.ok()?;
        Some(response.into_inner().groups)
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
