#!/usr/bin/env bash
# make demo: the whole pipeline on the shipped sample sequence, looped until
# Ctrl-C, with the embedded MQTT broker, printing each stats message as a
# subscriber gets it. DEMO_SECONDS=N stops it after N seconds (the first-run
# check uses it); Ctrl-C or SIGTERM stop it cleanly either way.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGE=${EDGE:-build/bin/edge}
port=${DEMO_PORT:-18830}
state=$(mktemp -d)

export EDGE_SOURCE=${EDGE_SOURCE:-camera/testdata/people.tar}
export EDGE_LOOP=${EDGE_LOOP:-true}                    # until Ctrl-C
export EDGE_FPS=${EDGE_FPS:-10}                       # play the sample in real time
export EDGE_PUBLISH_INTERVAL=${EDGE_PUBLISH_INTERVAL:-4s}
export EDGE_MIN_GROUP=${EDGE_MIN_GROUP:-1}            # six people: show the breakdowns anyway
export EDGE_DEPARTMENT=${EDGE_DEPARTMENT:-demo}
export EDGE_DEVICE_ID=${EDGE_DEVICE_ID:-sample}
export EDGE_MQTT_URL=                                 # empty: the embedded broker
export EDGE_EMBEDDED_BROKER_ADDR=127.0.0.1:$port
export EDGE_STATE_DIR=$state
export EDGE_PREVIEW_ADDR=${EDGE_PREVIEW_ADDR:-127.0.0.1:8080}
export EDGE_LOG_LEVEL=${EDGE_LOG_LEVEL:-error}

# Each process in its own session, so that Ctrl-C reaches this script only
# and the stop goes in order: the subscriber first, then edge run (whose
# embedded broker going away first would make the subscriber warn of a lost
# connection).
run= sub=
stop() {
	trap - INT TERM
	[[ -n $sub ]] && kill -TERM "$sub" 2>/dev/null && wait "$sub" 2>/dev/null || true
	[[ -n $run ]] && kill -INT "$run" 2>/dev/null && wait "$run" 2>/dev/null || true
	rm -rf "$state"
	echo "edge demo: stopped"
	exit 0
}
trap stop INT TERM
trap 'rm -rf "$state"' EXIT

echo "edge demo: $EDGE_SOURCE looped at $EDGE_FPS fps, a stats window every $EDGE_PUBLISH_INTERVAL, until Ctrl-C."
echo "  annotated preview:  http://$EDGE_PREVIEW_ADDR/"
echo "  watch it as a table from another terminal:"
echo "    $EDGE subscribe --url tcp://127.0.0.1:$port"
echo "Stats messages as published (JSON):"
setsid "$EDGE" run &
run=$!
# The subscriber connects as soon as the embedded broker listens, well
# before the first window closes.
for _ in $(seq 100); do
	(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
	kill -0 "$run" 2>/dev/null || break
	sleep 0.1
done
setsid "$EDGE" subscribe --url "tcp://127.0.0.1:$port" --json &
sub=$!
if [[ -n ${DEMO_SECONDS:-} ]]; then
	sleep "$DEMO_SECONDS" &
	wait $! || true
	stop
fi
# edge run only ends by itself on an error (a bad EDGE_* setting, a port in use)
set +e
wait "$run"
rc=$?
kill -TERM "$sub" 2>/dev/null
wait "$sub" 2>/dev/null
exit "$rc"
