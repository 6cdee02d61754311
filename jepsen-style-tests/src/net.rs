//! Where the nodes live: each in its own network namespace, joined by veth pairs to one bridge,
//! with the clients in the root namespace (CHAOS.md §4.1). Partitions are iptables rules inside
//! a node's namespace, so client traffic and peer traffic can be cut separately.
//!
//! Without root (or without `ip`/`iptables`) the nodes run on loopback instead and network faults
//! report themselves as skipped, which makes a scenario that needs them INVALID, not passed.

use std::process::Command;

use anyhow::{Context, bail};

const BRIDGE: &str = "sluice-br0";
const SUBNET: &str = "10.77.0";
/// The root namespace's address on the bridge: where every client connection comes from.
pub const CLIENT_IP: &str = "10.77.0.254";
const GRPC_PORT: u16 = 7000;
const HTTP_PORT: u16 = 8000;
/// Loopback mode's first port; node `i` uses `LOOPBACK_BASE + 10 * i` (+1 for HTTP).
const LOOPBACK_BASE: u16 = 27_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Network namespaces and iptables: every fault is available.
    Netns,
    /// Loopback only: process faults work, network faults are skipped.
    Loopback,
}

/// The nodes' network. Dropping it removes the namespaces and the bridge.
#[derive(Debug)]
pub struct Topology {
    pub mode: Mode,
    nodes: Vec<u64>,
}

fn ns(id: u64) -> String {
    format!("sluice-n{id}")
}

pub fn node_ip(id: u64) -> String {
    format!("{SUBNET}.{id}")
}

/// Runs a command, failing with its stderr when it fails.
fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn netns_available() -> bool {
    rustix::process::geteuid().is_root()
        && Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success())
        && Command::new("iptables").arg("-V").output().is_ok_and(|o| o.status.success())
}

impl Topology {
    /// Builds the network for nodes `1..=n`: namespaces when possible (`want_netns`), else loopback.
    pub fn create(n: u64, want_netns: bool) -> anyhow::Result<Topology> {
        let nodes: Vec<u64> = (1..=n).collect();
        if !(want_netns && netns_available()) {
            return Ok(Topology { mode: Mode::Loopback, nodes });
        }
        let topology = Topology { mode: Mode::Netns, nodes };
        // A previous run killed before its cleanup may have left these behind.
        topology.teardown();
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run("ip", &["addr", "add", &format!("{CLIENT_IP}/24"), "dev", BRIDGE])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        for id in &topology.nodes {
            let (ns, veth) = (ns(*id), format!("sluice-v{id}"));
            run("ip", &["netns", "add", &ns])?;
            run("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            run("ip", &["link", "set", &veth, "master", BRIDGE, "up"])?;
            run("ip", &["-n", &ns, "addr", "add", &format!("{}/24", node_ip(*id)), "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(topology)
    }

    fn teardown(&self) {
        for id in &self.nodes {
            let _ = run("ip", &["netns", "del", &ns(*id)]);
            let _ = run("ip", &["link", "del", &format!("sluice-v{id}")]);
        }
        let _ = run("ip", &["link", "del", BRIDGE]);
    }

    pub fn grpc_addr(&self, id: u64) -> String {
        match self.mode {
            Mode::Netns => format!("{}:{GRPC_PORT}", node_ip(id)),
            Mode::Loopback => format!("127.0.0.1:{}", LOOPBACK_BASE + 10 * u16::try_from(id).unwrap_or(0)),
        }
    }

    pub fn http_addr(&self, id: u64) -> String {
        match self.mode {
            Mode::Netns => format!("{}:{HTTP_PORT}", node_ip(id)),
            Mode::Loopback => {
                format!("127.0.0.1:{}", LOOPBACK_BASE + 10 * u16::try_from(id).unwrap_or(0) + 1)
            }
        }
    }

    /// The command that runs `program` as node `id` (inside its namespace).
    pub fn command(&self, id: u64, program: &std::path::Path) -> Command {
        match self.mode {
            Mode::Netns => {
                // `ip netns exec` execs the program: the child's pid is the node's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns(id)]).arg(program);
                c
            }
            Mode::Loopback => Command::new(program),
        }
    }

    fn iptables(id: u64, args: &[&str]) -> anyhow::Result<()> {
        let ns = ns(id);
        let mut full = vec!["netns", "exec", &ns, "iptables", "-w"];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    fn require_netns(&self, what: &str) -> anyhow::Result<()> {
        if self.mode == Mode::Netns {
            Ok(())
        } else {
            Err(anyhow::Error::new(Unsupported(format!("{what} needs network namespaces (run as root)"))))
        }
    }

    /// Cuts all traffic between `id` and each of `peers`, both ways.
    pub fn isolate(&self, id: u64, peers: &[u64]) -> anyhow::Result<()> {
        self.require_netns("a partition")?;
        for p in peers {
            let ip = node_ip(*p);
            Self::iptables(id, &["-A", "INPUT", "-s", &ip, "-j", "DROP"])?;
            Self::iptables(id, &["-A", "OUTPUT", "-d", &ip, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// `id` stops receiving from `from` (one-way: `id` can still send to it).
    pub fn drop_inbound(&self, id: u64, from: u64) -> anyhow::Result<()> {
        self.require_netns("a one-way partition")?;
        Self::iptables(id, &["-A", "INPUT", "-s", &node_ip(from), "-j", "DROP"])
    }

    /// Drops everything `id` sends to the clients: requests arrive and are processed, responses
    /// are lost (the client times out with its outcome unknown).
    pub fn cut_client_responses(&self, id: u64) -> anyhow::Result<()> {
        self.require_netns("a client cut")?;
        Self::iptables(id, &["-A", "OUTPUT", "-d", CLIENT_IP, "-j", "DROP"])
    }

    /// Removes every rule on every node.
    pub fn heal(&self) -> anyhow::Result<()> {
        if self.mode == Mode::Netns {
            for id in &self.nodes {
                Self::iptables(*id, &["-F"])?;
            }
        }
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if self.mode == Mode::Netns {
            self.teardown();
        }
    }
}

/// A fault this environment cannot inject: reported as skipped, not as a failure.
#[derive(Debug)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}
