//! Connections to the brokers and the metadata cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::v1 as pb;
use sluice_proto::v1::metadata_client::MetadataClient;
use sluice_proto::v1::producer_client::ProducerClient;
use tonic::transport::{Channel, Endpoint};

use crate::ClientError;
use crate::error::refused;
use sluice_types::sync::lock;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest any single call may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(35);
/// HTTP/2 pings on every connection: a broker that stops answering them (paused, or cut off)
/// fails its calls within interval + timeout instead of holding them for `CALL_TIMEOUT`.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);
/// Metadata is answered from any broker's memory: one that takes longer is stuck (paused, cut
/// off, or still handshaking), and the next broker is asked instead.
const METADATA_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a broker that failed to answer is asked last.
const SUSPECT_FOR: Duration = Duration::from_secs(10);
/// A producer id is one registry write; a broker that cannot get one in a second is asked last.
/// Each later round of asking doubles the time given (up to `INIT_PRODUCER_TIMEOUT_MAX`): over
/// slow links a registry write can take longer than a second, and a call always cut off before
/// the write can finish would never succeed.
const INIT_PRODUCER_TIMEOUT: Duration = Duration::from_secs(1);
const INIT_PRODUCER_TIMEOUT_MAX: Duration = Duration::from_secs(8);

/// The time one broker is given to answer a producer-id request in round `round` (from 0).
pub(crate) fn init_producer_timeout(round: u32) -> Duration {
    INIT_PRODUCER_TIMEOUT.saturating_mul(1 << round.min(3)).min(INIT_PRODUCER_TIMEOUT_MAX)
}
/// The largest message the client accepts (a fetch answer).
const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What the client knows of a topic's partitions.
#[derive(Clone, Debug, Default)]
pub struct TopicMeta {
    /// Per partition: the leader's address, when known.
    pub leaders: Vec<Option<String>>,
}

/// The brokers a client talks to. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Cluster {
    bootstrap: Vec<String>,
    channels: Mutex<HashMap<String, Channel>>,
    topics: Mutex<HashMap<String, Arc<TopicMeta>>>,
    /// Rotates which bootstrap broker is asked first, so that one with a stale view (cut off
    /// from the cluster) cannot answer every question.
    rotation: AtomicUsize,
    /// Brokers that lately failed to answer (timed out, unreachable), and since when.
    suspects: Mutex<HashMap<String, std::time::Instant>>,
}

impl Cluster {
    /// Prepares connections to the bootstrap brokers (`host:port`); nothing is dialled yet.
    pub fn new(bootstrap: &[String]) -> Result<Arc<Cluster>, ClientError> {
        if bootstrap.is_empty() {
            return Err(ClientError::NoBootstrap);
        }
        let cluster = Cluster {
            bootstrap: bootstrap.to_vec(),
            channels: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashMap::new()),
            rotation: AtomicUsize::new(0),
            suspects: Mutex::new(HashMap::new()),
        };
        for addr in bootstrap {
            cluster.channel(addr)?;
        }
        Ok(Arc::new(cluster))
    }

    pub(crate) fn channel(&self, addr: &str) -> Result<Channel, ClientError> {
        let mut channels = lock(&self.channels);
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| ClientError::InvalidAddress { addr: addr.to_string(), reason: e.to_string() })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    pub(crate) fn max_message_bytes() -> usize {
        MESSAGE_BYTES_MAX
    }

    /// Cached metadata of `topic`, fetched when absent or when `refresh` is asked.
    pub async fn topic(&self, topic: &str, refresh: bool) -> Result<Arc<TopicMeta>, ClientError> {
        if !refresh && let Some(meta) = lock(&self.topics).get(topic) {
            return Ok(meta.clone());
        }
        let mut failures = Vec::new();
        for addr in self.rotated() {
            let mut client = MetadataClient::new(self.channel(&addr)?);
            let mut request = tonic::Request::new(pb::MetadataRequest { topics: vec![topic.to_string()] });
            request.set_timeout(METADATA_TIMEOUT);
            match client.metadata(request).await {
                Ok(response) => {
                    let response = response.into_inner();
                    let Some(t) = response.topics.into_iter().find(|t| t.name == topic) else {
                        failures.push(format!("{addr}: no answer for {topic}"));
                        continue;
                    };
                    if let Some(error) = t.error.filter(|e| e.code != 0) {
                        return Err(refused(&error));
                    }
                    let mut leaders = vec![None; t.partitions.len()];
                    for p in t.partitions {
                        if let Some(slot) = leaders.get_mut(p.partition as usize) {
                            *slot = (!p.leader_addr.is_empty()).then_some(p.leader_addr);
                        }
                    }
                    let meta = Arc::new(TopicMeta { leaders });
                    lock(&self.topics).insert(topic.to_string(), meta.clone());
                    return Ok(meta);
                }
                Err(status) => {
                    self.suspect(&addr);
                    failures.push(format!("{addr}: {}", status.message()));
                }
            }
        }
        Err(ClientError::Unreachable(failures.join("; ")))
    }

    /// Where to send a request for a partition: its leader if known, else any bootstrap broker
    /// (which answers `NOT_LEADER` with a hint).
    pub(crate) async fn leader_addr(
        &self,
        topic: &str,
        partition: u32,
        refresh: bool,
    ) -> Result<String, ClientError> {
        let meta = self.topic(topic, refresh).await?;
        let leader = meta.leaders.get(partition as usize).ok_or_else(|| ClientError::Refused {
            code: "UNKNOWN_TOPIC_OR_PARTITION".into(),
            message: format!("topic {topic} has {} partitions", meta.leaders.len()),
        })?;
        // A leader that just failed to answer is likely dead: any other broker will either serve,
        // name the new leader, or hold the request until the election names one.
        if let Some(addr) = leader.as_ref().filter(|addr| !self.is_suspect(addr)) {
            return Ok(addr.clone());
        }
        let turn = self.rotation.fetch_add(1, Ordering::Relaxed);
        let count = self.bootstrap.len();
        let first = partition as usize + turn;
        let pick = (first..first + count)
            .map(|i| &self.bootstrap[i % count])
            .find(|addr| !self.is_suspect(addr))
            .unwrap_or(&self.bootstrap[first % count]);
        Ok(pick.clone())
    }

    /// The bootstrap brokers, starting from the next one in turn; brokers that failed to answer
    /// lately come last.
    fn rotated(&self) -> Vec<String> {
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % self.bootstrap.len();
        let mut order: Vec<String> =
            self.bootstrap[start..].iter().chain(&self.bootstrap[..start]).cloned().collect();
        let mut suspects = lock(&self.suspects);
        suspects.retain(|_, since| since.elapsed() < SUSPECT_FOR);
        order.sort_by_key(|addr| suspects.contains_key(addr));
        order
    }

    /// Whether `addr` failed to answer within the last `SUSPECT_FOR`.
    fn is_suspect(&self, addr: &str) -> bool {
        lock(&self.suspects).get(addr).is_some_and(|since| since.elapsed() < SUSPECT_FOR)
    }

    /// `addr` did not answer: ask it last for a while.
    pub(crate) fn suspect(&self, addr: &str) {
        let mut suspects = lock(&self.suspects);
        suspects.retain(|_, since| since.elapsed() < SUSPECT_FOR);
        if suspects.len() < self.bootstrap.len() * 2 || suspects.contains_key(addr) {
            suspects.insert(addr.to_string(), std::time::Instant::now());
        }
    }

    /// Remembers a leader learned from a `NOT_LEADER` answer. The broker that named it has just
    /// heard from it, so it is no longer suspect.
    pub(crate) fn set_leader(&self, topic: &str, partition: u32, addr: String) {
        lock(&self.suspects).remove(&addr);
        let mut topics = lock(&self.topics);
        if let Some(meta) = topics.get(topic) {
            let mut updated = (**meta).clone();
            if let Some(slot) = updated.leaders.get_mut(partition as usize) {
                *slot = Some(addr);
                topics.insert(topic.to_string(), Arc::new(updated));
            }
        }
    }

    /// A fresh producer id from the registry, for an idempotent producer; each broker is given
    /// `timeout` to answer.
    pub async fn init_producer(&self, timeout: Duration) -> Result<(u64, u32), ClientError> {
        let mut failures = Vec::new();
        for addr in self.rotated() {
            let mut client = ProducerClient::new(self.channel(&addr)?);
            let mut request = tonic::Request::new(pb::InitProducerRequest { producer_id: None });
            request.set_timeout(timeout);
            match client.init_producer(request).await {
                Ok(response) => {
                    let response = response.into_inner();
                    match response.error.filter(|e| e.code != 0) {
                        Some(error) => failures.push(format!("{addr}: {}", error.message)),
                        None => return Ok((response.producer_id, response.producer_epoch)),
                    }
                }
                Err(status) => {
                    self.suspect(&addr);
                    failures.push(format!("{addr}: {}", status.message()));
                }
            }
        }
        Err(ClientError::Unreachable(failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_id_requests_get_more_time_each_round_up_to_a_cap() {
        let timeouts: Vec<Duration> = (0..6).map(init_producer_timeout).collect();
        let seconds = [1, 2, 4, 8, 8, 8].map(Duration::from_secs);
        assert_eq!(timeouts, seconds);
        assert_eq!(init_producer_timeout(u32::MAX), INIT_PRODUCER_TIMEOUT_MAX);
    }

    #[tokio::test]
    async fn an_unreachable_leader_is_skipped_until_a_broker_names_it_again() {
        let brokers: Vec<String> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"].map(String::from).to_vec();
        let cluster = Cluster::new(&brokers).unwrap();
        let leader = brokers[0].clone();
        lock(&cluster.topics).insert("t".into(), Arc::new(TopicMeta { leaders: vec![Some(leader.clone())] }));
        assert_eq!(cluster.leader_addr("t", 0, false).await.unwrap(), leader);

        cluster.suspect(&leader);
        for _ in 0..6 {
            let elsewhere = cluster.leader_addr("t", 0, false).await.unwrap();
            assert_ne!(elsewhere, leader, "a suspect leader is not asked");
            assert!(brokers.contains(&elsewhere));
        }

        cluster.set_leader("t", 0, leader.clone());
        assert_eq!(cluster.leader_addr("t", 0, false).await.unwrap(), leader, "a broker's hint clears it");
    }
}
