//! `sluice bench produce`: acknowledged-publish throughput and latency, printed for people and as
//! one `RESULT` line in the format of the peer baselines (shared/peers/README.md), so Sluice and
//! NATS/RabbitMQ runs of the same session go into one table.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::{Admin, ClientError, Cluster, Producer, ProducerConfig, proto as pb};
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct ProduceBench {
    pub topic: String,
    pub partitions: u32,
    pub size: usize,
    pub records: u64,
    pub secs: u64,
    pub producers: u32,
    pub inflight: u32,
    pub linger_ms: u64,
    pub busy_linger_ms: u64,
    pub sticky_bytes: usize,
    pub batches_in_flight: usize,
}

/// Creates the topic if it is missing and waits until every partition has a leader.
async fn ensure_topic(
    bootstrap: &[String],
    topic: &str,
    partitions: u32,
    replication_factor: u32,
) -> Result<(), ClientError> {
    let admin = Admin::new(bootstrap)?;
    match admin.create_topic(topic, partitions, replication_factor, pb::TopicConfig::default()).await {
        Ok(_) => {}
        Err(ClientError::Refused { code, .. }) if code == "TOPIC_EXISTS" => {}
        Err(e) => return Err(e),
    }
    let cluster = Cluster::new(bootstrap)?;
    // Forming many groups takes a while on two cores: a second per hundred partitions.
    let wait = Duration::from_secs(30 + u64::from(partitions) / 100);
    let deadline = Instant::now() + wait;
    loop {
        // A broker whose registry copy has not applied the creation yet knows no such topic.
        match cluster.topic(topic, true).await {
            Ok(meta) if meta.leaders.iter().all(Option::is_some) => return Ok(()),
            Ok(_) => {}
            Err(ClientError::Refused { code, .. }) if code == "UNKNOWN_TOPIC_OR_PARTITION" => {}
            Err(e) => return Err(e),
        }
        if Instant::now() > deadline {
            return Err(ClientError::Unreachable(format!(
                "partitions without a leader after {} s",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn produce(bootstrap: &[String], bench: ProduceBench) -> Result<String, ClientError> {
    ensure_topic(bootstrap, &bench.topic, bench.partitions, 3).await?;
    let cluster = Cluster::new(bootstrap)?;
    let value = Bytes::from(vec![b'x'; bench.size]);
    let per_producer = bench.records / u64::from(bench.producers.max(1));
    let deadline = Instant::now() + Duration::from_secs(bench.secs);
    let started = Instant::now();
    // Drawn on stderr only when it is a terminal; the RESULT line stays clean on stdout.
    let progress = indicatif::ProgressBar::new(per_producer * u64::from(bench.producers.max(1)));
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} acknowledged, {per_sec}, {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut tasks = Vec::new();
    for _ in 0..bench.producers.max(1) {
        let progress = progress.clone();
        let producer = Arc::new(Producer::new(
            cluster.clone(),
            ProducerConfig {
                linger_ms: bench.linger_ms,
                busy_linger_ms: bench.busy_linger_ms,
                sticky_bytes: bench.sticky_bytes,
                max_in_flight: bench.batches_in_flight,
                ..ProducerConfig::default()
            },
        ));
        let topic = bench.topic.clone();
        let value = value.clone();
        let inflight = Arc::new(Semaphore::new(bench.inflight.max(1) as usize));
        tasks.push(tokio::spawn(async move {
            let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds");
            let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
            let waiter = tokio::spawn(async move {
                let mut acked = 0u64;
                let mut failed = None;
                while let Some((sent_at, permit, delivery)) = rx.recv().await {
                    let delivery: sluice_client::DeliveryFuture = delivery;
                    match delivery.await {
                        Ok(_) => {
                            acked += 1;
                            progress.inc(1);
                            let micros =
                                u64::try_from(Instant::elapsed(&sent_at).as_micros()).unwrap_or(u64::MAX);
                            let _ = histogram.record(micros.max(1));
                        }
                        Err(e) => failed = Some(e),
                    }
                    drop(permit);
                }
                (acked, failed, histogram)
            });
            // Bounded in count and in time: stops at its share of records or the deadline.
            for _ in 0..per_producer {
                if Instant::now() > deadline {
                    break;
                }
                let Ok(permit) = inflight.clone().acquire_owned().await else { break };
                let sent_at = Instant::now();
                match producer.send(&topic, None, value.clone()).await {
                    Ok(delivery) => {
                        if tx.send((sent_at, permit, delivery)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            drop(tx);
            let (acked, failed, histogram) =
                waiter.await.map_err(|e| ClientError::Unreachable(e.to_string()))?;
            if let Some(e) = failed {
                return Err(e);
            }
            Ok((acked, histogram))
        }));
    }
    let mut acked = 0u64;
    let mut histogram =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for task in tasks {
        let (n, h) = task.await.map_err(|e| ClientError::Unreachable(e.to_string()))??;
        acked += n;
        histogram.add(h).map_err(|e| ClientError::Unreachable(e.to_string()))?;
    }
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let (rate, mb) = (acked as f64 / secs, acked as f64 * bench.size as f64 / secs / 1e6);
    #[allow(clippy::cast_precision_loss)]
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(format!(
        "acknowledged {acked} records of {} B in {secs:.2} s: {rate:.0} msgs/s, {mb:.2} MB/s\n\
         latency enqueue→ack: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n\
         RESULT system=sluice fsync=majority replicas=3 test=publish_acked size={} msgs={acked} secs={secs:.2} \
         msgs_per_s={rate:.0} MB_per_s={mb:.2} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} producers={} inflight={} \
         partitions={} linger_ms={} busy_linger_ms={} sticky_bytes={} batches_in_flight={}\n",
        bench.size,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        ms(1.0),
        bench.size,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        bench.producers,
        bench.inflight,
        bench.partitions,
        bench.linger_ms,
        bench.busy_linger_ms,
        bench.sticky_bytes,
        bench.batches_in_flight,
    ))
}

/// Reads every partition of `topic` from its earliest offset to the end it has when the run
/// starts, one consumer per partition, by pull or push; bounded by `secs`.
pub async fn consume(
    bootstrap: &[String],
    topic: &str,
    secs: u64,
    push: bool,
) -> Result<String, ClientError> {
    use sluice_client::{Consumer, ConsumerConfig, StartAt};
    let cluster = Cluster::new(bootstrap)?;
    let partitions = u32::try_from(cluster.topic(topic, true).await?.leaders.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for partition in 0..partitions {
        let cluster = cluster.clone();
        let topic = topic.to_string();
        tasks.push(tokio::spawn(async move {
            let config = ConsumerConfig { max_bytes: 4 << 20, ..ConsumerConfig::default() };
            let mut consumer = Consumer::new(cluster, &topic, partition, StartAt::Earliest, config);
            let (_, end) = consumer.offsets().await?;
            let (mut records, mut bytes) = (0u64, 0u64);
            let mut count = |batch: &[sluice_client::ConsumedRecord]| {
                records += batch.len() as u64;
                bytes += batch.iter().map(|r| r.value.len() as u64).sum::<u64>();
            };
            if push {
                let mut subscription = consumer.subscribe(100_000, 16 << 20).await?;
                while subscription.position() < end && Instant::now() < deadline {
                    count(&subscription.next().await?);
                }
            } else {
                while consumer.position().is_none_or(|p| p < end) && Instant::now() < deadline {
                    count(&consumer.poll().await?);
                }
            }
            Ok::<_, ClientError>((records, bytes))
        }));
    }
    let (mut records, mut bytes) = (0u64, 0u64);
    for task in tasks {
        let (r, b) = task.await.map_err(|e| ClientError::Unreachable(e.to_string()))??;
        records += r;
        bytes += b;
    }
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let (rate, mb) = (records as f64 / secs, bytes as f64 / secs / 1e6);
    let mode = if push { "push" } else { "pull" };
    Ok(format!(
        "consumed {records} records ({bytes} value bytes) from {partitions} partitions in {secs:.2} s: {rate:.0} msgs/s, \
         {mb:.2} MB/s\n\
         RESULT system=sluice fsync=majority replicas=3 test=consume mode={mode} msgs={records} secs={secs:.2} \
         msgs_per_s={rate:.0} MB_per_s={mb:.2} partitions={partitions}\n"
    ))
}

fn micros_since_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What `bench e2e` runs.
#[derive(Debug, Clone)]
pub struct E2eBench {
    pub topic: String,
    pub partitions: u32,
    pub size: usize,
    /// Records per second offered.
    pub rate: u64,
    pub records: u64,
    pub secs: u64,
}

/// End to end at a fixed offered rate: a producer sends record i at its intended time
/// `start + i / rate` (open loop), each value carrying that intended time; push consumers on every
/// partition receive them. Latencies are measured from the intended time, not from when the send
/// actually happened, so a stall is charged to every record it delayed (coordinated omission).
pub async fn e2e(bootstrap: &[String], bench: &E2eBench) -> Result<String, ClientError> {
    use sluice_client::{Consumer, ConsumerConfig, StartAt};
    ensure_topic(bootstrap, &bench.topic, bench.partitions, 3).await?;
    let cluster = Cluster::new(bootstrap)?;
    let partitions = u32::try_from(cluster.topic(&bench.topic, true).await?.leaders.len()).unwrap_or(0);
    let rate = bench.rate.max(1);
    let total = bench.records.min(rate.saturating_mul(bench.secs.max(1)));

    // Consumers first, from the current end, so they see only this run's records.
    let received = Arc::new(std::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
    ));
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut consumers = Vec::new();
    for partition in 0..partitions {
        let mut consumer = Consumer::new(
            cluster.clone(),
            &bench.topic,
            partition,
            StartAt::Latest,
            ConsumerConfig::default(),
        );
        let mut subscription = consumer.subscribe(100_000, 16 << 20).await?;
        let (received, count, stop) = (received.clone(), count.clone(), stop.clone());
        consumers.push(tokio::spawn(async move {
            // Bounded: stops when told, or on an error.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(records) = subscription.next().await else { break };
                let now = micros_since_epoch();
                let mut histogram = received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for record in records {
                    let Some(intended) =
                        record.value.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
                    else {
                        continue;
                    };
                    let _ = histogram.record(now.saturating_sub(intended).max(1));
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }

    let producer = Producer::new(cluster.clone(), ProducerConfig::default());
    let mut acks = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
    let start_micros = micros_since_epoch();
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..total {
        let intended_offset = Duration::from_micros(i.saturating_mul(1_000_000) / rate);
        tokio::time::sleep_until((start + intended_offset).into()).await;
        let intended = start_micros + u64::try_from(intended_offset.as_micros()).unwrap_or(u64::MAX);
        let mut value = vec![b'x'; bench.size.max(8)];
        value[..8].copy_from_slice(&intended.to_be_bytes());
        pending.push_back((intended, producer.send(&bench.topic, None, Bytes::from(value)).await?));
        // Acknowledgements are collected as they complete (noticed between sends, so never
        // earlier than they happened); at most 100,000 wait.
        while let Some((intended, mut delivery)) = pending.pop_front() {
            let outcome = match futures::FutureExt::now_or_never(&mut delivery) {
                Some(outcome) => outcome,
                None if pending.len() >= 100_000 => delivery.await,
                None => {
                    pending.push_front((intended, delivery));
                    break;
                }
            };
            outcome?;
            let _ = acks.record(micros_since_epoch().saturating_sub(intended).max(1));
        }
    }
    for (intended, delivery) in pending {
        delivery.await?;
        let _ = acks.record(micros_since_epoch().saturating_sub(intended).max(1));
    }
    let produced_secs = start.elapsed().as_secs_f64();
    // Wait (bounded) for the consumers to see every record.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count.load(std::sync::atomic::Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.close().await;
    for consumer in consumers {
        consumer.abort();
    }
    let seen = count.load(std::sync::atomic::Ordering::Relaxed);
    let e2e = received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    #[allow(clippy::cast_precision_loss)]
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    #[allow(clippy::cast_precision_loss)]
    let achieved = total as f64 / produced_secs;
    Ok(format!(
        "offered {rate}/s for {total} records of {} B: sent in {produced_secs:.2} s ({achieved:.0}/s), {seen} consumed\n\
         publish→ack (from intended send time): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms\n\
         publish→consume (from intended send time): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms\n\
         RESULT system=sluice fsync=majority replicas=3 test=e2e size={} rate={rate} msgs={seen} secs={produced_secs:.2} \
         p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} ack_p50_ms={:.2} ack_p99_ms={:.2} partitions={partitions}\n",
        bench.size,
        ms(&acks, 0.5),
        ms(&acks, 0.99),
        ms(&acks, 0.999),
        ms(&e2e, 0.5),
        ms(&e2e, 0.99),
        ms(&e2e, 0.999),
        bench.size,
        ms(&e2e, 0.5),
        ms(&e2e, 0.99),
        ms(&e2e, 0.999),
        ms(&acks, 0.5),
        ms(&acks, 0.99),
    ))
}

/// What `bench metadata` runs.
#[derive(Debug, Clone)]
pub struct MetadataBench {
    pub topic: String,
    pub partitions: u32,
    pub replication_factor: u32,
    /// Metadata calls per broker.
    pub calls: u32,
    pub secs: u64,
}

/// The cost of a `Metadata` answer for one topic of many partitions: creates the topic (if
/// missing) and waits until every partition has a leader, then asks each bootstrap broker in
/// turn, one call at a time, for the topic's metadata. One `RESULT` line per broker; the
/// registry leader answers from the leaders reported in heartbeats, the others from their copy.
pub async fn metadata(bootstrap: &[String], bench: &MetadataBench) -> Result<String, ClientError> {
    ensure_topic(bootstrap, &bench.topic, bench.partitions, bench.replication_factor).await?;
    let deadline = Instant::now() + Duration::from_secs(bench.secs);
    let mut out = String::new();
    for addr in bootstrap {
        let cluster = Cluster::new(std::slice::from_ref(addr))?;
        let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
            .expect("valid histogram bounds");
        let started = Instant::now();
        let mut calls = 0u32;
        // Bounded in count and in time.
        while calls < bench.calls && Instant::now() < deadline {
            let sent_at = Instant::now();
            let meta = cluster.topic(&bench.topic, true).await?;
            if meta.leaders.len() != bench.partitions as usize {
                return Err(ClientError::Unreachable(format!(
                    "{addr} described {} partitions, not {}",
                    meta.leaders.len(),
                    bench.partitions
                )));
            }
            let micros = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
            let _ = histogram.record(micros.max(1));
            calls += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        let rate = f64::from(calls) / secs;
        let _ = write!(
            out,
            "{addr}: {calls} Metadata calls for {} partitions in {secs:.2} s: {rate:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms\n\
             RESULT system=sluice test=metadata broker={addr} partitions={} replicas={} calls={calls} secs={secs:.2} \
             calls_per_s={rate:.0} p50_ms={:.2} p99_ms={:.2}\n",
            bench.partitions,
            ms(0.5),
            ms(0.99),
            bench.partitions,
            bench.replication_factor,
            ms(0.5),
            ms(0.99),
        );
    }
    Ok(out)
}
