//! Deliberate bugs for the fault tests to catch (`jepsen-style-tests`, docs/CHAOS.md): a suite
//! that never sees a broken build fail cannot be trusted to notice a real bug.
//!
//! A [`Sabotage`] is a plain value: the node reads its switch once at start-up (debug builds
//! only) and passes it to the state machine, so nothing in this crate reads the environment.

use std::fmt;

/// Which deliberate bugs are switched on. The default breaks nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Appends idempotent batches without consulting the producer's dedup window, so a retried
    /// batch lands twice.
    pub skip_dedup: bool,
}

/// A sabotage name this build does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown sabotage {name:?} (known: {})", Sabotage::NAMES.join(", "))]
pub struct UnknownSabotage {
    pub name: String,
}

impl Sabotage {
    /// Nothing broken.
    pub const NONE: Sabotage = Sabotage { skip_dedup: false };
    /// Every name [`Sabotage::parse`] accepts.
    pub const NAMES: &'static [&'static str] = &["skip-dedup"];

    /// Parses a comma-separated list of names (`skip-dedup`); empty items are ignored.
    pub fn parse(list: &str) -> Result<Sabotage, UnknownSabotage> {
        let mut sabotage = Sabotage::NONE;
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "skip-dedup" => sabotage.skip_dedup = true,
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
        if self.skip_dedup { f.write_str("skip-dedup") } else { f.write_str("none") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_names_are_refused() {
        assert_eq!(Sabotage::parse("").unwrap(), Sabotage::NONE);
        assert_eq!(Sabotage::parse(" skip-dedup, ").unwrap(), Sabotage { skip_dedup: true });
        assert_eq!(
            Sabotage::parse("skip-dedup,lose-acks").unwrap_err(),
            UnknownSabotage { name: "lose-acks".into() }
        );
    }
}
