#!/usr/bin/env bash
# run.sh is `make test-v4l2`: it tests edge's camera path against real V4L2
# kernel drivers. It boots Debian's own kernel in qemu with a small
# initramfs holding busybox, the media modules (vivid, and v4l2loopback
# built with DKMS for that kernel), the capture program and the sample
# frames; init.sh runs the scenarios inside and reports over the serial
# console; this script prints a summary and exits non-zero on any failure.
#
# Usage: run.sh [--build-only]
#
# Environment:
#   EDGE_V4L2_DRIVER=probe|edge  what captures in the VM (default probe):
#                                camera/v4l2test/probe, or `edge run`
#   EDGE_V4L2_SABOTAGE=NAME      break a scenario on purpose to see the test
#                                fail: vivid-raw, unplug, loopback,
#                                bad-settings, or all
#   EDGE_V4L2_ONLY=A,B           run only these scenarios (vivid-yuyv,
#                                vivid-grey, unplug, loop-mjpeg, loop-yuyv,
#                                bad-settings, cameras: edge driver only)
#   EDGE_V4L2_TASKS=A,B          EDGE_TASKS for edge run in the VM (default gender)
#   EDGE_V4L2_LOOP_FPS=N         most frames a second the sample is written into
#                                v4l2loopback (default 10; the writer also
#                                waits for the reader to take each frame)
#   EDGE_V4L2_PEOPLE=N           headcount of the sample (default 6)
#   V4L2VM_TIMEOUT=SECONDS       kill the VM after this long (default 900)
#   V4L2VM_ACCEL=auto|kvm|tcg    how qemu runs the guest (default auto: KVM
#                                if /dev/kvm boots the kernel, else TCG)
#   V4L2VM_VERBOSE=1             show the whole serial console
#   V4L2VM_DIR=DIR               build and cache folder (default build/v4l2vm)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${V4L2VM_DIR:-$root/build/v4l2vm}
driver=${EDGE_V4L2_DRIVER:-edge}
sabotage=${EDGE_V4L2_SABOTAGE:-}
only=${EDGE_V4L2_ONLY:-}
vm_timeout=${V4L2VM_TIMEOUT:-900}
loop_fps=${EDGE_V4L2_LOOP_FPS:-10}
loop_people=${EDGE_V4L2_PEOPLE:-6}
verbose=${V4L2VM_VERBOSE:-0}
start=$(date +%s)

say() { echo "v4l2test: $*" >&2; }
die() {
	say "error: $*"
	exit 1
}
case $driver in probe | edge) ;; *) die "EDGE_V4L2_DRIVER=$driver: want probe or edge" ;; esac

# 1. Packages.
"$here/deps.sh"

# 2. The Debian kernel installed under /boot (not the host's running one)
# and v4l2loopback built with DKMS for it.
kver=$(dpkg-query -W -f='${Depends}' linux-image-amd64 | sed -n 's/^linux-image-\([^ ,]*\).*/\1/p')
[[ -n $kver && -f /boot/vmlinuz-$kver && -d /lib/modules/$kver/kernel ]] ||
	die "no Debian kernel found (linux-image-amd64 depends on '${kver:-?}'; see /boot)"
moddir=/lib/modules/$kver
loopko=$(find "$moddir/updates" "$moddir/extra" -name 'v4l2loopback.ko*' 2>/dev/null | head -n1 || true)
if [[ -z $loopko ]]; then
	lver=$(dpkg-query -W -f='${Version}' v4l2loopback-dkms | sed 's/-[^-]*$//')
	say "building v4l2loopback $lver for $kver with DKMS"
	dkms install "v4l2loopback/$lver" -k "$kver" >&2
	loopko=$(find "$moddir/updates" "$moddir/extra" -name 'v4l2loopback.ko*' | head -n1)
fi
[[ -n $loopko ]] || die "v4l2loopback.ko for $kver not found after dkms install"
[[ $(modinfo -F vermagic "$loopko") == "$kver "* ]] || die "$loopko is not built for $kver"

mkdir -p "$out"

# 3. An uncompressed kernel: the bzImage is xz-compressed, and unpacking it
# under TCG costs more than the whole boot after it. Debian's kernel has a
# PVH entry point, so qemu boots the ELF vmlinux directly.
kernel=/boot/vmlinuz-$kver
vmlinux=$out/vmlinux-$kver
if [[ ! -s $vmlinux ]]; then
	off=$(grep -abo $'\xfd7zXZ\x00' "$kernel" | head -n1 | cut -d: -f1 || true)
	rm -f "$vmlinux.tmp"
	# xz stops with an error at the data after the stream; what it wrote is whole.
	[[ -n $off ]] && { tail -c +$((off + 1)) "$kernel" | xz -dc >"$vmlinux.tmp" 2>/dev/null || true; }
	# PVH entry point: ELF note XEN_ELFNOTE_PHYS32_ENTRY (18).
	if [[ -s $vmlinux.tmp ]] && readelf -n "$vmlinux.tmp" 2>/dev/null | grep -q 'Unknown note type: (0x00000012)'; then
		mv "$vmlinux.tmp" "$vmlinux"
	else
		rm -f "$vmlinux.tmp"
		say "could not extract a PVH vmlinux from $kernel; booting the bzImage (slower under TCG)"
	fi
fi
[[ -s $vmlinux ]] && kernel=$vmlinux

# 4. Programs. The Makefile exports the cgo flags for the TFLite library;
# set them the same way when run on its own.
if [[ -z ${CGO_LDFLAGS:-} ]]; then
	export CGO_ENABLED=1
	export CGO_CFLAGS="-I$root/build/tflite/include -I$root/tflite/include"
	export CGO_LDFLAGS="-L$root/build/tflite/linux_amd64 -Wl,-rpath,$root/build/tflite/linux_amd64 -Wl,-rpath,/usr/lib/edge"
fi
say "building the $driver program"
(cd "$root" && go build -o "$out/bin/probe" ./camera/v4l2test/probe)
if [[ $driver == edge ]]; then
	(cd "$root" && go build -o "$out/bin/edge" ./edge)
fi

# 5. The initramfs, rebuilt only when its contents change.
stage=$out/root
rm -rf "$stage" && mkdir -p "$stage"/{bin,dev,proc,sys,tmp,run,data,usr/lib/edge}
install -m 0755 "$here/init.sh" "$stage/init"
cp /bin/busybox "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
progs=("$out/bin/probe")
cp "$out/bin/probe" "$stage/bin/"
if [[ $driver == edge ]]; then
	tflib=$root/build/tflite/linux_amd64/libtensorflowlite_c.so
	[[ -f $tflib ]] || die "$tflib missing: run make tflite-lib (make test-v4l2 does)"
	cp "$out/bin/edge" "$stage/bin/"
	progs+=("$out/bin/edge")
	cp "$tflib" "$stage/usr/lib/edge/"
	progs+=("$stage/usr/lib/edge/libtensorflowlite_c.so")
	if compgen -G "$root/models/*.tflite" >/dev/null; then
		mkdir -p "$stage/usr/share/edge/models"
		cp "$root"/models/*.tflite "$stage/usr/share/edge/models/"
	fi
fi
# Shared libraries by the paths ldd gives, the dynamic loader included.
for lib in $(for p in "${progs[@]}"; do ldd "$p"; done | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }' |
	grep -v 'libtensorflowlite_c' | sort -u); do
	mkdir -p "$stage$(dirname "$lib")"
	cp -L "$lib" "$stage$lib"
done
# The modules vivid and v4l2loopback need, by modules.dep, under their own
# paths so that depmod and busybox modprobe find them.
mods=()
for m in vivid "${loopko#"$moddir"/}"; do
	[[ $m == vivid ]] && m=$(modinfo -k "$kver" -n vivid) && m=${m#"$moddir"/}
	mods+=("$m")
	read -ra deps <<<"$(grep "^$m:" "$moddir/modules.dep" | cut -d: -f2)"
	mods+=("${deps[@]}")
done
for m in $(printf '%s\n' "${mods[@]}" | sort -u); do
	mkdir -p "$stage/lib/modules/$kver/$(dirname "$m")"
	cp "$moddir/$m" "$stage/lib/modules/$kver/$m"
done
cp "$moddir"/modules.{order,builtin} "$stage/lib/modules/$kver/"
depmod -b "$stage" "$kver" 2> >(grep -v 'modules.builtin.modinfo' >&2)
# The sample sequence, plus its raw YUYV frames and luma checksums made
# here: decoding 120 JPEGs costs seconds natively and minutes under TCG.
sample=$root/camera/testdata/people.tar
[[ -f $sample ]] || die "$sample not found"
if [[ ! -s $out/prep/people.crc || $sample -nt $out/prep/people.crc || $out/bin/probe -nt $out/prep/people.crc ]]; then
	rm -rf "$out/prep" && mkdir -p "$out/prep"
	"$out/bin/probe" prep -src "$sample" -out "$out/prep"
fi
cp "$sample" "$out"/prep/{people.yuyv,people.crc,blank.jpg} "$stage/data/"
echo "$loop_people" >"$stage/data/people.count"
echo "$loop_fps" >"$stage/data/loop.fps"

initrd=$out/initrd.cpio
sum=$( (cd "$stage" && find . -print0 | sort -z | xargs -0 sha256sum 2>/dev/null; find . -type l -printf '%p %l\n' | sort) | sha256sum | cut -d' ' -f1)
if [[ ! -s $initrd || $(cat "$initrd.sum" 2>/dev/null) != "$sum" ]]; then
	say "packing the initramfs"
	(cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc -R 0:0 --quiet) >"$initrd.tmp"
	mv "$initrd.tmp" "$initrd"
	echo "$sum" >"$initrd.sum"
fi

if [[ ${1:-} == --build-only ]]; then
	say "built $initrd and $kernel"
	exit 0
fi

# 6. Boot. KVM when this machine has it and it works, else TCG. Nested KVM
# can be present and still broken: on some AMD hosts qemu aborts setting an MSR
# ("failed to set MSR 0x10a"), or the guest hangs before its first line. A
# kernel without an initramfs panics within seconds under a working KVM, so
# that boot is the probe; a broken one costs 20 seconds, not the VM timeout.
qemu=(qemu-system-x86_64 -smp 1 -nographic -no-reboot -nic none)
kvm_works() {
	[[ -r /dev/kvm && -w /dev/kvm ]] || return 1
	local probe
	probe=$(timeout -k 5 20 "${qemu[@]}" -m 256 -enable-kvm -cpu host -kernel "$kernel" \
		-append "console=ttyS0 panic=-1" </dev/null 2>&1 | tr -d '\r') || true
	grep -q 'Kernel panic' <<<"$probe" && return 0
	say "KVM is present but does not boot the kernel: $(grep -m1 -E 'error|Assertion' <<<"$probe" || echo 'no output in 20s')"
	return 1
}
case ${V4L2VM_ACCEL:-auto} in
auto) if kvm_works; then mode=kvm; else mode=tcg; fi ;;
kvm | tcg) mode=$V4L2VM_ACCEL ;;
*) die "V4L2VM_ACCEL=$V4L2VM_ACCEL: want auto, kvm or tcg" ;;
esac
accel=(-cpu max)
[[ $mode == kvm ]] && accel=(-enable-kvm -cpu host)
cmdline="console=ttyS0 quiet panic=-1 no_timer_check edge.driver=$driver"
[[ -n $sabotage ]] && cmdline+=" edge.sabotage=$sabotage"
[[ -n $only ]] && cmdline+=" edge.only=$only"
[[ $verbose == 1 ]] && cmdline+=" edge.verbose=1"
[[ $driver == edge ]] && cmdline+=" edge.tasks=${EDGE_V4L2_TASKS:-gender}"
log=$out/console.log
say "booting $kver ($mode, $(du -m "$initrd" | cut -f1) MiB initramfs), timeout ${vm_timeout}s; console: $log"
boot=$(date +%s)
cpu0=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
set +e
timeout -k 10 "$vm_timeout" "${qemu[@]}" -m 1024 \
	"${accel[@]}" -kernel "$kernel" -initrd "$initrd" -append "$cmdline" </dev/null 2>&1 |
	tr -d '\r' | tee "$log" |
	if [[ $verbose == 1 ]]; then cat; else grep --line-buffered -E '^EDGE-|Kernel panic|BUG:|Oops'; fi
qemu_rc=${PIPESTATUS[0]}
set -e
end=$(date +%s)
cpu=$(awk -v c0="$cpu0" '{printf "%.0f", ($14 + $15 + $16 + $17 - c0) / 100}' /proc/$$/stat)

# 7. Results.
expected=(vivid-yuyv vivid-grey unplug loop-mjpeg loop-yuyv bad-size bad-format)
[[ $driver == edge ]] && expected+=(cameras no-camera)
if [[ -n $only ]]; then
	expected=()
	for s in ${only//,/ }; do
		case $s in
		bad-settings) expected+=(bad-size bad-format) ;;
		cameras) expected+=(cameras no-camera) ;;
		*) expected+=("$s") ;;
		esac
	done
fi
failed=0
echo "---- V4L2 VM test ($driver, kernel $kver${sabotage:+, sabotage: $sabotage}) ----"
for s in "${expected[@]}"; do
	line=$(grep -E "^EDGE-RESULT scenario=$s " "$log" | tail -n1 || true)
	if [[ -z $line ]]; then
		printf '%-12s MISSING (no result: the VM died or timed out; see %s)\n' "$s" "$log"
		failed=$((failed + 1))
	elif [[ $line == *" ok=1 "* ]]; then
		printf '%-12s ok    %s\n' "$s" "${line#*ok=1 }"
	else
		printf '%-12s FAIL  %s\n' "$s" "${line#*ok=0 }"
		failed=$((failed + 1))
	fi
done
summary=$(grep -E '^EDGE-SUMMARY' "$log" | tail -n1 || true)
[[ -z $summary ]] && say "no EDGE-SUMMARY line (qemu exit status $qemu_rc)"
vm_s=$(sed -n 's/.*vm_s=\([0-9.]*\).*/\1/p' <<<"$summary")
echo "took $((end - start))s: build $((boot - start))s, VM $((end - boot))s (scenarios ${vm_s:-?}s guest time, qemu CPU ${cpu}s)"
if ((failed > 0)); then
	echo "FAILED: $failed of ${#expected[@]} scenarios"
	exit 1
fi
echo "PASSED: ${#expected[@]} scenarios"
