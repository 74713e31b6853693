#!/usr/bin/env bash
# Benchmark: enqueue N server ids (default 1,000,000) from a file through kpsctl into a paused
# kpsd, and report elapsed time and peak memory (max RSS) of kpsctl and kpsd. Needs a built
# tree (scripts/test or scripts/demo) and GNU time (apt-get install time).
#   tests/bench/enqueue_1m.sh [N] [BUILD_DIR]
set -euo pipefail
n=${1:-1000000}
build=${2:-build}
cd "$(dirname "$0")/../.."
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time"; exit 1; }
work=$(mktemp -d /tmp/kpsd-bench-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
echo bench-token > "$work/token"
cat > "$work/kpsd.conf" <<CONF
[kps]
endpoint = http://127.0.0.1:9
project_id = 0123456789abcdef0123456789abcdef
[auth]
token_file = $work/token
[queue]
database = $work/jobs.db
[control]
socket = $work/kpsd.sock
[log]
level = warn
CONF
# Paused before start, so the measurement is the enqueue path alone (no calls are made).
sqlite3 "$work/jobs.db" "PRAGMA journal_mode=WAL" >/dev/null
/usr/bin/time -f "%M" -o "$work/kpsd.rss" "$build/daemon/kpsd" --config "$work/kpsd.conf" 2>"$work/kpsd.log" &
for _ in $(seq 200); do "$build/daemon/kpsctl" --socket "$work/kpsd.sock" pause >/dev/null 2>&1 && break; sleep 0.05; done
seq 1 "$n" | sed "s/^/bench-/" > "$work/ids.txt"
start=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$work/kpsctl.rss" \
  "$build/daemon/kpsctl" --socket "$work/kpsd.sock" enqueue --file "$work/ids.txt" > "$work/out.txt"
end=$(date +%s.%N)
tail -n 1 "$work/out.txt"
"$build/daemon/kpsctl" --socket "$work/kpsd.sock" stats | head -n 1
# Reads on the full table: a deep page filtered by state, and the counts.
t0=$(date +%s.%N)
"$build/daemon/kpsctl" --socket "$work/kpsd.sock" list --state queued --after $((n - 1000)) --limit 100 >/dev/null
t1=$(date +%s.%N)
"$build/daemon/kpsctl" --socket "$work/kpsd.sock" stats >/dev/null
t2=$(date +%s.%N)
printf 'list --state queued --after %d --limit 100: %.0f ms; stats: %.0f ms (kpsctl start included)\n' \
  $((n - 1000)) "$(echo "($t1 - $t0) * 1000" | bc)" "$(echo "($t2 - $t1) * 1000" | bc)"
pkill -TERM -f -- "^$build/daemon/kpsd --config $work/kpsd.conf"; wait %1 || true
printf 'enqueue of %d ids: %.1f s (%.0f ids/s); peak RSS kpsctl %d KiB, kpsd %d KiB; database %s\n' \
  "$n" "$(echo "$end - $start" | bc)" "$(echo "$n / ($end - $start)" | bc)" \
  "$(cat "$work/kpsctl.rss")" "$(cat "$work/kpsd.rss")" "$(du -h "$work/jobs.db" | cut -f1)"
