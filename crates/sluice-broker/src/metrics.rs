//! The node's counters and histograms (`prometheus-client`), updated on the produce path and
//! exposed with the rest of `/metrics` by `exposition`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

/// What the node counts as it serves.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    produce: Produce,
    consume: Family<ModeLabel, Counter>,
    consume_bytes: Family<ModeLabel, Counter>,
}

/// How records left the node: pulled by `Fetch` or pushed on a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fetch,
    Push,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: &'static str,
}

impl ModeLabel {
    fn of(mode: Mode) -> Self {
        ModeLabel { mode: if mode == Mode::Fetch { "fetch" } else { "push" } }
    }
}

/// The produce path's counters.
#[derive(Clone, Debug)]
struct Produce {
    latency: Histogram,
    records: Counter,
    bytes: Counter,
    errors: Family<CodeLabel, Counter>,
}

impl Default for Produce {
    fn default() -> Self {
        Produce {
            // 0.1 ms to about 3.3 s, doubling.
            latency: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            records: Counter::default(),
            bytes: Counter::default(),
            errors: Family::default(),
        }
    }
}

impl Metrics {
    /// An acknowledged produce of `records` records in `bytes` bytes that took `seconds`.
    pub fn produced(&self, records: u32, bytes: usize, seconds: f64) {
        self.produce.latency.observe(seconds);
        self.produce.records.inc_by(u64::from(records));
        self.produce.bytes.inc_by(bytes as u64);
    }

    /// A produce answered with the error `code` (its stable name).
    pub fn produce_failed(&self, code: &str) {
        self.produce.errors.get_or_create(&CodeLabel { code: code.to_string() }).inc();
    }

    /// Batches of `records` records in `bytes` bytes sent to a consumer.
    pub fn consumed(&self, mode: Mode, records: u64, bytes: u64) {
        self.consume.get_or_create(&ModeLabel::of(mode)).inc_by(records);
        self.consume_bytes.get_or_create(&ModeLabel::of(mode)).inc_by(bytes);
    }

    /// Adds these metrics to one scrape's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "consume_records",
            "Records sent to consumers, by mode (fetch, push); batches go whole, so a batch read from its middle counts all its records",
            self.consume.clone(),
        );
        registry.register(
            "consume_bytes",
            "Batch bytes sent to consumers, by mode",
            self.consume_bytes.clone(),
        );
        registry.register(
            "produce_latency_seconds",
            "Acknowledged produce requests: from arrival to the answer (committed on a majority)",
            self.produce.latency.clone(),
        );
        registry.register(
            "produce_records",
            "Records acknowledged to producers",
            self.produce.records.clone(),
        );
        registry.register(
            "produce_bytes",
            "Batch bytes acknowledged to producers",
            self.produce.bytes.clone(),
        );
        registry.register(
            "produce_errors",
            "Produce requests answered with an error, by code",
            self.produce.errors.clone(),
        );
    }
}
