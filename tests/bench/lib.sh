# Shared by the benchmark scripts (sourced, not run). Every server is started here on
# 127.0.0.1 and stopped on exit; every file lives in one temp folder.
#   BENCH_BUILD   build tree with daemon/kpsd and tests/fake_kps (default: build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
build=${BENCH_BUILD:-build}
project=0123456789abcdef0123456789abcdef
work=$(mktemp -d /tmp/kpsd-bench-XXXXXX)
bench_pids=()
bench_cleanup() {
  for p in "${bench_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${bench_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -s "$work/nginx.pid" ]; then kill -QUIT "$(cat "$work/nginx.pid")" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap bench_cleanup EXIT
echo bench-token >"$work/token"

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || {
      echo "needs $tool: scripts/install-deps --bench" >&2
      exit 69
    }
  done
}

# start_nginx 'LOCATION BODY' ['HTTP-LEVEL DIRECTIVES'] ['SERVER-LEVEL DIRECTIVES']: one
# worker (as in the issue); the location answers every path. Sets nginx_port.
accepted_body='{"server_id":"s","task_id":"t-1","status":"SUCCESS"}'
start_nginx() {
  need nginx
  local module=/usr/lib/nginx/modules/ngx_http_echo_module.so
  [ -f "$module" ] || { echo "needs libnginx-mod-http-echo" >&2; exit 69; }
  mkdir -p "$work/nginx"
  # nginx cannot be told port 0: try random ports until one binds.
  for _ in $(seq 20); do
    nginx_port=$((20000 + RANDOM % 40000))
    write_nginx_conf "$@"
    nginx -c "$work/nginx.conf" -e "$work/nginx/error.log" 2>/dev/null || continue
    for _ in $(seq 100); do [ -s "$work/nginx.pid" ] && return 0; sleep 0.05; done
  done
  echo "nginx did not start:" >&2
  cat "$work/nginx/error.log" >&2
  exit 1
}

write_nginx_conf() {
  local module=/usr/lib/nginx/modules/ngx_http_echo_module.so
  cat >"$work/nginx.conf" <<CONF
load_module $module;
worker_processes 1;
daemon on;
pid $work/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  default_type application/json;
  ${2:-}
  server {
    listen 127.0.0.1:$nginx_port backlog=4096;
    location / { $1 }
    ${3:-}
  }
}
CONF
}

# wrk's rate against the same nginx, same path and body: the reference for "raw".
wrk_rate() {
  need wrk
  local seconds=${1:-5} connections=${2:-64}
  cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"keypairs":[{"name":"s"}],"server":{"id":"s"}}'
wrk.headers["Content-Type"] = "application/json"
LUA
  wrk -t1 -c"$connections" -d"${seconds}s" -s "$work/post.lua" \
    "http://127.0.0.1:$nginx_port/v3/$project/keypairs/disassociate" |
    sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p'
}

# start_fake [ARGS...]: the fake KPS (tests/fake_kps). Sets fake_port.
start_fake() {
  rm -f "$work/fake.port"
  "$build/tests/fake_kps" --project-id "$project" --token-file "$work/token" \
    --port-file "$work/fake.port" "$@" >"$work/fake.log" 2>&1 &
  bench_pids+=($!)
  for _ in $(seq 100); do [ -s "$work/fake.port" ] && break; sleep 0.05; done
  fake_port=$(cat "$work/fake.port")
}

# write_config ENDPOINT CONCURRENCY RATE POLL [EXTRA QUEUE LINES]
write_config() {
  cat >"$work/kpsd.conf" <<CONF
[kps]
endpoint = $1
project_id = $project
poll_tasks = $4
poll_initial_delay_ms = 0
poll_interval_ms = 100
[auth]
token_file = $work/token
[queue]
database = $work/jobs.db
concurrency = $2
rate_per_second = $3
${5:-}
[control]
socket = $work/kpsd.sock
[log]
level = warn
CONF
}

ctl() { "$build/daemon/kpsctl" --socket "$work/kpsd.sock" "$@"; }

start_kpsd() {
  "$build/daemon/kpsd" --config "$work/kpsd.conf" 2>>"$work/kpsd.log" &
  kpsd_pid=$!
  bench_pids+=("$kpsd_pid")
  for _ in $(seq 400); do ctl stats >/dev/null 2>&1 && return 0; sleep 0.025; done
  echo "kpsd did not start:" >&2
  cat "$work/kpsd.log" >&2
  exit 1
}

stop_kpsd() {
  kill -TERM "$kpsd_pid"
  wait "$kpsd_pid" || true
}

# insert_jobs N: N queued jobs written straight into the database by sqlite3 (kpsd stopped),
# so the measurement is kpsd's dispatch alone. The schema comes from a first start.
insert_jobs() {
  start_kpsd
  stop_kpsd
  sqlite3 "$work/jobs.db" >/dev/null <<SQL
PRAGMA busy_timeout = 5000;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
INSERT INTO jobs (server_id, state, next_attempt_at, created_at, updated_at)
  SELECT 'bench-' || i, 'queued', 0, 0, 0 FROM n;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
}

# Waits until no job is unfinished (kpsctl's counts, kept by triggers: cheap).
wait_done() {
  local timeout=${1:-3600}
  ctl wait --timeout "$timeout" >/dev/null 2>&1 || true
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_rss_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# run_jobs: starts kpsd on the inserted jobs, waits for all to end, and sets
#   jobs_per_s   jobs / (last commit - first call), from the database's own timestamps
#   cpu_us_per_job, rss_mib, calls, throttled, polls, failed
run_jobs() {
  start_kpsd
  local t0
  t0=$(cpu_ticks "$kpsd_pid")
  wait_done
  local t1
  t1=$(cpu_ticks "$kpsd_pid")
  rss_mib=$(echo "scale=1; $(peak_rss_kib "$kpsd_pid") / 1024" | bc)
  stop_kpsd
  local q
  q=$(sqlite3 -separator ' ' "$work/jobs.db" "
    SELECT (SELECT count(*) FROM jobs),
           (SELECT count(*) FROM jobs WHERE state = 'failed'),
           (SELECT min(started_at) FROM attempts),
           (SELECT max(updated_at) FROM jobs),
           (SELECT count(*) FROM attempts),
           (SELECT count(*) FROM attempts WHERE http_status = 429)")
  read -r njobs failed first last calls throttled <<<"$q"
  local ms=$((last - first))
  [ "$ms" -gt 0 ] || ms=1
  jobs_per_s=$(echo "scale=0; $njobs * 1000 / $ms" | bc)
  seconds=$(echo "scale=2; $ms / 1000" | bc)
  cpu_us_per_job=$(echo "scale=1; ($t1 - $t0) * 10000 / $njobs" | bc)
}
