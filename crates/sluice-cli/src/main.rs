//! `sluice`: the command line for a Sluice cluster.

mod bench;
mod health;
mod message;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use sluice_client::proto as pb;
use sluice_client::{
    Admin, ClientError, Cluster, Consumer, ConsumerConfig, Producer, ProducerConfig, StartAt,
};

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "Administer a Sluice cluster.")]
struct Cli {
    /// Nodes to contact, `host:port[,host:port...]`; the first that answers is used.
    #[arg(
        long,
        global = true,
        env = "SLUICE_BOOTSTRAP",
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7000"
    )]
    bootstrap: String,
    /// `table` for people, `json` for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The cluster: brokers, registry, Raft groups.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Topics: create, list, describe, delete.
    Topic {
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Messages: one record by topic, partition and offset.
    Message {
        #[command(subcommand)]
        command: MessageCommand,
    },
    /// Sends each line of standard input (or of --file) as one record.
    Produce {
        topic: String,
        /// The key of every record (it chooses the partition); without it records stay on one partition for a batch's worth of bytes, then move to another.
        #[arg(long)]
        key: Option<String>,
        /// Send to this partition instead of choosing by key.
        #[arg(long)]
        partition: Option<u32>,
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 0)]
        linger_ms: u64,
        #[arg(long, value_enum, default_value_t = CompressionArg::None)]
        compression: CompressionArg,
    },
    /// Benchmarks against the cluster.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Prints records, one per line: their values (table) or every field (json).
    Consume {
        topic: String,
        /// Only this partition (default: all).
        #[arg(long)]
        partition: Option<u32>,
        /// Start at the earliest retained record instead of the end.
        #[arg(long)]
        from_beginning: bool,
        /// Keep waiting for new records instead of stopping at the end.
        #[arg(long)]
        follow: bool,
        /// Stop after this many records.
        #[arg(long)]
        max_records: Option<u64>,
        /// `pull` long-polls; `push` subscribes to a stream with credit-based flow control.
        #[arg(long, value_enum, default_value_t = ModeArg::Pull)]
        mode: ModeArg,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Acknowledged publishes (majority, fsynced): throughput and enqueue-to-ack latency.
    Produce {
        #[arg(long, default_value = "bench")]
        topic: String,
        /// Partitions of the topic if it has to be created (replication factor 3).
        #[arg(long, default_value_t = 12)]
        partitions: u32,
        /// Record value size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        /// Stops after this many seconds even if records are left.
        #[arg(long, default_value_t = 30)]
        secs: u64,
        #[arg(long, default_value_t = 1)]
        producers: u32,
        /// Unacknowledged records per producer at most.
        #[arg(long, default_value_t = 256)]
        inflight: u32,
        #[arg(long, default_value_t = 0)]
        linger_ms: u64,
        /// The linger while two or more partitions have batches in flight.
        #[arg(long, default_value_t = 2)]
        busy_linger_ms: u64,
        /// Bytes of records sent to one partition before the producer moves to another; 0 sends
        /// the records round robin, one per partition (as keyed records spread).
        #[arg(long, default_value_t = 256 * 1024)]
        sticky_bytes: usize,
        /// Batches of one partition sent and not yet acknowledged, at most (1 to 8).
        #[arg(long, default_value_t = ProducerConfig::default().max_in_flight)]
        batches_in_flight: usize,
    },
    /// End to end at a fixed offered rate: publish→ack and publish→consume latency measured
    /// from each record's intended send time (coordinated-omission safe).
    E2e {
        #[arg(long, default_value = "bench-e2e")]
        topic: String,
        #[arg(long, default_value_t = 12)]
        partitions: u32,
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Records per second offered.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// The cost of a Metadata answer for a topic of many partitions, asked of each broker.
    Metadata {
        #[arg(long, default_value = "bench-metadata")]
        topic: String,
        /// Partitions of the topic if it has to be created.
        #[arg(long, default_value_t = 1000)]
        partitions: u32,
        /// Replication factor of the topic if it has to be created.
        #[arg(long, default_value_t = 1)]
        replication_factor: u32,
        /// Calls per broker, one at a time.
        #[arg(long, default_value_t = 200)]
        calls: u32,
        /// Stops after this many seconds even if calls are left.
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
    /// Reads a whole topic from the beginning: throughput of pull or push consumption.
    Consume {
        #[arg(long, default_value = "bench")]
        topic: String,
        #[arg(long, default_value_t = 30)]
        secs: u64,
        #[arg(long, value_enum, default_value_t = ModeArg::Pull)]
        mode: ModeArg,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CompressionArg {
    None,
    Lz4,
    Zstd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Pull,
    Push,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Brokers and their liveness, the registry leader, each group's leader, term, commit index
    /// and replica lag.
    Status,
    /// Waits until the registry has a leader and at least `--brokers` brokers are alive.
    Wait {
        #[arg(long, default_value_t = 1)]
        brokers: usize,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
}

#[derive(Subcommand, Debug)]
enum MessageCommand {
    /// The record at an offset, or the first one stamped at or after a time: its value, key,
    /// headers, timestamp and producer.
    Get {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 0)]
        partition: u32,
        #[arg(long, required_unless_present = "timestamp_ms", conflicts_with = "timestamp_ms")]
        offset: Option<u64>,
        /// A time in Unix milliseconds (`date +%s%3N`).
        #[arg(long)]
        timestamp_ms: Option<i64>,
    },
}

#[derive(Subcommand, Debug)]
enum TopicCommand {
    Create {
        name: String,
        #[arg(long, short, default_value_t = 1)]
        partitions: u32,
        #[arg(long, short = 'r', default_value_t = 3)]
        replication_factor: u32,
        /// Delete records older than this many milliseconds.
        #[arg(long)]
        retention_ms: Option<u64>,
        /// Trim a partition's log beyond this many bytes.
        #[arg(long)]
        retention_bytes: Option<u64>,
    },
    List,
    Describe {
        name: String,
    },
    Delete {
        name: String,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(text) => {
            use std::io::Write as _;
            // A reader that went away (`sluice ... | head`) is not an error worth a panic.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(cli: &Cli) -> Result<String, ClientError> {
    let bootstrap: Vec<String> =
        cli.bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    let admin = Admin::new(&bootstrap)?;
    let json = cli.output == Output::Json;
    match &cli.command {
        Command::Cluster { command: ClusterCommand::Status } => {
            let status = admin.cluster_status().await?;
            let topics = admin.list_topics().await?;
            Ok(if json { pretty(&status_json(&status, &topics)) } else { status_table(&status, &topics) })
        }
        Command::Cluster { command: ClusterCommand::Wait { brokers, timeout_secs } } => {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(*timeout_secs);
            loop {
                let last = match admin.cluster_status().await {
                    Ok(status) => {
                        let alive = status.brokers.iter().filter(|b| b.state == "alive").count();
                        if status.meta_leader.is_some() && alive >= *brokers {
                            return Ok(format!(
                                "registry leader {}, {alive} brokers alive\n",
                                opt(status.meta_leader)
                            ));
                        }
                        format!(
                            "registry leader {}, {alive} of {brokers} brokers alive",
                            opt(status.meta_leader)
                        )
                    }
                    Err(e) => e.to_string(),
                };
                if std::time::Instant::now() > deadline {
                    return Err(ClientError::Unreachable(format!(
                        "cluster not ready after {timeout_secs} s: {last}"
                    )));
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        }
        Command::Produce { topic, key, partition, file, linger_ms, compression } => {
            produce(&bootstrap, topic, key.as_deref(), *partition, file.as_deref(), *linger_ms, *compression)
                .await
        }
        Command::Consume { topic, partition, from_beginning, follow, max_records, mode } => {
            let options = ConsumeOptions {
                from_beginning: *from_beginning,
                follow: *follow,
                max_records: *max_records,
                json,
                push: *mode == ModeArg::Push,
            };
            consume(&bootstrap, topic, *partition, &options).await
        }
        Command::Bench { command } => run_bench(&bootstrap, command).await,
        Command::Message { command: MessageCommand::Get { topic, partition, offset, timestamp_ms } } => {
            let at = match (offset, timestamp_ms) {
                (Some(offset), _) => message::At::Offset(*offset),
                (None, Some(t)) => message::At::Time(*t),
                (None, None) => unreachable!("clap requires --offset or --timestamp-ms"),
            };
            let record = message::get(Cluster::new(&bootstrap)?, topic, *partition, at).await?;
            Ok(if json {
                pretty(&message::to_json(topic, &record))
            } else {
                message::to_table(topic, &record)
            })
        }
        Command::Topic { command } => match command {
            TopicCommand::Create { name, partitions, replication_factor, retention_ms, retention_bytes } => {
                let config =
                    pb::TopicConfig { retention_ms: *retention_ms, retention_bytes: *retention_bytes };
                let created = admin.create_topic(name, *partitions, *replication_factor, config).await?;
                // The answer comes once the registry agreed; the partitions then elect their
                // leaders. Wait a little for them, so the table shows leaders rather than "-".
                let topic = with_leaders(&admin, created).await;
                Ok(if json {
                    pretty(&topic_json(&topic))
                } else {
                    format!(
                        "created topic {} ({} partitions)\n{}",
                        topic.name,
                        topic.partitions.len(),
                        topic_table(&topic)
                    )
                })
            }
            TopicCommand::List => {
                let topics = admin.list_topics().await?;
                Ok(if json {
                    pretty(&Value::Array(topics.iter().map(topic_json).collect()))
                } else {
                    let mut out = format!("{:<40} {:>10} {:>4}\n", "TOPIC", "PARTITIONS", "RF");
                    for t in &topics {
                        let _ = writeln!(
                            out,
                            "{:<40} {:>10} {:>4}",
                            t.name,
                            t.partitions.len(),
                            t.replication_factor
                        );
                    }
                    out
                })
            }
            TopicCommand::Describe { name } => {
                let topic = admin.describe_topic(name).await?;
                let status = admin.cluster_status().await?;
                Ok(if json {
                    pretty(&topic_json_with_health(&topic, &status))
                } else {
                    topic_table_with_health(&topic, &status)
                })
            }
            TopicCommand::Delete { name } => {
                admin.delete_topic(name).await?;
                Ok(if json { pretty(&json!({ "deleted": name })) } else { format!("deleted topic {name}\n") })
            }
        },
    }
}

/// `topic` as described once every partition has a leader, polled for at most 10 s; as it was
/// if that takes longer or the description fails.
async fn with_leaders(admin: &Admin, topic: pb::TopicInfo) -> pb::TopicInfo {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut latest = topic;
    while latest.partitions.iter().any(|p| p.leader.is_none()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        match admin.describe_topic(&latest.name).await {
            Ok(described) => latest = described,
            Err(_) => break,
        }
    }
    latest
}

async fn produce(
    bootstrap: &[String],
    topic: &str,
    key: Option<&str>,
    partition: Option<u32>,
    file: Option<&std::path::Path>,
    linger_ms: u64,
    compression: CompressionArg,
) -> Result<String, ClientError> {
    use tokio::io::AsyncBufReadExt as _;
    let cluster = Cluster::new(bootstrap)?;
    let config = ProducerConfig {
        linger_ms,
        compression: match compression {
            CompressionArg::None => sluice_client::Compression::None,
            CompressionArg::Lz4 => sluice_client::Compression::Lz4,
            CompressionArg::Zstd => sluice_client::Compression::Zstd,
        },
        ..ProducerConfig::default()
    };
    let producer = Producer::new(cluster, config);
    let input: Box<dyn tokio::io::AsyncRead + Unpin> = match file {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .map_err(|e| ClientError::InvalidRecord(format!("{}: {e}", path.display())))?,
        ),
        None => Box::new(tokio::io::stdin()),
    };
    let mut lines = tokio::io::BufReader::new(input).lines();
    // Bounded: at most this many records wait for their acknowledgement at once.
    let mut waiting = std::collections::VecDeque::new();
    let mut sent = 0u64;
    let key = key.map(|k| bytes::Bytes::copy_from_slice(k.as_bytes()));
    while let Some(line) = lines.next_line().await.map_err(|e| ClientError::InvalidRecord(e.to_string()))? {
        let value = bytes::Bytes::from(line);
        let delivery = match partition {
            Some(p) => producer.send_to(topic, p, key.clone(), value).await?,
            None => producer.send(topic, key.clone(), value).await?,
        };
        waiting.push_back(delivery);
        if waiting.len() >= 10_000
            && let Some(first) = waiting.pop_front()
        {
            first.await?;
        }
        sent += 1;
    }
    for delivery in waiting {
        delivery.await?;
    }
    producer.close().await;
    Ok(format!("produced {sent} records to {topic}\n"))
}

async fn run_bench(bootstrap: &[String], command: &BenchCommand) -> Result<String, ClientError> {
    match command {
        BenchCommand::Produce {
            topic,
            partitions,
            size,
            records,
            secs,
            producers,
            inflight,
            linger_ms,
            busy_linger_ms,
            sticky_bytes,
            batches_in_flight,
        } => {
            let bench = bench::ProduceBench {
                topic: topic.clone(),
                partitions: *partitions,
                size: *size,
                records: *records,
                secs: *secs,
                producers: *producers,
                inflight: *inflight,
                linger_ms: *linger_ms,
                busy_linger_ms: *busy_linger_ms,
                sticky_bytes: *sticky_bytes,
                batches_in_flight: *batches_in_flight,
            };
            bench::produce(bootstrap, bench).await
        }
        BenchCommand::E2e { topic, partitions, size, rate, records, secs } => {
            let bench = bench::E2eBench {
                topic: topic.clone(),
                partitions: *partitions,
                size: *size,
                rate: *rate,
                records: *records,
                secs: *secs,
            };
            bench::e2e(bootstrap, &bench).await
        }
        BenchCommand::Metadata { topic, partitions, replication_factor, calls, secs } => {
            let bench = bench::MetadataBench {
                topic: topic.clone(),
                partitions: *partitions,
                replication_factor: *replication_factor,
                calls: *calls,
                secs: *secs,
            };
            bench::metadata(bootstrap, &bench).await
        }
        BenchCommand::Consume { topic, secs, mode } => {
            bench::consume(bootstrap, topic, *secs, *mode == ModeArg::Push).await
        }
    }
}

#[allow(clippy::struct_excessive_bools)] // Each is one independent command-line switch.
struct ConsumeOptions {
    from_beginning: bool,
    follow: bool,
    max_records: Option<u64>,
    json: bool,
    push: bool,
}

fn record_line(record: &sluice_client::ConsumedRecord, json: bool) -> String {
    if json {
        json!({
            "partition": record.partition,
            "offset": record.offset,
            "timestamp_ms": record.timestamp_ms,
            "key": record.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
            "value": String::from_utf8_lossy(&record.value),
        })
        .to_string()
    } else {
        String::from_utf8_lossy(&record.value).into_owned()
    }
}

async fn consume(
    bootstrap: &[String],
    topic: &str,
    partition: Option<u32>,
    options: &ConsumeOptions,
) -> Result<String, ClientError> {
    use std::io::Write as _;
    let ConsumeOptions { from_beginning, follow, max_records, json, push } = *options;
    let cluster = Cluster::new(bootstrap)?;
    let partitions = u32::try_from(cluster.topic(topic, true).await?.leaders.len()).unwrap_or(0);
    let chosen: Vec<u32> = match partition {
        Some(p) if p < partitions => vec![p],
        Some(p) => {
            return Err(ClientError::Refused {
                code: "UNKNOWN_TOPIC_OR_PARTITION".into(),
                message: format!("topic {topic} has {partitions} partitions, not {p}"),
            });
        }
        None => (0..partitions).collect(),
    };
    let start = if from_beginning { StartAt::Earliest } else { StartAt::Latest };
    let mut consumers = Vec::new();
    for p in chosen {
        let mut consumer = Consumer::new(cluster.clone(), topic, p, start, ConsumerConfig::default());
        let (_, latest) = consumer.offsets().await?;
        consumers.push((consumer, latest));
    }
    let mut printed = 0u64;
    let mut stdout = std::io::stdout().lock();
    let mut sources = Vec::new();
    for (mut consumer, end) in consumers {
        let source = if push {
            // Credit of 10,000 records or 8 MiB per partition, granted again as records are printed.
            Source::Push(consumer.subscribe(10_000, 8 << 20).await?)
        } else {
            Source::Pull(consumer)
        };
        sources.push((source, end));
    }
    loop {
        let mut all_done = true;
        for (source, end) in &mut sources {
            if !follow && source.position().is_some_and(|p| p >= *end) {
                continue;
            }
            all_done = false;
            for record in source.next().await? {
                if !follow && record.offset >= *end {
                    continue;
                }
                if writeln!(stdout, "{}", record_line(&record, json)).is_err() {
                    return Ok(String::new());
                }
                printed += 1;
                if max_records.is_some_and(|m| printed >= m) {
                    return Ok(String::new());
                }
            }
        }
        if all_done {
            return Ok(String::new());
        }
    }
}

/// Where `consume` reads a partition from: long polls or a push subscription.
enum Source {
    Pull(Consumer),
    Push(sluice_client::Subscription),
}

impl Source {
    fn position(&self) -> Option<u64> {
        match self {
            Source::Pull(consumer) => consumer.position(),
            Source::Push(subscription) => Some(subscription.position()),
        }
    }

    async fn next(&mut self) -> Result<Vec<sluice_client::ConsumedRecord>, ClientError> {
        match self {
            Source::Pull(consumer) => consumer.poll().await,
            Source::Push(subscription) => subscription.next().await,
        }
    }
}

fn pretty(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn topic_json(t: &pb::TopicInfo) -> Value {
    let config = t.config.unwrap_or_default();
    json!({
        "name": t.name,
        "replication_factor": t.replication_factor,
        "retention_ms": config.retention_ms,
        "retention_bytes": config.retention_bytes,
        "partitions": t.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "group_id": p.group_id,
            "replicas": p.replicas,
            "leader": p.leader,
        })).collect::<Vec<_>>(),
    })
}

fn topic_table(t: &pb::TopicInfo) -> String {
    let mut out = format!("topic {} (replication factor {})\n", t.name, t.replication_factor);
    let _ = writeln!(out, "{:>9} {:>7} {:>7} REPLICAS", "PARTITION", "GROUP", "LEADER");
    for p in &t.partitions {
        let replicas: Vec<String> = p.replicas.iter().map(u64::to_string).collect();
        let _ =
            writeln!(out, "{:>9} {:>7} {:>7} {}", p.partition, p.group_id, opt(p.leader), replicas.join(","));
    }
    out
}

fn status_json(s: &pb::ClusterStatusResponse, topics: &[pb::TopicInfo]) -> Value {
    let healths = group_healths(s, topics);
    json!({
        "summary": health::summary(&healths.values().cloned().collect::<Vec<_>>()),
        "meta_leader": s.meta_leader,
        "meta_term": s.meta_term,
        "meta_commit_index": s.meta_commit_index,
        "brokers": s.brokers.iter().map(|b| json!({
            "id": b.id,
            "addr": b.addr,
            "state": b.state,
            "last_heartbeat_ms_ago": b.last_heartbeat_ms_ago,
            "controller": b.controller,
        })).collect::<Vec<_>>(),
        "groups": s.groups.iter().map(|g| json!({
            "group_id": g.group_id,
            "topic": g.topic,
            "partition": g.partition,
            "leader": g.leader,
            "term": g.term,
            "commit_index": g.commit_index,
            "last_log_index": g.last_log_index,
            "high_watermark": g.high_watermark,
            "reported_by": g.reported_by,
            "hibernating": g.hibernating,
            "health": healths.get(&g.group_id).map(health::Health::label),
            "out_of_sync": healths.get(&g.group_id).map(|h| h.out_of_sync.clone()),
            "replicas": g.replicas.iter().map(|r| json!({
                "node_id": r.node_id, "matched_index": r.matched_index, "lag": r.lag,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "unreachable": s.unreachable,
    })
}

/// Every group's standing: each topic partition's, and the registry's.
fn group_healths(s: &pb::ClusterStatusResponse, topics: &[pb::TopicInfo]) -> BTreeMap<u64, health::Health> {
    let reported: BTreeMap<u64, Option<u64>> =
        topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.group_id, p.leader))).collect();
    health::replica_sets(s, topics)
        .into_iter()
        .map(|(group, replicas)| {
            let reported = reported.get(&group).copied().flatten();
            (group, health::assess(s, group, &replicas, reported))
        })
        .collect()
}

fn status_table(s: &pb::ClusterStatusResponse, topics: &[pb::TopicInfo]) -> String {
    let healths = group_healths(s, topics);
    let mut out = format!(
        "{}\nregistry leader: {}   term: {}   commit index: {}\n\n",
        health::summary(&healths.values().cloned().collect::<Vec<_>>()),
        opt(s.meta_leader),
        s.meta_term,
        s.meta_commit_index
    );
    let _ = writeln!(
        out,
        "{:>6} {:<22} {:<6} {:>14} {:<10}",
        "BROKER", "ADDRESS", "STATE", "HEARTBEAT(ms)", "ROLE"
    );
    for b in &s.brokers {
        let role = if s.meta_leader == Some(b.id) {
            "registry leader"
        } else if b.controller {
            "controller"
        } else {
            "broker"
        };
        let _ = writeln!(
            out,
            "{:>6} {:<22} {:<6} {:>14} {:<10}",
            b.id,
            b.addr,
            b.state,
            opt(b.last_heartbeat_ms_ago),
            role
        );
    }
    let _ = writeln!(
        out,
        "\n{:>6} {:<24} {:>10} {:>6} {:>6} {:>8} {:>8}  {:<12} REPLICA LAG",
        "GROUP", "TOPIC/PARTITION", "LEADER", "TERM", "COMMIT", "LAST LOG", "HW", "HEALTH"
    );
    let names: BTreeMap<u64, String> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.group_id, format!("{}/{}", t.name, p.partition))))
        .collect();
    for (group, h) in &healths {
        let report = s.groups.iter().find(|g| g.group_id == *group);
        let name = if *group == 0 {
            "(registry)".to_string()
        } else {
            names.get(group).cloned().unwrap_or_default()
        };
        let lag: Vec<String> = report
            .map(|g| g.replicas.iter().map(|r| format!("{}:{}", r.node_id, r.lag)).collect())
            .unwrap_or_default();
        let (term, commit, last, hw) =
            report.map_or((0, 0, 0, 0), |g| (g.term, g.commit_index, g.last_log_index, g.high_watermark));
        let _ = writeln!(
            out,
            "{:>6} {:<24} {:>10} {:>6} {:>6} {:>8} {:>8}  {:<12} {}",
            group,
            name,
            h.leader_text(),
            term,
            commit,
            last,
            hw,
            h.label(),
            lag.join(" ")
        );
    }
    if !s.unreachable.is_empty() {
        let ids: Vec<String> = s.unreachable.iter().map(u64::to_string).collect();
        let _ = writeln!(out, "\nunreachable brokers: {}", ids.join(","));
    }
    out
}

fn topic_json_with_health(t: &pb::TopicInfo, s: &pb::ClusterStatusResponse) -> Value {
    let mut value = topic_json(t);
    let healths = group_healths(s, std::slice::from_ref(t));
    if let Some(partitions) = value.get_mut("partitions").and_then(Value::as_array_mut) {
        for (p, v) in t.partitions.iter().zip(partitions) {
            if let Some(h) = healths.get(&p.group_id) {
                v["leader"] = json!(h.leader);
                v["idle"] = json!(h.idle);
                v["health"] = json!(h.label());
                v["out_of_sync"] = json!(h.out_of_sync);
            }
        }
    }
    value
}

fn topic_table_with_health(t: &pb::TopicInfo, s: &pb::ClusterStatusResponse) -> String {
    let healths = group_healths(s, std::slice::from_ref(t));
    let mut out = format!("topic {} (replication factor {})\n", t.name, t.replication_factor);
    let _ = writeln!(out, "{:>9} {:>7} {:>10} {:<9} HEALTH", "PARTITION", "GROUP", "LEADER", "REPLICAS");
    for p in &t.partitions {
        let replicas: Vec<String> = p.replicas.iter().map(u64::to_string).collect();
        let (leader, label) = healths
            .get(&p.group_id)
            .map_or_else(|| (opt(p.leader), String::new()), |h| (h.leader_text(), h.label()));
        let _ = writeln!(
            out,
            "{:>9} {:>7} {:>10} {:<9} {label}",
            p.partition,
            p.group_id,
            leader,
            replicas.join(",")
        );
    }
    out
}
