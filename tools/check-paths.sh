#!/usr/bin/env bash
# check-paths.sh fails when a file in the checkout names a path of one
# machine (/work/..., /home/..., /Users/..., /root/..., /mnt/...): code,
# tests and scripts reach the data as ../shared relative to the checkout, and
# build outputs relative to it. System paths (/usr, /etc, /dev, /var, /srv,
# /tmp inside the V4L2 VM) are fine. Tracked and untracked-but-not-ignored
# files are checked; run by `make test` (check-paths).
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='(^|[^A-Za-z0-9_.~$/-])/(work|home|Users|root|mnt)/[A-Za-z0-9_.-]'
if hits=$(git grep --untracked -nIE "$pattern" -- . ':!tools/check-paths.sh'); then
	echo "check-paths: absolute machine paths found (use ../shared or a path relative to the checkout):" >&2
	echo "$hits" >&2
	exit 1
fi
echo "check-paths: no absolute machine paths"
