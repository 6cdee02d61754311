//! Where the nodes live: each in its own network namespace, joined by veth pairs to one bridge,
//! with the clients in the root namespace (CHAOS.md §4.1). Partitions are iptables rules inside
//! a node's namespace, so client traffic and peer traffic can be cut separately.
//!
//! Without root (or without `ip`/`iptables`) the nodes run on loopback behind userspace proxies
//! instead ([`crate::proxy`]): one in front of each node for its clients, and one per ordered
//! pair of nodes for peer traffic (each node dials its peers through its own proxies, by the
//! `peer_dial_overrides` of its config), so the same faults can be injected without root.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::proxy::{Faults, Proxy};

const BRIDGE: &str = "sluice-br0";
const SUBNET: &str = "10.77.0";
/// The root namespace's address on the bridge: where every client connection comes from.
pub const CLIENT_IP: &str = "10.77.0.254";
const GRPC_PORT: u16 = 7000;
const HTTP_PORT: u16 = 8000;
/// Loopback mode's first port; node `i` listens on `LOOPBACK_BASE + 10 * i` (+1 for HTTP, +2 for
/// its clients' proxy, +2+j for the proxy node j dials it through).
const LOOPBACK_BASE: u16 = 27_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Network namespaces and iptables: every fault is available.
    Netns,
    /// Loopback behind userspace proxies: every fault works, without root.
    Loopback,
}

/// The nodes' network. Dropping it removes the namespaces and the bridge (or stops the proxies).
#[derive(Debug)]
pub struct Topology {
    pub mode: Mode,
    nodes: Vec<u64>,
    /// Loopback mode: node id → the proxy its clients use.
    client_proxies: BTreeMap<u64, Proxy>,
    /// Loopback mode: (from, to) → the proxy `from` dials `to` through.
    peer_proxies: BTreeMap<(u64, u64), Proxy>,
}

fn loopback(id: u64, offset: u64) -> String {
    format!("127.0.0.1:{}", u64::from(LOOPBACK_BASE) + 10 * id + offset)
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
    /// Builds the network for nodes `1..=n`: namespaces when possible (`want_netns`), else
    /// loopback with proxies.
    pub async fn create(n: u64, want_netns: bool) -> anyhow::Result<Topology> {
        let nodes: Vec<u64> = (1..=n).collect();
        if want_netns && netns_available() {
            let topology = Topology {
                mode: Mode::Netns,
                nodes: nodes.clone(),
                client_proxies: BTreeMap::new(),
                peer_proxies: BTreeMap::new(),
            };
            match topology.build_netns() {
                Ok(()) => return Ok(topology),
                // Dropping it removes whatever was built.
                Err(e) => println!("  network namespaces unavailable ({e:#}): using loopback proxies"),
            }
        }
        let mut client_proxies = BTreeMap::new();
        let mut peer_proxies = BTreeMap::new();
        for to in &nodes {
            let target = loopback(*to, 0);
            client_proxies.insert(*to, Proxy::start(&loopback(*to, 2), &target).await?);
            for from in nodes.iter().filter(|from| *from != to) {
                peer_proxies.insert((*from, *to), Proxy::start(&loopback(*to, 2 + from), &target).await?);
            }
        }
        Ok(Topology { mode: Mode::Loopback, nodes, client_proxies, peer_proxies })
    }

    /// The bridge, one namespace per node with its veth, and a check that iptables works inside.
    fn build_netns(&self) -> anyhow::Result<()> {
        // A previous run killed before its cleanup may have left these behind.
        self.teardown();
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run("ip", &["addr", "add", &format!("{CLIENT_IP}/24"), "dev", BRIDGE])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        for id in &self.nodes {
            let (ns, veth) = (ns(*id), format!("sluice-v{id}"));
            run("ip", &["netns", "add", &ns])?;
            run("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            run("ip", &["link", "set", &veth, "master", BRIDGE, "up"])?;
            run("ip", &["-n", &ns, "addr", "add", &format!("{}/24", node_ip(*id)), "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            Self::iptables(*id, &["-L", "-n"])?;
        }
        Ok(())
    }

    fn teardown(&self) {
        for id in &self.nodes {
            let _ = run("ip", &["netns", "del", &ns(*id)]);
            let _ = run("ip", &["link", "del", &format!("sluice-v{id}")]);
        }
        let _ = run("ip", &["link", "del", BRIDGE]);
    }

    /// Where node `id` listens for gRPC.
    pub fn bind_addr(&self, id: u64) -> String {
        match self.mode {
            Mode::Netns => format!("{}:{GRPC_PORT}", node_ip(id)),
            Mode::Loopback => loopback(id, 0),
        }
    }

    /// Where clients (and, before any override, peers) reach node `id`.
    pub fn grpc_addr(&self, id: u64) -> String {
        match self.mode {
            Mode::Netns => self.bind_addr(id),
            Mode::Loopback => loopback(id, 2),
        }
    }

    pub fn http_addr(&self, id: u64) -> String {
        match self.mode {
            Mode::Netns => format!("{}:{HTTP_PORT}", node_ip(id)),
            Mode::Loopback => loopback(id, 1),
        }
    }

    /// Node `id`'s `peer_dial_overrides`: each peer's client address → `id`'s proxy to it.
    pub fn peer_overrides(&self, id: u64) -> Vec<(String, String)> {
        self.peer_proxies
            .iter()
            .filter(|((from, _), _)| *from == id)
            .map(|((_, to), proxy)| (self.grpc_addr(*to), proxy.listen.clone()))
            .collect()
    }

    fn peer_proxy(&self, from: u64, to: u64) -> anyhow::Result<&Proxy> {
        self.peer_proxies.get(&(from, to)).ok_or_else(|| anyhow::anyhow!("no proxy from node {from} to {to}"))
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

    /// Cuts all traffic between `id` and each of `peers`, both ways.
    pub fn isolate(&self, id: u64, peers: &[u64]) -> anyhow::Result<()> {
        if self.mode == Mode::Loopback {
            let stall = Faults { stall_requests: true, stall_responses: true, delay: Duration::ZERO };
            for p in peers {
                self.peer_proxy(id, *p)?.set(stall);
                self.peer_proxy(*p, id)?.set(stall);
            }
            return Ok(());
        }
        for p in peers {
            let ip = node_ip(*p);
            Self::iptables(id, &["-A", "INPUT", "-s", &ip, "-j", "DROP"])?;
            Self::iptables(id, &["-A", "OUTPUT", "-d", &ip, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// `id` stops receiving from `from` (one-way: `id` can still send to it).
    pub fn drop_inbound(&self, id: u64, from: u64) -> anyhow::Result<()> {
        if self.mode == Mode::Loopback {
            self.peer_proxy(from, id)?.update(|f| f.stall_requests = true);
            self.peer_proxy(id, from)?.update(|f| f.stall_responses = true);
            return Ok(());
        }
        Self::iptables(id, &["-A", "INPUT", "-s", &node_ip(from), "-j", "DROP"])
    }

    /// Drops everything `id` sends to the clients: requests arrive and are processed, responses
    /// are lost (the client times out with its outcome unknown).
    pub fn cut_client_responses(&self, id: u64) -> anyhow::Result<()> {
        if self.mode == Mode::Loopback {
            let proxy =
                self.client_proxies.get(&id).ok_or_else(|| anyhow::anyhow!("no proxy for node {id}"))?;
            proxy.update(|f| f.stall_responses = true);
            return Ok(());
        }
        Self::iptables(id, &["-A", "OUTPUT", "-d", CLIENT_IP, "-j", "DROP"])
    }

    /// Delays every peer message to and from `id` by `delay` (loopback proxies only: there is no
    /// netem in this kernel).
    pub fn delay_peers(&self, id: u64, delay: Duration) -> anyhow::Result<()> {
        if self.mode != Mode::Loopback {
            return Err(anyhow::Error::new(Unsupported(
                "delays need the loopback proxies (--loopback)".into(),
            )));
        }
        for ((from, to), proxy) in &self.peer_proxies {
            if *from == id || *to == id {
                proxy.update(|f| f.delay = delay);
            }
        }
        Ok(())
    }

    /// Drops each packet to and from `id`'s peers with probability `percent`/100 (netns only:
    /// iptables' `statistic` match; the loopback proxies relay streams, not packets).
    pub fn lossy_peers(&self, id: u64, percent: u32) -> anyhow::Result<()> {
        if self.mode != Mode::Netns {
            return Err(anyhow::Error::new(Unsupported("packet loss needs network namespaces".into())));
        }
        let probability = format!("{:.2}", f64::from(percent.min(100)) / 100.0);
        for p in self.nodes.iter().filter(|p| **p != id) {
            let ip = node_ip(*p);
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                Self::iptables(
                    id,
                    &[
                        "-A",
                        chain,
                        dir,
                        &ip,
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &probability,
                        "-j",
                        "DROP",
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Removes every rule on every node.
    pub fn heal(&self) -> anyhow::Result<()> {
        for proxy in self.client_proxies.values().chain(self.peer_proxies.values()) {
            proxy.set(Faults::PASS);
        }
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
