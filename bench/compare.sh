#!/usr/bin/env bash
# Compares wxnotify builds on one bench scenario, run in turn (A, B, A, B, …), because this kind
# of machine drifts by 10–20 % within an hour: only builds measured side by side compare.
# Prints each run's worker CPU per job, busiest one-second window, drain rate and worker peak
# RSS, then the medians per build.
#
#   cargo build --release
#   mkdir -p /tmp/wx-base && cp target/release/wxnotify{,-sandbox} /tmp/wx-base/   # the base
#   # … change, cargo build --release …
#   bench/compare.sh /tmp/wx-base/wxnotify-sandbox target/release/wxnotify-sandbox
#   RUNS=3 SCENARIO=throughput bench/compare.sh /tmp/wx-base/wxnotify-sandbox target/release/wxnotify-sandbox
#
# A build is a `wxnotify-sandbox` binary with the `wxnotify` binary beside it: the bench runs
# its worker from that one, with the same environment. Scenarios with one result per run only
# (rate, throughput, backlog, faults, clean). Needs what `wxnotify-sandbox bench` needs
# (PostgreSQL and RabbitMQ up) and python3.
set -euo pipefail

RUNS=${RUNS:-5}
SCENARIO=${SCENARIO:-rate}
if [ $# -lt 2 ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for run in $(seq 1 "$RUNS"); do
  for build in "$@"; do
    if ! json=$("$build" bench --scenario "$SCENARIO" --json 2>/dev/null); then
      echo "run $run, $build: the bench failed; rerun it alone to see why" >&2
      exit 1
    fi
    python3 -c '
import json, sys
r = json.loads(sys.argv[2])[0]
print(sys.argv[1], round(r["worker_cpu_us_per_job"], 1),
      round(100 * (r["max_window"] / r["rate_limit"] - 1), 1) if r["rate_limit"] < 1_000_000 else "-",
      round(r["jobs_per_second"]), round(r["worker_peak_rss_mib"], 1))' "$build" "$json" | tee -a "$results" |
      awk -v run="$run" '{printf "run %d  %-40s CPU %6s µs/job  busiest window %5s %%  %s jobs/s  RSS %s MiB\n", run, $1, $2, $3, $4, $5}'
  done
done

python3 - "$results" "$@" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for build in sys.argv[2:]:
    mine = [r for r in rows if r[0] == build]
    cpu = statistics.median(float(r[1]) for r in mine)
    rate = statistics.median(float(r[3]) for r in mine)
    rss = statistics.median(float(r[4]) for r in mine)
    windows = " ".join(r[2] for r in mine)
    print(f"median  {build:40s} CPU {cpu:6.1f} µs/job  {rate:,.0f} jobs/s  RSS {rss:.1f} MiB  windows (%): {windows}")
EOF
