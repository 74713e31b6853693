#!/usr/bin/env bash
# The systemd test's checks, run inside the container (tests/systemd/run boots it and copies
# this file, the .deb and the fake KPS to /opt/kpsd-test). One PASS or FAIL line per check, with
# its time; exit 1 when any failed. Only loopback exists in here.
set -uo pipefail
cd /opt/kpsd-test
project=0123456789abcdef0123456789abcdef
failures=0
t0=$(date +%s%N)
pass() {
  local now
  now=$(date +%s%N)
  printf 'PASS: %s (%d ms)\n' "$1" $(((now - t0) / 1000000))
  t0=$now
}
fail() {
  printf 'FAIL: %s\n' "$1"
  [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/    /' | tail -25
  failures=$((failures + 1))
  t0=$(date +%s%N)
}
# check NAME FUNCTION: the function prints why it failed and returns non-zero.
# Lines the function prints that start with "note: " are added to its PASS line.
check() {
  local out notes
  if out=$("$2" 2>&1); then
    notes=$(sed -n 's/^note: //p' <<<"$out" | paste -sd';' -)
    pass "$1${notes:+: $notes}"
  else
    fail "$1" "$out"
  fi
}
journal() { journalctl --no-pager -o cat "$@"; }
main_pid() { systemctl show -p MainPID --value "$1"; }
# journal_has PATTERN JOURNALCTL-ARGS...: the line is in the journal within 10 s (journald
# writes what a unit printed a moment after the command that caused it returns; later when
# the machine is busy).
journal_grep() { local pattern=$1; shift; journal "$@" | grep -q "$pattern"; }
journal_has() { wait_for 10 journal_grep "$@"; }
as() { local user=$1; shift; runuser -u "$user" -- "$@"; }
wait_for() {  # wait_for SECONDS COMMAND...: until the command succeeds
  local until=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$until" ] && return 1
    sleep 0.1
  done
}
start_fake() {  # start_fake NAME ARGS...: a fake KPS as a transient unit; prints its port
  local name=$1
  shift
  rm -f "/run/$name.port"
  systemd-run --quiet --unit="$name" /opt/kpsd-test/fake_kps --project-id "$project" \
    --port-file "/run/$name.port" "$@"
  wait_for 10 test -s "/run/$name.port" && cat "/run/$name.port"
}

install_package() {
  local out
  out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    /opt/kpsd-test/kpsd.deb 2>&1) || { echo "$out"; return 1; }
  grep -q "kpsd: set endpoint and project_id in /etc/kpsd/kpsd.conf" <<<"$out" ||
    { echo "no postinst message in: $out"; return 1; }
  [ "$(systemctl is-enabled kpsd)" = enabled ] || { echo "kpsd.service is not enabled"; return 1; }
  [ "$(systemctl is-active kpsd)" = inactive ] ||
    { echo "kpsd is $(systemctl is-active kpsd) before it is configured"; return 1; }
  getent group kpsd >/dev/null || { echo "no group kpsd"; return 1; }
}

configure() {
  useradd -m alice && usermod -aG kpsd alice && useradd -m bob || return 1
  umask 077
  echo "token-$RANDOM$RANDOM" > /opt/kpsd-test/token
  install -m 0600 -o kpsd -g root /opt/kpsd-test/token /etc/kpsd/kps-token
  local port
  port=$(start_fake fake-kps --token-file /opt/kpsd-test/token --task-ms 200) ||
    { echo "the fake KPS did not start"; return 1; }
  sed -i -e "s|^endpoint = .*|endpoint = http://127.0.0.1:$port|" \
    -e "s|^project_id = .*|project_id = $project|" \
    -e "s|^poll_initial_delay_ms = .*|poll_initial_delay_ms = 200|" \
    -e "s|^poll_interval_ms = .*|poll_interval_ms = 200|" \
    -e "s|^drain_grace_ms = .*|drain_grace_ms = 5000|" /etc/kpsd/kpsd.conf
}

preflight_as_kpsd() {
  as kpsd kpsd --config /etc/kpsd/kpsd.conf --check-config --preflight
}

start_returns_ready() {
  systemctl start kpsd || return 1
  # No waiting: Type=notify returns only after READY=1.
  local state
  state=$(systemctl is-active kpsd)
  [ "$state" = active ] || { echo "right after start: $state"; return 1; }
  systemctl status kpsd --no-pager | grep -q 'Status: "' ||
    { systemctl status kpsd --no-pager; return 1; }
  kpsctl stats >/dev/null
}

kpsctl_access() {
  kpsctl stats >/dev/null || { echo "root: kpsctl stats failed"; return 1; }
  as alice kpsctl stats >/dev/null || { echo "alice (group kpsd): kpsctl stats failed"; return 1; }
  local rc=0
  as bob kpsctl stats >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq 77 ] || { echo "bob (not in group kpsd): exit $rc, wanted 77"; return 1; }
  # Group kpsd grants the socket, not the cloud credential (issue 31).
  if as alice cat /etc/kpsd/kps-token >/dev/null 2>&1; then
    echo "alice (group kpsd) can read the token file"; return 1
  fi
  seq -f 'server-%03g' 1 40 > /tmp/servers
  as alice kpsctl enqueue --file /tmp/servers --batch first > /dev/null || return 1
  as alice kpsctl wait --batch first --timeout 60 || return 1
}

audit_names_the_caller() {
  local uid
  uid=$(id -u alice)
  as alice kpsctl pause >/dev/null || return 1
  local id
  id=$(as alice kpsctl enqueue server-to-cancel 2>/dev/null | cut -f1) || return 1
  as alice kpsctl cancel "$id" >/dev/null || return 1
  as alice kpsctl retry "$id" >/dev/null || return 1
  as alice kpsctl resume >/dev/null || return 1
  kpsctl prune --older-than 30d >/dev/null || return 1
  journal_has "prune finished jobs" -u kpsd  # the last of them, written a moment later
  local log
  log=$(journal -u kpsd)
  local want
  for want in "enqueue from uid $uid (alice) pid " "control: uid $uid (alice) pid [0-9]*: cancel job $id" \
    "control: uid $uid (alice) pid [0-9]*: retry job $id" "control: uid $uid (alice) pid [0-9]*: pause" \
    "control: uid 0 (root) pid [0-9]*: prune finished jobs"; do
    grep -q "$want" <<<"$log" || { echo "no audit line \"$want\" in:"; tail -20 <<<"$log"; return 1; }
  done
  ! grep -q "uid 65534" <<<"$log" || { echo "an audit line names uid 65534"; return 1; }
}

reload_waits() {
  sed -i 's/^concurrency = .*/concurrency = 8/' /etc/kpsd/kpsd.conf
  systemctl reload kpsd || return 1
  # systemctl returned only after kpsd said it applied the file; the journal may write the line
  # a moment later (under load), so its place among the lines is the proof, below.
  journal_has "reload: applied queue.concurrency 64 -> 8" -u kpsd
  local log
  log=$(journal -u kpsd)
  grep -q "reload: applied queue.concurrency 64 -> 8" <<<"$log" ||
    { echo "no 'applied' line right after systemctl reload:"; tail -5 <<<"$log"; return 1; }
  # systemd's "Reloaded" comes after kpsd's line (the old ExecReload=kill -HUP said it 1 ms
  # before kpsd had read the file).
  local applied reloaded
  applied=$(grep -n "reload: applied queue.concurrency 64 -> 8" <<<"$log" | tail -1 | cut -d: -f1)
  reloaded=$(grep -n "^Reloaded " <<<"$log" | tail -1 | cut -d: -f1)
  [ -n "$reloaded" ] && [ "$applied" -lt "$reloaded" ] ||
    { echo "kpsd applied at line $applied, systemd said Reloaded at line ${reloaded:-none}"; return 1; }
}

bad_reload_fails() {
  local pid
  pid=$(main_pid kpsd)
  cp /etc/kpsd/kpsd.conf /tmp/kpsd.conf.good
  sed -i 's/^concurrency = .*/concurrency = lots/' /etc/kpsd/kpsd.conf
  local rc=0
  systemctl reload kpsd 2>/dev/null || rc=$?
  cp /tmp/kpsd.conf.good /etc/kpsd/kpsd.conf
  [ "$rc" -ne 0 ] || { echo "systemctl reload succeeded with a bad file"; return 1; }
  [ "$(systemctl is-active kpsd)" = active ] && [ "$(main_pid kpsd)" = "$pid" ] ||
    { echo "kpsd did not stay up: $(systemctl is-active kpsd)"; return 1; }
  journal_has "kpsctl: error: reload: /etc/kpsd/kpsd.conf:[0-9]*: .*concurrency.*keeping the running configuration" -u kpsd ||
    { echo "no one-line reason from the failed reload in:"; journal -u kpsd | tail -8; return 1; }
  # Still the running configuration: reloading the good file again changes nothing.
  local out
  out=$(kpsctl reload) || return 1
  [ "$out" = reloaded ] || { echo "after the failed reload, a good one said: $out"; return 1; }
}

needs_restart_warns() {
  local pid
  pid=$(main_pid kpsd)
  sed -i 's/^request_timeout_ms = .*/request_timeout_ms = 7000/' /etc/kpsd/kpsd.conf
  local out
  out=$(systemctl reload kpsd 2>&1) || { echo "$out"; return 1; }
  journal_has "need a restart (systemctl restart kpsd): kps.request_timeout_ms 15000 -> 7000" -u kpsd -p warning ||
    { echo "no needs-restart warning:"; journal -u kpsd -p warning | tail -5; return 1; }
  [ "$(main_pid kpsd)" = "$pid" ] || { echo "MainPID changed: $pid -> $(main_pid kpsd)"; return 1; }
}

journal_priorities() {
  local warnings all
  journal_has "need a restart" -u kpsd -p warning _PID="$(main_pid kpsd)"
  warnings=$(journal -u kpsd -p warning _PID="$(main_pid kpsd)")
  all=$(journal -u kpsd _PID="$(main_pid kpsd)")
  grep -q "need a restart" <<<"$warnings" || { echo "the warning is missing from -p warning"; return 1; }
  grep -q "enqueue from" <<<"$all" || { echo "no info lines at all"; return 1; }
  if grep -q "enqueue from\|kpsd ready\|reload: applied" <<<"$warnings"; then
    echo "info lines under -p warning:"
    echo "$warnings"
    return 1
  fi
}

watchdog() {
  mkdir -p /run/systemd/system/kpsd.service.d
  # A short watchdog for the test; SIGKILL 2 s after the SIGABRT a stopped process cannot take.
  printf '[Service]\nWatchdogSec=3s\nRestartSec=1s\nTimeoutAbortSec=2s\n' \
    > /run/systemd/system/kpsd.service.d/test-watchdog.conf
  systemctl daemon-reload && systemctl restart kpsd || return 1
  local pid restarts
  pid=$(main_pid kpsd)
  restarts=$(systemctl show -p NRestarts --value kpsd)
  sleep 7  # more than twice WatchdogSec
  [ "$(main_pid kpsd)" = "$pid" ] && [ "$(systemctl is-active kpsd)" = active ] ||
    { echo "a healthy kpsd did not outlive WatchdogSec"; return 1; }
  kill -STOP "$pid"
  wait_for 15 bash -c "[ \"\$(systemctl show -p MainPID --value kpsd)\" != $pid ] &&
    [ \"\$(systemctl is-active kpsd)\" = active ]" ||
    { echo "the stopped kpsd was not replaced"; journal -u kpsd | tail -5; return 1; }
  journal_has "Watchdog timeout" -u kpsd || { echo "no watchdog timeout logged"; return 1; }
  [ "$(systemctl show -p NRestarts --value kpsd)" -gt "$restarts" ] || return 1
  rm /run/systemd/system/kpsd.service.d/test-watchdog.conf
  systemctl daemon-reload
}

stop_drains() {
  seq -f 'drain-%03g' 1 200 > /tmp/drain
  kpsctl enqueue --file /tmp/drain --batch drain >/dev/null || return 1
  sleep 0.3
  local pid
  pid=$(main_pid kpsd)
  systemctl stop kpsd || return 1
  local status result
  status=$(systemctl show -p ExecMainStatus --value kpsd)
  result=$(systemctl show -p Result --value kpsd)
  [ "$status" = 0 ] && [ "$result" = success ] ||
    { echo "exit status $status, result $result"; return 1; }
  journal_has "stopping; calls in flight get up to 5000 ms" -u kpsd _PID="$pid" &&
    journal_has "kpsd stopped$" -u kpsd _PID="$pid" ||
    { journal -u kpsd _PID="$pid" | tail -5; return 1; }
  systemctl start kpsd && kpsctl wait --batch drain --timeout 60 >/dev/null
}

instance_with_credentials() {
  echo "AK$RANDOM$RANDOM" > /opt/kpsd-test/ak
  echo "SK$RANDOM$RANDOM$RANDOM" > /opt/kpsd-test/sk
  install -d -m 0700 /etc/credstore
  install -m 0600 /opt/kpsd-test/ak /etc/credstore/kpsd-second-ak
  install -m 0600 /opt/kpsd-test/sk /etc/credstore/kpsd-second-sk
  local port
  port=$(start_fake fake-kps-aksk --token-file /opt/kpsd-test/token --ak-file /opt/kpsd-test/ak \
    --sk-file /opt/kpsd-test/sk --task-ms 200) || { echo "the second fake KPS did not start"; return 1; }
  cat > /etc/kpsd/second.conf <<CONF
[kps]
endpoint = http://127.0.0.1:$port
project_id = $project
poll_initial_delay_ms = 200
poll_interval_ms = 200
[auth]
method = aksk
ak_file = kpsd-ak
sk_file = kpsd-sk
[queue]
database = /var/lib/kpsd/second/jobs.db
[control]
socket = /run/kpsd/second/kpsd.sock
CONF
  systemctl start kpsd@second || { journal -u kpsd@second | tail -5; return 1; }
  local creds
  creds=$(ls /run/credentials/kpsd@second.service 2>&1)
  [ "$creds" = "$(printf 'kpsd-ak\nkpsd-sk')" ] ||
    { echo "credentials passed in: $creds (wanted kpsd-ak, kpsd-sk; the absent password skipped)"; return 1; }
  seq -f 'second-%03g' 1 10 | kpsctl --socket /run/kpsd/second/kpsd.sock enqueue --file - --batch s >/dev/null &&
    kpsctl --socket /run/kpsd/second/kpsd.sock wait --batch s --timeout 30 >/dev/null ||
    { journal -u kpsd@second | tail -8; journal -u fake-kps-aksk | tail -5; return 1; }
  [ "$(systemctl is-active kpsd)" = active ] || { echo "the main kpsd is not running beside it"; return 1; }
  [ -f /var/lib/kpsd/second/jobs.db ] && [ -f /var/lib/kpsd/jobs.db ] && [ -S /run/kpsd/kpsd.sock ] ||
    { echo "each instance's own database and socket are not where they should be"; return 1; }
  # /run/kpsd is the main unit's RuntimeDirectory and holds the instance's folder: a restart of
  # the main unit must not take the instance's socket with it.
  systemctl restart kpsd || return 1
  kpsctl --socket /run/kpsd/second/kpsd.sock stats >/dev/null ||
    { echo "kpsd@second's socket is gone after systemctl restart kpsd"; return 1; }
}

security_score() {
  local level
  level=$(systemd-analyze security kpsd.service 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: //p')
  echo "note: $level"
  # 1.2: the unit has no PrivateUsers= (the audit line needs callers' real uids; see the unit).
  awk -v l="${level%% *}" 'BEGIN { exit !(l != "" && l <= 1.2) }' || return 1
}

remove_keeps_data() {
  DEBIAN_FRONTEND=noninteractive apt-get remove -y kpsd >/dev/null 2>&1 || return 1
  local a b
  a=$(systemctl is-active kpsd)
  b=$(systemctl is-active kpsd@second)
  [ "$a" = inactive ] && [ "$b" = inactive ] || { echo "after remove: kpsd $a, kpsd@second $b"; return 1; }
  [ -s /var/lib/kpsd/jobs.db ] || { echo "the database is gone"; return 1; }
}

check "installed with apt: enabled, not started before it is configured, postinst says what to do" install_package
check "configured: a fake KPS on loopback, users alice (group kpsd) and bob" configure
check "kpsd --check-config --preflight as user kpsd" preflight_as_kpsd
check "systemctl start returns after READY=1 (active at once); STATUS= in systemctl status" start_returns_ready
check "kpsctl as root and as alice (group kpsd); bob refused with 77; a batch of 40 completes" kpsctl_access
check "audit lines name the real uid and user of enqueue, pause, cancel, retry and prune" audit_names_the_caller
check "systemctl reload returns after kpsd applied the file" reload_waits
check "a bad file: systemctl reload fails with kpsd's reason, the running configuration stays" bad_reload_fails
check "a needs-restart key: the warning, and the same MainPID" needs_restart_warns
check "journalctl -p warning shows the warnings and only them" journal_priorities
check "watchdog: a healthy kpsd outlives WatchdogSec; a SIGSTOPped one is killed and restarted" watchdog
check "systemctl stop drains and exits 0" stop_drains
check "kpsd@second beside kpsd: own socket and database, kept across a restart of kpsd; LoadCredential passes AK/SK, skips the absent password" instance_with_credentials
check "systemd-analyze security: no worse than 1.2" security_score
check "apt remove stops every kpsd and keeps the database" remove_keeps_data
echo "$failures failed"
[ "$failures" -eq 0 ]
