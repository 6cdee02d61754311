#!/usr/bin/env bash
# A short before/after benchmark for a change on the broker's paths, on the three-node cluster
# (started if needed): ROUNDS rounds (default 3) of
#   - Metadata for one topic of METADATA_PARTITIONS partitions (default 1000, replication 1),
#     asked of each broker in turn (`sluice bench metadata`);
#   - acknowledged produce of 100 B records, 1 producer x 256 in flight, on 1 and 12 partitions,
#     and 4 producers on 12 partitions (`sluice bench produce`, replication 3);
#   - one publish at a time (the latency of a single acknowledged publish).
# Prints the RESULT lines, then the median of each shape over the rounds. Every produce run writes
# to a fresh topic, deleted afterwards. Env: ROUNDS, COUNT (default 200000), SECS (default 30).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
ROUNDS="${ROUNDS:-3}"; COUNT="${COUNT:-200000}"; SECS="${SECS:-30}"
METADATA_PARTITIONS="${METADATA_PARTITIONS:-1000}"
"$repo/scripts/start-cluster.sh" >/dev/null
sluice="$repo/bin/sluice"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

produce() { # name, then bench produce arguments
  local name="$1" topic="quick-$1"; shift
  "$sluice" topic delete "$topic" >/dev/null 2>&1 || true
  "$sluice" bench produce --topic "$topic" "$@" | grep '^RESULT' | sed "s/^RESULT/RESULT shape=$name/" | tee -a "$results"
  "$sluice" topic delete "$topic" >/dev/null
}

"$sluice" topic delete bench-metadata >/dev/null 2>&1 || true
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round of $ROUNDS"
  SLUICE_BOOTSTRAP=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 "$sluice" bench metadata --topic bench-metadata --partitions "$METADATA_PARTITIONS" --calls 200 \
    | grep '^RESULT' | sed 's/^RESULT/RESULT shape=metadata/' | tee -a "$results"
  produce p1 --partitions 1 --size 100 --records "$COUNT" --secs "$SECS" --producers 1 --inflight 256
  produce p12 --partitions 12 --size 100 --records "$COUNT" --secs "$SECS" --producers 1 --inflight 256
  produce p12n4 --partitions 12 --size 100 --records "$COUNT" --secs "$SECS" --producers 4 --inflight 256
  produce single --partitions 1 --size 100 --records 3000 --secs 15 --producers 1 --inflight 1 --linger-ms 0
done
"$sluice" topic delete bench-metadata >/dev/null 2>&1 || true

echo
echo "medians over $ROUNDS rounds:"
python3 "$repo/scripts/bench-medians.py" <"$results"
