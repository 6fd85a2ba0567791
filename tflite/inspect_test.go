package tflite

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestInspectTiny(t *testing.T) {
	info, err := Inspect(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != st.Size() || info.Version != 3 || info.Subgraphs != 1 || info.Problem != "" {
		t.Errorf("Inspect = size %d version %d subgraphs %d problem %q", info.Size, info.Version, info.Subgraphs, info.Problem)
	}
	if len(info.Inputs) != 1 || len(info.Outputs) != 1 {
		t.Fatalf("inputs %v outputs %v", info.Inputs, info.Outputs)
	}
	in, out := info.Inputs[0], info.Outputs[0]
	if !reflect.DeepEqual(in.Shape, []int{1, 16, 16, 1}) || in.Type != "INT8" || in.Quant.Scales != 1 || in.Quant.ZeroMin != -128 || float32(in.Quant.ScaleMin) != 1.0/255 {
		t.Errorf("input %+v", in)
	}
	if !reflect.DeepEqual(out.Shape, []int{1, 3}) || out.Type != "INT8" || out.Quant.ScaleMin != 1.0/256 || out.Quant.ZeroMin != -128 {
		t.Errorf("output %+v", out)
	}
	if info.Meta == nil || info.Meta.Task != "test" || len(info.Meta.Labels) != 3 {
		t.Fatalf("meta %+v", info.Meta)
	}
	// The exporter counts multiply-adds its own way; both must agree.
	if !info.MACsComplete || info.MACs != info.Meta.MACs {
		t.Errorf("computed %d multiply-adds (complete %t), metadata says %d", info.MACs, info.MACsComplete, info.Meta.MACs)
	}
	counts := map[string]int{}
	for _, c := range info.OpCounts {
		counts[c.Op] = c.Count
	}
	if counts["CONV_2D"] == 0 || counts["FULLY_CONNECTED"] != 1 || counts["SOFTMAX"] != 1 {
		t.Errorf("op counts %v", info.OpCounts)
	}
	perChannel := 0
	for _, ti := range info.Tensors {
		if ti.Quant.PerChannel() {
			perChannel++
			if ti.Quant.ZeroMin != 0 || ti.Quant.ZeroMax != 0 {
				t.Errorf("per-channel tensor %q is not symmetric: %v", ti.Name, ti.Quant)
			}
		}
	}
	if perChannel == 0 {
		t.Error("no per-channel quantized tensor (conv weights are)")
	}
}

func TestInspectFixture(t *testing.T) {
	f := fixture{seed: 1, h: 6, w: 5, k: 4}
	path := mustFixture(t, f)
	info, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	wantOps := []OpCount{{"CONV_2D", 1}, {"RESHAPE", 1}, {"FULLY_CONNECTED", 1}, {"SOFTMAX", 1}}
	if !reflect.DeepEqual(info.OpCounts, wantOps) {
		t.Errorf("OpCounts = %v, want %v", info.OpCounts, wantOps)
	}
	// conv: 6*5 outputs * 2 channels * 3*3*1; fc: 4 outputs * 60 inputs.
	if want := int64(6*5*2*9 + 4*60); info.MACs != want || !info.MACsComplete {
		t.Errorf("MACs = %d (complete %t), want %d", info.MACs, info.MACsComplete, want)
	}
	if want := int64(2*9 + 2 + 2 + 4*60 + 4); info.Params != want {
		t.Errorf("Params = %d, want %d", info.Params, want)
	}
	if want := int64(18 + 8 + 8 + 240 + 16); info.ParamBytes != want {
		t.Errorf("ParamBytes = %d, want %d", info.ParamBytes, want)
	}
	conv := info.Ops[0]
	if conv.Op != "CONV_2D" || conv.Version != 3 || !reflect.DeepEqual(conv.Inputs, []int{0, 1, 2}) || !reflect.DeepEqual(conv.OutShape, []int{1, 6, 5, 2}) || conv.MACs != 540 {
		t.Errorf("Ops[0] = %+v", conv)
	}
	w := info.Tensors[1]
	if w.Name != "conv/w" || !w.Const || !w.Quant.PerChannel() || w.Quant.Scales != 2 || w.Quant.Axis != 0 {
		t.Errorf("conv weights %+v", w)
	}
	if info.Tensors[0].Const || info.Tensors[0].Quant.PerChannel() {
		t.Errorf("input %+v", info.Tensors[0])
	}

	var buf bytes.Buffer
	if err := info.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	for _, want := range []string{
		path + ": ",
		"task: tiny",
		"labels (4): a, b, c, d",
		"input: 5x6 gray",
		"framing: scale 1.25, offset x 0, y 0.05, level false; flip average true; dataset crop 0.8",
		"training: data=none, val_accuracy_float=0.5",
		`input tensor:  #0 "input" [1 6 5 1] INT8, per-tensor scale 0.00392157 zp -128`,
		"operators (4): CONV_2D x1, RESHAPE x1, FULLY_CONNECTED x1, SOFTMAX x1",
		"parameters: 266 (290 bytes)",
		"multiply-adds per inference: 780 (metadata says 780)",
		"checks: ok",
		"per-channel axis 0 x2 scale",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}

	// Info is meant to be printed as JSON too.
	if _, err := json.Marshal(info); err != nil {
		t.Error(err)
	}
}

// TestInspectProblems: Inspect describes files Load rejects, saying why.
func TestInspectProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    fixture
		msg  string
	}{
		{"no metadata", fixture{noMeta: true}, `no "edge" metadata`},
		{"float input", fixture{inType: "FLOAT32"}, "want INT8"},
		{"labels", fixture{meta: metaWith("labels", []string{"x"})}, "1 labels"},
	} {
		info, err := Inspect(mustFixture(t, tc.f))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !strings.Contains(info.Problem, tc.msg) {
			t.Errorf("%s: Problem %q, want it to mention %q", tc.name, info.Problem, tc.msg)
		}
		var buf bytes.Buffer
		if err := info.WriteText(&buf); err != nil || !strings.Contains(buf.String(), "PROBLEM: ") {
			t.Errorf("%s: report without PROBLEM line (%v):\n%s", tc.name, err, buf.String())
		}
	}
}

func TestInspectErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("junk"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		is   error
	}{
		{filepath.Join(dir, "missing"), fs.ErrNotExist},
		{junk, ErrInvalidModel},
	} {
		_, err := Inspect(tc.path)
		if !errors.Is(err, tc.is) || !strings.HasPrefix(err.Error(), "tflite: inspect "+tc.path+": ") {
			t.Errorf("Inspect(%s) = %v, want %v", tc.path, err, tc.is)
		}
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(b []byte) (int, error) {
	if w.n--; w.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(b), nil
}

func TestWriteTextError(t *testing.T) {
	info, err := Inspect(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := info.WriteText(&failWriter{n: 3}); err == nil || err.Error() != "disk full" {
		t.Errorf("WriteText to a failing writer = %v", err)
	}
}

func TestGroup(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 33123456: "33,123,456", -1234: "-1,234"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
}
