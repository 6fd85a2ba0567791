package tflite

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/edge-sensor/edge/tflite/internal/tflfb"
)

// fixture describes a small int8 classifier built in Go, so the tests do not
// depend on the exporter for every variant they need:
//
//	input [1,h,w,c] -> CONV_2D 3x3 SAME, 2 channels, RELU -> RESHAPE [1,h*w*2]
//	-> FULLY_CONNECTED k -> SOFTMAX -> output [1,k]
//
// Zero values mean the valid default; the other fields break one thing each.
type fixture struct {
	h, w, k    int    // default 6, 5, 3
	c          int    // input channels: 1 (default, "gray") or 3 ("ycbcr")
	seed       uint64 // weights
	identifier string // default "TFL3"
	version    uint32 // default 3
	subgraphs  int    // default 1
	meta       string // metadata JSON; default from h, w, k
	noMeta     bool
	inType     string  // tensor type name; default "INT8"
	inScale    float32 // default 1/255 (with inZero -128)
	inZero     int64
	inNoQuant  bool
	inShape    []int32 // default [1,h,w,c]
	outShape   []int32 // default [1,k]
	outPerChan bool    // output quantized with k scales
	convVer    int32   // CONV_2D operator version; default 3
	convWShape []int32 // conv weights shape; default [2,3,3,c] (the data's)
}

func (f fixture) withDefaults() fixture {
	if f.h == 0 {
		f.h, f.w, f.k = 6, 5, 3
	}
	if f.c == 0 {
		f.c = 1
	}
	if f.identifier == "" {
		f.identifier = "TFL3"
	}
	if f.version == 0 {
		f.version = 3
	}
	if f.subgraphs == 0 {
		f.subgraphs = 1
	}
	if f.subgraphs < 0 {
		f.subgraphs = 0
	}
	if f.inType == "" {
		f.inType = "INT8"
	}
	if f.inScale == 0 {
		f.inScale, f.inZero = 1.0/255, -128
	}
	if f.meta == "" {
		f.meta = f.defaultMeta()
	}
	if f.convVer == 0 {
		f.convVer = 3
	}
	if f.convWShape == nil {
		f.convWShape = []int32{2, 3, 3, int32(f.c)}
	}
	return f
}

func (f fixture) labels() []string {
	l := make([]string, f.k)
	for i := range l {
		l[i] = string(rune('a' + i))
	}
	return l
}

func (f fixture) defaultMeta() string {
	color := ColorGray
	if f.c == 3 {
		color = ColorYCbCr
	}
	b, err := json.Marshal(map[string]any{
		"schema":       1,
		"task":         "tiny",
		"labels":       f.labels(),
		"input":        map[string]any{"width": f.w, "height": f.h, "channels": f.c, "color": color},
		"framing":      map[string]any{"scale": 1.25, "offset_x": 0.0, "offset_y": 0.05},
		"flip_average": true,
		"macs":         f.h*f.w*2*9*f.c + f.h*f.w*2*f.k,
		"dataset_crop": 0.8,
		"training":     map[string]any{"data": "none", "val_accuracy_float": 0.5},
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// tinyNet holds the quantized weights of a fixture, for the float
// reference.
type tinyNet struct {
	f          fixture
	convW      []int8 // [2][3][3][c]
	convWScale []float32
	convB      []int32
	convOut    affine
	fcW        []int8 // [k][h*w*2]
	fcWScale   float32
	fcB        []int32
	logits     affine
}

const outScale = 1.0 / 256

func newTinyNet(f fixture) *tinyNet {
	rng := rand.New(rand.NewPCG(f.seed, 7))
	uniform := func(a float64) float64 { return (rng.Float64()*2 - 1) * a }
	n := &tinyNet{f: f}

	convMax := 0.0
	for range 2 {
		w := make([]float64, 9*f.c)
		maxAbs, sumAbs := 0.0, 0.0
		for i := range w {
			w[i] = uniform(1)
			maxAbs = max(maxAbs, math.Abs(w[i]))
			sumAbs += math.Abs(w[i])
		}
		s := maxAbs / 127
		for _, v := range w {
			n.convW = append(n.convW, int8(math.Round(v/s)))
		}
		n.convWScale = append(n.convWScale, float32(s))
		b := uniform(0.2)
		n.convB = append(n.convB, int32(math.Round(b/(float64(f.inScale)*s))))
		convMax = max(convMax, sumAbs+math.Abs(b))
	}
	// RELU output in [0, convMax]: zero point -128 puts 0 at the bottom.
	n.convOut = affine{scale: float32(convMax / 255), zero: -128}

	in := f.h * f.w * 2
	fw := make([]float64, f.k*in)
	maxAbs := 0.0
	for i := range fw {
		fw[i] = uniform(0.1)
		maxAbs = max(maxAbs, math.Abs(fw[i]))
	}
	n.fcWScale = float32(maxAbs / 127)
	logitMax := 0.0
	for k := range f.k {
		b := uniform(0.5)
		n.fcB = append(n.fcB, int32(math.Round(b/(float64(n.convOut.scale)*float64(n.fcWScale)))))
		sum := math.Abs(b)
		for j := range in {
			q := int8(math.Round(fw[k*in+j] / float64(n.fcWScale)))
			n.fcW = append(n.fcW, q)
			sum += math.Abs(float64(q)*float64(n.fcWScale)) * convMax
		}
		logitMax = max(logitMax, sum)
	}
	// Worst case is far above typical logits; half of it keeps resolution.
	logitMax /= 2
	n.logits = affine{scale: float32(2 * logitMax / 255), zero: 0}
	return n
}

// reference computes the probabilities in float64 from the quantized weights
// and the quantized input, clamping activations to their int8 ranges like
// the int8 kernels do.
func (n *tinyNet) reference(pixels []byte) []float64 {
	f := n.f
	x := make([]float64, len(pixels))
	for i, p := range pixels {
		q := math.Round(float64(p)/255/float64(f.inScale)) + float64(f.inZero)
		q = max(-128, min(127, q))
		x[i] = float64(f.inScale) * (q - float64(f.inZero))
	}
	clamp := func(v float64, a affine) float64 {
		lo := float64(a.scale) * float64(-128-a.zero)
		hi := float64(a.scale) * float64(127-a.zero)
		return max(lo, min(hi, v))
	}
	act := make([]float64, f.h*f.w*2)
	for y := range f.h {
		for xx := range f.w {
			for c := range 2 {
				sum := float64(n.convB[c]) * float64(f.inScale) * float64(n.convWScale[c])
				for ky := range 3 {
					for kx := range 3 {
						yy, xs := y+ky-1, xx+kx-1
						if yy < 0 || yy >= f.h || xs < 0 || xs >= f.w {
							continue
						}
						for ci := range f.c {
							sum += x[(yy*f.w+xs)*f.c+ci] * float64(n.convW[((c*3+ky)*3+kx)*f.c+ci]) * float64(n.convWScale[c])
						}
					}
				}
				act[(y*f.w+xx)*2+c] = clamp(max(0, sum), n.convOut)
			}
		}
	}
	logits := make([]float64, f.k)
	top := math.Inf(-1)
	for k := range f.k {
		sum := float64(n.fcB[k]) * float64(n.convOut.scale) * float64(n.fcWScale)
		for j, a := range act {
			sum += a * float64(n.fcW[k*len(act)+j]) * float64(n.fcWScale)
		}
		logits[k] = clamp(sum, n.logits)
		top = max(top, logits[k])
	}
	total := 0.0
	for k := range logits {
		logits[k] = math.Exp(logits[k] - top)
		total += logits[k]
	}
	for k := range logits {
		logits[k] /= total
	}
	return logits
}

// build returns the fixture's model file and its weights.
func (f fixture) build() ([]byte, *tinyNet) {
	f = f.withDefaults()
	n := newTinyNet(f)
	b := flatbuffers.NewBuilder(4096)

	int32s := func(v []int32) flatbuffers.UOffsetT {
		b.StartVector(4, len(v), 4)
		for i := len(v) - 1; i >= 0; i-- {
			b.PrependInt32(v[i])
		}
		return b.EndVector(len(v))
	}
	float32s := func(v []float32) flatbuffers.UOffsetT {
		b.StartVector(4, len(v), 4)
		for i := len(v) - 1; i >= 0; i-- {
			b.PrependFloat32(v[i])
		}
		return b.EndVector(len(v))
	}
	int64s := func(v []int64) flatbuffers.UOffsetT {
		b.StartVector(8, len(v), 8)
		for i := len(v) - 1; i >= 0; i-- {
			b.PrependInt64(v[i])
		}
		return b.EndVector(len(v))
	}
	// The Go generator ignores force_align: 16, so buffers align by hand.
	data := func(v []byte) flatbuffers.UOffsetT {
		b.StartVector(1, len(v), 16)
		for i := len(v) - 1; i >= 0; i-- {
			b.PrependByte(v[i])
		}
		return b.EndVector(len(v))
	}
	le32 := func(v []int32) []byte {
		out := make([]byte, 0, 4*len(v))
		for _, x := range v {
			out = append(out, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
		}
		return out
	}
	bytes8 := func(v []int8) []byte {
		out := make([]byte, len(v))
		for i, x := range v {
			out[i] = byte(x)
		}
		return out
	}

	flat := int32(f.h * f.w * 2)
	buffers := [][]byte{
		nil,                    // 0: sentinel
		bytes8(n.convW),        // 1
		le32(n.convB),          // 2
		le32([]int32{1, flat}), // 3: reshape shape
		bytes8(n.fcW),          // 4
		le32(n.fcB),            // 5
		[]byte(f.meta),         // 6: metadata
	}
	type tensorDef struct {
		name   string
		shape  []int32
		typ    tflfb.TensorType
		buffer uint32
		scale  []float32
		zero   []int64
		axis   int32
	}
	one := func(a affine) ([]float32, []int64) { return []float32{a.scale}, []int64{int64(a.zero)} }
	inShape := f.inShape
	if inShape == nil {
		inShape = []int32{1, int32(f.h), int32(f.w), int32(f.c)}
	}
	outShape := f.outShape
	if outShape == nil {
		outShape = []int32{1, int32(f.k)}
	}
	convBScale := []float32{f.inScale * n.convWScale[0], f.inScale * n.convWScale[1]}
	cs, cz := one(n.convOut)
	ls, lz := one(n.logits)
	tensors := []tensorDef{
		{name: "input", shape: inShape, typ: tflfb.EnumValuesTensorType[f.inType], scale: []float32{f.inScale}, zero: []int64{f.inZero}},
		{name: "conv/w", shape: f.convWShape, typ: tflfb.TensorTypeINT8, buffer: 1, scale: n.convWScale, zero: []int64{0, 0}},
		{name: "conv/b", shape: []int32{2}, typ: tflfb.TensorTypeINT32, buffer: 2, scale: convBScale, zero: []int64{0, 0}},
		{name: "conv", shape: []int32{1, int32(f.h), int32(f.w), 2}, typ: tflfb.TensorTypeINT8, scale: cs, zero: cz},
		{name: "flatten/shape", shape: []int32{2}, typ: tflfb.TensorTypeINT32, buffer: 3},
		{name: "flatten", shape: []int32{1, flat}, typ: tflfb.TensorTypeINT8, scale: cs, zero: cz},
		{name: "fc/w", shape: []int32{int32(f.k), flat}, typ: tflfb.TensorTypeINT8, buffer: 4, scale: []float32{n.fcWScale}, zero: []int64{0}},
		{name: "fc/b", shape: []int32{int32(f.k)}, typ: tflfb.TensorTypeINT32, buffer: 5, scale: []float32{n.convOut.scale * n.fcWScale}, zero: []int64{0}},
		{name: "logits", shape: []int32{1, int32(f.k)}, typ: tflfb.TensorTypeINT8, scale: ls, zero: lz},
		{name: "probs", shape: outShape, typ: tflfb.TensorTypeINT8, scale: []float32{outScale}, zero: []int64{-128}},
	}
	if f.inNoQuant {
		tensors[0].scale, tensors[0].zero = nil, nil
	}
	if f.outPerChan {
		tensors[9].scale = make([]float32, f.k)
		tensors[9].zero = make([]int64, f.k)
		for i := range f.k {
			tensors[9].scale[i], tensors[9].zero[i] = outScale, -128
		}
		tensors[9].axis = 1
	}

	bufOffs := make([]flatbuffers.UOffsetT, len(buffers))
	for i, d := range buffers {
		var v flatbuffers.UOffsetT
		if len(d) > 0 {
			v = data(d)
		}
		tflfb.BufferStart(b)
		if len(d) > 0 {
			tflfb.BufferAddData(b, v)
		}
		bufOffs[i] = tflfb.BufferEnd(b)
	}

	tensorOffs := make([]flatbuffers.UOffsetT, len(tensors))
	for i, t := range tensors {
		name := b.CreateString(t.name)
		shape := int32s(t.shape)
		var quant flatbuffers.UOffsetT
		if t.scale != nil {
			sc, zp := float32s(t.scale), int64s(t.zero)
			tflfb.QuantizationParametersStart(b)
			tflfb.QuantizationParametersAddScale(b, sc)
			tflfb.QuantizationParametersAddZeroPoint(b, zp)
			tflfb.QuantizationParametersAddQuantizedDimension(b, t.axis)
			quant = tflfb.QuantizationParametersEnd(b)
		}
		tflfb.TensorStart(b)
		tflfb.TensorAddShape(b, shape)
		tflfb.TensorAddType(b, t.typ)
		tflfb.TensorAddBuffer(b, t.buffer)
		tflfb.TensorAddName(b, name)
		if t.scale != nil {
			tflfb.TensorAddQuantization(b, quant)
		}
		tensorOffs[i] = tflfb.TensorEnd(b)
	}

	type opDef struct {
		code    uint32
		in, out []int32
		optType tflfb.BuiltinOptions
		opt     func() flatbuffers.UOffsetT
	}
	ops := []opDef{
		{0, []int32{0, 1, 2}, []int32{3}, tflfb.BuiltinOptionsConv2DOptions, func() flatbuffers.UOffsetT {
			tflfb.Conv2DOptionsStart(b)
			tflfb.Conv2DOptionsAddPadding(b, tflfb.PaddingSAME)
			tflfb.Conv2DOptionsAddStrideW(b, 1)
			tflfb.Conv2DOptionsAddStrideH(b, 1)
			tflfb.Conv2DOptionsAddFusedActivationFunction(b, tflfb.ActivationFunctionTypeRELU)
			tflfb.Conv2DOptionsAddDilationWFactor(b, 1)
			tflfb.Conv2DOptionsAddDilationHFactor(b, 1)
			return tflfb.Conv2DOptionsEnd(b)
		}},
		{1, []int32{3, 4}, []int32{5}, tflfb.BuiltinOptionsReshapeOptions, func() flatbuffers.UOffsetT {
			ns := int32s([]int32{1, flat})
			tflfb.ReshapeOptionsStart(b)
			tflfb.ReshapeOptionsAddNewShape(b, ns)
			return tflfb.ReshapeOptionsEnd(b)
		}},
		{2, []int32{5, 6, 7}, []int32{8}, tflfb.BuiltinOptionsFullyConnectedOptions, func() flatbuffers.UOffsetT {
			tflfb.FullyConnectedOptionsStart(b)
			return tflfb.FullyConnectedOptionsEnd(b)
		}},
		{3, []int32{8}, []int32{9}, tflfb.BuiltinOptionsSoftmaxOptions, func() flatbuffers.UOffsetT {
			tflfb.SoftmaxOptionsStart(b)
			tflfb.SoftmaxOptionsAddBeta(b, 1)
			return tflfb.SoftmaxOptionsEnd(b)
		}},
	}
	opOffs := make([]flatbuffers.UOffsetT, len(ops))
	for i, o := range ops {
		opt := o.opt()
		in, out := int32s(o.in), int32s(o.out)
		tflfb.OperatorStart(b)
		tflfb.OperatorAddOpcodeIndex(b, o.code)
		tflfb.OperatorAddInputs(b, in)
		tflfb.OperatorAddOutputs(b, out)
		tflfb.OperatorAddBuiltinOptionsType(b, o.optType)
		tflfb.OperatorAddBuiltinOptions(b, opt)
		opOffs[i] = tflfb.OperatorEnd(b)
	}
	codes := []struct {
		op      tflfb.BuiltinOperator
		version int32
	}{{tflfb.BuiltinOperatorCONV_2D, f.convVer}, {tflfb.BuiltinOperatorRESHAPE, 1}, {tflfb.BuiltinOperatorFULLY_CONNECTED, 4}, {tflfb.BuiltinOperatorSOFTMAX, 2}}
	codeOffs := make([]flatbuffers.UOffsetT, len(codes))
	for i, c := range codes {
		tflfb.OperatorCodeStart(b)
		tflfb.OperatorCodeAddDeprecatedBuiltinCode(b, int8(c.op))
		tflfb.OperatorCodeAddBuiltinCode(b, c.op)
		tflfb.OperatorCodeAddVersion(b, c.version)
		codeOffs[i] = tflfb.OperatorCodeEnd(b)
	}

	tables := func(offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
		b.StartVector(4, len(offs), 4)
		for i := len(offs) - 1; i >= 0; i-- {
			b.PrependUOffsetT(offs[i])
		}
		return b.EndVector(len(offs))
	}
	tv, ov := tables(tensorOffs), tables(opOffs)
	sin, sout := int32s([]int32{0}), int32s([]int32{9})
	sname := b.CreateString("main")
	tflfb.SubGraphStart(b)
	tflfb.SubGraphAddTensors(b, tv)
	tflfb.SubGraphAddInputs(b, sin)
	tflfb.SubGraphAddOutputs(b, sout)
	tflfb.SubGraphAddOperators(b, ov)
	tflfb.SubGraphAddName(b, sname)
	sg := tflfb.SubGraphEnd(b)
	subgraphs := make([]flatbuffers.UOffsetT, f.subgraphs)
	for i := range subgraphs {
		subgraphs[i] = sg
	}

	var metaOffs []flatbuffers.UOffsetT
	if !f.noMeta {
		mname := b.CreateString(MetadataName)
		tflfb.MetadataStart(b)
		tflfb.MetadataAddName(b, mname)
		tflfb.MetadataAddBuffer(b, 6)
		metaOffs = append(metaOffs, tflfb.MetadataEnd(b))
	}

	desc := b.CreateString("edge tflite test fixture")
	cv, sv, bv, mv := tables(codeOffs), tables(subgraphs), tables(bufOffs), tables(metaOffs)
	tflfb.ModelStart(b)
	tflfb.ModelAddVersion(b, f.version)
	tflfb.ModelAddOperatorCodes(b, cv)
	tflfb.ModelAddSubgraphs(b, sv)
	tflfb.ModelAddDescription(b, desc)
	tflfb.ModelAddBuffers(b, bv)
	tflfb.ModelAddMetadata(b, mv)
	b.FinishWithFileIdentifier(tflfb.ModelEnd(b), []byte(f.identifier))
	return b.FinishedBytes(), n
}

// writeFile writes data to a new file in a test's temporary directory.
func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixtureFile builds f and writes it to a temporary file.
func fixtureFile(t testing.TB, f fixture) (string, *tinyNet) {
	t.Helper()
	data, n := f.build()
	return writeFile(t, "model.tflite", data), n
}
