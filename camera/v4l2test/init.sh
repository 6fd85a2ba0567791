#!/bin/sh
# /init of the V4L2 test VM (see run.sh). It loads the media modules, runs
# each scenario against the kernel's vivid and v4l2loopback drivers, prints
# one "EDGE-RESULT scenario=NAME ok=0|1 ..." line per scenario and an
# "EDGE-SUMMARY" line on the serial console, then powers the VM off.
#
# Kernel command line options (run.sh sets them):
#   edge.driver=probe|edge  what captures: camera/v4l2test/probe, or `edge run`
#   edge.sabotage=NAME      break one scenario on purpose (or "all"): it must fail
#   edge.only=A,B           run only these scenarios
#   edge.verbose=1          echo every producer log, not only those of failures
#   edge.tasks=A,B          EDGE_TASKS for edge run (default gender: one model,
#                           run on a face every 30 frames, keeps TFLite in the
#                           test at little emulated CPU)

export PATH=/bin:/usr/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mkdir -p /run && mount -t tmpfs run /run
ip link set lo up # edge's embedded MQTT broker and /metrics listen on 127.0.0.1

DRIVER=probe SABOTAGE= ONLY= VERBOSE=0 TASKS=gender
for arg in $(cat /proc/cmdline); do
	case $arg in
	edge.driver=*) DRIVER=${arg#*=} ;;
	edge.sabotage=*) SABOTAGE=${arg#*=} ;;
	edge.only=*) ONLY=${arg#*=} ;;
	edge.verbose=*) VERBOSE=${arg#*=} ;;
	edge.tasks=*) TASKS=${arg#*=} ;;
	esac
done

# vivid: one instance, a video capture node only, one webcam-style input.
VIVID_OPTS="n_devs=1 node_types=0x1 num_inputs=1 input_types=0x0"
# v4l2loopback: /dev/video10 for the MJPEG run, /dev/video11 for YUYV.
# exclusive_caps=1 makes a node announce capture only once a writer feeds
# it, as browsers and go4vl-style clients expect of a camera.
# max_buffers=32: a writer laps a slow reader (and tears the frame it is
# reading) only after 32 frames, not the default 2.
LOOP_OPTS="devices=2 video_nr=10,11 exclusive_caps=1,1 max_buffers=32 card_label=edge-loop-mjpeg,edge-loop-yuyv"
VIVID=/dev/video0
# vivid scenarios capture at 320x180: the test pattern generator costs
# emulated CPU per pixel, and the size does not change what is tested.
VIVID_SIZE=320x180 VIVID_FPS=15
# The sample sequence (camera/testdata/people.tar: 640x480 JPEGs), as run.sh
# prepared it: people.yuyv (raw frames), people.crc (luma checksums),
# blank.jpg, people.count (its headcount).
SAMPLE=/data/people.tar
SAMPLE_PEOPLE=$(cat /data/people.count)
LOOP_FPS=$(cat /data/loop.fps)

PASS=0 FAIL=0 FAILED=
say() { echo "EDGE-VM $*"; }
now() { cut -d' ' -f1 /proc/uptime; }
# elapsed A B prints B-A in seconds with one decimal.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
sabotaged() { [ "$SABOTAGE" = all ] || [ "$SABOTAGE" = "$1" ]; }
wanted() {
	[ -z "$ONLY" ] && return 0
	case ",$ONLY," in *",$1,"*) return 0 ;; esac
	return 1
}

# wait_for FILE REGEX SECONDS [PID]: poll FILE until it matches REGEX
# (extended, case-insensitive); fail at the timeout or when PID exits.
wait_for() {
	local n=$(($3 * 4))
	while [ "$n" -gt 0 ]; do
		grep -qiE "$2" "$1" 2>/dev/null && return 0
		if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then
			grep -qiE "$2" "$1" 2>/dev/null
			return
		fi
		usleep 250000
		n=$((n - 1))
	done
	return 1
}

# frames FILE: frames processed so far, by the stats lines in FILE.
frames() {
	awk '{ if (match($0, /"processed":[0-9]+/)) n += substr($0, RSTART + 12, RLENGTH - 12) } END { print n + 0 }' "$1" 2>/dev/null
}

# wait_frames FILE N SECONDS PID: wait until the stats lines in FILE count N
# more frames than when called. Waiting for frames rather than for a fixed
# time keeps the scenarios meaningful when the VM gets little CPU.
wait_frames() {
	local want=$(($(frames "$1") + $2)) n=$(($3 * 2))
	while [ "$n" -gt 0 ] && kill -0 "$4" 2>/dev/null; do
		[ "$(frames "$1")" -ge "$want" ] && return 0
		usleep 500000
		n=$((n - 1))
	done
	return 1
}

# cpu_mark remembers the guest's CPU counters; cpu_busy prints the share of
# the time since then that the guest's CPU was busy. Under TCG a busy share
# near 1 means the VM was starved of host CPU, and rates it measured say
# more about the host than about edge.
cpu_mark() {
	# shellcheck disable=SC2046
	set -- $(head -n1 /proc/stat)
	CPU_T=$(($2 + $3 + $4 + $5 + $6 + $7 + $8)) CPU_I=$(($5 + $6))
}
cpu_busy() {
	# shellcheck disable=SC2046
	set -- $(head -n1 /proc/stat)
	awk -v t=$(($2 + $3 + $4 + $5 + $6 + $7 + $8 - CPU_T)) -v i=$(($5 + $6 - CPU_I)) \
		'BEGIN { printf "%.2f", (t > 0 ? 1 - i / t : 0) }'
}

# produce NAME DEV SIZE FPS FORMAT [probe args...]: start capturing in the
# background, stats lines to /tmp/NAME.jsonl and the log to /tmp/NAME.log;
# sets PID. The probe prints a stats window a second; edge run publishes
# every EDGE_PUBLISH_INTERVAL and, with EDGE_STATS_STDOUT=1, prints each
# message as a JSON line.
produce() {
	local name=$1 dev=$2 size=$3 fps=$4 fmt=$5
	shift 5
	if [ "$DRIVER" = edge ]; then
		env EDGE_SOURCE="$dev" EDGE_SIZE="$size" EDGE_FPS="$fps" EDGE_FORMAT="$fmt" \
			EDGE_MQTT_URL= EDGE_PREVIEW_ADDR="${PREVIEW_ADDR:-}" EDGE_PREVIEW=false \
			EDGE_PUBLISH_INTERVAL="${INTERVAL:-2s}" \
			EDGE_STATS_STDOUT=1 EDGE_STATE_DIR=/tmp/edge-state EDGE_DEVICE_ID=vm \
			EDGE_TASKS="$TASKS" EDGE_CLASSIFY_EVERY=30 EDGE_MIN_GROUP=1 \
			edge run >"/tmp/$name.jsonl" 2>"/tmp/$name.log" &
	else
		probe capture -dev "$dev" -size "$size" -fps "$fps" -format "$fmt" \
			-interval 1s "$@" >"/tmp/$name.jsonl" 2>"/tmp/$name.log" &
	fi
	PID=$!
}

# stop PID: SIGTERM, then SIGKILL after 15 s; sets EXIT.
stop() {
	local n=75
	kill -TERM "$1" 2>/dev/null
	while kill -0 "$1" 2>/dev/null && [ "$n" -gt 0 ]; do
		usleep 200000
		n=$((n - 1))
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1"
	EXIT=$?
}

# expect_exit SECONDS: wait for PID to exit by itself, stopping it after
# SECONDS; sets EXIT.
expect_exit() {
	local n=$(($1 * 5))
	while kill -0 "$PID" 2>/dev/null && [ "$n" -gt 0 ]; do
		usleep 200000
		n=$((n - 1))
	done
	stop "$PID"
}

# check NAME ARGS...: run the checker and count the result; on failure (or
# with edge.verbose=1) echo the tail of the producer's log.
check() {
	local name=$1 f
	shift
	if probe check -scenario "$name" "$@"; then
		PASS=$((PASS + 1))
		[ "$VERBOSE" = 1 ] || return 0
	else
		FAIL=$((FAIL + 1))
		FAILED="$FAILED $name"
	fi
	for f in /tmp/"$name".log /tmp/"$name".write.log; do
		[ -f "$f" ] && tail -n 25 "$f" | sed "s|^|EDGE-LOG $name: |"
	done
	[ -f /tmp/"$name".jsonl ] && tail -n 40 /tmp/"$name".jsonl | sed "s|^|EDGE-STATS $name: |"
}

# Scenario: vivid's webcam input in a raw format at the requested size and
# rate. The test pattern has no faces: headcount 0.
vivid_raw() {
	local fmt=$1 name=vivid-$1 alive=no busy
	if sabotaged vivid-raw; then
		# vivid drops every buffer: no frames reach the capture.
		probe ctrl -dev $VIVID -name "Percentage of Dropped Buffers" -value 100
	fi
	produce "$name" $VIVID $VIVID_SIZE $VIVID_FPS "$fmt"
	wait_for "/tmp/$name.log" "camera opened" 60 "$PID" && sleep 1
	cpu_mark
	wait_frames "/tmp/$name.jsonl" 30 60 "$PID"
	busy=$(cpu_busy)
	kill -0 "$PID" 2>/dev/null && alive=yes
	stop "$PID"
	sabotaged vivid-raw && probe ctrl -dev $VIVID -name "Percentage of Dropped Buffers" -value 0
	check "$name" -stats "/tmp/$name.jsonl" -log "/tmp/$name.log" -exit "$EXIT" -alive $alive \
		-size $VIVID_SIZE -fps $VIVID_FPS -vm-busy "$busy" -min-frames 30 -max-corrupt 0 -people 0 \
		-log-has "camera opened.*fps[=\":]+$VIVID_FPS\b" -log-lacks "camera lost"
}

# Scenario: the camera vanishes under a running capture and comes back. A
# module in use cannot be removed, so the device is first unbound from its
# driver (what a USB unplug does: the node goes away while it is open);
# then `rmmod vivid`, which succeeds once the capture has let go of the
# dead device; three seconds later `modprobe vivid`.
unplug() {
	local name=unplug outage=3 alive=no resume=99 n=100 busy
	local t_unplug t_rmmod t_modprobe t_back t_end
	produce $name $VIVID $VIVID_SIZE $VIVID_FPS yuyv
	wait_for /tmp/$name.log "camera opened" 60 "$PID"
	cpu_mark
	wait_frames /tmp/$name.jsonl 15 60 "$PID"
	t_unplug=$(now)
	echo vivid.0 >/sys/bus/platform/drivers/vivid/unbind
	until rmmod vivid 2>/dev/null; do
		n=$((n - 1))
		[ $n -gt 0 ] || break
		usleep 200000
	done
	t_rmmod=$(now)
	if lsmod | grep -q '^vivid '; then
		say "unplug: vivid still in use 20 s after unbind: the capture kept the dead device open"
	fi
	sleep $outage
	t_modprobe=$(now)
	sabotaged unplug || modprobe vivid $VIVID_OPTS
	# Resume is timed from when the device is back: modprobe has returned
	# and /dev/video0 exists.
	t_back=$(now)
	if wait_for /tmp/$name.log "camera back" 20 "$PID"; then
		resume=$(elapsed "$t_back" "$(now)")
	fi
	wait_frames /tmp/$name.jsonl 15 30 "$PID"
	busy=$(cpu_busy)
	kill -0 "$PID" 2>/dev/null && alive=yes
	t_end=$(now)
	stop "$PID"
	lsmod | grep -q '^vivid ' || modprobe vivid $VIVID_OPTS
	say "unplug: unbind at ${t_unplug}s, rmmod after $(elapsed "$t_unplug" "$t_rmmod")s," \
		"modprobe after $(elapsed "$t_unplug" "$t_modprobe")s took $(elapsed "$t_modprobe" "$t_back")s, capture back ${resume}s later"
	# The camera counts as down from noticing the loss (after the unbind,
	# before rmmod could succeed) to its return; at most from the unbind to
	# its close, a moment after t_end.
	check $name -stats /tmp/$name.jsonl -log /tmp/$name.log -exit "$EXIT" -alive $alive \
		-fps $VIVID_FPS -vm-busy "$busy" -min-frames 30 -max-corrupt 0 -tail-frames 1 \
		-min-down "$(elapsed "$t_rmmod" "$t_back")" -max-down "$(elapsed "$t_unplug" "$t_end" | awk '{ print $1 + 1 }')" -no-invented \
		-resume "$resume" -max-resume 5 -log-has "camera lost" -log-has "camera back"
}

# Scenario: the sample sequence of real faces, written into a v4l2loopback
# device as MJPEG or YUYV, captured through go4vl. The writer keeps in step
# with the reader (one frame written per frame taken, at most LOOP_FPS), so
# that, as with the file source, every frame is processed however little
# CPU the VM gets. With the probe every captured frame must equal a sample
# frame byte for byte (luma) and all must come through; with edge the
# headcount must equal the number of people in the sample.
loopback() {
	local fmt=$1 dev=$2 name=loop-$1 src=/data/people.tar alive=no wpid frames busy pace
	local write_args="-blank /data/blank.jpg"
	[ "$fmt" = yuyv ] && src=/data/people.yuyv write_args="-size 640x480"
	sabotaged loopback && write_args="$write_args -sabotage truncate"
	if [ "$DRIVER" = edge ]; then
		pace=http://127.0.0.1:8080/metrics
	else
		pace=/run/progress-$fmt
	fi
	rm -f /run/go-$fmt
	# shellcheck disable=SC2086
	probe write -dev "$dev" -src $src -fps "$LOOP_FPS" -go /run/go-$fmt -pace $pace $write_args \
		2>/tmp/$name.write.log &
	wpid=$!
	wait_for /tmp/$name.write.log "write: ready" 60 $wpid
	if [ "$DRIVER" = edge ]; then
		# One stats window for the whole run: its people_seen is the headcount.
		INTERVAL=600s PREVIEW_ADDR=127.0.0.1:8080
		produce "$name" "$dev" 640x480 "$LOOP_FPS" "$fmt"
		INTERVAL= PREVIEW_ADDR=
	else
		produce "$name" "$dev" 640x480 "$LOOP_FPS" "$fmt" -expect /data/people.crc -progress $pace
	fi
	wait_for /tmp/$name.log "camera opened" 60 "$PID" && sleep 1
	[ "$DRIVER" = edge ] && wait_for /tmp/$name.log "local HTTP server" 60 "$PID"
	cpu_mark
	touch /run/go-$fmt
	frames=$(tar tf $SAMPLE | grep -c '\.jpg$')
	wait_for /tmp/$name.write.log "sequence done" $((frames * 3 + 60)) $wpid
	sleep 2 # grey frames: the last people leave
	busy=$(cpu_busy)
	kill -0 "$PID" 2>/dev/null && alive=yes
	stop "$PID"
	kill -TERM $wpid 2>/dev/null
	wait $wpid
	check "$name" -stats "/tmp/$name.jsonl" -log "/tmp/$name.log" -exit "$EXIT" -alive $alive \
		-size 640x480 -min-frames "$frames" -max-corrupt 0 -vm-busy "$busy" \
		-min-matched 1 -min-distinct 1 -people "$SAMPLE_PEOPLE" -people-agg max
}

# Scenario: a size or a pixel format the device does not offer: the
# capture must fail at once with an error naming the device and listing
# what it offers.
bad_settings() {
	local size=800x600 fmt=mjpeg
	sabotaged bad-settings && size=640x480 fmt=yuyv
	produce bad-size $VIVID $size 15 yuyv
	expect_exit 30
	check bad-size -log /tmp/bad-size.log -exit "$EXIT" -want-exit nonzero \
		-log-has "/dev/video0" -log-has "800x600" -log-has "YUYV" -log-has "GREY" -log-has "640x480"
	produce bad-format $VIVID 640x480 15 $fmt
	expect_exit 30
	check bad-format -log /tmp/bad-format.log -exit "$EXIT" -want-exit nonzero \
		-log-has "/dev/video0" -log-has "MJPEG" -log-has "offers.*YUYV"
}

# Scenario: `edge cameras` lists vivid with its formats, sizes and frame
# rates (go4vl's enumeration ioctls on a real driver), and `edge run` on a
# camera that is not there fails at once (exit 2) naming the ones that are.
cameras() {
	local want=/dev/video0
	sabotaged cameras && want=/dev/video7
	edge cameras >/tmp/cameras.log 2>&1
	EXIT=$?
	check cameras -log /tmp/cameras.log -exit "$EXIT" -log-has "$want \"vivid" -log-has "YUYV \\(" \
		-log-has "320x180 +[0-9.]+(, [0-9.]+)* fps" -log-has "for example: EDGE_SOURCE=$want "
	EDGE_SOURCE=/dev/video9 edge run >/tmp/no-camera.log 2>&1
	EXIT=$?
	check no-camera -log /tmp/no-camera.log -exit "$EXIT" -want-exit nonzero \
		-log-has "EDGE_SOURCE=/dev/video9: no such camera" -log-has "$want \"vivid[^\"]*\" \\(vivid\\): .*YUYV"
}

t0=$(now)
modprobe vivid $VIVID_OPTS || say "modprobe vivid failed"
modprobe v4l2loopback $LOOP_OPTS || say "modprobe v4l2loopback failed"
say "boot kernel=$(uname -r) uptime=${t0}s driver=$DRIVER sabotage=${SABOTAGE:-none} devices=$(ls /dev/video* | tr '\n' ' ')"

# scenario NAME COMMAND...: run one scenario if wanted and log its guest
# wall time and guest CPU seconds.
scenario() {
	local name=$1 t c
	shift
	wanted "$name" || return 0
	t=$(now) c=$(awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 }' /proc/stat)
	"$@"
	say "timing $name wall=$(elapsed "$t" "$(now)")s cpu=$(awk -v c="$c" '/^cpu /{ printf "%.1f", ($2 + $3 + $4 + $7 + $8 - c) / 100 }' /proc/stat)s"
}

scenario vivid-yuyv vivid_raw yuyv
scenario vivid-grey vivid_raw grey
scenario unplug unplug
scenario loop-mjpeg loopback mjpeg /dev/video10
scenario loop-yuyv loopback yuyv /dev/video11
scenario bad-settings bad_settings
[ "$DRIVER" = edge ] && scenario cameras cameras

# Kernel trouble the drivers ran into, for the record (not a failure).
dmesg | grep -E -A4 'BUG:|Oops|WARNING:|Call Trace' | head -40 | sed 's/^/EDGE-DMESG /'
echo "EDGE-SUMMARY pass=$PASS fail=$FAIL failed=${FAILED# } vm_s=$(elapsed "$t0" "$(now)")"
sync
poweroff -f
