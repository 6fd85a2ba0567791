// Package tflite runs edge's int8 TFLite classifiers.
//
// Models are full-integer int8 TFLite flatbuffers written by edge's exporter
// (models/export.py): one [1,H,W,C] int8 input, one [1,K] int8 softmax
// output, and a Model.metadata entry named "edge" holding JSON that Meta
// mirrors. Load checks a file against that contract in Go before the TFLite
// runtime sees it, so a wrong, truncated or foreign file is an error rather
// than a crash, then runs it through the TFLite 2.9 C library (via
// github.com/mattn/go-tflite), by default with the XNNPACK delegate set up
// for int8. Inspect describes a model file without the runtime.
//
// Building needs the TFLite C headers and libtensorflowlite_c on the cgo
// paths; the Makefile's CGO_CFLAGS and CGO_LDFLAGS provide them.
//
// A Model is not safe for concurrent use; see Model.
package tflite
