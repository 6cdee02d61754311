//! `sluice message get`: one record by topic, partition and offset, with everything it carries.
//!
//! The offset is checked against the partition's bounds first (`Consumer::record_at`), so a
//! missing one is an error naming the bounds, never a wait for a record that is not there.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Value, json};
use sluice_client::{ClientError, Cluster, ConsumedRecord, Consumer, ConsumerConfig, StartAt};

/// Which record to look up.
#[derive(Clone, Copy, Debug)]
pub enum At {
    Offset(u64),
    /// The first record stamped at or after this time (Unix ms).
    Time(i64),
}

/// The record of `topic`/`partition` at `at`.
pub async fn get(
    cluster: Arc<Cluster>,
    topic: &str,
    partition: u32,
    at: At,
) -> Result<ConsumedRecord, ClientError> {
    // The smallest fetch: it still returns the whole batch holding the offset.
    let config = ConsumerConfig { max_bytes: 1, min_bytes: 1, max_wait_ms: 0, read_from_follower: false };
    let mut consumer = Consumer::new(cluster, topic, partition, StartAt::Earliest, config);
    let offset = match at {
        At::Offset(offset) => offset,
        At::Time(t) => {
            let offset = consumer.offset_for_time(t).await?;
            let (_, end) = consumer.offsets().await?;
            if offset >= end {
                return Err(ClientError::Refused {
                    code: "OFFSET_OUT_OF_RANGE".into(),
                    message: format!("no record of {topic}/{partition} is stamped at or after {}", utc(t)),
                });
            }
            offset
        }
    };
    consumer.record_at(offset).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A Unix time in milliseconds as an ISO 8601 UTC time (the civil-from-days conversion of
/// Howard Hinnant's date algorithms, valid over the whole i64 day range used here).
fn utc(timestamp_ms: i64) -> String {
    let days = timestamp_ms.div_euclid(86_400_000);
    let ms_of_day = timestamp_ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, sec, ms) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}.{ms:03}Z")
}

pub fn to_json(topic: &str, r: &ConsumedRecord) -> Value {
    json!({
        "topic": topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp_ms": r.timestamp_ms,
        "timestamp": utc(r.timestamp_ms),
        "key": r.key.as_deref().map(text),
        "value": text(&r.value),
        "value_bytes": r.value.len(),
        "headers": r.headers.iter().map(|(k, v)| json!({"key": k, "value": text(v)})).collect::<Vec<_>>(),
        "producer": r.producer.map(|p| json!({"id": p.id, "epoch": p.epoch, "sequence": p.sequence})),
    })
}

pub fn to_table(topic: &str, r: &ConsumedRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "topic      {topic}");
    let _ = writeln!(out, "partition  {}", r.partition);
    let _ = writeln!(out, "offset     {}", r.offset);
    let _ = writeln!(out, "timestamp  {} ({} ms)", utc(r.timestamp_ms), r.timestamp_ms);
    let _ = writeln!(out, "key        {}", r.key.as_deref().map_or_else(|| "-".into(), text));
    match r.producer {
        Some(p) => {
            let _ = writeln!(out, "producer   id {} epoch {} sequence {}", p.id, p.epoch, p.sequence);
        }
        None => out.push_str("producer   - (not idempotent)\n"),
    }
    for (k, v) in &r.headers {
        let _ = writeln!(out, "header     {k} = {}", text(v));
    }
    let _ = writeln!(out, "value      ({} bytes)\n{}", r.value.len(), text(&r.value));
    out
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn times_print_in_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc(1_796_601_599_999), "2026-12-06T23:59:59.999Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59.999Z");
    }
}
