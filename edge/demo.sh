#!/usr/bin/env bash
# make demo: the whole pipeline on the shipped sample sequence, with the
# embedded MQTT broker, printing each stats message as a subscriber gets it.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGE=${EDGE:-build/bin/edge}
port=${DEMO_PORT:-18830}
state=$(mktemp -d)
trap 'rm -rf "$state"; kill $(jobs -p) 2>/dev/null || true' EXIT

export EDGE_SOURCE=${EDGE_SOURCE:-camera/testdata/people.tar}
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

echo "edge demo: $EDGE_SOURCE at $EDGE_FPS fps, a stats window every $EDGE_PUBLISH_INTERVAL;"
echo "preview at http://$EDGE_PREVIEW_ADDR/ while it runs. Stats messages as published:"
"$EDGE" run &
run=$!
# The subscriber connects as soon as the embedded broker listens, well
# before the first window closes.
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.1
done
"$EDGE" subscribe --url "tcp://127.0.0.1:$port" --json &
sub=$!
wait $run
sleep 1
kill $sub 2>/dev/null || true
wait $sub 2>/dev/null || true
