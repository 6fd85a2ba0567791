package pipeline

import (
	"errors"
	"image"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/mqtt"
	"github.com/edge-sensor/edge/tflite"
)

var (
	emotionLabels = []string{"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
	ageLabels     = []string{"0-19", "20-39", "40-59", "60-79", "80+"}
	genderLabels  = []string{"female", "male"}
)

// fakeModel is a Classifier whose answer is computed by fn (default: all
// mass on the first label).
type fakeModel struct {
	meta  tflite.Meta
	fn    func(pixels []byte, probs []float32)
	err   error
	calls int
	last  []byte // copy of the latest input
}

func newFake(task string, labels []string) *fakeModel {
	return &fakeModel{meta: tflite.Meta{
		Schema: 1, Task: task, Labels: labels,
		Input:   tflite.InputSpec{Width: 8, Height: 8, Channels: 1, Color: "gray"},
		Framing: tflite.Framing{Scale: 1.25, OffsetY: 0.05},
	}}
}

func (m *fakeModel) Meta() tflite.Meta { return m.meta }

func (m *fakeModel) Classify(pixels []byte, probs []float32) error {
	m.calls++
	m.last = append(m.last[:0], pixels...)
	if m.err != nil {
		return m.err
	}
	if in := m.meta.Input; len(pixels) != in.Width*in.Height*in.Channels || len(probs) != len(m.meta.Labels) {
		return errors.New("fake: wrong sizes")
	}
	clear(probs)
	if m.fn != nil {
		m.fn(pixels, probs)
	} else {
		probs[0] = 1
	}
	return nil
}

// oneHot returns a fn that puts all the mass on label k.
func oneHot(k int) func([]byte, []float32) {
	return func(_ []byte, p []float32) { p[k] = 1 }
}

func confirmed(id uint64, x float64, s float64) *Track {
	return &Track{ID: id, Confirmed: true, Matched: true, Box: Box{X: x, Y: 50, S: s}, FirstSeen: t0, LastSeen: t0}
}

func newTestLabeler(t *testing.T, cfg ClassifyConfig, models ...*fakeModel) *Labeler {
	t.Helper()
	var cs []Classifier
	for _, m := range models {
		cs = append(cs, m)
	}
	l, err := NewLabeler(cfg, cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNewLabelerErrors(t *testing.T) {
	threeChannels := newFake("age", ageLabels)
	threeChannels.meta.Input.Channels = 3
	oneChannelYCbCr := newFake("age", ageLabels)
	oneChannelYCbCr.meta.Input.Color = tflite.ColorYCbCr
	badFraming := newFake("age", ageLabels)
	badFraming.meta.Framing.Scale = 0
	tests := []struct {
		name   string
		tasks  []string
		models []*fakeModel
		want   string
	}{
		{"unknown task in config", []string{"mood"}, nil, `unknown task "mood"`},
		{"task listed twice", []string{"age", "age"}, nil, "twice"},
		{"enabled task without model", []string{"age"}, []*fakeModel{newFake("emotion", emotionLabels)}, `task "age" is enabled but no model`},
		{"model of unknown task", nil, []*fakeModel{newFake("pose", genderLabels)}, `"pose"`},
		{"two models for a task", nil, []*fakeModel{newFake("age", ageLabels), newFake("age", ageLabels)}, "two models"},
		{"colour input", nil, []*fakeModel{threeChannels}, `input "gray" with 3 channels`},
		{"ycbcr input with one channel", nil, []*fakeModel{oneChannelYCbCr}, `input "ycbcr" with 1 channels`},
		{"bad framing", nil, []*fakeModel{badFraming}, "framing"},
		{"one label", nil, []*fakeModel{newFake("gender", genderLabels[:1])}, "labels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultClassifyConfig()
			cfg.Tasks = tt.tasks
			var cs []Classifier
			for _, m := range tt.models {
				cs = append(cs, m)
			}
			_, err := NewLabeler(cfg, cs, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewLabeler() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestLabelerTaskSelection(t *testing.T) {
	emo, gen := newFake("emotion", emotionLabels), newFake("gender", genderLabels)
	tests := []struct {
		tasks []string
		want  []string
	}{
		{nil, []string{"emotion", "gender"}},
		{[]string{"gender", "emotion"}, []string{"gender", "emotion"}},
		{[]string{"gender"}, []string{"gender"}},
		{[]string{}, nil},
	}
	for _, tt := range tests {
		cfg := DefaultClassifyConfig()
		cfg.Tasks = tt.tasks
		l := newTestLabeler(t, cfg, emo, gen)
		var got []string
		for _, task := range l.Tasks() {
			got = append(got, task.Name)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("Tasks %v: enabled %v, want %v", tt.tasks, got, tt.want)
		}
	}
}

// TestLabelerCadence: a person is classified on confirmation and then every
// Every frames, only while matched and large enough.
func TestLabelerCadence(t *testing.T) {
	luma := fill(nil, 200, 100, 90)
	tests := []struct {
		name    string
		size    float64
		matched func(i int) bool
		frames  int
		want    int // samples
	}{
		{"every 5th frame", 80, func(int) bool { return true }, 12, 3}, // frames 0, 5, 10
		{"too small is never classified", 40, func(int) bool { return true }, 12, 0},
		{"not while missed", 80, func(i int) bool { return i < 1 || i > 7 }, 12, 2}, // 0, 8
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newFake("emotion", emotionLabels)
			cfg := ClassifyConfig{Every: 5, MinFaceSize: 60, MinClassifications: 3}
			l := newTestLabeler(t, cfg, m)
			tr := confirmed(7, 100, tt.size)
			var r *LabelResult
			for i := range tt.frames {
				tr.Matched = tt.matched(i)
				r = l.Update(luma, 200, 100, nil, []*Track{tr}, nil)
			}
			if len(r.Active) != 1 || r.Active[0].ID != 7 {
				t.Fatalf("active people %v, want person 7", r.Active)
			}
			if got := r.Active[0].Samples; got != tt.want || m.calls != tt.want {
				t.Fatalf("samples %d (model calls %d), want %d", got, m.calls, tt.want)
			}
		})
	}
}

func TestLabelerRunningMeanAndEnd(t *testing.T) {
	gen := newFake("gender", genderLabels)
	n := 0
	// Alternates female 0.9 / male 0.7: the mean is (0.6, 0.4).
	gen.fn = func(_ []byte, p []float32) {
		if n%2 == 0 {
			p[0], p[1] = 0.9, 0.1
		} else {
			p[0], p[1] = 0.3, 0.7
		}
		n++
	}
	l := newTestLabeler(t, ClassifyConfig{Every: 1, MinClassifications: 1}, gen)
	luma := fill(nil, 200, 100, 90)
	tr := confirmed(3, 100, 80)
	for range 4 {
		l.Update(luma, 200, 100, nil, []*Track{tr}, nil)
	}
	tr.LastSeen = t0.Add(3 * time.Second)
	r := l.Update(luma, 200, 100, nil, nil, []*Track{tr})
	if len(r.Ended) != 1 {
		t.Fatalf("ended %v, want person 3", r.Ended)
	}
	p := r.Ended[0]
	if p.Samples != 4 || math.Abs(float64(p.Probs[0][0])-0.6) > 1e-6 || math.Abs(float64(p.Probs[0][1])-0.4) > 1e-6 {
		t.Fatalf("person: %d samples, probs %v; want 4 samples, [0.6 0.4]", p.Samples, p.Probs)
	}
	if k, prob, ok := p.Top(0); !ok || k != 0 || math.Abs(float64(prob)-0.6) > 1e-6 {
		t.Fatalf("Top = %d %v %v, want female 0.6", k, prob, ok)
	}
	if p.Dwell() != 3*time.Second {
		t.Fatalf("dwell %v, want 3s", p.Dwell())
	}
	if len(l.people) != 0 {
		t.Fatalf("labeler still holds %d people after their track ended", len(l.people))
	}
}

// TestLabelerFlipAverage: a model that only sees which half of the face is
// brighter gives 0.5/0.5 when flip averaging is on.
func TestLabelerFlipAverage(t *testing.T) {
	w, h := 200, 100
	luma := make([]byte, w*h)
	for y := range h {
		for x := range w {
			if x < 100 {
				luma[y*w+x] = 200 // left half bright
			}
		}
	}
	leftBright := func(px []byte, p []float32) {
		var l, r int
		for y := range 8 {
			for x := range 4 {
				l += int(px[y*8+x])
				r += int(px[y*8+7-x])
			}
		}
		if l > r {
			p[0] = 1
		} else {
			p[1] = 1
		}
	}
	for _, flip := range []bool{false, true} {
		gen := newFake("gender", genderLabels)
		gen.fn = leftBright
		gen.meta.FlipAverage = flip
		l := newTestLabeler(t, ClassifyConfig{Every: 1, MinClassifications: 1}, gen)
		r := l.Update(luma, w, h, nil, []*Track{confirmed(1, 100, 80)}, nil)
		got := r.Active[0].Probs[0]
		want := []float32{1, 0}
		if flip {
			want = []float32{0.5, 0.5}
		}
		if got[0] != want[0] || got[1] != want[1] {
			t.Errorf("flip %v: probs %v, want %v", flip, got, want)
		}
		if wantCalls := map[bool]int{false: 1, true: 2}[flip]; gen.calls != wantCalls {
			t.Errorf("flip %v: %d model calls, want %d", flip, gen.calls, wantCalls)
		}
	}
}

// TestLabelerCropFraming checks that the model sees the framing contract's
// crop: the face box's square scaled by the model's framing.
func TestLabelerCropFraming(t *testing.T) {
	w, h := 100, 100
	luma := ramp(w, h)
	m := newFake("age", ageLabels)
	l := newTestLabeler(t, ClassifyConfig{Every: 1, MinClassifications: 1}, m)
	tr := confirmed(1, 50, 64)
	tr.Box.Y = 40
	l.Update(luma, w, h, nil, []*Track{tr}, nil)
	want := Crop(luma, w, h, tr.Box, Framing{Scale: 1.25, OffsetY: 0.05}, 8, 8, nil)
	if string(m.last) != string(want) {
		t.Fatalf("model input %v, want the framed crop %v", m.last, want)
	}

}

// TestLabelerLevel: with a leveler (pipeline.New wires Detector.Level in) a
// model whose framing asks for level crops gets the face turned by the roll
// the leveler found, a model trained on unaligned faces gets it upright, the
// person's box (which the preview draws) stays as detected, and a labeler
// with no levelling model does not spend time on the roll.
func TestLabelerLevel(t *testing.T) {
	w, h := 100, 100
	luma := ramp(w, h)
	age, emo := newFake("age", ageLabels), newFake("emotion", emotionLabels)
	age.meta.Framing.Level = true
	calls := 0
	level := func(_ []byte, _, _ int, b Box) Box { calls++; b.Roll = 0.4; return b }
	l := newTestLabeler(t, ClassifyConfig{Every: 1, MinClassifications: 1}, age, emo)
	l.level = level
	tr := confirmed(1, 50, 64)
	r := l.Update(luma, w, h, nil, []*Track{tr}, nil)
	turned := tr.Box
	turned.Roll = 0.4
	if want := Crop(luma, w, h, turned, Framing{Scale: 1.25, OffsetY: 0.05, Level: true}, 8, 8, nil); string(age.last) != string(want) {
		t.Fatalf("levelling model's input %v, want the turned crop %v", age.last, want)
	}
	if want := Crop(luma, w, h, tr.Box, Framing{Scale: 1.25, OffsetY: 0.05}, 8, 8, nil); string(emo.last) != string(want) {
		t.Fatalf("upright model's input %v, want the upright crop %v", emo.last, want)
	}
	if got := r.Active[0].Box; got != tr.Box {
		t.Fatalf("person's box %+v, want the detection %+v", got, tr.Box)
	}
	if calls != 1 {
		t.Fatalf("leveler called %d times for one face, want 1", calls)
	}

	l = newTestLabeler(t, ClassifyConfig{Every: 1, MinClassifications: 1}, newFake("emotion", emotionLabels))
	l.level = level
	l.Update(luma, w, h, nil, []*Track{confirmed(1, 50, 64)}, nil)
	if calls != 1 {
		t.Fatal("leveler called for a labeler whose models all take upright crops")
	}
}

func TestLabelerFailure(t *testing.T) {
	emo, gen := newFake("emotion", emotionLabels), newFake("gender", genderLabels)
	gen.err = errors.New("invoke failed")
	l := newTestLabeler(t, ClassifyConfig{Every: 1, MinClassifications: 1}, emo, gen)
	r := l.Update(fill(nil, 200, 100, 0), 200, 100, nil, []*Track{confirmed(1, 100, 80)}, nil)
	if r.Failed != 1 || len(r.Latency) != 1 {
		t.Fatalf("failed %d, latencies %d; want 1 and 1", r.Failed, len(r.Latency))
	}
	// Neither task counts the sample: tasks stay in step.
	if p := r.Active[0]; p.Samples != 0 || p.Probs[0] != nil {
		t.Fatalf("person after a failed classification: %d samples, probs %v", p.Samples, p.Probs)
	}

	bad := newFake("gender", genderLabels)
	bad.fn = func(_ []byte, p []float32) { p[0] = float32(math.NaN()) }
	l = newTestLabeler(t, ClassifyConfig{Every: 1, MinClassifications: 1}, bad)
	if r := l.Update(fill(nil, 200, 100, 0), 200, 100, nil, []*Track{confirmed(1, 100, 80)}, nil); r.Failed != 1 {
		t.Fatalf("NaN probability: failed %d, want 1", r.Failed)
	}
}

func TestLabelerSkipsTentative(t *testing.T) {
	m := newFake("emotion", emotionLabels)
	l := newTestLabeler(t, ClassifyConfig{Every: 1, MinClassifications: 1}, m)
	r := l.Update(fill(nil, 200, 100, 0), 200, 100, nil, []*Track{{Matched: true, Box: Box{X: 100, Y: 50, S: 80}}}, nil)
	if len(r.Active) != 0 || m.calls != 0 {
		t.Fatalf("tentative track: %d people, %d model calls; want none", len(r.Active), m.calls)
	}
}

// The real implementations satisfy the pipeline's consumer-side interfaces.
var (
	_ Classifier = (*tflite.Model)(nil)
	_ Source     = camera.Source(nil)
	_ Sink       = (*mqtt.Publisher)(nil)
)

// asTask presents a model under another task name (the test fixture's task
// is "test", which the stats payload does not carry).
type asTask struct {
	*tflite.Model
	task string
}

func (m asTask) Meta() tflite.Meta {
	meta := m.Model.Meta()
	meta.Task = m.task
	meta.FlipAverage = true
	return meta
}

// TestLabelerRealModel runs the tflite package's tiny int8 fixture on a face
// of a real photo, with flip averaging, through the classification stage.
func TestLabelerRealModel(t *testing.T) {
	luma, w, h := sampleLuma(t, "nasa_eileen_collins.png")
	m, err := tflite.Load("../tflite/testdata/tiny.tflite", tflite.WithThreads(1))
	if err != nil {
		t.Fatalf("load fixture: %v", err)
	}
	defer m.Close()
	model := asTask{m, "age"}
	l, err := NewLabeler(ClassifyConfig{Every: 1, MinFaceSize: 60, MinClassifications: 1}, []Classifier{model}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := confirmed(1, 224, 100)
	tr.Box.Y = 111
	var r *LabelResult
	for range 3 {
		if r = l.Update(luma, w, h, nil, []*Track{tr}, nil); r.Failed != 0 {
			t.Fatalf("classification failed")
		}
	}
	p := r.Active[0]
	var sum float32
	for _, v := range p.Probs[0] {
		sum += v
	}
	if p.Samples != 3 || len(p.Probs[0]) != 3 || math.Abs(float64(sum)-1) > 0.02 {
		t.Fatalf("person: %d samples, probs %v (sum %v)", p.Samples, p.Probs[0], sum)
	}
	if len(r.Latency) != 1 || r.Latency[0] <= 0 {
		t.Fatalf("latency %v, want one positive sample", r.Latency)
	}
}

// TestLabelerRealColorModel runs the tflite package's tiny "ycbcr" fixture,
// with flip averaging, on colour crops: the chroma reaches the model, and a
// colour face costs no allocation once the buffers have grown.
func TestLabelerRealColorModel(t *testing.T) {
	m, err := tflite.Load("../tflite/testdata/tiny_ycbcr.tflite", tflite.WithThreads(1))
	if err != nil {
		t.Fatalf("load fixture: %v", err)
	}
	defer m.Close()
	if in := m.Meta().Input; in.Color != tflite.ColorYCbCr || in.Channels != 3 {
		t.Fatalf("fixture input %+v, want ycbcr with 3 channels", in)
	}
	luma := testLuma()
	tr := confirmed(1, 30, 24)
	tr.Box.Y = 22
	probs := map[string][]float32{}
	for _, pic := range []struct {
		name string
		img  image.Image
	}{{"colour", testYCbCr(image.YCbCrSubsampleRatio420)}, {"none", nil}} {
		l, err := NewLabeler(ClassifyConfig{Every: 1, MinClassifications: 1}, []Classifier{asTask{m, "gender"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := l.Update(luma, cw, ch, pic.img, []*Track{tr}, nil)
		if r.Failed != 0 {
			t.Fatalf("%s: classification failed", pic.name)
		}
		p := r.Active[0].Probs[0]
		var sum float32
		for _, v := range p {
			sum += v
		}
		if math.Abs(float64(sum)-1) > 0.02 {
			t.Fatalf("%s: probs %v sum to %v", pic.name, p, sum)
		}
		probs[pic.name] = slices.Clone(p)
		if pic.img == nil {
			continue
		}
		if n := testing.AllocsPerRun(10, func() { l.Update(luma, cw, ch, pic.img, []*Track{tr}, nil) }); n != 0 {
			t.Errorf("Update with a colour model: %v allocations per frame, want 0", n)
		}
	}
	if slices.Equal(probs["colour"], probs["none"]) {
		t.Errorf("same output %v with and without chroma: the model does not see the colour", probs["colour"])
	}
}

// TestFaceModelNoAllocations holds FaceModel to its promise: classifying a
// face, mirrored pass included, allocates nothing once it has run.
func TestFaceModelNoAllocations(t *testing.T) {
	for _, tc := range []struct {
		flip bool
		m    *fakeModel
	}{
		{false, newFake("gender", genderLabels)},
		{true, newFake("gender", genderLabels)},
		{true, newColorFake(map[[2]byte]int{})},
	} {
		m, flip := tc.m, tc.flip
		m.meta.FlipAverage = flip
		f := NewFaceModel(m)
		crop := make([]byte, m.meta.Input.Width*m.meta.Input.Height*m.meta.Input.Channels)
		probs := make([]float32, len(genderLabels))
		if err := f.ClassifyFace(crop, probs); err != nil {
			t.Fatalf("flip %v, %d channels: %v", flip, m.meta.Input.Channels, err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			if err := f.ClassifyFace(crop, probs); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("flip %v, %d channels: %.1f allocations per face, want 0", flip, m.meta.Input.Channels, allocs)
		}
	}
}
