//! The pull consumer: long-polls one partition's leader (or a follower, when asked).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::v1 as pb;
use sluice_proto::v1::consumer_client::ConsumerClient;
use sluice_types::ValidatedBatch;

use crate::ClientError;
use crate::cluster::Cluster;
use crate::error::{code_name, refused};

/// How long `poll` keeps retrying a leader change before giving up.
const POLL_RETRY_WINDOW: Duration = Duration::from_secs(30);

/// Where a consumer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    /// The next record to be written.
    Latest,
    Offset(u64),
}

#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    pub max_bytes: u32,
    /// The broker answers once this many bytes are there, or `max_wait_ms` passed.
    pub min_bytes: u32,
    pub max_wait_ms: u32,
    /// Read from the first replica that answers instead of the leader (committed data only).
    pub read_from_follower: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig { max_bytes: 1024 * 1024, min_bytes: 1, max_wait_ms: 500, read_from_follower: false }
    }
}

/// One record as consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

/// Reads one partition in order.
#[derive(Debug)]
pub struct Consumer {
    cluster: Arc<Cluster>,
    topic: String,
    partition: u32,
    start: StartAt,
    next: Option<u64>,
    config: ConsumerConfig,
    refresh: bool,
}

impl Consumer {
    pub fn new(
        cluster: Arc<Cluster>,
        topic: &str,
        partition: u32,
        start: StartAt,
        config: ConsumerConfig,
    ) -> Self {
        let next = match start {
            StartAt::Offset(o) => Some(o),
            _ => None,
        };
        Consumer { cluster, topic: topic.to_string(), partition, start, next, config, refresh: false }
    }

    /// The offset of the next record `poll` returns, once known.
    pub fn position(&self) -> Option<u64> {
        self.next
    }

    pub fn seek(&mut self, start: StartAt) {
        self.start = start;
        self.next = match start {
            StartAt::Offset(o) => Some(o),
            _ => None,
        };
    }

    async fn client(&mut self) -> Result<ConsumerClient<tonic::transport::Channel>, ClientError> {
        let addr = self.cluster.leader_addr(&self.topic, self.partition, self.refresh).await?;
        self.refresh = false;
        Ok(ConsumerClient::new(self.cluster.channel(&addr)?)
            .max_decoding_message_size(Cluster::max_message_bytes()))
    }

    /// The earliest and latest offsets of the partition.
    pub async fn offsets(&mut self) -> Result<(u64, u64), ClientError> {
        let deadline = tokio::time::Instant::now() + POLL_RETRY_WINDOW;
        loop {
            let mut client = self.client().await?;
            let request = pb::ListOffsetsRequest { topic: self.topic.clone(), partition: self.partition };
            let last = match client.list_offsets(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    match r.error.filter(|e| e.code != 0) {
                        None => return Ok((r.earliest, r.latest)),
                        Some(e) if retriable(&e) => code_name(e.code),
                        Some(e) => return Err(refused(&e)),
                    }
                }
                Err(status) => status.message().to_string(),
            };
            self.refresh = true;
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError::Unreachable(last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The next records, waiting up to the configured `max_wait_ms` for some. An empty answer
    /// means none arrived in time.
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        let next = if let Some(next) = self.next {
            next
        } else {
            let (earliest, latest) = self.offsets().await?;
            let next = if self.start == StartAt::Latest { latest } else { earliest };
            self.next = Some(next);
            next
        };
        let deadline = tokio::time::Instant::now() + POLL_RETRY_WINDOW;
        let response = loop {
            let mut client = self.client().await?;
            let request = pb::FetchRequest {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: next,
                max_bytes: self.config.max_bytes,
                min_bytes: self.config.min_bytes,
                max_wait_ms: self.config.max_wait_ms,
                read_from_follower: self.config.read_from_follower,
            };
            let last = match client.fetch(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    match &r.error {
                        Some(e) if e.code != 0 && retriable(e) => {
                            if e.code == pb::ErrorCode::NotLeader as i32 && !e.leader_addr.is_empty() {
                                self.cluster.set_leader(&self.topic, self.partition, e.leader_addr.clone());
                            } else {
                                self.refresh = true;
                            }
                            code_name(e.code)
                        }
                        Some(e) if e.code != 0 => return Err(refused(e)),
                        _ => break r,
                    }
                }
                Err(status) => {
                    self.refresh = true;
                    status.message().to_string()
                }
            };
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError::Unreachable(last));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut out = Vec::new();
        let mut position = next;
        for stored in response.batches {
            // Checked end to end: the bytes the producer's checksum covers.
            let batch = ValidatedBatch::validate(stored.batch).map_err(|e| {
                ClientError::InvalidRecord(format!("fetched batch at {}: {e}", stored.base_offset))
            })?;
            let base_timestamp = batch.header().base_timestamp_ms;
            let records = batch.records().map_err(|e| ClientError::InvalidRecord(e.to_string()))?;
            for (i, record) in records.into_iter().enumerate() {
                let offset = stored.base_offset + i as u64;
                if offset < position {
                    continue;
                }
                position = offset + 1;
                out.push(ConsumedRecord {
                    partition: self.partition,
                    offset,
                    timestamp_ms: base_timestamp + record.timestamp_delta_ms,
                    key: record.key,
                    value: record.value,
                    headers: record.headers.into_iter().map(|h| (h.key, h.value)).collect(),
                });
            }
        }
        self.next = Some(position);
        Ok(out)
    }
}

fn retriable(error: &pb::Error) -> bool {
    matches!(
        pb::ErrorCode::try_from(error.code),
        Ok(pb::ErrorCode::NotLeader | pb::ErrorCode::Unavailable | pb::ErrorCode::UnknownTopicOrPartition)
    )
}
