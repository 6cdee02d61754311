#!/usr/bin/env bash
# The standard produce benchmark on the three-node cluster (started if needed): 100 B and 1 KiB
# records, 1 and 4 producers, PARTITIONS partitions (default "1 12"; issue 9 asks for "1 3 12 48"),
# replication 3, acks after a majority fsynced. Each produce line also says the servers' CPU per
# acknowledged message (user + sys of the three sluiced processes, from /proc, over the run), so a
# gain bought with more cores shows, and the elections during the run (terms gained by any group,
# the registry's too), so that shorter election timeouts that flap under load show.
# Every run writes to a topic of its own, created empty and deleted afterwards, as the peer
# baselines recreate their stream or queue before each measurement (shared/peers/bench).
# Prints one RESULT line per run in the peer baselines' format (shared/peers/README.md), appends
# them to data/bench/results.log, and ends with a table.
# Env: COUNT (records per run, default 200000), SECS (time cap per run, default 30),
#      INFLIGHT (unacknowledged records per producer, default 256), LAT_COUNT (default 3000).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
COUNT="${COUNT:-200000}"; SECS="${SECS:-30}"; INFLIGHT="${INFLIGHT:-256}"; LAT_COUNT="${LAT_COUNT:-3000}"
PARTITIONS="${PARTITIONS:-1 12}"
out_dir="$repo/data/bench"
mkdir -p "$out_dir"
log="$out_dir/results.log"

"$repo/scripts/start-cluster.sh" >/dev/null
load1() { cut -d' ' -f1 /proc/loadavg; }
record() { echo "$(date -u +%FT%TZ) $1" >>"$log"; }
# A fresh, empty topic (a leftover of an interrupted run is deleted first).
fresh() { bin/sluice topic delete "$1" >/dev/null 2>&1 || true; }
cluster_dir="${SLUICE_CLUSTER_DIR:-$repo/data/cluster}"
clk_tck="$(getconf CLK_TCK)"
# CPU ticks (user + sys) the three nodes have used so far.
server_ticks() {
  local total=0 i pid
  for i in 1 2 3; do
    pid="$(cat "$cluster_dir/node$i.pid")"
    # Fields 14 and 15 of /proc/PID/stat, counted after the command name in parentheses.
    total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
# Every group's term, as "group:term ...".
terms() {
  bin/sluice cluster status --output json |
    python3 -c 'import json, sys; print(" ".join("%s:%s" % (g["group_id"], g["term"]) for g in json.load(sys.stdin)["groups"]))'
}
# Elections between two `terms` snapshots: the terms gained by every group.
elections() {
  python3 -c '
import sys
before = dict(p.split(":") for p in sys.argv[1].split())
after = dict(p.split(":") for p in sys.argv[2].split())
print(sum(int(t) - int(before.get(g, t)) for g, t in after.items()))' "$1" "$2"
}
# Creates the run's topic and waits (up to 30 s) until no group's term changed for a second, so
# that the elections that form its groups are not counted as elections under load.
settled_terms() {
  local previous current i
  bin/sluice topic create "$1" --partitions "$2" --replication-factor 3 >/dev/null
  previous="$(terms)"
  for i in $(seq 30); do
    sleep 1
    current="$(terms)"
    [ "$current" = "$previous" ] && break
    previous="$current"
  done
  echo "$current"
}
# run --topic T --partitions P ...: one `sluice bench produce`.
run() {
  local line before after msgs cpu terms_before
  terms_before="$(settled_terms "$2" "$4")"
  before="$(server_ticks)"
  line="$(bin/sluice bench produce "$@" | grep '^RESULT')"
  after="$(server_ticks)"
  line="$line elections=$(elections "$terms_before" "$(terms)")"
  msgs="$(sed -n 's/.* msgs=\([0-9]*\).*/\1/p' <<<"$line")"
  cpu="$(awk -v t="$((after - before))" -v hz="$clk_tck" -v n="$msgs" 'BEGIN { printf "%.1f", n ? t / hz / n * 1e6 : 0 }')"
  line="$line server_cpu_us_per_msg=$cpu"
  echo "$line inflight_setting=$INFLIGHT load1=$(load1)"
  record "$line inflight_setting=$INFLIGHT"
}
consume() {
  local line
  line="$(bin/sluice bench consume "$@" --secs "$SECS" | grep '^RESULT')"
  echo "$line load1=$(load1)"
  record "$line"
}

lines=()
consumed=()
for size in 100 1024; do
  for partitions in $PARTITIONS; do
    for producers in 1 4; do
      topic="bench-s$size-p$partitions-n$producers"
      fresh "$topic"
      lines+=("$(run --topic "$topic" --partitions "$partitions" --size "$size" --records "$COUNT" \
        --secs "$SECS" --producers "$producers" --inflight "$INFLIGHT")")
      echo "${lines[-1]}"
      # Consumption of what the 100 B four-producer runs wrote, pulled and pushed.
      if [ "$size" = 100 ] && [ "$producers" = 4 ]; then
        for mode in pull push; do
          consumed+=("$(consume --topic "$topic" --mode "$mode")")
          echo "${consumed[-1]}"
        done
      fi
      bin/sluice topic delete "$topic" >/dev/null
    done
  done
  # One record in flight: the latency of a single acknowledged publish.
  topic="bench-s$size-latency"
  fresh "$topic"
  lines+=("$(run --topic "$topic" --partitions 1 --size "$size" --records "$LAT_COUNT" --secs 15 --producers 1 \
    --inflight 1 --linger-ms 0)")
  echo "${lines[-1]}"
  bin/sluice topic delete "$topic" >/dev/null
done

echo
printf '%-6s %-10s %-9s %-8s %12s %9s %9s %9s %12s %9s\n' size partitions producers inflight msgs/s MB/s p50_ms p99_ms cpu_us/msg elections
for line in "${lines[@]}"; do
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  printf '%-6s %-10s %-9s %-8s %12s %9s %9s %9s %12s %9s\n' "$(get size)" "$(get partitions)" "$(get producers)" \
    "$(get inflight)" "$(get msgs_per_s)" "$(get MB_per_s)" "$(get p50_ms)" "$(get p99_ms)" \
    "$(get server_cpu_us_per_msg)" "$(get elections)"
done
echo
for line in "${consumed[@]}"; do echo "$line"; done
