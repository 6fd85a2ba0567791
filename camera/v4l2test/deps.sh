#!/usr/bin/env bash
# deps.sh installs the Debian packages the V4L2 VM test needs, when missing:
# qemu, Debian's kernel and its headers, busybox-static, v4l2loopback via
# DKMS, ffmpeg (host-side frame encoding) and cpio. It waits for any other
# apt or dpkg run to finish first.
set -euo pipefail

pkgs=(qemu-system-x86 linux-image-amd64 linux-headers-amd64 busybox-static
	dkms v4l2loopback-dkms ffmpeg cpio kmod)
[[ ${EDGE_V4L2_DEBUG_TOOLS:-0} == 1 ]] && pkgs+=(v4l-utils)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi

wait_apt() {
	local waited=0
	while pgrep -x apt-get >/dev/null || pgrep -x apt >/dev/null || pgrep -x dpkg >/dev/null; do
		((waited % 30 == 0)) && echo "v4l2test: waiting for another apt/dpkg run to finish (${waited}s)" >&2
		sleep 5
		waited=$((waited + 5))
		if ((waited > 1800)); then
			echo "v4l2test: apt/dpkg still busy after 30 minutes; giving up" >&2
			exit 1
		fi
	done
}

echo "v4l2test: installing ${missing[*]}" >&2
wait_apt
$SUDO apt-get update -qq
# The headers go in before v4l2loopback-dkms so that its postinst already
# builds the module for Debian's kernel; the run script checks anyway.
wait_apt
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
