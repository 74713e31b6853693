#!/usr/bin/env bash
# Raw dispatch: N jobs (default 200,000) inserted with sqlite3, no task polling, no rate limit,
# against nginx answering a static 202 from one worker. The reference is wrk's rate against
# the same nginx in the same run.
#   tests/bench/raw.sh [JOBS] [CONCURRENCY]
source "$(dirname "$0")/lib.sh"
jobs=${1:-200000}
concurrency=${2:-64}
need sqlite3 bc
start_nginx "return 202 '$accepted_body';"
wrk=$(wrk_rate 5 "$concurrency")
write_config "http://127.0.0.1:$nginx_port" "$concurrency" 0 false
insert_jobs "$jobs"
run_jobs
printf 'raw: %d jobs, concurrency %d: %s s, %d jobs/s; wrk %.0f req/s; ratio %.3f; kpsd CPU %s us/job; peak RSS %s MiB; %d failed\n' \
  "$jobs" "$concurrency" "$seconds" "$jobs_per_s" "$wrk" "$(echo "$jobs_per_s / $wrk" | bc -l)" \
  "$cpu_us_per_job" "$rss_mib" "$failed"
