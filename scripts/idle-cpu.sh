#!/usr/bin/env bash
# Measures the idle CPU of the three-node cluster hosting many partitions:
#   scripts/idle-cpu.sh [PARTITIONS] [SECONDS]     (defaults: 300 partitions, 30 s)
# Starts the cluster if needed (scripts/start-cluster.sh), creates topic idle-cpu-PARTITIONS with
# replication factor 3 if missing, waits until every partition's leader reports its group idle
# (hibernating), then reads the three processes' CPU time from /proc over SECONDS.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
partitions="${1:-300}"
secs="${2:-30}"
cluster_dir="${SLUICE_CLUSTER_DIR:-$repo/data/cluster}"

"$repo/scripts/start-cluster.sh" >/dev/null
topic="idle-cpu-$partitions"
if ! bin/sluice topic describe "$topic" >/dev/null 2>&1; then
  bin/sluice topic create "$topic" --partitions "$partitions" --replication-factor 3 >/dev/null
fi

echo "waiting for the $partitions partitions to go idle..."
deadline=$((SECONDS + 120))
while :; do
  # Keys are sorted in the JSON: a group's "hibernating" comes before its "topic".
  idle=$(bin/sluice cluster status --output json | awk -v t="\"$topic\"" '
    /"hibernating":/ { h = ($2 == "true,") }
    /"topic":/ { if (h && $2 == t) n++; h = 0 }
    END { print n + 0 }')
  [ "$idle" -ge "$partitions" ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "only $idle of $partitions partitions went idle in 120 s" >&2
    exit 1
  fi
  sleep 1
done

ticks() {
  local total=0
  for i in 1 2 3; do
    local pid
    pid="$(cat "$cluster_dir/node$i.pid")"
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
hz="$(getconf CLK_TCK)"
before="$(ticks)"
sleep "$secs"
after="$(ticks)"
awk -v t=$((after - before)) -v hz="$hz" -v s="$secs" -v p="$partitions" \
  'BEGIN { printf "idle CPU of the 3-node cluster with %d partitions (RF 3) over %d s: %.2f%% of one core\n", p, s, t / hz / s * 100 }'
