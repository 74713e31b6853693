#!/usr/bin/env bash
# The shipped alert rules and Grafana dashboard: promtool checks the rules and runs their unit
# tests (each alert fires on its fault, stays quiet when healthy), and every PromQL expression of
# the dashboard must parse. That the metric names exist in kpsd's /metrics is an e2e test.
#   tests/alerting.sh SOURCE_DIR
set -euo pipefail
src=$1
if ! command -v promtool >/dev/null; then
  echo "SKIPPED: promtool is not installed (Debian package prometheus; scripts/install-deps)"
  exit 0
fi
cd "$src/conf/prometheus"
promtool check rules kpsd-alerts.yml
promtool test rules kpsd-alerts.test.yml
tmp=$(mktemp -d /tmp/kpsd-alerting-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# Each dashboard expression as a recording rule, so promtool parses it.
{
  echo "groups:"
  echo "  - name: dashboard"
  echo "    rules:"
  n=0
  grep -o '"expr": "[^"]*\(\\"[^"]*\)*"' "$src/conf/grafana/kpsd-dashboard.json" |
    sed 's/^"expr": "//; s/"$//; s/\\"/"/g; s/\$instance/.*/g' |
    while IFS= read -r expr; do
      n=$((n + 1))
      printf '      - record: dashboard:panel_%d\n        expr: %s\n' "$n" "'$expr'"
    done
} > "$tmp/dashboard-rules.yml"
count=$(grep -c 'record:' "$tmp/dashboard-rules.yml")
[ "$count" -ge 10 ] || { echo "found only $count dashboard expressions"; exit 1; }
promtool check rules "$tmp/dashboard-rules.yml"
echo "ok: alert rules checked and tested; $count dashboard expressions parse"
