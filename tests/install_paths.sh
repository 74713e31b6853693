#!/usr/bin/env bash
# Configures a tree with the /usr prefix (nothing is built or installed) and checks that the
# example configuration is installed where the generated unit reads it: /etc/kpsd/kpsd.conf.
#   tests/install_paths.sh SOURCE_DIR
set -euo pipefail
src=$1
tmp=$(mktemp -d /tmp/kpsd-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cmake -S "$src" -B "$tmp/b" -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
unit=$tmp/b/kpsd.service
grep -q '^ExecStart=/usr/bin/kpsd --config /etc/kpsd/kpsd.conf$' "$unit" ||
  { echo "unit does not read /etc/kpsd/kpsd.conf:"; grep ExecStart "$unit"; exit 1; }
grep -q 'DESTINATION "/etc/kpsd" TYPE FILE FILES "[^"]*/conf/kpsd.conf"' "$tmp/b/cmake_install.cmake" ||
  { echo "kpsd.conf is not installed to /etc/kpsd:"; grep -n 'kpsd.conf' "$tmp/b/cmake_install.cmake"; exit 1; }
grep -q '^RestartPreventExitStatus=.*78' "$unit" ||
  { echo "a bad configuration (exit 78) would be restarted forever"; exit 1; }
echo "ok: /usr prefix installs kpsd.conf to /etc/kpsd, where the unit reads it"
