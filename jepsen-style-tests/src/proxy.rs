//! A userspace TCP proxy (as etcd's tester has): partitions and delays without root, since
//! `tc netem` is not in this kernel and iptables needs namespaces.
//!
//! A partition *stalls* a direction rather than discarding bytes: the proxy stops reading, the
//! sender's TCP window fills and its writes block, as when a real network drops packets and TCP
//! keeps retransmitting; after the heal the stream resumes with nothing lost or corrupted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Connections one proxy carries at most; more are refused (closed at once).
const CONNECTIONS_MAX: usize = 256;
/// Bytes read per chunk in each direction.
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks read but not yet forwarded, per direction (a delayed link's bytes in flight).
const PIPELINE_CHUNKS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Nothing flows from the connecting side to the target.
    pub stall_requests: bool,
    /// Nothing flows back from the target.
    pub stall_responses: bool,
    /// Added before each chunk is forwarded, both ways.
    pub delay: Duration,
}

impl Faults {
    pub const PASS: Faults = Faults { stall_requests: false, stall_responses: false, delay: Duration::ZERO };
}

/// One proxy: `listen` forwards to `target`. Dropping it stops the proxy and its connections.
#[derive(Debug)]
pub struct Proxy {
    pub listen: String,
    faults: watch::Sender<Faults>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(listen: &str, target: &str) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let (faults, rx) = watch::channel(Faults::PASS);
        let target = target.to_string();
        let task = tokio::spawn(accept(listener, target, rx));
        Ok(Proxy { listen: listen.to_string(), faults, task })
    }

    pub fn set(&self, faults: Faults) {
        self.faults.send_replace(faults);
    }

    pub fn update(&self, change: impl FnOnce(&mut Faults)) {
        self.faults.send_modify(change);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, target: String, faults: watch::Receiver<Faults>) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut pumps = tokio::task::JoinSet::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // Out of descriptors, say: back off instead of spinning on the error.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if open.load(Ordering::Relaxed) >= CONNECTIONS_MAX {
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (target, faults, open) = (target.clone(), faults.clone(), open.clone());
        // The pumps live in the set, so aborting the accept task ends them too.
        pumps.spawn(async move {
            if let Ok(outbound) = TcpStream::connect(&target).await {
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                let requests = pump(in_read, out_write, faults.clone(), |f| f.stall_requests);
                let responses = pump(out_read, in_write, faults, |f| f.stall_responses);
                tokio::select! {
                    () = requests => {}
                    () = responses => {}
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
        while pumps.try_join_next().is_some() {}
    }
}

/// Copies one direction, waiting while it is stalled. A delay holds each chunk until `delay`
/// after it was read, while later chunks are already being read (up to `PIPELINE_CHUNKS` in
/// flight): added latency, not a throughput collapse, as a slow link behaves.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    faults: watch::Receiver<Faults>,
    stalled: fn(&Faults) -> bool,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(PIPELINE_CHUNKS);
    let mut read_faults = faults.clone();
    let reader = async move {
        loop {
            if read_faults.wait_for(|f| !stalled(f)).await.is_err() {
                return;
            }
            let mut buffer = vec![0u8; CHUNK_BYTES];
            let n = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buffer.truncate(n);
            let due = tokio::time::Instant::now() + read_faults.borrow().delay;
            if tx.send((due, buffer)).await.is_err() {
                return;
            }
        }
    };
    let mut write_faults = faults;
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            // A stall that began while this chunk was in flight holds it back too.
            if write_faults.wait_for(|f| !stalled(f)).await.is_err() {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}
