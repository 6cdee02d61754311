#!/usr/bin/env bash
# The standard produce benchmark on the three-node cluster (started if needed): 100 B and 1 KiB
# records, 1 and 4 producers, 1 and 12 partitions, replication 3, acks after a majority fsynced.
# Prints one RESULT line per run in the peer baselines' format (shared/peers/README.md), appends
# them to data/bench/results.log, and ends with a table.
# Env: COUNT (records per run, default 200000), SECS (time cap per run, default 30),
#      INFLIGHT (unacknowledged records per producer, default 256), LAT_COUNT (default 3000).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
COUNT="${COUNT:-200000}"; SECS="${SECS:-30}"; INFLIGHT="${INFLIGHT:-256}"; LAT_COUNT="${LAT_COUNT:-3000}"
out_dir="$repo/data/bench"
mkdir -p "$out_dir"
log="$out_dir/results.log"

"$repo/scripts/start-cluster.sh" >/dev/null
run() {
  local line
  line="$(bin/sluice bench produce "$@" | grep '^RESULT')"
  echo "$line inflight_setting=$INFLIGHT load1=$(cut -d' ' -f1 /proc/loadavg)"
  echo "$(date -u +%FT%TZ) $line inflight_setting=$INFLIGHT" >>"$log"
}

lines=()
for size in 100 1024; do
  for partitions in 1 12; do
    for producers in 1 4; do
      lines+=("$(run --topic "bench-p$partitions" --partitions "$partitions" --size "$size" --records "$COUNT" \
        --secs "$SECS" --producers "$producers" --inflight "$INFLIGHT")")
      echo "${lines[-1]}"
    done
  done
  # One record in flight: the latency of a single acknowledged publish.
  lines+=("$(run --topic bench-p1 --partitions 1 --size "$size" --records "$LAT_COUNT" --secs 15 --producers 1 \
    --inflight 1 --linger-ms 0)")
  echo "${lines[-1]}"
done

# Consumption of everything the runs above wrote, pulled and pushed.
for partitions in 1 12; do
  for mode in pull push; do
    line="$(bin/sluice bench consume --topic "bench-p$partitions" --secs "$SECS" --mode "$mode" | grep '^RESULT')"
    echo "$line load1=$(cut -d' ' -f1 /proc/loadavg)"
    echo "$(date -u +%FT%TZ) $line" >>"$log"
  done
done

echo
printf '%-6s %-10s %-9s %-8s %12s %9s %9s %9s\n' size partitions producers inflight msgs/s MB/s p50_ms p99_ms
for line in "${lines[@]}"; do
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  printf '%-6s %-10s %-9s %-8s %12s %9s %9s %9s\n' "$(get size)" "$(get partitions)" "$(get producers)" \
    "$(get inflight)" "$(get msgs_per_s)" "$(get MB_per_s)" "$(get p50_ms)" "$(get p99_ms)"
done
