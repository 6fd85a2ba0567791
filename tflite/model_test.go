package tflite

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const (
	tinyPath      = "testdata/tiny.tflite"
	tinyYCbCrPath = "testdata/tiny_ycbcr.tflite"
)

// tinyModels are the exporter's fixtures, a grey one and a "ycbcr" one,
// with their expected outputs.
var tinyModels = []struct {
	path, expected string
	color          string
	channels       int
}{
	{tinyPath, "testdata/tiny_expected.json", ColorGray, 1},
	{tinyYCbCrPath, "testdata/tiny_ycbcr_expected.json", ColorYCbCr, 3},
}

// tinyExpected is a fixture's testdata/*_expected.json, written by
// `models/export.py --tiny` with outputs from the same TFLite library.
type tinyExpected struct {
	Width, Height int
	Labels        []string
	Task          string
	Metadata      json.RawMessage
	Cases         []struct {
		Name        string
		Pixels      []byte
		Int8        []int8
		Int8XNNPACK []int8 `json:"int8_xnnpack"`
	}
}

func readTinyExpected(t *testing.T, path string) tinyExpected {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var e tinyExpected
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func mustLoad(t testing.TB, path string, opts ...Option) *Model {
	t.Helper()
	m, err := Load(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestClassifyTiny(t *testing.T) {
	for _, tm := range tinyModels {
		t.Run(tm.color, func(t *testing.T) { testClassifyTiny(t, tm.path, tm.expected, tm.color, tm.channels) })
	}
}

func testClassifyTiny(t *testing.T, path, expected, color string, channels int) {
	exp := readTinyExpected(t, expected)
	var wantMeta Meta
	if err := json.Unmarshal(exp.Metadata, &wantMeta); err != nil {
		t.Fatal(err)
	}
	if in := wantMeta.Input; in.Color != color || in.Channels != channels {
		t.Fatalf("%s describes input %q with %d channels, want %q with %d", expected, in.Color, in.Channels, color, channels)
	}
	for _, tc := range []struct {
		xnnpack bool
		threads int
	}{{false, 1}, {false, 2}, {true, 1}, {true, 2}} {
		t.Run(fmt.Sprintf("xnnpack=%t/threads=%d", tc.xnnpack, tc.threads), func(t *testing.T) {
			m := mustLoad(t, path, WithXNNPACK(tc.xnnpack), WithThreads(tc.threads), WithExpect(exp.Task, len(exp.Labels)))
			if got := m.Meta(); !reflect.DeepEqual(got, wantMeta) {
				t.Errorf("Meta() = %+v\nwant %+v", got, wantMeta)
			}
			taken, total := m.DelegatedNodes()
			if tc.xnnpack && (taken == 0 || taken > total) {
				t.Errorf("XNNPACK took %d of %d nodes, want some", taken, total)
			}
			if !tc.xnnpack && (taken != 0 || total != 0) {
				t.Errorf("DelegatedNodes() = %d, %d without XNNPACK, want 0, 0", taken, total)
			}
			probs := make([]float32, len(exp.Labels))
			for _, c := range exp.Cases {
				if n := exp.Width * exp.Height * channels; len(c.Pixels) != n {
					t.Fatalf("%s: %d pixel bytes, want %d", c.Name, len(c.Pixels), n)
				}
				if err := m.Classify(c.Pixels, probs); err != nil {
					t.Fatal(err)
				}
				want := c.Int8
				if tc.xnnpack {
					want = c.Int8XNNPACK
				}
				sum := float32(0)
				for i, p := range probs {
					// Output quantization is 1/256, zero point -128: exact.
					if w := float32(int(want[i])+128) / 256; p != w {
						t.Errorf("%s: probs[%d] = %v, want %v (int8 %d)", c.Name, i, p, w, want[i])
					}
					sum += p
				}
				if math.Abs(float64(sum)-1) > float64(len(probs))/256 {
					t.Errorf("%s: probabilities sum to %v", c.Name, sum)
				}
			}
		})
	}
}

// TestClassifyReference checks the runtime against a float computation of
// Go-built models, for inputs the exporter's fixture does not cover and for
// an input quantization off the fast path.
func TestClassifyReference(t *testing.T) {
	for _, f := range []fixture{
		{seed: 1},
		{seed: 2, h: 9, w: 7, k: 7},
		{seed: 3, inScale: 1 / 127.5, inZero: -128}, // LUT path: q = round(p/2)-128
		{seed: 4, inScale: 1.0 / 255, inZero: -100}, // LUT path with saturation
		{seed: 5, c: 3}, // "ycbcr": interleaved Y Cb Cr bytes
		{seed: 6, c: 3, inScale: 1 / 127.5, inZero: -128},
	} {
		path, net := fixtureFile(t, f)
		f = f.withDefaults()
		rng := rand.New(rand.NewPCG(f.seed, 99))
		for _, xnnpack := range []bool{false, true} {
			t.Run(fmt.Sprintf("seed=%d/c=%d/xnnpack=%t", f.seed, f.c, xnnpack), func(t *testing.T) {
				m := mustLoad(t, path, WithXNNPACK(xnnpack))
				wantFast := f.inScale == 1.0/255 && f.inZero == -128
				if m.fastIn != wantFast {
					t.Errorf("fast input path = %t, want %t", m.fastIn, wantFast)
				}
				if got := m.Meta().Input.Channels; got != f.c {
					t.Fatalf("Meta().Input.Channels = %d, want %d", got, f.c)
				}
				pixels := make([]byte, f.h*f.w*f.c)
				probs := make([]float32, f.k)
				for range 20 {
					for i := range pixels {
						pixels[i] = byte(rng.IntN(256))
					}
					if err := m.Classify(pixels, probs); err != nil {
						t.Fatal(err)
					}
					ref := net.reference(pixels)
					sum := float32(0)
					for i := range probs {
						// A few int8 quanta of the logits and the output;
						// three input channels triple the fixture's
						// worst-case ranges, so its quanta are coarser.
						if d := math.Abs(float64(probs[i]) - ref[i]); d > max(0.03, float64(net.logits.scale)/3) {
							t.Fatalf("probs %v, float reference %v", probs, ref)
						}
						sum += probs[i]
					}
					if math.Abs(float64(sum)-1) > float64(f.k)/256 {
						t.Errorf("probabilities %v sum to %v", probs, sum)
					}
				}
			})
		}
	}
}

func TestQuantize(t *testing.T) {
	pixels := make([]byte, 256+13) // every value, and a tail after the 8-byte words
	for i := range pixels {
		pixels[i] = byte(i)
	}
	for _, q := range []affine{{1.0 / 255, -128}, {1 / 127.5, -128}, {1.0 / 255, 0}, {0.5, 3}} {
		m := &Model{in: make([]byte, len(pixels))}
		m.setInput(q)
		m.quantize(pixels)
		for i, p := range pixels {
			want := math.Round(float64(p)/255/float64(q.scale)) + float64(q.zero)
			want = max(-128, min(127, want))
			if got := int8(m.in[i]); float64(got) != want {
				t.Fatalf("scale %g zp %d: pixel %d -> %d, want %v", q.scale, q.zero, p, got, want)
			}
		}
	}
}

func TestMeta(t *testing.T) {
	exp := readTinyExpected(t, tinyModels[0].expected)
	m := mustLoad(t, tinyPath)
	var want Meta
	if err := json.Unmarshal(exp.Metadata, &want); err != nil {
		t.Fatal(err)
	}
	got := m.Meta()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Meta() = %+v\nwant %+v", got, want)
	}
	if got.Input.Width != exp.Width || got.Input.Height != exp.Height || !reflect.DeepEqual(got.Labels, exp.Labels) {
		t.Errorf("Meta() = %+v, want %dx%d %v", got, exp.Width, exp.Height, exp.Labels)
	}

	// Round trip: what Meta marshals to parses back to the same value.
	data, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	back, err := parseMeta(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, got) {
		t.Errorf("round trip through %s = %+v, want %+v", data, back, got)
	}

	// Meta returns a copy.
	got.Labels[0] = "changed"
	got.Training["data"] = "changed"
	if again := m.Meta(); again.Labels[0] == "changed" || again.Training["data"] == "changed" {
		t.Error("changing Meta()'s result changed the model's metadata")
	}

	// The fixture sets every field to a non-default value.
	fm := mustLoad(t, mustFixture(t, fixture{seed: 1})).Meta()
	wantF := Meta{
		Schema: 1, Task: "tiny", Labels: []string{"a", "b", "c"},
		Input:       InputSpec{Width: 5, Height: 6, Channels: 1, Color: "gray"},
		Framing:     Framing{Scale: 1.25, OffsetX: 0, OffsetY: 0.05},
		FlipAverage: true, MACs: 720, DatasetCrop: 0.8,
		Training: map[string]any{"data": "none", "val_accuracy_float": 0.5},
	}
	if !reflect.DeepEqual(fm, wantF) {
		t.Errorf("fixture Meta() = %+v\nwant %+v", fm, wantF)
	}
}

// TestParseMetaColor: an input is grey with one channel or Y Cb Cr with
// three; any other pairing would be fed the wrong bytes, so it is refused.
func TestParseMetaColor(t *testing.T) {
	for _, tc := range []struct {
		color    string
		channels int
		ok       bool
	}{
		{"gray", 1, true},
		{"ycbcr", 3, true},
		{"ycbcr", 1, false},
		{"gray", 3, false},
		{"rgb", 3, false},
		{"YCbCr", 3, false},
		{"", 1, false},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.color, tc.channels), func(t *testing.T) {
			in, _ := json.Marshal(map[string]any{"width": 2, "height": 3, "channels": tc.channels, "color": tc.color})
			m, err := parseMeta([]byte(`{"schema":1,"task":"age","labels":["x","y"],"input":` + string(in) + `,"framing":{"scale":1}}`))
			if tc.ok {
				if err != nil || m.Input.Color != tc.color || m.Input.Channels != tc.channels {
					t.Fatalf("parseMeta() = %+v, %v; want input %q with %d channels", m.Input, err, tc.color, tc.channels)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidModel) {
				t.Fatalf("parseMeta() error = %v, want ErrInvalidModel", err)
			}
			want := fmt.Sprintf(`input color %q with %d channels not supported (want "gray" with 1 channel or "ycbcr" with 3)`, tc.color, tc.channels)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		})
	}
}

func TestParseMetaDefaults(t *testing.T) {
	m, err := parseMeta([]byte(`{"schema":1,"task":"age","labels":["x","y"],"input":{"width":2,"height":3,"channels":1,"color":"gray"},"framing":{"scale":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.DatasetCrop != 1 || m.FlipAverage || m.MACs != 0 || m.Training != nil {
		t.Errorf("defaults: %+v", m)
	}
}

func mustFixture(t *testing.T, f fixture) string {
	t.Helper()
	p, _ := fixtureFile(t, f)
	return p
}

// metaWith returns the fixture's default metadata with one key changed
// (or removed when v is nil).
func metaWith(key string, v any) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(fixture{}.withDefaults().meta), &m); err != nil {
		panic(err)
	}
	if v == nil {
		delete(m, key)
	} else {
		m[key] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rand.N(256))
	}
	valid := mustFixture(t, fixture{seed: 1})

	for _, tc := range []struct {
		name string
		path string
		opts []Option
		is   error  // errors.Is target
		msg  string // substring of the message
	}{
		{"missing", filepath.Join(dir, "nope.tflite"), nil, fs.ErrNotExist, "no such file"},
		{"directory", dir, nil, nil, ""},
		{"empty", file("empty", nil), nil, ErrInvalidModel, "too short"},
		{"tiny", file("tiny", []byte("TFL3TFL3TFL3")), nil, ErrInvalidModel, "too short"},
		{"random", file("random", random), nil, ErrInvalidModel, "file identifier"},
		{"random with identifier", file("random-id", append(append([]byte{}, random[:4]...), append([]byte("TFL3"), random[8:]...)...)), nil, ErrInvalidModel, ""},
		{"text", file("text", []byte(strings.Repeat("not a model\n", 10))), nil, ErrInvalidModel, "file identifier"},
		{"wrong identifier", mustFixture(t, fixture{identifier: "TFL2"}), nil, ErrInvalidModel, `"TFL2"`},
		{"schema version", mustFixture(t, fixture{version: 2}), nil, ErrInvalidModel, "schema version 2"},
		{"no subgraph", mustFixture(t, fixture{subgraphs: -1}), nil, ErrInvalidModel, "0 subgraphs"},
		{"two subgraphs", mustFixture(t, fixture{subgraphs: 2}), nil, ErrInvalidModel, "2 subgraphs"},
		{"no metadata", mustFixture(t, fixture{noMeta: true}), nil, ErrInvalidModel, `no "edge" metadata`},
		{"metadata not JSON", mustFixture(t, fixture{meta: "{labels: a b c"}), nil, ErrInvalidModel, "metadata"},
		{"metadata wrong types", mustFixture(t, fixture{meta: metaWith("labels", "a,b,c")}), nil, ErrInvalidModel, "metadata"},
		{"metadata schema", mustFixture(t, fixture{meta: metaWith("schema", 2)}), nil, ErrInvalidModel, "schema 2 not supported"},
		{"metadata no task", mustFixture(t, fixture{meta: metaWith("task", nil)}), nil, ErrInvalidModel, "task is empty"},
		{"metadata label count", mustFixture(t, fixture{meta: metaWith("labels", []string{"a", "b"})}), nil, ErrInvalidModel, "2 labels, output tensor has 3 classes"},
		{"metadata duplicate label", mustFixture(t, fixture{meta: metaWith("labels", []string{"a", "b", "a"})}), nil, ErrInvalidModel, `"a" appears twice`},
		{"metadata input size", mustFixture(t, fixture{meta: metaWith("input", map[string]any{"width": 6, "height": 5, "channels": 1, "color": "gray"})}), nil, ErrInvalidModel, "does not match input tensor"},
		{"metadata color", mustFixture(t, fixture{meta: metaWith("input", map[string]any{"width": 5, "height": 6, "channels": 1, "color": "rgb"})}), nil, ErrInvalidModel, "color"},
		{"metadata ycbcr on a grey tensor", mustFixture(t, fixture{meta: metaWith("input", map[string]any{"width": 5, "height": 6, "channels": 3, "color": "ycbcr"})}), nil, ErrInvalidModel, "5x6x3 (WxHxC) does not match input tensor 5x6x1"},
		{"metadata gray on a colour tensor", mustFixture(t, fixture{c: 3, meta: metaWith("input", map[string]any{"width": 5, "height": 6, "channels": 1, "color": "gray"})}), nil, ErrInvalidModel, "5x6x1 (WxHxC) does not match input tensor 5x6x3"},
		{"metadata framing", mustFixture(t, fixture{meta: metaWith("framing", map[string]any{"scale": 0})}), nil, ErrInvalidModel, "framing"},
		{"metadata dataset_crop", mustFixture(t, fixture{meta: metaWith("dataset_crop", -1)}), nil, ErrInvalidModel, "dataset_crop"},
		{"input float", mustFixture(t, fixture{inType: "FLOAT32"}), nil, ErrInvalidModel, "FLOAT32, want INT8"},
		{"input uint8", mustFixture(t, fixture{inType: "UINT8"}), nil, ErrInvalidModel, "UINT8, want INT8"},
		{"input not quantized", mustFixture(t, fixture{inNoQuant: true}), nil, ErrInvalidModel, "per-tensor quantization"},
		{"input bad scale", mustFixture(t, fixture{inScale: -1}), nil, ErrInvalidModel, "quantization scale"},
		{"input 3-D", mustFixture(t, fixture{inShape: []int32{1, 6, 5}}), nil, ErrInvalidModel, "want [1 H W C]"},
		{"input batch 2", mustFixture(t, fixture{inShape: []int32{2, 6, 5, 1}}), nil, ErrInvalidModel, "want [1 H W C]"},
		{"output 3-D", mustFixture(t, fixture{outShape: []int32{1, 3, 1}}), nil, ErrInvalidModel, "want [1 K]"},
		{"output per-channel", mustFixture(t, fixture{outPerChan: true}), nil, ErrInvalidModel, "per-tensor quantization"},
		// Past Load's own checks: the runtime refuses this one.
		{"op version", mustFixture(t, fixture{convVer: 99}), nil, ErrInvalidModel, "TFLite cannot create an interpreter for it with XNNPACK"},
		{"op version without XNNPACK", mustFixture(t, fixture{convVer: 99}), []Option{WithXNNPACK(false)}, ErrInvalidModel, "interpreter for it (reason"},
		{"weights size", mustFixture(t, fixture{convWShape: []int32{2, 3, 3, 2}}), nil, ErrInvalidModel, "has 18 bytes of data, shape [2 3 3 2] of INT8 needs 36"},
		{"threads", valid, []Option{WithThreads(0)}, nil, "threads 0"},
		{"expect task", valid, []Option{WithExpect("emotion", 3)}, ErrWrongModel, `task "tiny" with 3 classes, want task "emotion" with 3 classes`},
		{"expect classes", valid, []Option{WithExpect("tiny", 7)}, ErrWrongModel, `want task "tiny" with 7 classes`},
		{"expect classes only", valid, []Option{WithExpect("", 2)}, ErrWrongModel, "with 3 classes, want 2 classes"},
		{"expect task only", valid, []Option{WithExpect("age", 0)}, ErrWrongModel, `want task "age"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(tc.path, tc.opts...)
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded")
			}
			t.Log(err)
			if prefix := "tflite: load " + tc.path + ": "; !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}

	for _, opts := range [][]Option{{WithExpect("tiny", 3)}, {WithExpect("tiny", 0)}, {WithExpect("", 3)}} {
		m, err := Load(valid, opts...)
		if err != nil {
			t.Errorf("matching WithExpect: %v", err)
			continue
		}
		m.Close()
	}
}

// TestTruncated requires every proper prefix of valid model files to fail
// to load, never to crash: all prefixes in memory, some through a file.
func TestTruncated(t *testing.T) {
	tiny, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	built, _ := fixture{seed: 1}.build()
	for name, data := range map[string][]byte{"tiny": tiny, "fixture": built} {
		t.Run(name, func(t *testing.T) {
			for n := range len(data) {
				// Copy: TFLite must not see bytes past the prefix.
				if m, err := fromBytes(bytes.Clone(data[:n]), config{threads: 1, xnnpack: true}); err == nil {
					m.Close()
					t.Fatalf("the first %d of %d bytes loaded", n, len(data))
				}
			}
			path := filepath.Join(t.TempDir(), "prefix.tflite")
			for n := 0; n < len(data); n += 97 {
				if err := os.WriteFile(path, data[:n], 0o644); err != nil {
					t.Fatal(err)
				}
				m, err := Load(path)
				if err == nil {
					m.Close()
					t.Fatalf("Load of the first %d of %d bytes succeeded", n, len(data))
				}
				if !errors.Is(err, ErrInvalidModel) {
					t.Errorf("Load of the first %d bytes: %v, want ErrInvalidModel", n, err)
				}
				if info, err := Inspect(path); err == nil && info.Problem == "" {
					t.Errorf("Inspect of the first %d of %d bytes found no problem", n, len(data))
				}
			}
		})
	}
}

// TestCorrupt flips bytes of a valid file: the Go side (readGraph, Inspect,
// Load's checks) must never panic. The runtime is not exercised, since a
// model that passes TFLite's own verifier with altered weights or shapes is
// TFLite's concern.
func TestCorrupt(t *testing.T) {
	data, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, len(data))
	for range 3000 {
		copy(buf, data)
		for range 1 + rng.IntN(4) {
			buf[rng.IntN(len(buf))] = byte(rng.IntN(256))
		}
		if g, err := readGraph(buf); err == nil {
			describe("corrupt", buf, g)
		}
	}
}

// FuzzInspect runs the flatbuffer reader on arbitrary bytes; `go test`
// runs the seeds, `go test -fuzz FuzzInspect` explores.
func FuzzInspect(f *testing.F) {
	tiny, err := os.ReadFile(tinyPath)
	if err != nil {
		f.Fatal(err)
	}
	built, _ := fixture{seed: 1}.build()
	f.Add(tiny)
	f.Add(built)
	f.Add(tiny[:len(tiny)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		if g, err := readGraph(data); err == nil {
			describe("fuzz", data, g)
		}
	})
}

// TestSharedVectors: a flatbuffer may point many tables at one vector; the
// reader's budget must stop a small file from costing unbounded work.
func TestReaderBudget(t *testing.T) {
	r := &reader{size: 100, budget: 120}
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if v := recover(); v != errTooComplex {
				t.Errorf("%s: recovered %v, want errTooComplex", name, v)
			}
		}()
		f()
	}
	r.take(25, 4)
	mustPanic("vector larger than file", func() { r.take(26, 4) })
	mustPanic("negative", func() { r.take(-1, 1) })
	r.take(95, 1)
	mustPanic("budget spent", func() { r.take(1, 1) })
}

func TestClassifyErrors(t *testing.T) {
	m, err := Load(mustFixture(t, fixture{seed: 1}))
	if err != nil {
		t.Fatal(err)
	}
	probs := make([]float32, 3)
	for _, tc := range []struct {
		name   string
		pixels []byte
		probs  []float32
		msg    string
	}{
		{"short pixels", make([]byte, 29), probs, "29 pixel bytes, want 30 (5x6x1)"},
		{"long pixels", make([]byte, 31), probs, "31 pixel bytes, want 30"},
		{"nil pixels", nil, probs, "0 pixel bytes"},
		{"short probs", make([]byte, 30), make([]float32, 2), "room for 2 probabilities, want 3"},
		{"long probs", make([]byte, 30), make([]float32, 4), "room for 4 probabilities, want 3"},
	} {
		err := m.Classify(tc.pixels, tc.probs)
		if err == nil || !strings.HasPrefix(err.Error(), "tflite: classify: ") || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.msg)
		}
	}
	if err := m.Classify(make([]byte, 30), probs); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Classify(make([]byte, 30), probs); !errors.Is(err, ErrClosed) {
		t.Errorf("Classify after Close: %v, want ErrClosed", err)
	}
	if taken, total := m.DelegatedNodes(); taken != 0 || total != 0 {
		t.Errorf("DelegatedNodes after Close = %d, %d", taken, total)
	}
}

func TestClassifyNoAllocs(t *testing.T) {
	for _, xnnpack := range []bool{false, true} {
		m := mustLoad(t, tinyPath, WithXNNPACK(xnnpack))
		pixels := make([]byte, 16*16)
		probs := make([]float32, 3)
		if n := testing.AllocsPerRun(100, func() {
			if err := m.Classify(pixels, probs); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("xnnpack=%t: %v allocations per Classify, want 0", xnnpack, n)
		}
	}
}
