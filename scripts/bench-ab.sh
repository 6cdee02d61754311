#!/usr/bin/env bash
# Compares two builds in one session: runs scripts/bench-quick.sh (ROUNDS=1 each time) on a fresh
# three-node cluster of build A, then of build B, alternately, PAIRS times (default 3), so that a
# drift of the shared machine falls on both; prints the medians of each build.
#   scripts/bench-ab.sh DIR_A DIR_B    each DIR holds a release sluiced and sluice
# The same sluice (client) should be in both for a comparison of brokers.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
a="$1"; b="$2"; PAIRS="${PAIRS:-3}"
out="$(mktemp -d)"
cluster_dir="${SLUICE_CLUSTER_DIR:-$repo/data/cluster}"
for pair in $(seq 1 "$PAIRS"); do
  for side in A B; do
    dir="$a"; [ "$side" = B ] && dir="$b"
    "$repo/scripts/stop-cluster.sh" >/dev/null 2>&1 || true
    rm -rf "$cluster_dir"
    echo "== pair $pair, build $side ($dir)"
    SLUICE_BIN_DIR="$dir" ROUNDS=1 "$repo/scripts/bench-quick.sh" | tee -a "$out/$side.log" | grep '^RESULT'
  done
done
"$repo/scripts/stop-cluster.sh" >/dev/null 2>&1 || true
for side in A B; do
  echo
  echo "build $side, medians over $PAIRS runs:"
  python3 "$repo/scripts/bench-medians.py" <"$out/$side.log"
done
