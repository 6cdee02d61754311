//! Replica convergence (CHAOS.md §4.2.5): after the faults heal, each node's own committed copy of
//! every partition, read from that node alone (a follower read), must hold the same records.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sluice_client::proto as pb;
use sluice_client::proto::consumer_client::ConsumerClient;
use tokio::time::Instant;

use crate::history::{Key, Offset};

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplicaCheck {
    /// Node address → key → (records read, FNV-1a hash of the (offset, value) pairs).
    pub nodes: BTreeMap<String, BTreeMap<Key, (usize, String)>>,
    pub problems: Vec<String>,
}

/// A replica's records of one key: (offset, value bytes).
type Copy = Vec<(Offset, Vec<u8>)>;

fn fnv(pairs: &[(Offset, Vec<u8>)]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (o, v) in pairs {
        for b in o.to_be_bytes().iter().chain(v.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Reads `key` from the node at `addr` only, up to and including `target`.
async fn read_node(
    addr: &str,
    topic: &str,
    key: Key,
    target: Offset,
    deadline: Instant,
) -> Result<Copy, String> {
    let mut out = Vec::new();
    let mut position = 0;
    let mut last_error = String::new();
    while position <= target {
        if Instant::now() > deadline {
            return Err(format!("read up to offset {position} of {target} in time ({last_error})"));
        }
        let request = pb::FetchRequest {
            topic: topic.into(),
            partition: key,
            offset: position,
            max_bytes: 1 << 20,
            min_bytes: 1,
            max_wait_ms: 200,
            read_from_follower: true,
        };
        let response = match ConsumerClient::connect(format!("http://{addr}")).await {
            Ok(mut c) => {
                c.fetch(request).await.map(tonic::Response::into_inner).map_err(|s| s.message().to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match response {
            Ok(r) if r.error.as_ref().is_none_or(|e| e.code == 0) => {
                let (records, next) =
                    sluice_client::decode_batches(key, r.batches, position).map_err(|e| e.to_string())?;
                out.extend(records.into_iter().map(|r| (r.offset, r.value.to_vec())));
                position = next;
            }
            Ok(r) => last_error = r.error.map(|e| e.message).unwrap_or_default(),
            Err(e) => last_error = e,
        }
        if !last_error.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    out.retain(|(o, _)| *o <= target);
    Ok(out)
}

/// The least time each copy is given, even after others used up `catch_up`: one stuck replica
/// must not make every later copy fail unread.
const COPY_READ_MIN: Duration = Duration::from_secs(2);

/// Compares every node's copy of every key up to `targets[key]`, waiting up to `catch_up` for
/// lagging replicas.
pub async fn compare(
    addrs: &[String],
    topic: &str,
    keys: u32,
    targets: &BTreeMap<Key, Offset>,
    catch_up: Duration,
) -> ReplicaCheck {
    let deadline = Instant::now() + catch_up;
    let mut check = ReplicaCheck::default();
    for key in 0..keys {
        let Some(target) = targets.get(&key).copied() else { continue };
        let mut copies: Vec<(String, Copy)> = Vec::new();
        for addr in addrs {
            let deadline = deadline.max(Instant::now() + COPY_READ_MIN);
            match read_node(addr, topic, key, target, deadline).await {
                Ok(pairs) => {
                    check.nodes.entry(addr.clone()).or_default().insert(key, (pairs.len(), fnv(&pairs)));
                    copies.push((addr.clone(), pairs));
                }
                Err(e) => check.problems.push(format!("replica {addr} key {key}: {e}")),
            }
        }
        if let Some((first_addr, first)) = copies.first() {
            for (addr, pairs) in &copies[1..] {
                if pairs != first {
                    let at = first
                        .iter()
                        .zip(pairs)
                        .position(|(a, b)| a != b)
                        .unwrap_or(first.len().min(pairs.len()));
                    check.problems.push(format!(
                        "replicas diverge on key {key}: {first_addr} and {addr} differ at record {at} ({} vs {} records)",
                        first.len(),
                        pairs.len()
                    ));
                }
            }
        }
    }
    check
}
