package tflite

import (
	"errors"
	"fmt"
	"math"

	"github.com/edge-sensor/edge/tflite/internal/tflfb"
)

// File format facts (tensorflow/lite/schema/schema.fbs).
const (
	fileIdentifier = "TFL3"
	schemaVersion  = 3
	// minFileSize is the smallest buffer that can hold a root offset, the
	// file identifier and a table: anything shorter is not worth parsing.
	minFileSize = 16
	// maxFileSize bounds what Load and Inspect read into memory. edge's
	// classifiers are well under 10 MB.
	maxFileSize = 256 << 20
)

// graph is the part of a TFLite flatbuffer edge looks at, copied out of the
// buffer by readGraph so nothing else touches the (untrusted) flatbuffer.
// Only the first subgraph is read.
type graph struct {
	size        int
	version     uint32
	description string
	subgraphs   int
	tensors     []tensor
	inputs      []int32
	outputs     []int32
	codes       []opcode
	ops         []op
	buffers     [][]byte // sub-slices of the file: not copied
	metadata    []metadataEntry
}

type tensor struct {
	name     string
	shape    []int32
	typ      tflfb.TensorType
	buffer   uint32
	variable bool
	quant    quantParams
}

type quantParams struct {
	scale []float32
	zero  []int64
	axis  int32
}

type opcode struct {
	builtin tflfb.BuiltinOperator
	custom  string
	version int32
}

type op struct {
	code    uint32
	inputs  []int32
	outputs []int32
}

type metadataEntry struct {
	name   string
	buffer uint32
}

// typeSize is the element size of the fixed-size tensor types.
func typeSize(t tflfb.TensorType) (int64, bool) {
	switch t {
	case tflfb.TensorTypeUINT8, tflfb.TensorTypeINT8, tflfb.TensorTypeBOOL:
		return 1, true
	case tflfb.TensorTypeFLOAT16, tflfb.TensorTypeINT16, tflfb.TensorTypeUINT16:
		return 2, true
	case tflfb.TensorTypeFLOAT32, tflfb.TensorTypeINT32, tflfb.TensorTypeUINT32:
		return 4, true
	case tflfb.TensorTypeINT64, tflfb.TensorTypeUINT64, tflfb.TensorTypeFLOAT64, tflfb.TensorTypeCOMPLEX64:
		return 8, true
	case tflfb.TensorTypeCOMPLEX128:
		return 16, true
	}
	return 0, false
}

// errTooComplex stops readGraph when a buffer would make it do more work
// than its size justifies (see reader.take).
var errTooComplex = errors.New("flatbuffer references more data than the file holds")

// reader bounds the work readGraph does. Flatbuffers may legally share
// vectors and strings between tables, so a small crafted file could name one
// huge vector a million times; a well-formed TFLite file stores every
// element once, so the elements and string bytes read in total never exceed
// the file size.
type reader struct {
	size   int
	budget int
}

// take charges n elements of elemSize bytes each against the budget and
// returns n, panicking (recovered by readGraph) when the file cannot hold
// them.
func (r *reader) take(n, elemSize int) int {
	if n < 0 || n > r.size/elemSize || n > r.budget {
		panic(errTooComplex)
	}
	r.budget -= n
	return n
}

func (r *reader) str(b []byte) string {
	r.take(len(b), 1)
	return string(b)
}

// checkHeader rejects buffers that are clearly not TFLite models before any
// flatbuffer access.
func checkHeader(buf []byte) error {
	if len(buf) < minFileSize {
		return fmt.Errorf("%w: %d bytes is too short for a TFLite model", ErrInvalidModel, len(buf))
	}
	if id := string(buf[4:8]); id != fileIdentifier {
		return fmt.Errorf("%w: not a TFLite model (file identifier %q, want %q)", ErrInvalidModel, id, fileIdentifier)
	}
	return nil
}

// readGraph copies the model structure out of buf. The generated accessors
// index the buffer without checking offsets, so a truncated or corrupt file
// makes them panic; the recover turns that into an error. Index fields are
// copied as stored: validate them before use.
func readGraph(buf []byte) (g *graph, err error) {
	if err := checkHeader(buf); err != nil {
		return nil, err
	}
	defer func() {
		if v := recover(); v != nil {
			g = nil
			if e, ok := v.(error); ok && errors.Is(e, errTooComplex) {
				err = fmt.Errorf("%w: corrupt flatbuffer: %w", ErrInvalidModel, e)
				return
			}
			err = fmt.Errorf("%w: corrupt or truncated flatbuffer (%v)", ErrInvalidModel, v)
		}
	}()
	r := &reader{size: len(buf), budget: len(buf) + 1024}
	m := tflfb.GetRootAsModel(buf, 0)
	g = &graph{size: len(buf), version: m.Version(), description: r.str(m.Description())}

	var (
		code     tflfb.OperatorCode
		buffer   tflfb.Buffer
		meta     tflfb.Metadata
		sub      tflfb.SubGraph
		t        tflfb.Tensor
		q        tflfb.QuantizationParameters
		operator tflfb.Operator
	)
	g.codes = make([]opcode, r.take(m.OperatorCodesLength(), 4))
	for i := range g.codes {
		if !m.OperatorCodes(&code, i) {
			break
		}
		// Upstream's rule (schema_utils.cc GetBuiltinCode): the larger of the
		// two fields wins; old writers set only the deprecated int8 one.
		b := max(code.BuiltinCode(), tflfb.BuiltinOperator(code.DeprecatedBuiltinCode()))
		g.codes[i] = opcode{builtin: b, custom: r.str(code.CustomCode()), version: code.Version()}
	}
	g.buffers = make([][]byte, r.take(m.BuffersLength(), 4))
	for i := range g.buffers {
		if m.Buffers(&buffer, i) {
			g.buffers[i] = buffer.DataBytes()
		}
	}
	g.metadata = make([]metadataEntry, r.take(m.MetadataLength(), 4))
	for i := range g.metadata {
		if m.Metadata(&meta, i) {
			g.metadata[i] = metadataEntry{name: r.str(meta.Name()), buffer: meta.Buffer()}
		}
	}
	g.subgraphs = r.take(m.SubgraphsLength(), 4)
	if g.subgraphs == 0 || !m.Subgraphs(&sub, 0) {
		return g, nil
	}
	g.inputs = readInt32s(r, sub.InputsLength(), sub.Inputs)
	g.outputs = readInt32s(r, sub.OutputsLength(), sub.Outputs)
	g.tensors = make([]tensor, r.take(sub.TensorsLength(), 4))
	for i := range g.tensors {
		if !sub.Tensors(&t, i) {
			break
		}
		tt := tensor{
			name:     r.str(t.Name()),
			shape:    readInt32s(r, t.ShapeLength(), t.Shape),
			typ:      t.Type(),
			buffer:   t.Buffer(),
			variable: t.IsVariable(),
		}
		if t.Quantization(&q) != nil {
			tt.quant.scale = make([]float32, r.take(q.ScaleLength(), 4))
			for j := range tt.quant.scale {
				tt.quant.scale[j] = q.Scale(j)
			}
			tt.quant.zero = make([]int64, r.take(q.ZeroPointLength(), 8))
			for j := range tt.quant.zero {
				tt.quant.zero[j] = q.ZeroPoint(j)
			}
			tt.quant.axis = q.QuantizedDimension()
		}
		g.tensors[i] = tt
	}
	g.ops = make([]op, r.take(sub.OperatorsLength(), 4))
	for i := range g.ops {
		if !sub.Operators(&operator, i) {
			break
		}
		g.ops[i] = op{
			code:    operator.OpcodeIndex(),
			inputs:  readInt32s(r, operator.InputsLength(), operator.Inputs),
			outputs: readInt32s(r, operator.OutputsLength(), operator.Outputs),
		}
	}
	return g, nil
}

func readInt32s(r *reader, n int, at func(int) int32) []int32 {
	s := make([]int32, r.take(n, 4))
	for i := range s {
		s[i] = at(i)
	}
	return s
}

// tensor returns the tensor at index i, or nil when i is out of range
// (optional operator inputs are -1).
func (g *graph) tensor(i int32) *tensor {
	if i < 0 || int(i) >= len(g.tensors) {
		return nil
	}
	return &g.tensors[i]
}

// opName is the operator's upstream name ("CONV_2D"), or the custom code.
func (g *graph) opName(o op) string {
	if int(o.code) >= len(g.codes) {
		return fmt.Sprintf("opcode#%d", o.code)
	}
	c := g.codes[o.code]
	if c.builtin == tflfb.BuiltinOperatorCUSTOM && c.custom != "" {
		return "CUSTOM:" + c.custom
	}
	if s, ok := tflfb.EnumNamesBuiltinOperator[c.builtin]; ok {
		return s
	}
	return fmt.Sprintf("BUILTIN#%d", c.builtin)
}

// checkStructure verifies every index the graph stores is in range, so the
// rest of the package (and the error messages users see) can rely on them.
// TFLite's own verifier runs later; this one only has to give clear errors.
func (g *graph) checkStructure() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidModel}, args...)...)
	}
	if g.version != schemaVersion {
		return bad("schema version %d, want %d", g.version, schemaVersion)
	}
	if g.subgraphs != 1 {
		return bad("%d subgraphs, want exactly 1", g.subgraphs)
	}
	if len(g.buffers) == 0 {
		return bad("no buffers (buffer 0 must be the empty sentinel)")
	}
	for i, t := range g.tensors {
		if int(t.buffer) >= len(g.buffers) {
			return bad("tensor %d (%s) refers to buffer %d of %d", i, t.name, t.buffer, len(g.buffers))
		}
		data := g.buffers[t.buffer]
		if len(data) == 0 {
			continue
		}
		n, ok := elements(t.shape)
		size, known := typeSize(t.typ)
		if known && (!ok || n > math.MaxInt64/size || int64(len(data)) != n*size) {
			return bad("tensor %d (%s) has %d bytes of data, shape %v of %s needs %d", i, t.name, len(data), t.shape, t.typ, n*size)
		}
	}
	for _, list := range []struct {
		what string
		idx  []int32
	}{{"input", g.inputs}, {"output", g.outputs}} {
		for _, i := range list.idx {
			if g.tensor(i) == nil {
				return bad("graph %s refers to tensor %d of %d", list.what, i, len(g.tensors))
			}
		}
	}
	for n, o := range g.ops {
		if int(o.code) >= len(g.codes) {
			return bad("operator %d has opcode index %d of %d", n, o.code, len(g.codes))
		}
		for _, i := range o.inputs {
			if i != -1 && g.tensor(i) == nil {
				return bad("operator %d (%s) input refers to tensor %d of %d", n, g.opName(o), i, len(g.tensors))
			}
		}
		for _, i := range o.outputs {
			if g.tensor(i) == nil {
				return bad("operator %d (%s) output refers to tensor %d of %d", n, g.opName(o), i, len(g.tensors))
			}
		}
	}
	for _, m := range g.metadata {
		if int(m.buffer) >= len(g.buffers) {
			return bad("metadata %q refers to buffer %d of %d", m.name, m.buffer, len(g.buffers))
		}
	}
	return nil
}

// metadataBuffer returns the buffer of the metadata entry called name.
func (g *graph) metadataBuffer(name string) ([]byte, bool) {
	for _, m := range g.metadata {
		if m.name == name && int(m.buffer) < len(g.buffers) {
			return g.buffers[m.buffer], true
		}
	}
	return nil, false
}

// elements is the number of elements of a shape; ok is false for unknown
// (negative) dimensions or a count that does not fit an int64.
func elements(shape []int32) (n int64, ok bool) {
	n = 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > math.MaxInt64/int64(d) {
			return 0, false
		}
		n *= int64(d)
	}
	return n, true
}

// macs is the number of multiply-adds of operator o in one inference,
// counted for the operators that dominate a CNN's cost; ok is false when the
// shapes needed are missing or malformed.
func (g *graph) macs(o op) (n int64, ok bool) {
	if int(o.code) >= len(g.codes) {
		return 0, false
	}
	// perOutput is the multiply-adds per output element given the filter
	// (weights) shape.
	var perOutput func(f []int32) (int64, bool)
	switch g.codes[o.code].builtin {
	case tflfb.BuiltinOperatorCONV_2D:
		// filter [cout, kh, kw, cin]: kh*kw*cin per output element, so
		// outH*outW*cout*kh*kw*cin in all.
		perOutput = func(f []int32) (int64, bool) {
			n, ok := elements(f)
			if len(f) != 4 || f[0] <= 0 || !ok {
				return 0, false
			}
			return n / int64(f[0]), true
		}
	case tflfb.BuiltinOperatorDEPTHWISE_CONV_2D:
		// filter [1, kh, kw, cout]: kh*kw per output element.
		perOutput = func(f []int32) (int64, bool) {
			n, ok := elements(f)
			if len(f) != 4 || f[3] <= 0 || !ok {
				return 0, false
			}
			return n / int64(f[3]), true
		}
	case tflfb.BuiltinOperatorFULLY_CONNECTED:
		// weights [out, in]: in per output element.
		perOutput = func(f []int32) (int64, bool) {
			if len(f) != 2 || f[1] < 0 {
				return 0, false
			}
			return int64(f[1]), true
		}
	default:
		return 0, true
	}
	if len(o.inputs) < 2 || len(o.outputs) < 1 {
		return 0, false
	}
	filter, out := g.tensor(o.inputs[1]), g.tensor(o.outputs[0])
	if filter == nil || out == nil {
		return 0, false
	}
	outN, ok := elements(out.shape)
	if !ok {
		return 0, false
	}
	per, ok := perOutput(filter.shape)
	if !ok || (per != 0 && outN > math.MaxInt64/per) {
		return 0, false
	}
	return outN * per, true
}

// totalMACs sums macs over all operators; ok is false if any of the counted
// operators had unusable shapes.
func (g *graph) totalMACs() (total int64, ok bool) {
	ok = true
	for _, o := range g.ops {
		n, good := g.macs(o)
		if !good || total > math.MaxInt64-n {
			ok = false
			continue
		}
		total += n
	}
	return total, ok
}
