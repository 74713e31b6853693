#!/usr/bin/env bash
# Slow answers: every answer comes after DELAY_MS (nginx's echo_sleep), concurrency 512 by
# default. The reference is Little's law: concurrency / latency jobs per second.
#   tests/bench/latency.sh [JOBS] [CONCURRENCY] [DELAY_MS]
source "$(dirname "$0")/lib.sh"
jobs=${1:-50000}
concurrency=${2:-512}
delay_ms=${3:-50}
need sqlite3 bc
start_nginx "echo_sleep $(echo "scale=3; $delay_ms / 1000" | bc); echo_status 202; echo -n '$accepted_body';"
write_config "http://127.0.0.1:$nginx_port" "$concurrency" 0 false
insert_jobs "$jobs"
run_jobs
little=$(echo "$concurrency * 1000 / $delay_ms" | bc)
printf 'latency: %d jobs, concurrency %d, answers after %d ms: %s s, %d jobs/s; Little limit %d/s; ratio %.3f; kpsd CPU %s us/job; peak RSS %s MiB; %d failed\n' \
  "$jobs" "$concurrency" "$delay_ms" "$seconds" "$jobs_per_s" "$little" \
  "$(echo "$jobs_per_s / $little" | bc -l)" "$cpu_us_per_job" "$rss_mib" "$failed"
