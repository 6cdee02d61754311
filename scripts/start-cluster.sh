#!/usr/bin/env bash
# Starts a three-node Sluice cluster on this machine (127.0.0.1, ports 7001-7003 gRPC and
# 8001-8003 HTTP) from cluster-configs/, in the background, and waits until it is healthy.
#   data, logs and pid files: data/cluster/ (override with SLUICE_CLUSTER_DIR)
#   binaries:                 bin/sluiced and bin/sluice (links to the release build)
# Running it again while the cluster runs changes nothing. scripts/stop-cluster.sh stops it.
# SLUICE_BIN_DIR=dir runs the sluiced and sluice found there instead of building (to compare
# two builds in one benchmark session; see scripts/bench-ab.sh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cluster_dir="${SLUICE_CLUSTER_DIR:-$repo/data/cluster}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

already=0
for i in 1 2 3; do
  if running "$cluster_dir/node$i.pid"; then already=$((already + 1)); fi
done
if [ "$already" -eq 3 ]; then
  echo "The cluster is already running (pids in $cluster_dir)."
  exec "$repo/bin/sluice" cluster status
fi

mkdir -p "$repo/bin" "$cluster_dir"
if [ -n "${SLUICE_BIN_DIR:-}" ]; then
  echo "Using the binaries in $SLUICE_BIN_DIR"
  ln -sf "$SLUICE_BIN_DIR/sluiced" "$repo/bin/sluiced"
  ln -sf "$SLUICE_BIN_DIR/sluice" "$repo/bin/sluice"
else
  "$repo/scripts/setup.sh"
  echo "Building release binaries (the first build takes a few minutes)..."
  cargo build --release --locked -p sluice-broker -p sluice-cli
  ln -sf "$CARGO_TARGET_DIR/release/sluiced" "$repo/bin/sluiced"
  ln -sf "$CARGO_TARGET_DIR/release/sluice" "$repo/bin/sluice"
fi

for i in 1 2 3; do
  pid_file="$cluster_dir/node$i.pid"
  if running "$pid_file"; then
    echo "node $i already running (pid $(cat "$pid_file"))"
    continue
  fi
  # Each node runs from a copy of its config whose data_dir points into the cluster dir.
  config="$repo/cluster-configs/node$i.toml"
  sed "s|^data_dir = .*|data_dir = \"$cluster_dir/node$i\"|" "$config" >"$cluster_dir/node$i.toml"
  setsid "$repo/bin/sluiced" --config "$cluster_dir/node$i.toml" >>"$cluster_dir/node$i.log" 2>&1 </dev/null &
  echo $! >"$pid_file"
  echo "started node $i (pid $!, log $cluster_dir/node$i.log)"
done

echo "Waiting for the registry to elect a leader and all three brokers to register..."
if ! "$repo/bin/sluice" cluster wait --brokers 3 --timeout-secs 60; then
  echo "The cluster did not become healthy; see the logs in $cluster_dir." >&2
  exit 1
fi

cat <<TXT

Sluice is running:
  node 1  gRPC 127.0.0.1:7001  HTTP http://127.0.0.1:8001/health
  node 2  gRPC 127.0.0.1:7002  HTTP http://127.0.0.1:8002/health
  node 3  gRPC 127.0.0.1:7003  HTTP http://127.0.0.1:8003/health

Try:
  bin/sluice cluster status
  bin/sluice topic create orders --partitions 6 --replication-factor 3
  bin/sluice topic describe orders
  seq 1 1000 | bin/sluice produce orders
  bin/sluice consume orders --from-beginning
  bin/sluice message get --topic orders --partition 0 --offset 0
  bin/sluice topic list --output json

Stop it with scripts/stop-cluster.sh (add --wipe to delete its data).
TXT
