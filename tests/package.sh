#!/usr/bin/env bash
# The installed tree and the .deb, as an operator gets them: `cmake --install` into a DESTDIR,
# then the files, the binaries, the man pages and completion, the units (systemd-analyze verify
# and security), and `cpack -G DEB` with its contents, dependencies and maintainer scripts.
#   tests/package.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$2
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
if [ "$prefix" != /usr ]; then
  echo "SKIPPED: the tree is configured for $prefix; the package test needs -DCMAKE_INSTALL_PREFIX=/usr"
  exit 0
fi
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
tmp=$(mktemp -d /tmp/kpsd-package-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

root=$tmp/root
DESTDIR=$root cmake --install "$build" >/dev/null
expected=(
  etc/kpsd/kpsd.conf usr/bin/kpsd usr/bin/kpsctl
  usr/lib/systemd/system/kpsd.service usr/lib/systemd/system/kpsd@.service
  usr/lib/sysusers.d/kpsd.conf usr/share/doc/kpsd/README.md
  usr/share/doc/kpsd/docs/operator-guide.md usr/share/doc/kpsd/docs/failure-modes.md
  usr/share/doc/kpsd/docs/database.md usr/share/doc/kpsd/docs/architecture.md
  usr/share/doc/kpsd/docs/vendor-api.md
  usr/share/man/man8/kpsd.8 usr/share/man/man1/kpsctl.1 usr/share/man/man5/kpsd.conf.5
  usr/share/bash-completion/completions/kpsctl
  usr/share/kpsd/prometheus/kpsd-alerts.yml usr/share/kpsd/grafana/kpsd-dashboard.json)
for f in "${expected[@]}"; do [ -f "$root/$f" ] || fail "$f is not installed"; done
echo "ok: ${#expected[@]} files installed under DESTDIR"

[ "$("$root/usr/bin/kpsd" --version)" = "kpsd $version" ] || fail "kpsd --version"
[ "$("$root/usr/bin/kpsctl" --version)" = "kpsctl $version" ] || fail "kpsctl --version"
# The installed configuration parses; it names the token file the unit's comments describe.
set +e
check=$("$root/usr/bin/kpsd" --config "$root/etc/kpsd/kpsd.conf" --check-config 2>&1)
rc=$?
set -e
[ $rc -eq 78 ] && [[ $check == *"/etc/kpsd/kps-token"* ]] ||
  fail "installed kpsd.conf: expected exit 78 naming /etc/kpsd/kps-token, got $rc: $check"
echo "ok: installed binaries run; installed kpsd.conf parses (then wants /etc/kpsd/kps-token)"

if command -v groff >/dev/null; then
  for page in man8/kpsd.8 man1/kpsctl.1 man5/kpsd.conf.5; do
    warnings=$(groff -man -Tutf8 -ww -z "$root/usr/share/man/$page" 2>&1)
    [ -z "$warnings" ] || fail "$page: $warnings"
  done
  grep -q '^retention_days = 30$' "$root/usr/share/man/man5/kpsd.conf.5" ||
    fail "kpsd.conf(5) does not carry the configuration's keys"
  echo "ok: man pages render without warnings"
else
  echo "SKIPPED: man page rendering (groff is not installed)"
fi

complete_words() {  # the completions bash offers for the words given
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _kpsctl; echo "${COMPREPLY[*]}"' \
    _ "$root/usr/share/bash-completion/completions/kpsctl" "$@"
}
[ "$(complete_words kpsctl en)" = enqueue ] || fail "completion of 'kpsctl en'"
[ "$(complete_words kpsctl list --state fa)" = failed ] || fail "completion of --state"
[[ " $(complete_words kpsctl enqueue --)" == *" --dry-run "* ]] || fail "completion of enqueue options"
[ "$(complete_words kpsctl --output j)" = json ] || fail "completion of --output"
echo "ok: bash completion offers commands, options and values"

if command -v systemd-analyze >/dev/null; then
  mkdir -p "$tmp/units"
  for unit in kpsd.service kpsd@.service; do
    installed=$root/usr/lib/systemd/system/$unit
    grep -q '^ExecStart=/usr/bin/kpsd --config /etc/kpsd/' "$installed" || fail "$unit ExecStart"
    # Verified as installed, except that ExecStart and ExecReload point at the DESTDIR binaries
    # (systemd-analyze checks that they are executable).
    copy=$tmp/units/${unit/@/@prod}
    sed -e "s|^ExecStart=/usr/bin/kpsd|ExecStart=$root/usr/bin/kpsd|" \
      -e "s|^ExecReload=/usr/bin/kpsctl|ExecReload=$root/usr/bin/kpsctl|" "$installed" > "$copy"
    out=$(systemd-analyze verify "$copy" 2>&1) || fail "systemd-analyze verify $unit: $out"
    [ -z "$out" ] || fail "systemd-analyze verify $unit: $out"
    level=$(systemd-analyze security --offline=true "$copy" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: //p')
    [[ $level == *" OK"* || $level == *" SAFE"* ]] || fail "$unit exposure: $level"
    echo "ok: $unit verifies; systemd-analyze security: $level"
  done
else
  echo "SKIPPED: unit checks (systemd-analyze is not installed)"
fi

if command -v dpkg-deb >/dev/null && command -v dpkg-shlibdeps >/dev/null; then
  (cd "$build" && cpack -G DEB -B "$tmp/deb" >/dev/null)
  deb=$(ls "$tmp"/deb/kpsd_"$version"_*.deb)
  contents=$(dpkg-deb -c "$deb")
  for f in "${expected[@]}"; do grep -q " ./$f\$" <<<"$contents" || fail ".deb lacks $f"; done
  grep -q 'root/root .* ./etc/kpsd/kpsd.conf$' <<<"$contents" || fail "kpsd.conf owner"
  depends=$(dpkg-deb -f "$deb" Depends)
  for d in systemd libsqlite3-0 libssl3 libboost-json1.81.0; do
    [[ $depends == *"$d"* ]] || fail ".deb Depends lacks $d: $depends"
  done
  dpkg-deb -e "$deb" "$tmp/control"
  grep -qx /etc/kpsd/kpsd.conf "$tmp/control/conffiles" || fail "kpsd.conf is not a conffile"
  grep -q '^  systemd-sysusers kpsd.conf$' "$tmp/control/postinst" || fail "postinst creates no user"
  grep -q 'deb-systemd-helper enable kpsd.service' "$tmp/control/postinst" || fail "postinst enables nothing"
  sh -n "$tmp/control/postinst" && sh -n "$tmp/control/prerm" && sh -n "$tmp/control/postrm"
  echo "ok: $(basename "$deb") ($(stat -c %s "$deb") bytes): ${#expected[@]} files, Depends: $depends"
else
  echo "SKIPPED: .deb (dpkg-deb or dpkg-shlibdeps is not installed; Debian package dpkg-dev)"
fi
