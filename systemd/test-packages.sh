#!/usr/bin/env bash
# test-packages.sh — tests the Debian packages that `make dist` wrote:
#
#   contents  both .deb files: control fields, file list and modes, conffiles,
#             maintainer scripts, ELF machine, RUNPATH=/usr/lib/edge, the
#             libc6 floor against the GLIBC_ versions actually referenced,
#             and systemd-analyze verify against the packaged binary
#   qemu      the arm64 binary runs under qemu-user (`edge version`), finding
#             libtensorflowlite_c.so through its RUNPATH in an arm64 sysroot
#   install   dpkg -i of the amd64 package in a fresh Debian bookworm root
#             (debootstrap --variant=minbase, cached as a tarball under
#             build/chroot), `edge version` from the installed paths
#   sandbox   the installed binary under the unit's seccomp rules
#             (SystemCallFilter, MemoryDenyWriteExecute, RestrictAddressFamilies)
#   compare   `edge run` on camera/testdata/people.tar (120 frames), amd64
#             (installed, under the unit's seccomp rules) and arm64 (qemu),
#             publishes the same aggregates to a local mosquitto
#   upgrade   to a rebuilt package with a higher version: an edited
#             /etc/edge/edge.env is kept, with the same and with a changed
#             packaged env file
#   purge     dpkg --purge removes the files, /etc/edge and the state
#
# Every step runs; failures are listed at the end and make the exit status 1.
# Run as root (chroot, mounts). Environment: DIST_DIR, DEB_VERSION, VERSION,
# BUILD (as dist.mk sets them), STEPS (comma-separated subset, default all),
# KEEP_ROOT=1 to keep the bookworm root for inspection, CHROOT_TAR to keep
# the cached root elsewhere than build/chroot (e.g. outside a CI clone).
set -euo pipefail
shopt -s inherit_errexit

repo=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$repo/build}
DIST_DIR=${DIST_DIR:-$repo/dist}
VERSION=${VERSION:?VERSION (as embedded in the binary) is required}
DEB_VERSION=${DEB_VERSION:?DEB_VERSION is required}
STEPS=${STEPS:-contents,qemu,install,sandbox,compare,upgrade,purge}
work=$BUILD/test-dist
root=$work/root
chroot_tar=${CHROOT_TAR:-$BUILD/chroot/bookworm-minbase-amd64.tar.gz}
failures=()

log() { printf 'test-packages: %s\n' "$*"; }
fail() { printf 'test-packages: FAIL: %s\n' "$*" >&2; return 1; }
want() { [[ ,$STEPS, == *,$1,* ]]; }

deb() { echo "$DIST_DIR/edge_${DEB_VERSION}_$1.deb"; }

cleanup() {
	if mountpoint -q "$root/proc" 2>/dev/null; then umount "$root/proc"; fi
	if [[ ${KEEP_ROOT:-} != 1 && -d $root ]] && ! mountpoint -q "$root/proc"; then rm -rf "$root"; fi
}
trap cleanup EXIT

# step NAME FUNCTION: runs FUNCTION in a subshell, times it, records failure.
step() {
	local name=$1 start=$SECONDS
	want "$name" || return 0
	log "== $name"
	# Not in an `if`: bash ignores set -e inside a condition.
	set +e
	(set -e; "$2")
	local rc=$?
	set -e
	if ((rc == 0)); then
		log "-- $name: ok ($((SECONDS - start))s)"
	else
		log "-- $name: FAILED ($((SECONDS - start))s)"
		failures+=("$name")
	fi
}

# extract ARCH DIR: unpack the package's files into DIR.
extract() {
	rm -rf "$2" && mkdir -p "$2" && dpkg-deb -x "$(deb "$1")" "$2"
}

glibc_max() { # newest GLIBC_x.y referenced by the ELF files given
	objdump -T "$@" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1
}

check_contents() {
	local arch machine x f
	for arch in amd64 arm64; do
		f=$(deb "$arch")
		[[ -f $f ]] || fail "$f not found (run make dist)"
		[[ $(dpkg-deb -f "$f" Package) == edge ]] || fail "$arch: Package is not edge"
		[[ $(dpkg-deb -f "$f" Architecture) == "$arch" ]] || fail "$arch: Architecture field"
		[[ $(dpkg-deb -f "$f" Version) == "$DEB_VERSION" ]] || fail "$arch: Version field"
		local depends
		depends=$(dpkg-deb -f "$f" Depends)
		[[ $depends == *"libc6 (>= "* && $depends == *libstdc++6* && $depends == *libgcc-s1* ]] ||
			fail "$arch: Depends is '$depends'"

		local list
		list=$(dpkg-deb -c "$f" | awk '{print $1, $NF}')
		for x in \
			'-rwxr-xr-x ./usr/bin/edge' \
			'-rw-r--r-- ./usr/lib/edge/libtensorflowlite_c.so' \
			'-rw-r--r-- ./lib/systemd/system/edge.service' \
			'-rw------- ./etc/edge/edge.env' \
			'-rw-r--r-- ./lib/systemd/system/edge-collect.service' \
			'-rw------- ./etc/edge/collect.env' \
			'-rw-r--r-- ./usr/share/doc/edge/copyright' \
			'-rw-r--r-- ./usr/share/doc/edge/NOTICE' \
			'-rw-r--r-- ./usr/share/doc/edge/README.md' \
			'drwxr-xr-x ./usr/share/edge/models/'; do
			grep -qxF -- "$x" <<<"$list" || fail "$arch: package lacks '$x'"
		done
		grep -qE '^-rw-r--r-- \./usr/share/edge/models/[^/]+\.tflite$' <<<"$list" || fail "$arch: no models"
		if grep -E '^d' <<<"$list" | grep -qv '^drwxr-xr-x'; then fail "$arch: a directory is not 0755"; fi

		[[ $(dpkg-deb -I "$f" conffiles | sort) == $'/etc/edge/collect.env\n/etc/edge/edge.env' ]] || fail "$arch: conffiles"
		for x in postinst prerm postrm; do
			dpkg-deb --ctrl-tarfile "$f" | tar -tvf - "./$x" | grep -q '^-rwxr-xr-x' || fail "$arch: $x missing or not executable"
		done

		x=$work/x-$arch
		extract "$arch" "$x"
		cmp -s "$x/lib/systemd/system/edge.service" "$repo/systemd/edge.service" || fail "$arch: unit differs from systemd/edge.service"
		cmp -s "$x/lib/systemd/system/edge-collect.service" "$repo/systemd/edge-collect.service" || fail "$arch: unit differs from systemd/edge-collect.service"
		for m in "$x"/usr/share/edge/models/*.tflite; do
			[[ $(dd if="$m" bs=1 skip=4 count=4 status=none) == TFL3 ]] || fail "$arch: $m is not a TFLite file"
		done
		machine=$(readelf -h "$x/usr/bin/edge" | awk -F: '/Machine/ {gsub(/^ +/, "", $2); print $2}')
		case $arch in
		amd64) [[ $machine == *X86-64* ]] || fail "amd64 binary is '$machine'" ;;
		arm64) [[ $machine == AArch64 ]] || fail "arm64 binary is '$machine'" ;;
		esac
		[[ $(readelf -h "$x/usr/lib/edge/libtensorflowlite_c.so" | awk -F: '/Machine/ {gsub(/^ +/, "", $2); print $2}') == "$machine" ]] ||
			fail "$arch: libtensorflowlite_c.so is for another machine"
		local dyn
		dyn=$(readelf -d "$x/usr/bin/edge")
		grep -q 'Library runpath: \[/usr/lib/edge\]$' <<<"$dyn" || fail "$arch: RUNPATH is not exactly /usr/lib/edge:"$'\n'"$(grep -i 'path' <<<"$dyn")"
		grep -q 'Shared library: \[libtensorflowlite_c.so\]' <<<"$dyn" || fail "$arch: binary does not link libtensorflowlite_c.so"
		# Every library the binary and libtensorflowlite_c.so load must come
		# from libc6, libstdc++6, libgcc-s1 (Depends) or the package itself.
		local lib
		for lib in $(readelf -d "$x/usr/bin/edge" "$x/usr/lib/edge/libtensorflowlite_c.so" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | sort -u); do
			case $lib in
			libtensorflowlite_c.so | libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | libresolv.so.2 | \
				libstdc++.so.6 | libgcc_s.so.1 | ld-linux-x86-64.so.2 | ld-linux-aarch64.so.1) ;;
			*) fail "$arch: links $lib, which no package in Depends provides" ;;
			esac
		done
		local need floor
		need=$(glibc_max "$x/usr/bin/edge" "$x/usr/lib/edge/libtensorflowlite_c.so")
		floor=$(sed -E 's/.*libc6 \(>= ([0-9.]+)\).*/\1/' <<<"$depends")
		dpkg --compare-versions "$need" le "$floor" || fail "$arch: needs GLIBC_$need but Depends libc6 (>= $floor)"
		dpkg --compare-versions "$floor" le 2.36 || fail "$arch: libc6 (>= $floor) is not in bookworm (2.36)"
		log "$arch: $(du -k "$f" | cut -f1) KiB, Depends: $depends, RUNPATH /usr/lib/edge, GLIBC_$need"
	done
	EDGE_BIN=$work/x-amd64/usr/bin/edge EDGE_HELP= "$repo/systemd/test-unit.sh" >/dev/null || fail "test-unit.sh with the packaged binary"
}

# arm64_sysroot: the arm64 package's files plus Debian's arm64 libraries in
# $work/sysroot-arm64; `qemu-aarch64 -L` looks up absolute paths (the
# loader, RUNPATH /usr/lib/edge, /usr/share/edge/models) there first.
arm64_sysroot() {
	local s=$work/sysroot-arm64
	extract arm64 "$s"
	rm -rf "$s/lib" && ln -s /usr/aarch64-linux-gnu/lib "$s/lib"
}

check_qemu() {
	command -v qemu-aarch64 >/dev/null || fail "qemu-aarch64 missing (apt-get install qemu-user)"
	[[ -e /usr/aarch64-linux-gnu/lib/libc.so.6 && -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ]] ||
		fail "arm64 libraries missing (apt-get install libc6-arm64-cross libstdc++6-arm64-cross)"
	local s=$work/sysroot-arm64 out
	arm64_sysroot
	out=$(qemu-aarch64 -L "$s" "$s/usr/bin/edge" version 2>&1) || fail "qemu-aarch64 edge version: $out"
	log "arm64: $out"
	[[ $out == *"$VERSION"* && $out == *linux/arm64* ]] || fail "arm64 edge version printed '$out', want $VERSION linux/arm64"
}

mirror() { # the Debian mirror this machine uses
	local m
	m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	[[ -n $m ]] || m=$(awk '$1 == "deb" && $0 ~ /bookworm/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
	echo "${m:-http://deb.debian.org/debian}"
}

make_root() {
	if [[ ! -f $chroot_tar ]]; then
		command -v debootstrap >/dev/null || fail "debootstrap missing (apt-get install debootstrap)"
		local tmp=$BUILD/chroot/bootstrap start=$SECONDS
		mkdir -p "$(dirname "$chroot_tar")" "$BUILD/chroot"
		log "no cached root: debootstrap --variant=minbase bookworm from $(mirror) (takes minutes)"
		rm -rf "$tmp" && mkdir -p "$tmp"
		debootstrap --variant=minbase --arch=amd64 bookworm "$tmp" "$(mirror)" >"$BUILD/chroot/debootstrap.log" 2>&1 ||
			fail "debootstrap failed, see $BUILD/chroot/debootstrap.log"
		rm -f "$tmp"/var/cache/apt/archives/*.deb
		tar --numeric-owner -C "$tmp" -czf "$chroot_tar.tmp" . && mv "$chroot_tar.tmp" "$chroot_tar"
		rm -rf "$tmp"
		log "bookworm root cached in $chroot_tar ($((SECONDS - start))s)"
	fi
	if mountpoint -q "$root/proc" 2>/dev/null; then umount "$root/proc"; fi
	rm -rf "$root" && mkdir -p "$root"
	tar --numeric-owner -C "$root" -xzf "$chroot_tar"
	mount -t proc proc "$root/proc"
}

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

# installed_version: `edge version` run from the installed paths.
installed_version() { in_root /usr/bin/edge version 2>&1; }

check_install() {
	local start=$SECONDS out
	make_root
	log "bookworm root ready ($((SECONDS - start))s)"
	[[ ! -e $root/run/systemd/system ]] || fail "the root claims a running systemd"
	cp "$(deb amd64)" "$root/tmp/edge.deb"
	out=$(in_root dpkg -i /tmp/edge.deb </dev/null 2>&1) || fail "dpkg -i: $out"
	grep -q 'systemctl enable --now edge' <<<"$out" || fail "postinst did not print the enable hint: $out"
	in_root dpkg-query -W -f '${Status} ${Version}\n' edge | grep -qx "install ok installed $DEB_VERSION" ||
		fail "dpkg does not list edge $DEB_VERSION as installed"
	for f in /usr/bin/edge /usr/lib/edge/libtensorflowlite_c.so /lib/systemd/system/edge.service /etc/edge/edge.env \
		/lib/systemd/system/edge-collect.service /etc/edge/collect.env; do
		[[ -e $root$f ]] || fail "$f not installed"
	done
	[[ $(stat -c %a "$root/etc/edge/edge.env") == 600 ]] || fail "/etc/edge/edge.env is not 0600"
	[[ $(stat -c %a "$root/etc/edge/collect.env") == 600 ]] || fail "/etc/edge/collect.env is not 0600"
	[[ ! -e $root/etc/systemd/system/multi-user.target.wants/edge-collect.service ]] || fail "edge-collect.service is enabled on install"
	out=$(installed_version) || fail "edge version in the root: $out"
	[[ $out == *"$VERSION"* ]] || fail "installed edge version printed '$out', want $VERSION"
	log "installed: $out"
	out=$(in_root /usr/bin/edge run --help 2>&1) || fail "edge run --help in the root: $out"
	local cout
	cout=$(in_root /usr/bin/edge collect --help 2>&1) || fail "edge collect --help in the root: $cout"
	EDGE_HELP=$out EDGE_COLLECT_HELP=$cout "$repo/systemd/test-unit.sh" >/dev/null || fail "edge.env or collect.env does not match the installed 'edge run --help' / 'edge collect --help'"
}

sandbox() { # run the rest of the arguments in the root under the unit's seccomp rules
	/usr/bin/python3 "$repo/systemd/tests/sandbox.py" --strict --unit "$repo/systemd/edge.service" --chroot "$root" -- "$@"
}

check_sandbox() {
	/usr/bin/python3 -c 'import seccomp' 2>/dev/null || fail "python3-seccomp missing (apt-get install python3-seccomp)"
	[[ -x $root/usr/bin/edge ]] || fail "edge is not installed in the root (install step)"
	local out
	out=$(sandbox /usr/bin/edge version 2>&1) || fail "edge version under the unit's seccomp filter: $out"
	# The sandbox itself must filter: init_module(2) (x86-64 number 175, in
	# @privileged; harmless here, it fails with EFAULT) must kill the process.
	[[ -x $root/usr/bin/perl ]] || fail "no perl in the root for the sandbox self-check"
	local rc=0
	sandbox /usr/bin/perl -e 'syscall(175, 0, 0, 0); exit 0' 2>/dev/null || rc=$?
	((rc == 128 + 31)) || fail "init_module(2) under sandbox.py: exit $rc, want 159 (SIGSYS): it does not filter"
	log "edge version under SystemCallFilter/MemoryDenyWriteExecute/RestrictAddressFamilies: ok"
}

# compare relies on:
#   - `edge run` with a finite EDGE_SOURCE (a .tar of JPEGs) processes every
#     frame (EDGE_FPS=0: as fast as consumed, none dropped), publishes the
#     window in progress when the source ends, and exits 0;
#   - `edge subscribe --json --url URL` subscribes to the stats topics and
#     prints one JSON object per message and line, either the payload or
#     {"topic": ..., "payload": {...}}, until killed.
# An external mosquitto on 127.0.0.1 carries the messages (instead of the
# embedded broker) so that the subscriber is subscribed before edge runs.
check_compare() {
	command -v mosquitto >/dev/null || fail "mosquitto missing (make deps-apt)"
	[[ -x $root/usr/bin/edge ]] || fail "needs the install step"
	arm64_sysroot
	local port=${COMPARE_PORT:-18831} d=$work/compare
	rm -rf "$d" && mkdir -p "$d/state-amd64" "$d/state-arm64" "$root/tmp/compare-state"
	cp "$repo/camera/testdata/people.tar" "$root/tmp/people.tar"
	printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\nlog_type all\n' "$port" >"$d/mosquitto.conf"
	# This step runs in a subshell: its EXIT trap stops what it started
	# (bg is global to the subshell, so it is still set when the trap runs).
	bg=()
	trap 'kill "${bg[@]}" 2>/dev/null || true' EXIT
	stdbuf -oL -eL mosquitto -c "$d/mosquitto.conf" >"$d/mosquitto.log" 2>&1 &
	bg+=($!)
	local url=tcp://127.0.0.1:$port
	local common=(EDGE_MQTT_URL="$url" EDGE_FPS=0 EDGE_PUBLISH_INTERVAL=1h EDGE_LONG_WINDOW=0 EDGE_MIN_GROUP=1 EDGE_THREADS=1
		EDGE_TASKS=age,gender,emotion EDGE_DEPARTMENT=compare EDGE_PREVIEW_ADDR= EDGE_HA_DISCOVERY=false EDGE_LOG_LEVEL=info)
	# A simple command (not the in_root function), so that $! is edge itself.
	chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin /usr/bin/edge subscribe --json --url "$url" \
		>"$d/messages.jsonl" 2>"$d/subscribe.log" &
	bg+=($!)
	local i
	for i in $(seq 60); do
		grep -q 'Received SUBSCRIBE' "$d/mosquitto.log" && break
		sleep 0.5
	done
	grep -q 'Received SUBSCRIBE' "$d/mosquitto.log" ||
		fail "'edge subscribe --json' did not subscribe within 30s: $(tail -3 "$d/subscribe.log")"

	local start=$SECONDS
	env -i PATH=/usr/bin:/bin "${common[@]}" EDGE_SOURCE=/tmp/people.tar EDGE_DEVICE_ID=cmp-amd64 \
		EDGE_STATE_DIR=/tmp/compare-state timeout 600 \
		/usr/bin/python3 "$repo/systemd/tests/sandbox.py" --strict --chroot "$root" -- /usr/bin/edge run \
		>"$d/run-amd64.log" 2>&1 || fail "amd64 'edge run' (sandboxed) failed: $(tail -5 "$d/run-amd64.log")"
	log "amd64 edge run: $((SECONDS - start))s"
	start=$SECONDS
	env -i PATH=/usr/bin:/bin "${common[@]}" EDGE_SOURCE="$repo/camera/testdata/people.tar" EDGE_DEVICE_ID=cmp-arm64 \
		EDGE_STATE_DIR="$d/state-arm64" timeout 1800 \
		qemu-aarch64 -L "$work/sysroot-arm64" "$work/sysroot-arm64/usr/bin/edge" run \
		>"$d/run-arm64.log" 2>&1 || fail "arm64 'edge run' under qemu failed: $(tail -5 "$d/run-arm64.log")"
	log "arm64 edge run (qemu): $((SECONDS - start))s"
	sleep 2

	/usr/bin/python3 - "$d/messages.jsonl" <<'EOF' || fail "amd64 and arm64 aggregates differ (see above)"
import json, sys

stats = {}
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    p = m.get("payload", m)
    if isinstance(p, str):
        p = json.loads(p)
    if isinstance(p, dict) and "people_seen" in p:
        stats.setdefault(p.get("device"), []).append(p)
a, b = stats.get("cmp-amd64", []), stats.get("cmp-arm64", [])
if not a or not b:
    sys.exit(f"stats messages: {len(a)} from amd64, {len(b)} from arm64; want >= 1 each")
if len(a) != len(b):
    sys.exit(f"{len(a)} windows from amd64, {len(b)} from arm64")
bad = []
for i, (x, y) in enumerate(zip(a, b)):
    for k in ("people_seen", "people_now", "unclassified", "withheld"):
        if x.get(k) != y.get(k):
            bad.append(f"window {i} {k}: {x.get(k)} != {y.get(k)}")
    for k in ("processed", "corrupt", "dropped"):
        if x["frames"].get(k) != y["frames"].get(k):
            bad.append(f"window {i} frames.{k}: {x['frames'].get(k)} != {y['frames'].get(k)}")
    if x["frames"].get("dropped") or x["frames"].get("processed", 0) < 120:
        bad.append(f"window {i}: amd64 frames {x['frames']}, want 120 processed, 0 dropped")
    for task in ("age", "gender", "emotion"):
        tx, ty = x.get(task) or {}, y.get(task) or {}
        if tx.get("counts") != ty.get("counts"):
            bad.append(f"window {i} {task}.counts: {tx.get('counts')} != {ty.get('counts')}")
        for label in set(tx.get("mass", {})) | set(ty.get("mass", {})):
            mx, my = tx.get("mass", {}).get(label, 0), ty.get("mass", {}).get(label, 0)
            if abs(mx - my) > 0.01:
                bad.append(f"window {i} {task}.mass[{label}]: {mx} vs {my}")
for line in bad:
    print("  " + line)
if bad:
    sys.exit(1)
print(f"  {len(a)} window(s), people_seen {a[0]['people_seen']}: identical on amd64 and arm64")
EOF
}

# build_upgrade NAME ENVFILE: an amd64 package with a higher version.
build_upgrade() {
	local name=$1 envfile=$2 v=$VERSION-$1
	local mk=(-C "$repo")
	grep -qE '^[[:space:]]*-?include[[:space:]]+dist\.mk' "$repo/Makefile" || mk+=(-f Makefile -f dist.mk)
	make --no-print-directory "${mk[@]}" dist-amd64 VERSION="$v" DEB_VERSION="$DEB_VERSION+$name" \
		DIST_DIR="$work/$name" DIST_ENV_FILE="$envfile" >"$work/build-$name.log" 2>&1 ||
		fail "building the $name package failed: $(tail -5 "$work/build-$name.log")"
	echo "$work/$name/edge_${DEB_VERSION}+${name}_amd64.deb"
}

check_upgrade() {
	[[ -x $root/usr/bin/edge ]] || fail "needs the install step"
	local start=$SECONDS out p2 p3
	p2=$(build_upgrade up1 "$repo/systemd/edge.env")
	sed 's/^# One VARIABLE=value per line/# (changed in a later release)\n&/' "$repo/systemd/edge.env" >"$work/edge.env.changed"
	p3=$(build_upgrade up2 "$work/edge.env.changed")
	log "built two upgrade packages ($((SECONDS - start))s)"

	# The administrator's edits, and state as systemd's DynamicUser= keeps it.
	echo 'EDGE_DEPARTMENT=assembly' >>"$root/etc/edge/edge.env"
	mkdir -p "$root/var/lib/private/edge" && echo queued >"$root/var/lib/private/edge/queue"
	ln -sfn private/edge "$root/var/lib/edge"

	# Same packaged env file: dpkg keeps the edited one without asking.
	cp "$p2" "$root/tmp/up1.deb"
	out=$(in_root dpkg -i /tmp/up1.deb </dev/null 2>&1) || fail "upgrade to up1: $out"
	grep -qx 'EDGE_DEPARTMENT=assembly' "$root/etc/edge/edge.env" || fail "upgrade to up1 lost the edit in edge.env"
	out=$(installed_version)
	[[ $out == *"$VERSION-up1"* ]] || fail "after upgrade edge version printed '$out'"
	log "upgraded to $(in_root dpkg-query -W -f '${Version}' edge): edit kept; $out"

	# Changed packaged env file: keep the administrator's (what apt does with
	# --force-confold, and the default answer of dpkg's prompt).
	cp "$p3" "$root/tmp/up2.deb"
	out=$(in_root dpkg --force-confdef --force-confold -i /tmp/up2.deb </dev/null 2>&1) || fail "upgrade to up2: $out"
	grep -qx 'EDGE_DEPARTMENT=assembly' "$root/etc/edge/edge.env" || fail "upgrade to up2 lost the edit in edge.env"
	[[ -f $root/etc/edge/edge.env.dpkg-dist ]] || fail "upgrade to up2 left no edge.env.dpkg-dist"
	[[ -f $root/var/lib/private/edge/queue ]] || fail "upgrade removed the state"
	out=$(installed_version)
	[[ $out == *"$VERSION-up2"* ]] || fail "after upgrade edge version printed '$out'"
	log "upgraded to $(in_root dpkg-query -W -f '${Version}' edge): edit kept, new file as edge.env.dpkg-dist; $out"
}

check_purge() {
	[[ -x $root/usr/bin/edge ]] || fail "needs the install step"
	local out f
	out=$(in_root dpkg --purge edge </dev/null 2>&1) || fail "dpkg --purge: $out"
	for f in /usr/bin/edge /usr/lib/edge /usr/share/edge /usr/share/doc/edge /lib/systemd/system/edge.service \
		/etc/edge /var/lib/edge /var/lib/private/edge; do
		[[ ! -e $root$f && ! -L $root$f ]] || fail "$f is left after purge"
	done
	if in_root dpkg-query -W -f '${Status}' edge 2>/dev/null | grep -q installed; then fail "dpkg still lists edge"; fi
	log "purged: no files, configuration or state left"
}

mkdir -p "$work"
log "packages $DEB_VERSION (binary version $VERSION) from $DIST_DIR"
step contents check_contents
step qemu check_qemu
step install check_install
step sandbox check_sandbox
step compare check_compare
step upgrade check_upgrade
step purge check_purge

n=$(tr ',' '\n' <<<"$STEPS" | grep -c .)
if ((${#failures[@]})); then
	log "failed: ${failures[*]}"
	log "$((n - ${#failures[@]})) passed, ${#failures[@]} failed"
	exit 1
fi
log "$n passed, 0 failed"
