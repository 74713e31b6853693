#!/usr/bin/env bash
# Enqueue N server ids (default 1,000,000) from a file through kpsctl into a paused kpsd, then
# restart kpsd with them all queued. Reports the enqueue time, peak RSS of kpsctl and kpsd, the
# time a restarted kpsd takes to answer, and two reads on the full table.
#   tests/bench/enqueue_1m.sh [N]
source "$(dirname "$0")/lib.sh"
n=${1:-1000000}
need sqlite3 bc
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 69; }
write_config "http://127.0.0.1:9" 64 auto false
start_kpsd
ctl pause >/dev/null # no calls: the measurement is the enqueue path alone
seq 1 "$n" | sed "s/^/bench-/" >"$work/ids.txt"
start=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$work/kpsctl.rss" "$build/daemon/kpsctl" --socket "$work/kpsd.sock" enqueue --file "$work/ids.txt" >"$work/out.txt"
end=$(date +%s.%N)
kpsd_rss=$(peak_rss_kib "$kpsd_pid")
stop_kpsd
# Restarted with N jobs queued: how long until it answers kpsctl.
t0=$(date +%s.%N)
start_kpsd
t1=$(date +%s.%N)
ctl list --state queued --after $((n - 1000)) --limit 100 >/dev/null
t2=$(date +%s.%N)
ctl stats >/dev/null
t3=$(date +%s.%N)
stop_kpsd
printf 'enqueue of %d ids: %.1f s (%.0f ids/s); peak RSS kpsctl %d KiB, kpsd %d KiB; database %s; restart with them queued: answering after %.0f ms; list --state queued --after %d: %.0f ms, stats: %.0f ms (kpsctl start included); %d lines of output\n' \
  "$n" "$(echo "$end - $start" | bc)" "$(echo "$n / ($end - $start)" | bc)" \
  "$(cat "$work/kpsctl.rss")" "$kpsd_rss" "$(du -h "$work/jobs.db" | cut -f1)" \
  "$(echo "($t1 - $t0) * 1000" | bc)" $((n - 1000)) "$(echo "($t2 - $t1) * 1000" | bc)" \
  "$(echo "($t3 - $t2) * 1000" | bc)" "$(wc -l <"$work/out.txt")"
