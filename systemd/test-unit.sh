#!/usr/bin/env bash
# test-unit.sh — checks systemd/edge.service with systemd's own tools:
#   1. `systemd-analyze verify` is silent, in a staged root (--root) that holds
#      the system's unit files, the unit, and /usr/bin/edge (EDGE_BIN, or a stub
#      script when no binary is given: verify only checks that it is executable);
#   2. `systemd-analyze security --offline=true` rates the exposure at
#      MAX_EXPOSURE (2.0) or lower;
#   3. the settings the service depends on are present, and the ones that break
#      it (PrivateDevices=, ProcSubset=pid) are absent;
#   4. the packaged edge.env sets only EDGE_TASKS=age,gender (no emotion, with
#      the EU AI Act note) and documents exactly the variables that
#      `edge run --help` lists (from EDGE_HELP, or by running EDGE_BIN);
#   5. the same for the fleet collector: edge-collect.service verifies, rates
#      MAX_EXPOSURE or lower and has the settings it relies on, and
#      collect.env sets nothing and documents exactly the variables of
#      `edge collect --help` (EDGE_COLLECT_HELP, or EDGE_BIN).
# Needs systemd >= 250 (Debian: apt-get install systemd); systemd need not run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
unit=${UNIT:-$here/edge.service}
envfile=$here/edge.env
max=${MAX_EXPOSURE:-2.0}
fail() { echo "test-unit: FAIL: $*" >&2; exit 1; }

command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (apt-get install systemd)"
ver=$(systemd-analyze --version | awk 'NR==1 {print $2}')
[[ $ver -ge 250 ]] || fail "systemd $ver is too old for 'security --offline' (need >= 250)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. verify
root=$tmp/root
mkdir -p "$root/usr/lib/systemd" "$root/usr/bin" "$root/etc/edge"
ln -s usr/lib "$root/lib"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
install -m 0644 "$unit" "$root/usr/lib/systemd/system/edge.service"
install -m 0600 "$envfile" "$root/etc/edge/edge.env"
if [[ -n ${EDGE_BIN:-} ]]; then
	install -m 0755 "$EDGE_BIN" "$root/usr/bin/edge"
else
	printf '#!/bin/sh\nexit 0\n' >"$root/usr/bin/edge" && chmod 0755 "$root/usr/bin/edge"
fi
out=$(systemd-analyze verify --man=no --root="$root" edge.service 2>&1) || fail "systemd-analyze verify:"$'\n'"$out"
[[ -z $out ]] || fail "systemd-analyze verify printed warnings:"$'\n'"$out"
echo "test-unit: verify: clean (systemd $ver)"

# 2. security
sec=$(cd "$tmp" && systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || true
line=$(grep -E 'Overall exposure level for [^:]*:' <<<"$sec") || fail "no exposure line in:"$'\n'"$sec"
score=$(sed -E 's/.*: ([0-9]+\.[0-9]+).*/\1/' <<<"$line")
awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }' || {
	grep '✗' <<<"$sec" >&2 || true
	fail "exposure $score > $max"
}
echo "test-unit: security: exposure $score (<= $max)"

# 3. settings edge relies on
need=(Type=notify NotifyAccess=main 'ExecStart=/usr/bin/edge run' EnvironmentFile=/etc/edge/edge.env
	Restart=on-failure WatchdogSec= TimeoutStopSec= StateDirectory=edge SupplementaryGroups=video
	'DeviceAllow=char-video4linux rw' DevicePolicy=closed MemoryDenyWriteExecute=yes)
for s in "${need[@]}"; do
	grep -qxF -- "$s" "$unit" || grep -qE "^${s}[0-9]" "$unit" || fail "edge.service lacks '$s'"
done
grep -qE '^PrivateDevices=(yes|true|1)' "$unit" && fail "PrivateDevices= hides /dev/video*"
grep -qE '^ProcSubset=pid' "$unit" && fail "ProcSubset=pid hides /proc/cpuinfo, which XNNPACK needs"
echo "test-unit: unit settings: ok"

# 4. env file: it sets only EDGE_TASKS=age,gender (the built-in default
# includes emotion); every other line is a comment.
active=$(grep -vE '^[[:space:]]*(#|$)' "$envfile" || true)
[[ $active == EDGE_TASKS=age,gender ]] || fail "edge.env must set exactly EDGE_TASKS=age,gender, it sets:"$'\n'"$active"
grep -q 'Art. 5(1)(f)' "$envfile" || fail "edge.env: the EU AI Act note on emotion is missing"
# Every variable that `edge run --help` lists is documented, and no other:
# its output comes from EDGE_HELP, or from running EDGE_BIN.
help=${EDGE_HELP:-}
if [[ -z $help && -n ${EDGE_BIN:-} ]]; then
	help=$("$EDGE_BIN" run --help 2>&1) || {
		echo "test-unit: NOTE: cannot run $EDGE_BIN here; edge.env not compared with 'edge run --help'"
		help=
	}
fi
if [[ -n $help ]]; then
	documented=$(grep -oE '^#?EDGE_[A-Z0-9_]+=' "$envfile" | tr -d '#=' | sort -u)
	known=$(grep -oE '^EDGE_[A-Z0-9_]+' <<<"$help" | sort -u)
	[[ -n $known ]] || fail "edge run --help lists no EDGE_ variables"
	[[ $documented == "$known" ]] || fail "edge.env and 'edge run --help' differ:"$'\n'"$(diff <(echo "$documented") <(echo "$known"))"
fi
echo "test-unit: edge.env: ok${help:+ (matches edge run --help)}"

# 5. edge-collect.service and collect.env
cunit=${COLLECT_UNIT:-$here/edge-collect.service}
cenv=$here/collect.env
install -m 0644 "$cunit" "$root/usr/lib/systemd/system/edge-collect.service"
install -m 0600 "$cenv" "$root/etc/edge/collect.env"
out=$(systemd-analyze verify --man=no --root="$root" edge-collect.service 2>&1) || fail "systemd-analyze verify edge-collect:"$'\n'"$out"
[[ -z $out ]] || fail "systemd-analyze verify edge-collect printed warnings:"$'\n'"$out"
sec=$(cd "$tmp" && systemd-analyze security --offline=true --no-pager "$cunit" 2>&1) || true
line=$(grep -E 'Overall exposure level for [^:]*:' <<<"$sec") || fail "no exposure line for edge-collect in:"$'\n'"$sec"
cscore=$(sed -E 's/.*: ([0-9]+\.[0-9]+).*/\1/' <<<"$line")
awk -v s="$cscore" -v m="$max" 'BEGIN { exit !(s <= m) }' || {
	grep '✗' <<<"$sec" >&2 || true
	fail "edge-collect exposure $cscore > $max"
}
need=('ExecStart=/usr/bin/edge collect' EnvironmentFile=/etc/edge/collect.env Restart=always DynamicUser=yes
	PrivateDevices=yes MemoryDenyWriteExecute=yes 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX')
for s in "${need[@]}"; do
	grep -qxF -- "$s" "$cunit" || fail "edge-collect.service lacks '$s'"
done
active=$(grep -vE '^[[:space:]]*(#|$)' "$cenv" || true)
[[ -z $active ]] || fail "collect.env must set nothing (the operator sets EDGE_DATABASE_URL), it sets:"$'\n'"$active"
chelp=${EDGE_COLLECT_HELP:-}
if [[ -z $chelp && -n ${EDGE_BIN:-} ]]; then
	chelp=$("$EDGE_BIN" collect --help 2>&1) || chelp=
fi
if [[ -n $chelp ]]; then
	documented=$(grep -oE '^#?EDGE_[A-Z0-9_]+=' "$cenv" | tr -d '#=' | sort -u)
	known=$(grep -oE '^EDGE_[A-Z0-9_]+' <<<"$chelp" | sort -u)
	[[ -n $known ]] || fail "edge collect --help lists no EDGE_ variables"
	[[ $documented == "$known" ]] || fail "collect.env and 'edge collect --help' differ:"$'\n'"$(diff <(echo "$documented") <(echo "$known"))"
fi
echo "test-unit: edge-collect.service: verify clean, exposure $cscore (<= $max), settings ok; collect.env: ok${chelp:+ (matches edge collect --help)}"
echo "test-unit: 5 passed, 0 failed"
