package tflite

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Info describes a model file, read from the flatbuffer alone (no TFLite
// runtime): what `edge models info` prints.
type Info struct {
	Path        string `json:"path"`
	Size        int64  `json:"size"` // file size in bytes
	Version     uint32 `json:"version"`
	Description string `json:"description,omitempty"`
	// Subgraphs counts the file's subgraphs; the rest of Info describes
	// the first (main) one.
	Subgraphs int          `json:"subgraphs"`
	Inputs    []TensorInfo `json:"inputs"`
	Outputs   []TensorInfo `json:"outputs"`
	Tensors   []TensorInfo `json:"tensors"`
	// Ops lists the operators in execution order; OpCounts counts them per
	// type, in order of first use.
	Ops      []OpInfo  `json:"ops"`
	OpCounts []OpCount `json:"op_counts"`
	// Params counts the elements of constant tensors (weights, biases);
	// ParamBytes is the size of their data.
	Params     int64 `json:"params"`
	ParamBytes int64 `json:"param_bytes"`
	// MACs is the multiply-adds per inference of the CONV_2D,
	// DEPTHWISE_CONV_2D and FULLY_CONNECTED operators, computed from their
	// shapes; MACsComplete is false when some shapes were unusable.
	MACs         int64 `json:"macs"`
	MACsComplete bool  `json:"macs_complete"`
	// Meta is the "edge" metadata, nil when absent or not JSON.
	Meta *Meta `json:"meta,omitempty"`
	// Digest is what checking the metadata's sha256 against the file found:
	// "ok", "none" (exported before digests) or why it does not match.
	Digest string `json:"digest,omitempty"`
	// Problem says why Load would reject the file; empty when the file
	// passes Load's checks (the runtime may still refuse it).
	Problem string `json:"problem,omitempty"`
}

// MACsPerFace is what classifying one face costs: MACs, twice when the
// metadata asks for flip averaging.
func (info Info) MACsPerFace() int64 {
	if info.Meta != nil && info.Meta.FlipAverage {
		return 2 * info.MACs
	}
	return info.MACs
}

// TensorInfo describes one tensor.
type TensorInfo struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	Type  string `json:"type"`           // file format name: "INT8", "INT32", ...
	Const bool   `json:"const"`          // has data in the file
	Quant Quant  `json:"quant,omitzero"` // zero when not quantized
}

// Quant summarises a tensor's affine quantization.
type Quant struct {
	// Scales is how many scales the tensor has: 1 per tensor, more per
	// channel along Axis.
	Scales   int     `json:"scales"`
	Axis     int     `json:"axis,omitempty"`
	ScaleMin float64 `json:"scale_min"`
	ScaleMax float64 `json:"scale_max"`
	ZeroMin  int64   `json:"zero_min"`
	ZeroMax  int64   `json:"zero_max"`
}

// PerChannel reports whether the tensor has one scale per channel.
func (q Quant) PerChannel() bool { return q.Scales > 1 }

// String renders q in one line, e.g. "per-tensor scale 0.00392157 zp -128".
func (q Quant) String() string {
	switch {
	case q.Scales == 0:
		return "not quantized"
	case q.Scales == 1:
		return fmt.Sprintf("per-tensor scale %.6g zp %d", q.ScaleMin, q.ZeroMin)
	}
	zp := strconv.FormatInt(q.ZeroMin, 10)
	if q.ZeroMax != q.ZeroMin {
		zp += ".." + strconv.FormatInt(q.ZeroMax, 10)
	}
	return fmt.Sprintf("per-channel axis %d x%d scale %.3g..%.3g zp %s", q.Axis, q.Scales, q.ScaleMin, q.ScaleMax, zp)
}

// OpInfo describes one operator.
type OpInfo struct {
	Op       string `json:"op"` // upstream name, "CONV_2D"; "CUSTOM:name" for custom ops
	Version  int    `json:"version"`
	Inputs   []int  `json:"inputs"` // tensor indices, -1 for an omitted optional input
	Outputs  []int  `json:"outputs"`
	OutShape []int  `json:"out_shape"` // shape of the first output
	MACs     int64  `json:"macs"`
}

// OpCount counts the operators of one type.
type OpCount struct {
	Op    string `json:"op"`
	Count int    `json:"count"`
}

// Inspect reads the model file at path and describes it. It fails only when
// the file is not a readable TFLite flatbuffer; a file Load would reject for
// other reasons is described with Info.Problem set.
func Inspect(path string) (Info, error) {
	buf, err := readFile(path)
	if err == nil {
		var g *graph
		if g, err = readGraph(buf); err == nil {
			return describe(path, buf, g), nil
		}
	}
	return Info{}, fmt.Errorf("tflite: inspect %s: %w", path, err)
}

func describe(path string, buf []byte, g *graph) Info {
	info := Info{
		Path:        path,
		Size:        int64(g.size),
		Version:     g.version,
		Description: g.description,
		Subgraphs:   g.subgraphs,
		Tensors:     make([]TensorInfo, len(g.tensors)),
		Ops:         make([]OpInfo, len(g.ops)),
	}
	for i := range g.tensors {
		info.Tensors[i] = g.tensorInfo(i)
		t := &g.tensors[i]
		if int(t.buffer) < len(g.buffers) && len(g.buffers[t.buffer]) > 0 {
			if n, ok := elements(t.shape); ok {
				info.Params += n
			}
			info.ParamBytes += int64(len(g.buffers[t.buffer]))
		}
	}
	for _, idx := range g.inputs {
		info.Inputs = append(info.Inputs, g.tensorInfoAt(idx))
	}
	for _, idx := range g.outputs {
		info.Outputs = append(info.Outputs, g.tensorInfoAt(idx))
	}
	counts := map[string]int{}
	for i, o := range g.ops {
		oi := OpInfo{Op: g.opName(o), Inputs: ints(o.inputs), Outputs: ints(o.outputs)}
		if int(o.code) < len(g.codes) {
			oi.Version = int(g.codes[o.code].version)
		}
		if len(o.outputs) > 0 {
			if t := g.tensor(o.outputs[0]); t != nil {
				oi.OutShape = ints(t.shape)
			}
		}
		oi.MACs, _ = g.macs(o)
		info.Ops[i] = oi
		if counts[oi.Op] == 0 {
			info.OpCounts = append(info.OpCounts, OpCount{Op: oi.Op})
		}
		counts[oi.Op]++
	}
	for i := range info.OpCounts {
		info.OpCounts[i].Count = counts[info.OpCounts[i].Op]
	}
	info.MACs, info.MACsComplete = g.totalMACs()

	if data, ok := g.metadataBuffer(MetadataName); ok {
		m := Meta{DatasetCrop: 1}
		if json.Unmarshal(data, &m) == nil {
			info.Meta = &m
			info.Digest = digestStatus(buf, m)
		}
	}
	if _, err := checkModel(g); err != nil {
		info.Problem = err.Error()
	} else if info.Digest != "ok" && info.Digest != "none" {
		info.Problem = info.Digest // Load refuses it too
	}
	return info
}

func (g *graph) tensorInfoAt(idx int32) TensorInfo {
	if g.tensor(idx) == nil {
		return TensorInfo{Index: int(idx), Name: "(missing)"}
	}
	return g.tensorInfo(int(idx))
}

func (g *graph) tensorInfo(i int) TensorInfo {
	t := &g.tensors[i]
	ti := TensorInfo{
		Index: i,
		Name:  t.name,
		Shape: ints(t.shape),
		Type:  t.typ.String(),
		Const: int(t.buffer) < len(g.buffers) && len(g.buffers[t.buffer]) > 0,
	}
	if q := t.quant; len(q.scale) > 0 {
		ti.Quant = Quant{Scales: len(q.scale), Axis: int(q.axis)}
		ti.Quant.ScaleMin, ti.Quant.ScaleMax = float64(slices.Min(q.scale)), float64(slices.Max(q.scale))
		if len(q.zero) > 0 {
			ti.Quant.ZeroMin, ti.Quant.ZeroMax = slices.Min(q.zero), slices.Max(q.zero)
		}
		if ti.Quant.Scales == 1 {
			ti.Quant.Axis = 0
		}
	}
	return ti
}

func ints(s []int32) []int {
	out := make([]int, len(s))
	for i, v := range s {
		out[i] = int(v)
	}
	return out
}

// WriteText writes a human-readable report of the model to w.
func (info Info) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	p := ew.printf
	sub := "subgraph"
	if info.Subgraphs != 1 {
		sub += "s"
	}
	p("%s: %s bytes, TFLite schema %d, %d %s\n", info.Path, group(info.Size), info.Version, info.Subgraphs, sub)
	if info.Description != "" {
		p("description: %s\n", info.Description)
	}
	if m := info.Meta; m != nil {
		p("task: %s (metadata schema %d)\n", m.Task, m.Schema)
		p("labels (%d): %s\n", len(m.Labels), strings.Join(m.Labels, ", "))
		p("input: %dx%d %s, %d channel(s)\n", m.Input.Width, m.Input.Height, m.Input.Color, m.Input.Channels)
		p("framing: scale %g, offset x %g, y %g, level %t; flip average %t; dataset crop %g\n",
			m.Framing.Scale, m.Framing.OffsetX, m.Framing.OffsetY, m.Framing.Level, m.FlipAverage, m.DatasetCrop)
		if len(m.Training) > 0 {
			var kv []string
			for _, k := range slices.Sorted(maps.Keys(m.Training)) {
				kv = append(kv, fmt.Sprintf("%s=%v", k, m.Training[k]))
			}
			p("training: %s\n", strings.Join(kv, ", "))
		}
		switch info.Digest {
		case "ok":
			p("sha256: %s (matches the file)\n", m.SHA256)
		case "none":
			p("sha256: none (exported before model digests: not verified; models/stamp.py adds one)\n")
		default:
			p("sha256: %s DOES NOT MATCH: %s\n", m.SHA256, info.Digest)
		}
	} else {
		p("no %q metadata\n", MetadataName)
	}
	for _, t := range info.Inputs {
		p("input tensor:  %s\n", t.summary())
	}
	for _, t := range info.Outputs {
		p("output tensor: %s\n", t.summary())
	}
	var ops []string
	for _, c := range info.OpCounts {
		ops = append(ops, fmt.Sprintf("%s x%d", c.Op, c.Count))
	}
	p("operators (%d): %s\n", len(info.Ops), strings.Join(ops, ", "))
	p("parameters: %s (%s bytes)\n", group(info.Params), group(info.ParamBytes))
	macs := group(info.MACs)
	if !info.MACsComplete {
		macs += " (incomplete: some shapes unusable)"
	}
	if info.Meta != nil && info.Meta.MACs != 0 {
		macs += " (metadata says " + group(info.Meta.MACs) + ")"
	}
	p("multiply-adds per inference: %s\n", macs)
	if f := info.MACsPerFace(); f != info.MACs {
		p("multiply-adds per face: %s (crop and mirror image)\n", group(f))
	}
	if info.Problem != "" {
		p("PROBLEM: %s\n", info.Problem)
	} else {
		p("checks: ok\n")
	}

	p("\noperators:\n")
	tw := tabwriter.NewWriter(ew, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "  #\top\tinputs\toutputs\toutput shape\tmultiply-adds\n")
	for i, o := range info.Ops {
		m := ""
		if o.MACs > 0 {
			m = group(o.MACs)
		}
		fmt.Fprintf(tw, "  %d\t%s v%d\t%v\t%v\t%v\t%s\n", i, o.Op, o.Version, o.Inputs, o.Outputs, o.OutShape, m)
	}
	tw.Flush()

	p("\ntensors:\n")
	tw = tabwriter.NewWriter(ew, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "  #\tname\tshape\ttype\tconst\tquantization\n")
	for _, t := range info.Tensors {
		c := ""
		if t.Const {
			c = "const"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%v\t%s\t%s\t%s\n", t.Index, t.Name, t.Shape, t.Type, c, t.Quant)
	}
	tw.Flush()
	return ew.err
}

func (t TensorInfo) summary() string {
	return fmt.Sprintf("#%d %q %v %s, %s", t.Index, t.Name, t.Shape, t.Type, t.Quant)
}

// group formats n with thousands separators: 33,123,456.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// errWriter keeps the first write error so WriteText can print without
// checking every call.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) {
	fmt.Fprintf(e, format, args...)
}
