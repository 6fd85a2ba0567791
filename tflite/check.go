package tflite

import (
	"fmt"
	"math"

	"github.com/edge-sensor/edge/tflite/internal/tflfb"
)

// Limits on the tensors Load accepts, far above edge's models (48x48x1 in,
// 7 classes out) and low enough that sizes computed from them cannot
// overflow.
const (
	maxSide    = 4096
	maxClasses = 1 << 16
)

// spec is what Load needs from a model file, checked to be consistent.
type spec struct {
	meta       Meta
	h, w, c, k int
	in, out    affine
}

// affine is per-tensor int8 quantization: real = scale * (q - zero).
type affine struct {
	scale float32
	zero  int32
}

// checkModel validates g as one of edge's classifiers: one subgraph, one
// [1,H,W,C] int8 input, one [1,K] int8 output, both quantized per tensor,
// and "edge" metadata that agrees with them.
func checkModel(g *graph) (spec, error) {
	var s spec
	if err := g.checkStructure(); err != nil {
		return s, err
	}
	bad := func(format string, args ...any) (spec, error) {
		return spec{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidModel}, args...)...)
	}
	if len(g.inputs) != 1 || len(g.outputs) != 1 {
		return bad("%d inputs and %d outputs, want 1 and 1", len(g.inputs), len(g.outputs))
	}
	in, out := g.tensor(g.inputs[0]), g.tensor(g.outputs[0])

	if in.typ != tflfb.TensorTypeINT8 {
		return bad("input tensor %q is %s, want INT8", in.name, in.typ)
	}
	if len(in.shape) != 4 || in.shape[0] != 1 || !between(in.shape[1], 1, maxSide) || !between(in.shape[2], 1, maxSide) || !between(in.shape[3], 1, 4) {
		return bad("input tensor %q has shape %v, want [1 H W C] (H, W <= %d, C <= 4)", in.name, in.shape, maxSide)
	}
	s.h, s.w, s.c = int(in.shape[1]), int(in.shape[2]), int(in.shape[3])
	var err error
	if s.in, err = perTensor(in); err != nil {
		return bad("input %w", err)
	}

	if out.typ != tflfb.TensorTypeINT8 {
		return bad("output tensor %q is %s, want INT8", out.name, out.typ)
	}
	if len(out.shape) != 2 || out.shape[0] != 1 || !between(out.shape[1], 1, maxClasses) {
		return bad("output tensor %q has shape %v, want [1 K] (K <= %d)", out.name, out.shape, maxClasses)
	}
	s.k = int(out.shape[1])
	if s.out, err = perTensor(out); err != nil {
		return bad("output %w", err)
	}

	data, ok := g.metadataBuffer(MetadataName)
	if !ok {
		return bad("no %q metadata (not exported by edge's exporter?)", MetadataName)
	}
	if s.meta, err = parseMeta(data); err != nil {
		return spec{}, err
	}
	if len(s.meta.Labels) != s.k {
		return bad("metadata has %d labels, output tensor has %d classes", len(s.meta.Labels), s.k)
	}
	if mi := s.meta.Input; mi.Height != s.h || mi.Width != s.w || mi.Channels != s.c {
		return bad("metadata input %dx%dx%d (WxHxC) does not match input tensor %dx%dx%d", mi.Width, mi.Height, mi.Channels, s.w, s.h, s.c)
	}
	return s, nil
}

func between(v int32, lo, hi int32) bool { return v >= lo && v <= hi }

// perTensor returns t's quantization if it is a single valid int8 scale and
// zero point.
func perTensor(t *tensor) (affine, error) {
	q := t.quant
	if len(q.scale) != 1 || len(q.zero) != 1 {
		return affine{}, fmt.Errorf("tensor %q has %d scales and %d zero points, want per-tensor quantization", t.name, len(q.scale), len(q.zero))
	}
	sc, zp := q.scale[0], q.zero[0]
	if !(sc > 0) || math.IsInf(float64(sc), 0) {
		return affine{}, fmt.Errorf("tensor %q has quantization scale %g", t.name, sc)
	}
	if zp < math.MinInt8 || zp > math.MaxInt8 {
		return affine{}, fmt.Errorf("tensor %q has int8 zero point %d", t.name, zp)
	}
	return affine{scale: sc, zero: int32(zp)}, nil
}
