#!/usr/bin/env bash
# apt-install.sh PACKAGE...: installs the Debian packages given that are
# missing (make deps-apt, dist-deps, test-unit). Another apt or dpkg run
# holding the lock (the coordinator's `make deps`, unattended upgrades) is
# waited for, up to APT_WAIT seconds (default 1800), as
# camera/v4l2test/deps.sh does, instead of failing at once.
set -euo pipefail
missing=()
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
limit=${APT_WAIT:-1800}

wait_apt() {
	local waited=0
	while pgrep -x apt-get >/dev/null || pgrep -x apt >/dev/null || pgrep -x dpkg >/dev/null; do
		((waited % 30 == 0)) && echo "apt-install: waiting for another apt/dpkg run to finish (${waited}s of ${limit}s)" >&2
		sleep 5
		waited=$((waited + 5))
		if ((waited >= limit)); then
			echo "apt-install: apt/dpkg still busy after ${limit}s; giving up (set APT_WAIT to wait longer)" >&2
			exit 1
		fi
	done
}

echo "installing: ${missing[*]}"
wait_apt
# The lock timeout covers a run that starts between the wait and our own.
$SUDO apt-get -o DPkg::Lock::Timeout="$limit" update -qq
wait_apt
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout="$limit" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
