#!/usr/bin/env bash
# Benchmark of `wxnotify sync-followers`: syncs FOLLOWERS (default 1,000,000) followers from the
# fake WeChat at 0 ms latency into a fresh database, and reports wall seconds and peak RSS
# (/usr/bin/time -v). Then it times the seed method (one user/info call and one
# single-row upsert per follower) on SAMPLE followers (default 10,000) and extrapolates it to
# all of them, to show the ratio. Target: under 60 s and under 200 MB on a 2-core machine.
#
#   bench/sync-followers.sh                   # 1,000,000 followers
#   FOLLOWERS=100000 bench/sync-followers.sh  # quicker
#
# Needs PostgreSQL (PG_SERVER, default postgres://postgres@127.0.0.1:5432) and builds the
# release binary. The scratch database and the fake WeChat are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

FOLLOWERS=${FOLLOWERS:-1000000}
SAMPLE=${SAMPLE:-10000}
CONCURRENCY=${CONCURRENCY:-8}
RATE=${RATE:-100000}
PG_SERVER=${PG_SERVER:-postgres://postgres@127.0.0.1:5432}
DB="wxnotify_bench_$$"
WORK=$(mktemp -d)
MOCK_PID=""

cleanup() {
  [[ -n "$MOCK_PID" ]] && kill "$MOCK_PID" 2>/dev/null && wait "$MOCK_PID" 2>/dev/null || true
  psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --locked --quiet
BIN=target/release/wxnotify
SANDBOX=target/release/wxnotify-sandbox

psql "$PG_SERVER/postgres" -qc "CREATE DATABASE $DB" >/dev/null
for migration in migrations/*.sql; do
  psql "$PG_SERVER/$DB" -q -v ON_ERROR_STOP=1 -f "$migration" >/dev/null
done

RUST_LOG=warn "$SANDBOX" mock-wechat --listen 127.0.0.1:0 --followers "$FOLLOWERS" --unsubscribed-every 0 --latency-ms 0 \
  >"$WORK/mock.out" 2>"$WORK/mock.err" &
MOCK_PID=$!
for _ in $(seq 100); do
  grep -q WECHAT_API_BASE= "$WORK/mock.out" 2>/dev/null && break
  sleep 0.1
done
API_BASE=$(grep -o 'WECHAT_API_BASE=[^ ]*' "$WORK/mock.out" | cut -d= -f2)
[[ -n "$API_BASE" ]] || { echo "the fake WeChat did not start" >&2; cat "$WORK/mock.err" >&2; exit 1; }

export DATABASE_URL="$PG_SERVER/$DB" WECHAT_API_BASE="$API_BASE" RUST_LOG=warn
export WXNOTIFY_OA_APPID=wxmockoa000000001 WXNOTIFY_OA_SECRET=mock-oa-secret

echo "syncing $FOLLOWERS followers from $API_BASE (concurrency $CONCURRENCY)..."
/usr/bin/time -v -o "$WORK/time.txt" "$BIN" sync-followers --json \
  --concurrency "$CONCURRENCY" --rate "$RATE" >"$WORK/report.json"
"$SANDBOX" seed-followers --sample "$SAMPLE" >"$WORK/seed.json"

SYNC=$(cat "$WORK/report.json")
SEED=$(cat "$WORK/seed.json")
echo "sync report: $SYNC"
echo "seed method: $SEED"
python3 - "$SYNC" "$SEED" "$WORK/time.txt" <<'PY'
import json, re, sys
sync, seed, time_txt = json.loads(sys.argv[1]), json.loads(sys.argv[2]), open(sys.argv[3]).read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_txt).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", time_txt).group(1)
print(f"batched sync : {sync['followers']} followers in {sync['seconds']:.1f} s "
      f"({sync['followers'] / sync['seconds']:.0f}/s), peak RSS {rss_kb / 1024:.0f} MB "
      f"(process wall time: {wall})")
print(f"seed method  : {seed['sample']} followers in {seed['seconds']:.1f} s "
      f"-> {seed['extrapolated_seconds']:.0f} s for {seed['total']} followers")
print(f"ratio        : the batched sync is {seed['extrapolated_seconds'] / sync['seconds']:.0f}x faster")
ok = sync["seconds"] < 60 and rss_kb < 200 * 1024
print("target (< 60 s, < 200 MB):", "met" if ok else "NOT met")
PY
