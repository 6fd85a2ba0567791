# v4l2.mk: the V4L2 VM test, included by the Makefile (include v4l2.mk).
#
# test-v4l2 boots Debian's kernel in qemu (KVM when /dev/kvm works, else
# TCG) and tests the camera path against the kernel's vivid and
# v4l2loopback drivers; see camera/v4l2test/run.sh for the scenarios and
# the EDGE_V4L2_* and V4L2VM_* variables it reads. It installs what it
# needs with apt (qemu, linux-image-amd64 and its headers, busybox-static,
# v4l2loopback-dkms) and caches its build under build/v4l2vm.
.PHONY: test-v4l2
test-v4l2: tflite-lib
	camera/v4l2test/run.sh
