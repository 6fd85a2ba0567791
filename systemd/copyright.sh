#!/usr/bin/env bash
# copyright.sh GOARCH [MAIN_PACKAGE] — print /usr/share/doc/edge/copyright for the package of
# GOARCH: edge itself, the TensorFlow Lite library, the models' training data
# terms, and the verbatim licence of every Go module linked into /usr/bin/edge
# (from `go list -deps`, so the list follows go.mod). Run from the repo root.
set -euo pipefail

arch=${1:?usage: copyright.sh GOARCH [MAIN_PACKAGE]}
main_pkg=${2:-./edge}
license_name=${EDGE_LICENSE:-see NOTICE}

section() { printf '\n%s\n%s\n' "$1" "$(printf '%*s' "${#1}" '' | tr ' ' '=')"; }

licence_file() { # first licence-looking file in a directory
	local f
	for f in "$1"/LICENSE "$1"/LICENSE.* "$1"/LICENCE "$1"/COPYING "$1"/LICENSE-*; do
		[[ -f $f ]] && { echo "$f"; return; }
	done
	return 1
}

cat <<HDR
edge — Debian package copyright and licence information
Source: https://github.com/edge-sensor/edge
HDR

section "edge (/usr/bin/edge, /usr/share/edge, /etc/edge, /lib/systemd/system/edge.service)"
echo "Copyright: the edge authors"
echo "License: ${license_name}"
if [[ -f LICENSE ]]; then echo; cat LICENSE; else echo "See /usr/share/doc/edge/NOTICE."; fi

section "TensorFlow Lite 2.9 C library (/usr/lib/edge/libtensorflowlite_c.so)"
cat <<'TFL'
Copyright: The TensorFlow Authors
License: Apache-2.0
Prebuilt binary from the npm package tfjs-tflite-node@0.0.2, unmodified. It
includes XNNPACK, pthreadpool, cpuinfo, ruy, gemmlowp, FlatBuffers and other
TensorFlow dependencies under Apache-2.0, BSD or MIT terms.
On Debian systems the full text of the Apache License, Version 2.0, is in
/usr/share/common-licenses/Apache-2.0.
TFL

section "Models (/usr/share/edge/models/*.tflite)"
cat <<'MOD'
Trained by the edge project (models/train.py, models/export.py) on:
- FER2013 (emotion): research data without an explicit licence from its
  creators (Goodfellow et al., 2013).
- UTKFace (age, gender): the dataset's authors make it available for
  non-commercial research purposes only.
Check these terms before commercial use of the models.
MOD

if [[ -f pipeline/cascade/LICENSE ]]; then
	section "pigo face-detection cascade (embedded in /usr/bin/edge)"
	cat pipeline/cascade/LICENSE
fi

section "Go standard library and runtime (statically linked into /usr/bin/edge)"
cat "$(go env GOROOT)/LICENSE"

# Modules whose packages are linked into the binary for this architecture.
mapfile -t mods < <(GOOS=linux GOARCH="$arch" CGO_ENABLED=1 go list -deps \
	-f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' "$main_pkg" | sort -u)
for m in "${mods[@]}"; do
	read -r path version dir <<<"$m"
	section "Go module ${path} ${version} (statically linked into /usr/bin/edge)"
	if f=$(licence_file "$dir"); then
		cat "$f"
	else
		echo "copyright.sh: no licence file in ${dir}" >&2
		exit 1
	fi
done
