# edge — build, test, demo. Every target installs what it needs first.
SHELL := /bin/bash
GOARCH ?= $(shell go env GOARCH)
TFLITE_NPM := tfjs-tflite-node@0.0.2
BUILD := $(CURDIR)/build
TFLITE_DIR := $(BUILD)/tflite
TFLITE_LIB := $(TFLITE_DIR)/linux_$(GOARCH)
PY := /usr/bin/python3
DATA ?= $(abspath $(CURDIR)/../shared/data)

# go-tflite's cgo code needs the TFLite headers (from the npm package) and our
# c_api_experimental.h; the binary finds libtensorflowlite_c.so through rpath.
export CGO_ENABLED := 1
export CGO_CFLAGS := -I$(TFLITE_DIR)/include -I$(CURDIR)/tflite/include
export CGO_LDFLAGS := -L$(TFLITE_LIB) -Wl,-rpath,$(TFLITE_LIB) -Wl,-rpath,/usr/lib/edge

.PHONY: all deps deps-apt deps-go tflite-lib build test test-go test-models demo run bench clean

all: build

# tflite-lib fetches the prebuilt TFLite 2.9 C library from npm (no other registry ships it).
tflite-lib: $(TFLITE_DIR)/.done
$(TFLITE_DIR)/.done:
	rm -rf $(TFLITE_DIR) && mkdir -p $(TFLITE_DIR)
	cd $(TFLITE_DIR) && npm pack --silent $(TFLITE_NPM) >/dev/null && tar xzf tfjs-tflite-node-*.tgz
	cp -r $(TFLITE_DIR)/package/cc_deps/include $(TFLITE_DIR)/include
	for a in amd64 arm64; do mkdir -p $(TFLITE_DIR)/linux_$$a && cp $(TFLITE_DIR)/package/cc_deps/linux_$$a/libtensorflowlite_c.so $(TFLITE_DIR)/linux_$$a/; done
	rm -rf $(TFLITE_DIR)/package $(TFLITE_DIR)/*.tgz
	touch $@

# deps-apt installs the Debian packages that training, tests and the demo use.
deps-apt:
	@missing=""; for p in python3-torch python3-torchvision libopenblas0 python3-numpy python3-pil python3-matplotlib python3-flatbuffers mosquitto ffmpeg; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

deps-go:
	go mod download

deps: deps-apt deps-go tflite-lib

build: tflite-lib
	mkdir -p $(BUILD)/bin && go build -o $(BUILD)/bin/edge ./edge

test: deps test-go

test-go: tflite-lib
	go vet ./...
	go test -count=1 ./...

clean:
	rm -rf $(BUILD) dist
