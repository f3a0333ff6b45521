#!/usr/bin/env bash
# How many template sends per second `wxnotify-sandbox mock-wechat` answers.
#
# Builds the release binary, starts the fake on 127.0.0.1:$PORT with every person following,
# gets an OA token, runs wrk ($RUNS times) with bench/mock-wechat.lua, prints each run's
# Requests/sec and the median, then checks /mock/stats that every answer was a success.
#
#   bench/mock-wechat.sh                       # defaults below
#   THREADS=2 CONNS=128 DURATION=20s bench/mock-wechat.sh
#
# Needs wrk (Debian: apt-get install -y wrk) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-18088}
THREADS=${THREADS:-1}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
RUNS=${RUNS:-3}
FOLLOWERS=${FOLLOWERS:-100000}
BASE="http://127.0.0.1:$PORT"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --quiet --package wxnotify-sandbox

RUST_LOG=warn target/release/wxnotify-sandbox mock-wechat --listen "127.0.0.1:$PORT" \
  --followers "$FOLLOWERS" --unsubscribed-every 0 --max-recorded-sends 10000 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT

for _ in $(seq 50); do
  curl -sf "$BASE/mock/stats" >/dev/null && break
  sleep 0.1
done

TOKEN=$(curl -sf "$BASE/cgi-bin/token?grant_type=client_credential&appid=wxmockoa000000001&secret=mock-oa-secret" |
  sed -E 's/.*"access_token":"([^"]+)".*/\1/')
[ -n "$TOKEN" ] || { echo "could not get a token" >&2; exit 1; }

CMD=(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/mock-wechat.lua "$BASE")
echo "command: WX_TOKEN=… WX_FOLLOWERS=$FOLLOWERS ${CMD[*]}"
RATES=()
for run in $(seq "$RUNS"); do
  OUT=$(WX_TOKEN="$TOKEN" WX_FOLLOWERS="$FOLLOWERS" WX_RUN="$run" "${CMD[@]}")
  RATE=$(awk '/^Requests\/sec/ {print $2}' <<<"$OUT")
  P99=$(awk '$1 == "99%" {print $2}' <<<"$OUT")
  ERRS=$(grep -E 'Socket errors|Non-2xx' <<<"$OUT" || true)
  echo "run $run: $RATE req/s, p99 $P99 ${ERRS:+($ERRS)}"
  RATES+=("$RATE")
done
MEDIAN=$(printf '%s\n' "${RATES[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median of $RUNS runs: $MEDIAN req/s"
echo "answers by errcode (0 = accepted): $(curl -sf "$BASE/mock/stats" |
  sed -E 's/.*"errcodes":(\{[^}]*\}).*/\1/')"
