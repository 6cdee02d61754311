//! Deliberate bugs for the fault tests to catch (`jepsen-style-tests`, docs/CHAOS.md): a suite
//! that never sees a broken build fail cannot be trusted to notice a real bug.
//!
//! A [`Sabotage`] is a plain value: the node reads its switch once at start-up (debug builds
//! only) and passes it to the state machine, so nothing in this crate reads the environment.

use std::fmt;

/// Which deliberate bugs are switched on. The default breaks nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // Independent switches: any combination may be on.
pub struct Sabotage {
    /// Appends idempotent batches without consulting the producer's dedup window, so a retried
    /// batch lands twice.
    pub skip_dedup: bool,
    /// Leaves the batch holding offset [`Sabotage::SKIPPED_OFFSET`] out of every fetch and push:
    /// readers step over it as if it were never written.
    pub skip_fetch_batch: bool,
    /// A partition leader counts a follower it cannot reach as having stored what it was sent,
    /// so it commits (and acknowledges) with no quorum behind it.
    pub commit_without_quorum: bool,
    /// The storage acknowledges durable writes (log entries, votes) without fsyncing its WAL:
    /// only a power loss tells (the fault tests' lazy filesystem).
    pub ack_before_fsync: bool,
    /// The storage replays a damaged WAL up to the damage and starts with what came before
    /// (RocksDB's `PointInTime` recovery) instead of refusing to start.
    pub tolerate_wal_damage: bool,
    /// Fetches and pushes also serve the log entries past the high watermark, committed or
    /// not, numbered on from it as if they were.
    pub serve_past_high_watermark: bool,
}

/// A sabotage name this build does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown sabotage {name:?} (known: {})", Sabotage::NAMES.join(", "))]
pub struct UnknownSabotage {
    pub name: String,
}

impl Sabotage {
    /// Nothing broken.
    pub const NONE: Sabotage = Sabotage {
        skip_dedup: false,
        skip_fetch_batch: false,
        commit_without_quorum: false,
        ack_before_fsync: false,
        tolerate_wal_damage: false,
        serve_past_high_watermark: false,
    };
    /// Every name [`Sabotage::parse`] accepts.
    pub const NAMES: &'static [&'static str] = &[
        "skip-dedup",
        "skip-fetch-batch",
        "commit-without-quorum",
        "ack-before-fsync",
        "tolerate-wal-damage",
        "serve-past-hw",
    ];
    /// The offset whose batch `skip-fetch-batch` leaves out of reads.
    pub const SKIPPED_OFFSET: u64 = 500;

    /// Parses a comma-separated list of names (see [`Sabotage::NAMES`]); empty items
    /// are ignored.
    pub fn parse(list: &str) -> Result<Sabotage, UnknownSabotage> {
        let mut sabotage = Sabotage::NONE;
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "skip-dedup" => sabotage.skip_dedup = true,
                "skip-fetch-batch" => sabotage.skip_fetch_batch = true,
                "commit-without-quorum" => sabotage.commit_without_quorum = true,
                "ack-before-fsync" => sabotage.ack_before_fsync = true,
                "tolerate-wal-damage" => sabotage.tolerate_wal_damage = true,
                "serve-past-hw" => sabotage.serve_past_high_watermark = true,
                other => return Err(UnknownSabotage { name: other.to_string() }),
            }
        }
        Ok(sabotage)
    }

    pub fn is_none(&self) -> bool {
        *self == Sabotage::NONE
    }
}

impl fmt::Display for Sabotage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.skip_dedup, "skip-dedup"),
            (self.skip_fetch_batch, "skip-fetch-batch"),
            (self.commit_without_quorum, "commit-without-quorum"),
            (self.ack_before_fsync, "ack-before-fsync"),
            (self.tolerate_wal_damage, "tolerate-wal-damage"),
            (self.serve_past_high_watermark, "serve-past-hw"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() { f.write_str("none") } else { f.write_str(&names.join(",")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_names_are_refused() {
        assert_eq!(Sabotage::parse("").unwrap(), Sabotage::NONE);
        assert_eq!(
            Sabotage::parse(" skip-dedup, ").unwrap(),
            Sabotage { skip_dedup: true, ..Sabotage::NONE }
        );
        let both = Sabotage::parse("skip-fetch-batch,skip-dedup").unwrap();
        assert!(both.skip_dedup && both.skip_fetch_batch);
        assert_eq!(both.to_string(), "skip-dedup,skip-fetch-batch");
        let all = Sabotage::parse(&Sabotage::NAMES.join(",")).unwrap();
        assert_eq!(all.to_string(), Sabotage::NAMES.join(","));
        assert!(all.commit_without_quorum && all.ack_before_fsync && all.tolerate_wal_damage);
        assert!(all.serve_past_high_watermark);
        assert_eq!(
            Sabotage::parse("skip-dedup,lose-acks").unwrap_err(),
            UnknownSabotage { name: "lose-acks".into() }
        );
    }
}
