//! The pull consumer: long-polls one partition's leader (or a follower, when asked).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::v1 as pb;
use sluice_proto::v1::consumer_client::ConsumerClient;
use sluice_types::ValidatedBatch;
use tokio::sync::mpsc;

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
    /// The first record stamped at or after this time (Unix ms); the next one written if none is.
    Timestamp(i64),
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
    /// Who wrote it: the idempotent producer's id, epoch and this record's sequence number, or
    /// none for a record of a non-idempotent producer.
    pub producer: Option<ProducerStamp>,
}

/// An idempotent producer's identity on a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerStamp {
    pub id: u64,
    pub epoch: u32,
    pub sequence: u64,
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
        let answer = self.list_offsets(None).await?;
        Ok((answer.earliest, answer.latest))
    }

    /// The offset of the first record stamped at or after `timestamp_ms` (Unix ms), or the next
    /// offset to be written when none is. A time more than a minute ahead of the broker's clock
    /// is refused (`INVALID_REQUEST`).
    pub async fn offset_for_time(&mut self, timestamp_ms: i64) -> Result<u64, ClientError> {
        let answer = self.list_offsets(Some(timestamp_ms)).await?;
        Ok(answer.timestamp_offset.unwrap_or(answer.latest))
    }

    /// Where a consumer without a position starts.
    async fn start_offset(&mut self) -> Result<u64, ClientError> {
        match self.start {
            StartAt::Offset(o) => Ok(o),
            StartAt::Timestamp(t) => self.offset_for_time(t).await,
            StartAt::Earliest => Ok(self.offsets().await?.0),
            StartAt::Latest => Ok(self.offsets().await?.1),
        }
    }

    async fn list_offsets(
        &mut self,
        timestamp_ms: Option<i64>,
    ) -> Result<pb::ListOffsetsResponse, ClientError> {
        let deadline = tokio::time::Instant::now() + POLL_RETRY_WINDOW;
        loop {
            let mut client = self.client().await?;
            let request =
                pb::ListOffsetsRequest { topic: self.topic.clone(), partition: self.partition, timestamp_ms };
            let last = match client.list_offsets(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    match r.error.as_ref().filter(|e| e.code != 0) {
                        None => return Ok(r),
                        Some(e) if retriable(e) => code_name(e.code),
                        Some(e) => return Err(refused(e)),
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

    /// The record at `offset`, looked up without waiting: an offset outside the partition's
    /// bounds is `OFFSET_OUT_OF_RANGE` naming them (never a wait for a record not written yet).
    /// The consumer moves past it.
    pub async fn record_at(&mut self, offset: u64) -> Result<ConsumedRecord, ClientError> {
        let (start, end) = self.offsets().await?;
        if offset < start || offset >= end {
            let why = if offset < start { "was removed by retention" } else { "is not written yet" };
            let (topic, partition) = (&self.topic, self.partition);
            let holds = if start == end {
                format!("{topic}/{partition} is empty (its next offset is {end})")
            } else {
                format!("{topic}/{partition} holds offsets {start} to {}", end - 1)
            };
            return Err(ClientError::Refused {
                code: "OFFSET_OUT_OF_RANGE".into(),
                message: format!("{holds}; offset {offset} {why}"),
            });
        }
        self.seek(StartAt::Offset(offset));
        let wait = std::mem::replace(&mut self.config.max_wait_ms, 0);
        let records = self.poll().await;
        self.config.max_wait_ms = wait;
        records?.into_iter().find(|r| r.offset == offset).ok_or_else(|| {
            ClientError::Unreachable(format!("the fetch at {offset} did not return that record"))
        })
    }

    /// The next records, waiting up to the configured `max_wait_ms` for some. An empty answer
    /// means none arrived in time.
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        let next = if let Some(next) = self.next {
            next
        } else {
            let next = self.start_offset().await?;
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
        let (out, position) = decode_batches(self.partition, response.batches, next)?;
        self.next = Some(position);
        Ok(out)
    }

    /// Opens a push subscription at this consumer's position, granting `credit_records` and
    /// `credit_bytes` up front.
    pub async fn subscribe(
        &mut self,
        credit_records: u32,
        credit_bytes: u64,
    ) -> Result<Subscription, ClientError> {
        let position = if let Some(next) = self.next { next } else { self.start_offset().await? };
        let mut client = self.client().await?;
        let (credit, rx) = mpsc::channel(16);
        let first = pb::SubscribeRequest {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: position,
            read_from_follower: self.config.read_from_follower,
            credit_records,
            credit_bytes,
        };
        credit.send(first).await.map_err(|_| ClientError::Closed)?;
        let inbound = client
            .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| {
                self.refresh = true;
                ClientError::Unreachable(s.message().to_string())
            })?
            .into_inner();
        Ok(Subscription { partition: self.partition, position, credit, inbound, owed: (0, 0) })
    }
}

/// Decodes fetched or pushed batches into records at or after `position`; returns them and the
/// position after the last.
pub fn decode_batches(
    partition: u32,
    batches: Vec<pb::StoredBatch>,
    mut position: u64,
) -> Result<(Vec<ConsumedRecord>, u64), ClientError> {
    let mut out = Vec::new();
    for stored in batches {
        // Checked end to end: the bytes the producer's checksum covers.
        let (batch, records) = ValidatedBatch::validate_with_records(stored.batch)
            .map_err(|e| ClientError::InvalidRecord(format!("batch at {}: {e}", stored.base_offset)))?;
        let header = batch.header();
        let base_timestamp = header.base_timestamp_ms;
        for (i, record) in records.into_iter().enumerate() {
            let offset = stored.base_offset + i as u64;
            if offset < position {
                continue;
            }
            position = offset + 1;
            out.push(ConsumedRecord {
                partition,
                offset,
                timestamp_ms: base_timestamp + record.timestamp_delta_ms,
                key: record.key,
                value: record.value,
                headers: record.headers.into_iter().map(|h| (h.key, h.value)).collect(),
                producer: (!header.producer_id.is_none()).then(|| ProducerStamp {
                    id: header.producer_id.0,
                    epoch: header.producer_epoch.0,
                    sequence: header.base_sequence.0 + i as u64,
                }),
            });
        }
    }
    Ok((out, position))
}

/// Records pushed by the server over one stream, within the credit this side grants: each
/// `next` grants again what the previous one consumed, so a slow reader slows only its stream.
#[derive(Debug)]
pub struct Subscription {
    partition: u32,
    position: u64,
    credit: mpsc::Sender<pb::SubscribeRequest>,
    inbound: tonic::Streaming<pb::SubscribeResponse>,
    owed: (u32, u64),
}

impl Subscription {
    /// The next records; an empty answer is the server's idle heartbeat.
    pub async fn next(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        if self.owed.0 > 0 {
            let (records, bytes) = std::mem::take(&mut self.owed);
            let grant =
                pb::SubscribeRequest { credit_records: records, credit_bytes: bytes, ..Default::default() };
            self.credit
                .send(grant)
                .await
                .map_err(|_| ClientError::Unreachable("subscription closed".into()))?;
        }
        let message = self
            .inbound
            .message()
            .await
            .map_err(|s| ClientError::Unreachable(s.message().to_string()))?
            .ok_or_else(|| ClientError::Unreachable("the server ended the subscription".into()))?;
        if let Some(error) = message.error.filter(|e| e.code != 0) {
            return Err(refused(&error));
        }
        let bytes: u64 = message.batches.iter().map(|b| b.batch.len() as u64).sum();
        let (records, position) = decode_batches(self.partition, message.batches, self.position)?;
        self.position = position;
        self.owed = (u32::try_from(records.len()).unwrap_or(u32::MAX), bytes);
        Ok(records)
    }

    /// The offset of the next record `next` returns.
    pub fn position(&self) -> u64 {
        self.position
    }
}

fn retriable(error: &pb::Error) -> bool {
    matches!(
        pb::ErrorCode::try_from(error.code),
        Ok(pb::ErrorCode::NotLeader | pb::ErrorCode::Unavailable | pb::ErrorCode::UnknownTopicOrPartition)
    )
}
