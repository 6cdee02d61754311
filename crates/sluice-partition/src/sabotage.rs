//! Deliberate bugs for the fault tests to catch (`jepsen-style-tests`, docs/CHAOS.md): a suite
//! that never sees a broken build fail cannot be trusted to notice a real bug.
//!
//! Only debug builds read the switch, `SLUICE_SABOTAGE=skip-dedup[,...]` in the node's
//! environment; in release builds every function here is a constant `false`.

use std::sync::OnceLock;

fn enabled(what: &str) -> bool {
    static SWITCHES: OnceLock<Vec<String>> = OnceLock::new();
    if !cfg!(debug_assertions) {
        return false;
    }
    SWITCHES
        .get_or_init(|| {
            std::env::var("SLUICE_SABOTAGE")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default()
        })
        .iter()
        .any(|s| s == what)
}

/// Appends idempotent batches without consulting the producer's dedup window, so a retried
/// batch lands twice.
pub fn skip_dedup() -> bool {
    enabled("skip-dedup")
}
