#!/usr/bin/env bash
# A throttling gateway: the API admits RATE calls/s and answers 429 APIGW.0308 (no Retry-After)
# to the rest. Two shapes:
#   leaky   nginx limit_req (RATE/s, burst 20, nodelay) in front of a static 202
#   window  a fixed-window quota (the fake KPS: RATE x WINDOW_S calls per window of WINDOW_S
#           seconds, 10 by default, then 429 to everything until the window turns)
# TOLD is kpsd's rate_per_second: auto (not told), or a number (a ceiling).
#   tests/bench/throttled.sh leaky|window [JOBS] [TOLD] [RATE] [CONCURRENCY] [WINDOW_S]
source "$(dirname "$0")/lib.sh"
shape=${1:-leaky}
jobs=${2:-4000}
told=${3:-auto}
rate=${4:-200}
concurrency=${5:-64}
window_s=${6:-10}
need sqlite3 bc
case "$shape" in
leaky)
  throttled_body='{"error_code":"APIGW.0308","error_msg":"The throttling threshold has been reached: policy user over ratelimit,limit:'$rate',time:1 second"}'
  start_nginx "limit_req zone=gateway burst=20 nodelay; echo_status 202; echo -n '$accepted_body';" \
    "limit_req_zone \$binary_remote_addr zone=gateway:1m rate=${rate}r/s; limit_req_status 429;" \
    "error_page 429 = @throttled; location @throttled { return 429 '$throttled_body'; }"
  endpoint=http://127.0.0.1:$nginx_port
  ;;
window)
  start_fake --window-quota $((rate * window_s)) --quota-window-ms $((window_s * 1000))
  endpoint=http://127.0.0.1:$fake_port
  ;;
*)
  echo "shape must be leaky or window" >&2
  exit 64
  ;;
esac
write_config "$endpoint" "$concurrency" "$told" false
insert_jobs "$jobs"
run_jobs
printf 'throttled (%s, admits %d/s, told %s): %d jobs: %s s, %d jobs/s; ratio %.3f of the admitted rate; %d of %d calls throttled (%.1f %%); kpsd CPU %s us/job; peak RSS %s MiB; %d failed\n' \
  "$shape" "$rate" "$told" "$jobs" "$seconds" "$jobs_per_s" "$(echo "$jobs_per_s / $rate" | bc -l)" \
  "$throttled" "$calls" "$(echo "100 * $throttled / $calls" | bc -l)" "$cpu_us_per_job" "$rss_mib" "$failed"
grep -E "throttled|quota|holding" "$work/kpsd.log" | head -5 || true
