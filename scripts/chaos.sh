#!/usr/bin/env bash
# The full fault-test profile (docs/CHAOS.md): every scenario, several seeds, on release builds.
# Needs root for the network namespaces (without it the network faults are skipped and those
# runs are INVALID). Histories, reports and node logs go to target/chaos/ (kept for failures).
#
#   scripts/chaos.sh                 # full profile, 3 seed rounds, a random first seed
#   scripts/chaos.sh --seed 7 --rounds 1 --scenario leader-kill    # replay one run
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
"$here/scripts/setup.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
cargo build --release --locked -p sluice-broker -p sluice-chaos -p sluice-lazyfs --features sluice-broker/failpoints
args=("$@")
has_rounds=0
for a in "${args[@]}"; do [ "$a" = "--rounds" ] && has_rounds=1; done
[ "$has_rounds" = 1 ] || args+=(--rounds 3)
exec "$CARGO_TARGET_DIR/release/sluice-chaos" run --profile full --out "$here/target/chaos" "${args[@]}"
