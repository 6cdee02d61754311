#!/usr/bin/env python3
"""Reads RESULT lines (from `sluice bench ...` via bench-quick.sh, with a shape= field) on stdin
and prints the median of each shape: throughput, p50 and p99 latency."""
import collections
import statistics
import sys

rows = collections.defaultdict(list)
for line in sys.stdin:
    if not line.startswith("RESULT"):
        continue
    fields = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    key = fields["shape"] + (" " + fields["broker"] if fields["shape"] == "metadata" else "")
    rows[key].append(fields)
for key, runs in rows.items():
    rate = "calls_per_s" if key.startswith("metadata") else "msgs_per_s"

    def median(name):
        return statistics.median(float(run[name]) for run in runs)

    print(f"{key:28} {rate}={median(rate):.0f} p50_ms={median('p50_ms'):.2f} "
          f"p99_ms={median('p99_ms'):.2f} (n={len(runs)})")
