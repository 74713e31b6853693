#!/usr/bin/env bash
# Benchmark: N jobs (default 20,000) through the whole path — kpsctl enqueue, disassociate,
# task poll, SQLite — against the fake KPS on loopback, rate unlimited. Reports jobs/s and
# the calls the fake saw. Needs a built tree (scripts/test or scripts/demo).
#   tests/bench/throughput.sh [N] [CONCURRENCY] [BUILD_DIR]
set -euo pipefail
n=${1:-20000}
concurrency=${2:-64}
build=${3:-build}
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/kpsd-bench-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
project=0123456789abcdef0123456789abcdef
echo bench-token > "$work/token"
"$build/tests/fake_kps" --project-id "$project" --token-file "$work/token" \
  --port-file "$work/port" > "$work/fake.log" 2>&1 &
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
cat > "$work/kpsd.conf" <<CONF
[kps]
endpoint = http://127.0.0.1:$(cat "$work/port")
project_id = $project
poll_initial_delay_ms = 0
poll_interval_ms = 100
[auth]
token_file = $work/token
[queue]
database = $work/jobs.db
concurrency = $concurrency
rate_per_second = 0
[control]
socket = $work/kpsd.sock
[log]
level = warn
CONF
"$build/daemon/kpsd" --config "$work/kpsd.conf" 2>"$work/kpsd.log" &
export KPSD_SOCKET=$work/kpsd.sock
for _ in $(seq 200); do "$build/daemon/kpsctl" stats >/dev/null 2>&1 && break; sleep 0.05; done
seq 1 "$n" | sed "s/^/tp-/" > "$work/ids.txt"
start=$(date +%s.%N)
"$build/daemon/kpsctl" enqueue --file "$work/ids.txt" >/dev/null
"$build/daemon/kpsctl" wait --timeout 3600 >/dev/null
end=$(date +%s.%N)
succeeded=$("$build/daemon/kpsctl" --json stats | sed -n 's/.*"succeeded":\([0-9]*\).*/\1/p')
kill -TERM %2; wait %2 || true
kill -TERM %1; wait %1 || true
calls=$(sed -n 's/.*"disassociate_calls":\([0-9]*\).*/\1/p' "$work/fake.log")
polls=$(sed -n 's/.*"task_polls":\([0-9]*\).*/\1/p' "$work/fake.log")
printf '%d jobs (concurrency %d): %.1f s, %.0f jobs/s end to end; %s succeeded; fake saw %s disassociate calls and %s task polls\n' \
  "$n" "$concurrency" "$(echo "$end - $start" | bc)" "$(echo "$n / ($end - $start)" | bc)" \
  "$succeeded" "$calls" "$polls"
