#!/usr/bin/env bash
# Stops the cluster started by scripts/start-cluster.sh, by pid: SIGTERM (a clean shutdown),
# then SIGKILL after 15 s. --wipe also deletes its data.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cluster_dir="${SLUICE_CLUSTER_DIR:-$repo/data/cluster}"

for i in 1 2 3; do
  pid_file="$cluster_dir/node$i.pid"
  [ -f "$pid_file" ] || continue
  pid="$(cat "$pid_file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "node $i did not stop in 15 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "stopped node $i (pid $pid)"
  fi
  rm -f "$pid_file"
done

if [ "${1:-}" = "--wipe" ]; then
  rm -rf "$cluster_dir"
  echo "deleted $cluster_dir"
fi
