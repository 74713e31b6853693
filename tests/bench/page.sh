#!/usr/bin/env bash
# Raw dispatch (as raw.sh) while browser-like clients poll the status page: each client fetches
# what the page fetches on a refresh (/api/overview, which counts the 200,000-job batch, and a
# failures page) every 250 ms, 12 times as often as the page does. Compare the jobs/s with
# raw.sh's: serving the page must not stall dispatch.
#   tests/bench/page.sh [JOBS] [CONCURRENCY] [CLIENTS] [INTERVAL_S]   (the page itself: 3)
source "$(dirname "$0")/lib.sh"
jobs=${1:-200000}
concurrency=${2:-64}
clients=${3:-4}
interval=${4:-0.25}
need sqlite3 bc curl
start_nginx "return 202 '$accepted_body';"
# A port nobody listens on (kpsd logs its port only at info level, which a bench keeps quiet),
# below the kernel's ephemeral range: a port there may be the local end of any connection (the
# benches' own), and binding it fails.
read -r ephemeral_low _ </proc/sys/net/ipv4/ip_local_port_range
page_port=$((10000 + RANDOM % (ephemeral_low - 10000)))
while (exec 3<>"/dev/tcp/127.0.0.1/$page_port") 2>/dev/null; do page_port=$((page_port + 1)); done
write_config "http://127.0.0.1:$nginx_port" "$concurrency" 0 false
printf '[metrics]\nlisten = 127.0.0.1:%s\n' "$page_port" >>"$work/kpsd.conf"
insert_jobs "$jobs"
# The jobs form one batch, as an enqueue would have made them, so the overview counts it.
sqlite3 "$work/jobs.db" >/dev/null <<SQL
PRAGMA busy_timeout = 5000;
INSERT INTO batches (id, name, first_job_id, last_job_id) VALUES (1, 'bench', 1, $jobs);
UPDATE jobs SET batch_id = 1;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
for c in $(seq "$clients"); do
  (
    while true; do
      for path in /api/overview "/api/failures?state=any&batch=1&limit=50"; do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$page_port$path" \
          >>"$work/page-$c.log" 2>/dev/null || true
      done
      sleep "$interval"
    done
  ) &
  bench_pids+=($!)
done
run_jobs
served=$(cat "$work"/page-*.log | grep -c '^200 ' || true)
slowest=$(cat "$work"/page-*.log | awk '$1 == 200 {print $2}' | sort -n | tail -1)
median=$(cat "$work"/page-*.log | awk '$1 == 200 {print $2}' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
printf 'page: %d jobs, concurrency %d, %d page clients every %s s: %s s, %d jobs/s; kpsd CPU %s us/job; %d page requests served (median %.1f ms, slowest %.1f ms); %d failed\n' \
  "$jobs" "$concurrency" "$clients" "$interval" "$seconds" "$jobs_per_s" "$cpu_us_per_job" "$served" \
  "$(echo "${median:-0} * 1000" | bc -l)" "$(echo "${slowest:-0} * 1000" | bc -l)" "$failed"
