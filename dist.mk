# dist.mk — release builds and Debian packages; included from the Makefile
# (`include dist.mk`), whose BUILD, TFLITE_DIR and tflite-lib it uses.
#
#   make dist        dist/edge_<debversion>_{amd64,arm64}.deb
#   make test-unit   systemd-analyze verify + security (exposure <= 2.0)
#   make test-dist   dist, then systemd/test-packages.sh: package contents, arm64
#                    binary under qemu-user, install/upgrade/purge in a bookworm root
#
# Overrides: VERSION (embedded as main.version; default `git describe`),
# DEB_VERSION (derived from VERSION), DIST_ARCHES, DIST_DIR, EDGE_MAIN,
# DIST_MODELS, DIST_README, DIST_NOTICE, DIST_ENV_FILE.

NFPM_VERSION := v2.45.0
NFPM := $(BUILD)/tools/nfpm-$(NFPM_VERSION)/nfpm
DIST_DIR ?= $(CURDIR)/dist
DIST_ARCHES ?= amd64 arm64
DIST_WORK := $(BUILD)/dist
# Computed once per make run (others may commit meanwhile).
ifeq ($(origin VERSION),undefined)
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
endif
ifeq ($(origin DEB_VERSION),undefined)
DEB_VERSION := $(shell $(CURDIR)/systemd/deb-version.sh '$(VERSION)')
endif
EDGE_MAIN ?= ./edge
DIST_MODELS ?= $(wildcard $(CURDIR)/models/*.tflite)
DIST_README ?= $(CURDIR)/README.md
DIST_NOTICE ?= $(CURDIR)/NOTICE
DIST_ENV_FILE ?= $(CURDIR)/systemd/edge.env
DIST_GOFLAGS ?= -p 1 -trimpath
DIST_MAINTAINER ?= edge maintainers <maintainers@edge-sensor.invalid>
DIST_APT := gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
TEST_DIST_APT := qemu-user libc6-arm64-cross libstdc++6-arm64-cross debootstrap systemd python3-seccomp mosquitto
CC_amd64 ?= x86_64-linux-gnu-gcc
CC_arm64 ?= aarch64-linux-gnu-gcc

# apt-install installs the Debian packages in $(1) that are missing.
define apt-install
@tools/apt-install.sh $(1)
endef

.PHONY: dist dist-deps dist-check test-unit test-dist test-dist-deps dist-amd64 dist-arm64

dist-deps:
	$(call apt-install,$(DIST_APT))

# nfpm from the Go module proxy, built once into build/tools. (v2.46 and later
# need go.digitalxero.dev/go-msix, which the module proxy does not serve.)
$(NFPM):
	mkdir -p $(@D)
	CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN=$(@D) go install -p 1 github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)

dist-check:
	@test -n "$(strip $(DIST_MODELS))" || { echo "dist: no models/*.tflite to package (export the models first, or set DIST_MODELS)" >&2; exit 1; }
	@for f in $(DIST_README) $(DIST_NOTICE) $(CURDIR)/LICENSE; do test -f $$f || { echo "dist: $$f is missing" >&2; exit 1; }; done
	@echo "dist: version $(VERSION), Debian version $(DEB_VERSION), arches $(DIST_ARCHES)"

dist: dist-deps tflite-lib $(NFPM) dist-check $(addprefix dist-,$(DIST_ARCHES))
	@ls -l $(DIST_DIR)/edge_$(DEB_VERSION)_*.deb

# dist-ARCH cross-compiles edge with cgo against the TFLite library of ARCH,
# with the packaged library directory as its only rpath, stages the package
# tree and runs nfpm.
dist-amd64 dist-arm64: dist-%: dist-deps tflite-lib $(NFPM) dist-check
	@set -euo pipefail; \
	arch=$*; stage=$(DIST_WORK)/stage-$$arch; bin=$(DIST_WORK)/linux_$$arch/edge; \
	echo "dist: building linux/$$arch"; \
	mkdir -p $$(dirname $$bin) $(DIST_DIR); \
	start=$$(date +%s); \
	GOOS=linux GOARCH=$$arch CGO_ENABLED=1 CC=$(CC_$*) \
	  CGO_CFLAGS="-O2 -I$(TFLITE_DIR)/include -I$(CURDIR)/tflite/include" \
	  CGO_LDFLAGS="-L$(TFLITE_DIR)/linux_$$arch -Wl,-rpath,/usr/lib/edge" \
	  go build $(DIST_GOFLAGS) -ldflags "-s -w -X main.version=$(VERSION)" -o $$bin $(EDGE_MAIN); \
	echo "dist: linux/$$arch built in $$(( $$(date +%s) - start ))s"; \
	rm -rf $$stage; \
	install -D -m 0755 $$bin $$stage/usr/bin/edge; \
	install -D -m 0644 $(TFLITE_DIR)/linux_$$arch/libtensorflowlite_c.so $$stage/usr/lib/edge/libtensorflowlite_c.so; \
	install -d $$stage/usr/share/edge/models; \
	for m in $(DIST_MODELS); do install -m 0644 $$m $$stage/usr/share/edge/models/; done; \
	install -D -m 0644 systemd/edge.service $$stage/lib/systemd/system/edge.service; \
	install -D -m 0600 $(DIST_ENV_FILE) $$stage/etc/edge/edge.env; \
	install -D -m 0644 systemd/edge-collect.service $$stage/lib/systemd/system/edge-collect.service; \
	install -D -m 0600 systemd/collect.env $$stage/etc/edge/collect.env; \
	install -D -m 0644 $(DIST_README) $$stage/usr/share/doc/edge/README.md; \
	install -m 0644 $(DIST_NOTICE) $$stage/usr/share/doc/edge/NOTICE; \
	EDGE_LICENSE=Apache-2.0 systemd/copyright.sh $$arch $(EDGE_MAIN) > $$stage/usr/share/doc/edge/copyright; \
	libc=$$( { objdump -T $$bin; objdump -T $$stage/usr/lib/edge/libtensorflowlite_c.so; } 2>/dev/null \
	  | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1); \
	test -n "$$libc" || { echo "dist: no GLIBC symbol versions found in $$bin" >&2; exit 1; }; \
	install -D -m 0755 -t $$stage/scripts systemd/postinst systemd/prerm systemd/postrm; \
	rm -f $(DIST_DIR)/edge_*_$$arch.deb; \
	(cd $$stage && EDGE_DEB_ARCH=$$arch EDGE_DEB_VERSION=$(DEB_VERSION) EDGE_MAINTAINER="$(DIST_MAINTAINER)" EDGE_LIBC_MIN=$$libc \
	  $(NFPM) package --config $(CURDIR)/systemd/nfpm.yaml --packager deb --target $(DIST_DIR)/edge_$(DEB_VERSION)_$$arch.deb >/dev/null); \
	echo "dist: $(DIST_DIR)/edge_$(DEB_VERSION)_$$arch.deb (libc6 >= $$libc)"

# test-unit checks the unit with systemd-analyze and edge.env against the
# variables that the freshly built edge lists.
test-unit: build
	$(call apt-install,systemd)
	EDGE_BIN=$(BUILD)/bin/edge systemd/test-unit.sh

test-dist-deps:
	$(call apt-install,$(TEST_DIST_APT))

test-dist: dist test-dist-deps test-unit
	DIST_DIR=$(DIST_DIR) DEB_VERSION=$(DEB_VERSION) VERSION=$(VERSION) BUILD=$(BUILD) systemd/test-packages.sh
