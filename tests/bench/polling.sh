#!/usr/bin/env bash
# Polling on: N jobs (default 20,000) through the whole path against the fake KPS (tasks end
# at once; kpsd polls each task), rate unlimited. Reports jobs/s and calls + polls per job.
#   tests/bench/polling.sh [JOBS] [CONCURRENCY]
source "$(dirname "$0")/lib.sh"
jobs=${1:-20000}
concurrency=${2:-64}
need sqlite3 bc curl
start_fake
write_config "http://127.0.0.1:$fake_port" "$concurrency" 0 true
insert_jobs "$jobs"
run_jobs
polls=$(curl -s "http://127.0.0.1:$fake_port/_fake/stats" 2>/dev/null |
  sed -n 's/.*"task_polls":\([0-9]*\).*/\1/p')
printf 'polling: %d jobs, concurrency %d: %s s, %d jobs/s; %s calls and %s polls per job; kpsd CPU %s us/job; peak RSS %s MiB; %d failed\n' \
  "$jobs" "$concurrency" "$seconds" "$jobs_per_s" "$(echo "scale=2; $calls / $jobs" | bc)" \
  "$(echo "scale=2; ${polls:-0} / $jobs" | bc)" "$cpu_us_per_job" "$rss_mib" "$failed"
