#!/usr/bin/env bash
# first-run.sh (make test-first-run) checks the README's "First run" section
# as a new user meets it: a fresh clone of this checkout's HEAD in a temporary
# folder, the section's first two commands verbatim (install under a
# temporary PREFIX, the demo stopped after DEMO_SECONDS), then, from outside
# the checkout, the commands the section names. Once with ../shared beside
# the clone (a link to this checkout's ../shared) and once without;
# FIRST_RUN_SHARED=with or without runs one.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "first-run: FAIL: $*" >&2; exit 1; }

# the first ```sh block after "## First run"
mapfile -t cmds < <(awk '/^## First run/{f=1} f&&/^```sh/{b=1;next} b&&/^```/{exit} b{print}' "$here/README.md")
[[ ${#cmds[@]} -eq 2 ]] || fail "README's First run block has ${#cmds[@]} commands, want 2: ${cmds[*]}"

modes=(with without)
[[ -n ${FIRST_RUN_SHARED:-} ]] && modes=("$FIRST_RUN_SHARED")
for mode in "${modes[@]}"; do
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	git clone -q "$here" "$tmp/edge"
	if [[ $mode == with ]]; then
		[[ -d $here/../shared ]] || fail "no ../shared beside $here to link"
		ln -s "$(cd "$here/../shared" && pwd)" "$tmp/shared"
	fi
	log=$tmp/first-run.log
	start=$SECONDS
	(
		cd "$tmp/edge"
		export PREFIX=$tmp/prefix DEMO_SECONDS=${DEMO_SECONDS:-20}
		export DEMO_PORT=$((20000 + RANDOM % 10000)) EDGE_PREVIEW_ADDR=127.0.0.1:$((30000 + RANDOM % 10000))
		for c in "${cmds[@]}"; do
			echo "+ $c"
			bash -c "$c"
		done
	) >"$log" 2>&1 || { tail -n 40 "$log" >&2; fail "$mode ../shared: a README command failed (log above)"; }
	grep -q "installed: $tmp/prefix/bin/edge" "$log" || fail "make install did not report the install"
	n=$(grep -c '"kind":"window"' "$log" || true)
	((n >= 2)) || { tail -n 40 "$log" >&2; fail "the demo published $n windows in ${DEMO_SECONDS:-20} s, want at least 2"; }
	grep -q '^edge demo: stopped$' "$log" || fail "the demo did not stop cleanly"
	grep -q 'subscribe --url tcp://127.0.0.1:' "$log" || fail "the demo did not print the subscribe command"
	if grep -nE 'level=(WARN|ERROR)|panic|Traceback|connection lost' "$log"; then
		fail "alarming lines in the first run (above)"
	fi

	# The commands the section names, from outside the checkout, edge from PATH.
	export PATH=$tmp/prefix/bin:$PATH
	cd "$tmp"
	[[ $(command -v edge) == "$tmp/prefix/bin/edge" ]] || fail "edge on PATH is $(command -v edge)"
	edge --help | grep -q '  edge cameras ' || fail "edge --help lacks edge cameras"
	out=$(edge cameras) || fail "edge cameras: exit $?"
	[[ $out == "no V4L2 cameras found"* || $out == /dev/video* ]] || fail "edge cameras printed: $out"
	set +e
	out=$(EDGE_SOURCE=/dev/video9 edge run 2>&1)
	rc=$?
	set -e
	[[ $rc -eq 2 && $out == *"EDGE_SOURCE=/dev/video9: no such camera"* ]] || fail "missing camera: exit $rc: $out"
	# the installed models are found from any folder: a short run on the sample
	out=$(EDGE_SOURCE=$tmp/edge/camera/testdata/people.tar EDGE_FPS=0 EDGE_PREVIEW_ADDR= EDGE_STATE_DIR=$tmp/state \
		EDGE_EMBEDDED_BROKER_ADDR=127.0.0.1:0 EDGE_STATS_STDOUT=true EDGE_LOG_LEVEL=warn EDGE_LONG_WINDOW=0 timeout 120 edge run 2>&1) ||
		fail "edge run on the sample from $tmp: $out"
	grep -q '"people_seen":6' <<<"$out" || fail "edge run on the sample did not see the six people: $out"
	cd "$here"
	echo "first-run: $mode ../shared: ok in $((SECONDS - start)) s (make install, make demo, edge cameras, edge run from PATH)"
	rm -rf "$tmp"
	trap - EXIT
done
