#!/usr/bin/env bash
# deb-version.sh VERSION — turn a `git describe --always --dirty` string into
# a Debian version that sorts in release order:
#   v1.2.3                  -> 1.2.3
#   v1.2.3-4-gabc1234       -> 1.2.3+4.gabc1234
#   abc1234 (no tag yet)    -> 0.0.0+git20250101T120000.abc1234  (commit time, UTC)
#   ...-dirty               -> ... .dirty
# Anything else: a leading "v" dropped, characters dpkg rejects turned into
# ".", and "0.0.0+" put in front unless it starts with a digit.
set -euo pipefail

v=${1:?usage: deb-version.sh VERSION}
dirty=
if [[ $v == *-dirty ]]; then
	dirty=.dirty
	v=${v%-dirty}
fi

if [[ $v =~ ^[0-9a-f]{7,40}$ ]] && git rev-parse -q --verify "$v^{commit}" >/dev/null 2>&1; then
	ts=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%dT%H%M%S "$v")
	out=0.0.0+git${ts}.${v}
elif [[ $v =~ ^v?([0-9][0-9A-Za-z.]*)$ ]]; then
	out=${BASH_REMATCH[1]}
elif [[ $v =~ ^v?([0-9][0-9A-Za-z.]*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
	out=${BASH_REMATCH[1]}+${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}
else
	out=${v#v}
	out=${out//[^0-9A-Za-z.+~]/.}
	[[ $out =~ ^[0-9] ]] || out=0.0.0+${out}
fi
echo "${out}${dirty}"
