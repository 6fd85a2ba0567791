package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/mqtt"
	"github.com/edge-sensor/edge/tflite"
	"github.com/prometheus/client_golang/prometheus"
)

const fw, fh = 320, 240

// fakeSource delivers n frames, one frame clock step apart, reusing one
// buffer the way camera sources do, with scripted errors. After the last
// frame it returns io.EOF, or, when live, blocks until ctx is done.
type fakeSource struct {
	n      int
	step   time.Duration
	live   bool
	errAt  map[int]error                         // error returned instead of frame i
	short  map[int]bool                          // frame i has a truncated luma plane
	color  bool                                  // attach an image.Gray sharing the luma buffer
	pic    image.Image                           // else attach this colour picture (fw x fh)
	down   time.Duration                         // reported by Stats
	stats  func(handed int64) camera.SourceStats // replaces down: Stats once that many frames were handed
	check  func(i int)                           // called before frame i is produced
	at     map[int]time.Duration                 // frame i's clock, instead of i*step
	i      int
	buf    camera.Frame
	handed atomic.Int64
}

func (s *fakeSource) Next(ctx context.Context) (*camera.Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.i >= s.n {
		if s.live {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, io.EOF
	}
	i := s.i
	s.i++
	if s.check != nil {
		s.check(i)
	}
	if err := s.errAt[i]; err != nil {
		return nil, err
	}
	if len(s.buf.Luma) != fw*fh {
		s.buf.Luma = make([]byte, fw*fh)
	}
	binary.LittleEndian.PutUint64(s.buf.Luma, uint64(i))
	s.buf.Seq, s.buf.Width, s.buf.Height = uint64(i+1), fw, fh
	s.buf.Time = t0.Add(time.Duration(i) * s.step)
	if d, ok := s.at[i]; ok {
		s.buf.Time = t0.Add(d)
	}
	if s.short[i] {
		s.buf.Luma = s.buf.Luma[:100]
	}
	s.buf.Image = s.pic
	if s.color {
		s.buf.Image = &image.Gray{Pix: s.buf.Luma, Stride: fw, Rect: image.Rect(0, 0, fw, fh)}
	}
	s.handed.Add(1)
	return &s.buf, nil
}

func (s *fakeSource) Stats() camera.SourceStats {
	if s.stats != nil {
		return s.stats(s.handed.Load())
	}
	return camera.SourceStats{Down: s.down, Up: s.n > 0}
}

// script says which faces frame i shows.
type script func(i int) []Box

// fakeDetect reads the frame number that fakeSource wrote into the luma
// plane and returns the scripted faces.
func fakeDetect(sc script, delay time.Duration) func([]byte, int, int, []Box) []Box {
	return func(luma []byte, _, _ int, dst []Box) []Box {
		time.Sleep(delay)
		return append(dst[:0], sc(int(binary.LittleEndian.Uint64(luma)))...)
	}
}

type fakeSink struct {
	mu     sync.Mutex
	stats  []mqtt.Stats
	ctxErr []error
	err    error
}

func (s *fakeSink) Publish(ctx context.Context, st mqtt.Stats) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := st.Validate(); err != nil {
		return fmt.Errorf("fake sink: %w", err)
	}
	s.stats = append(s.stats, st)
	s.ctxErr = append(s.ctxErr, ctx.Err())
	return s.err
}

func (s *fakeSink) windows() []mqtt.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mqtt.Stats(nil), s.stats...)
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Interval = time.Second
	cfg.MinGroup = 1
	cfg.Tracker.MaxMisses = 3
	cfg.Classify = ClassifyConfig{Every: 1, MinFaceSize: 30, MinClassifications: 3}
	// The fake source is far faster than processing: without Lossless most
	// frames would be dropped (TestPipelineDropsOldest covers that).
	cfg.Lossless = true
	return cfg
}

func newTestPipeline(t *testing.T, cfg Config, src Source, sink Sink, sc script, delay time.Duration, opts ...Option) *Pipeline {
	t.Helper()
	emo := newFake("emotion", emotionLabels)
	emo.fn = oneHot(happy)
	p, err := New(cfg, src, []Classifier{emo}, sink, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p.detect = fakeDetect(sc, delay)
	return p
}

// threePeople: P1 is there throughout, P2 in frames 0-14, P3 from frame 20.
func threePeople(i int) []Box {
	out := []Box{{X: 60, Y: 60, S: 60, Q: 10}}
	if i <= 14 {
		out = append(out, Box{X: 160, Y: 60, S: 60, Q: 10})
	}
	if i >= 20 {
		out = append(out, Box{X: 260, Y: 180, S: 60, Q: 10})
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cfg.Buffer = 3
	cfg.MinGroup = 0
	cfg.Detector.MinSize = 1
	cfg.LongWindow = cfg.Interval / 2
	err := cfg.Validate()
	for _, want := range []string{"Buffer 3", "MinGroup 0", "MinSize 1", "LongWindow 30s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	if _, err := New(cfg, &fakeSource{}, nil, &fakeSink{}); err == nil {
		t.Error("New accepted an invalid config")
	}
	if _, err := New(DefaultConfig(), nil, nil, &fakeSink{}); err == nil {
		t.Error("New accepted a nil source")
	}
}

// TestPipelineFiniteSource runs 35 frames at 10 fps through 1 s windows:
// three full windows and a flushed partial one.
func TestPipelineFiniteSource(t *testing.T) {
	sink := &fakeSink{}
	src := &fakeSource{n: 35, step: 100 * time.Millisecond}
	p := newTestPipeline(t, testConfig(), src, sink, threePeople, 0)
	if err := p.Run(context.Background()); err != nil {
		t.Fatalf("Run = %v, want nil at the end of a finite source", err)
	}
	ws := sink.windows()
	want := []struct {
		start, end       time.Duration
		seen, now, frame int
	}{
		{0, time.Second, 2, 2, 10},               // P1, P2
		{time.Second, 2 * time.Second, 2, 1, 10}, // P2 ends at frame 18 (4th miss)
		{2 * time.Second, 3 * time.Second, 2, 2, 10},
		{3 * time.Second, 3400 * time.Millisecond, 2, 2, 5}, // flushed at the last frame
	}
	if len(ws) != len(want) {
		t.Fatalf("%d windows, want %d: %+v", len(ws), len(want), ws)
	}
	for i, w := range want {
		s := ws[i]
		if !s.Start.Equal(t0.Add(w.start)) || !s.End.Equal(t0.Add(w.end)) {
			t.Errorf("window %d: %v..%v, want %v..%v", i, s.Start, s.End, w.start, w.end)
		}
		if s.PeopleSeen != w.seen || s.PeopleNow != w.now || s.Frames.Processed != uint64(w.frame) {
			t.Errorf("window %d: seen %d now %d processed %d, want %d %d %d", i, s.PeopleSeen, s.PeopleNow, s.Frames.Processed, w.seen, w.now, w.frame)
		}
		if s.Emotion == nil || s.Emotion.Counts["happy"] != w.seen || s.Unclassified != 0 {
			t.Errorf("window %d: emotion %+v unclassified %d, want %d happy", i, s.Emotion, s.Unclassified, w.seen)
		}
		if s.LatencyMS.ClassifyPerFace.P95 < 0 || s.Age != nil || s.Gender != nil {
			t.Errorf("window %d: unexpected breakdowns or latency %+v", i, s)
		}
	}
}

// TestPipelineLongWindow runs TestPipelineFiniteSource's frames with a long
// window: it closes with the short window at its clock boundary, and the
// stop publishes the partial one after the last short window.
func TestPipelineLongWindow(t *testing.T) {
	cfg := testConfig()
	cfg.LongWindow = 2 * time.Second
	sink := &fakeSink{}
	p := newTestPipeline(t, cfg, &fakeSource{n: 35, step: 100 * time.Millisecond}, sink, threePeople, 0)
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	ws := sink.windows()
	want := []struct {
		kind         string
		start, end   time.Duration
		seen, frames int
	}{
		{mqtt.KindWindow, 0, time.Second, 2, 10},
		{mqtt.KindWindow, time.Second, 2 * time.Second, 2, 10},
		{mqtt.KindHour, 0, 2 * time.Second, 2, 20}, // P1, P2
		{mqtt.KindWindow, 2 * time.Second, 3 * time.Second, 2, 10},
		{mqtt.KindWindow, 3 * time.Second, 3400 * time.Millisecond, 2, 5},
		{mqtt.KindHour, 2 * time.Second, 3400 * time.Millisecond, 2, 15}, // P1, P3; flushed at the stop
	}
	if len(ws) != len(want) {
		t.Fatalf("%d windows, want %d: %+v", len(ws), len(want), ws)
	}
	for i, w := range want {
		s := ws[i]
		if s.Kind != w.kind || !s.Start.Equal(t0.Add(w.start)) || !s.End.Equal(t0.Add(w.end)) ||
			s.PeopleSeen != w.seen || s.Frames.Processed != uint64(w.frames) {
			t.Errorf("window %d: %s %v..%v seen %d frames %d; want %s %v..%v seen %d frames %d", i,
				s.Kind, s.Start.Sub(t0), s.End.Sub(t0), s.PeopleSeen, s.Frames.Processed, w.kind, w.start, w.end, w.seen, w.frames)
		}
	}

	// With MinGroup 3, the two people of each short window are too few;
	// the three of the whole (hour-long) window are not.
	cfg.LongWindow, cfg.MinGroup = time.Hour, 3
	sink = &fakeSink{}
	p = newTestPipeline(t, cfg, &fakeSource{n: 35, step: 100 * time.Millisecond}, sink, threePeople, 0)
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	ws = sink.windows()
	if len(ws) != 5 || ws[4].Kind != mqtt.KindHour {
		t.Fatalf("%d windows, want 4 short and the partial long one: %+v", len(ws), ws)
	}
	for _, s := range ws[:4] {
		if s.Emotion != nil || !slices.Equal(s.Withheld, []string{"emotion"}) {
			t.Errorf("short window %v: emotion %+v withheld %v, want it withheld", s.Start.Sub(t0), s.Emotion, s.Withheld)
		}
	}
	if l := ws[4]; l.PeopleSeen != 3 || l.Emotion == nil || l.Emotion.Counts["happy"] != 3 {
		t.Errorf("long window: seen %d emotion %+v withheld %v, want 3 happy", l.PeopleSeen, l.Emotion, l.Withheld)
	}
}

func TestPipelineCorruptFrames(t *testing.T) {
	sink := &fakeSink{}
	src := &fakeSource{
		n: 10, step: 100 * time.Millisecond,
		errAt: map[int]error{3: fmt.Errorf("decode: %w", camera.ErrCorrupt), 4: camera.ErrCorrupt},
		short: map[int]bool{7: true},
		down:  500 * time.Millisecond,
	}
	p := newTestPipeline(t, testConfig(), src, sink, threePeople, 0)
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	ws := sink.windows()
	if len(ws) != 1 {
		t.Fatalf("%d windows, want 1", len(ws))
	}
	if got := ws[0].Frames; got != (mqtt.Frames{Processed: 7, Corrupt: 3}) {
		t.Errorf("frames %+v, want 7 processed, 3 corrupt", got)
	}
	if got := p.Frames(); got != (mqtt.Frames{Processed: 7, Corrupt: 3}) {
		t.Errorf("Frames() = %+v, want the window's 7 processed, 3 corrupt", got)
	}
	if ws[0].SourceDownSeconds != 0.5 {
		t.Errorf("source down %v s, want 0.5", ws[0].SourceDownSeconds)
	}
}

// TestPipelineDownTimeAcrossWindows: an outage from 0.45 s to 1.55 s, seen
// only when the first frame after it closes the 0-1 s window, is split at
// the window's end, not charged whole to the window that saw its start.
func TestPipelineDownTimeAcrossWindows(t *testing.T) {
	const back = 5 // the first frame after the outage
	at := map[int]time.Duration{}
	for i := back; i < 15; i++ {
		at[i] = 1550*time.Millisecond + time.Duration(i-back)*100*time.Millisecond
	}
	sink := &fakeSink{}
	src := &fakeSource{n: 15, step: 100 * time.Millisecond, at: at}
	src.stats = func(handed int64) camera.SourceStats {
		if handed <= back {
			return camera.SourceStats{Up: true}
		}
		return camera.SourceStats{Up: true, Down: 1100 * time.Millisecond, Reconnects: 1, BackAt: t0.Add(at[back])}
	}
	p := newTestPipeline(t, testConfig(), src, sink, threePeople, 0)
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	ws := sink.windows()
	want := []float64{0.55, 0.55, 0}
	if len(ws) != len(want) {
		t.Fatalf("%d windows, want %d", len(ws), len(want))
	}
	for i, w := range ws {
		if math.Abs(w.SourceDownSeconds-want[i]) > 1e-9 {
			t.Errorf("window %d (%d frames): %v s down, want %v", i+1, w.Frames.Processed, w.SourceDownSeconds, want[i])
		}
	}
}

func TestPipelineSourceError(t *testing.T) {
	sink := &fakeSink{}
	boom := errors.New("device unplugged")
	src := &fakeSource{n: 10, step: 100 * time.Millisecond, errAt: map[int]error{5: boom}}
	p := newTestPipeline(t, testConfig(), src, sink, threePeople, 0)
	err := p.Run(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the source's error", err)
	}
	if ws := sink.windows(); len(ws) != 1 || ws[0].Frames.Processed != 5 {
		t.Fatalf("windows %+v, want the partial window of 5 frames", ws)
	}
}

// TestPipelineDropsOldest feeds frames much faster than they are processed:
// the bounded buffer drops the oldest frames, counts them, and never holds
// more than its size.
func TestPipelineDropsOldest(t *testing.T) {
	for _, buffer := range []int{1, 2} {
		t.Run(fmt.Sprint("buffer ", buffer), func(t *testing.T) {
			sink := &fakeSink{}
			cfg := testConfig()
			cfg.Buffer = buffer
			cfg.Lossless = false
			const n = 30
			var p *Pipeline
			var processed atomic.Int64
			var maxHeld int64
			src := &fakeSource{n: n, step: 10 * time.Millisecond}
			src.check = func(int) {
				// Frames handed out but neither processed nor dropped are
				// in the pipeline: one in processing, at most Buffer waiting.
				held := src.handed.Load() - processed.Load() - int64(p.dropped.Load())
				maxHeld = max(maxHeld, held)
			}
			p = newTestPipeline(t, cfg, src, sink, threePeople, 0)
			slow := p.detect
			p.detect = func(l []byte, w, h int, dst []Box) []Box {
				time.Sleep(15 * time.Millisecond)
				defer processed.Add(1)
				return slow(l, w, h, dst)
			}
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			var got mqtt.Frames
			for _, w := range sink.windows() {
				got.Processed += w.Frames.Processed
				got.Dropped += w.Frames.Dropped
			}
			if got.Processed+got.Dropped != n || got.Dropped == 0 {
				t.Errorf("processed %d + dropped %d, want %d in all with some dropped", got.Processed, got.Dropped, n)
			}
			if total := p.Frames(); total != got {
				t.Errorf("Frames() = %+v, want the windows' sum %+v", total, got)
			}
			if maxHeld > int64(buffer)+1 {
				t.Errorf("up to %d frames held, want at most %d", maxHeld, buffer+1)
			}
		})
	}
}

// TestPipelineCancel stops a live source by cancelling the context: Run
// returns promptly and the last partial window is still published.
func TestPipelineCancel(t *testing.T) {
	sink := &fakeSink{}
	src := &fakeSource{n: 5, step: 100 * time.Millisecond, live: true}
	var seen atomic.Int64
	obs := observerFunc(func(*Annotated) { seen.Add(1) })
	p := newTestPipeline(t, testConfig(), src, sink, threePeople, 0, WithObserver(obs))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for deadline := time.Now().Add(5 * time.Second); seen.Load() < 5; {
		if time.Now().After(deadline) {
			t.Fatalf("observer saw %d frames, want 5", seen.Load())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	ws := sink.windows()
	if len(ws) != 1 || ws[0].Frames.Processed != 5 || ws[0].PeopleSeen != 2 {
		t.Fatalf("windows %+v, want the partial window: 5 frames, 2 people", ws)
	}
	if sink.ctxErr[0] != nil {
		t.Errorf("final window published with a dead context (%v)", sink.ctxErr[0])
	}
	if err := p.Run(context.Background()); err == nil {
		t.Error("second Run did not fail")
	}
}

// TestPipelineIdleWindows: with no frames at all (camera never came up),
// windows are still published on time, empty, as a heartbeat.
func TestPipelineIdleWindows(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 1 s window")
	}
	sink := &fakeSink{}
	src := &fakeSource{n: 0, live: true, down: 2 * time.Second}
	cfg := testConfig()
	cfg.Lossless = false // a live source
	p := newTestPipeline(t, cfg, src, sink, threePeople, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 1700*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v", err)
	}
	ws := sink.windows()
	if len(ws) < 2 {
		t.Fatalf("%d windows, want a full one and the partial one", len(ws))
	}
	// The source reports 2 s down; a 1 s window gets 1 s of it and the rest
	// carries over: no window claims more down time than it lasted.
	if ws[0].Frames.Processed != 0 || ws[0].PeopleSeen != 0 || ws[0].SourceDownSeconds != 1 {
		t.Errorf("idle window %+v, want empty with 1 s down", ws[0])
	}
	for _, w := range ws {
		if d := w.End.Sub(w.Start).Seconds(); w.SourceDownSeconds > d+1e-9 {
			t.Errorf("window %v-%v claims %v s down in %v s", w.Start, w.End, w.SourceDownSeconds, d)
		}
	}
	if d := ws[0].End.Sub(ws[0].Start); d != time.Second {
		t.Errorf("idle window lasts %v, want 1s", d)
	}
}

type observerFunc func(*Annotated)

func (f observerFunc) Observe(a *Annotated) { f(a) }

func TestPipelineObserver(t *testing.T) {
	sink := &fakeSink{}
	src := &fakeSource{n: 6, step: 100 * time.Millisecond, color: true}
	var last []Face
	var frames, withImage int
	obs := observerFunc(func(a *Annotated) {
		frames++
		if a.Frame != nil && a.Frame.Image != nil {
			withImage++
		}
		last = last[:0]
		for _, f := range a.Faces {
			f.Labels = append([]FaceLabel(nil), f.Labels...)
			last = append(last, f)
		}
	})
	p := newTestPipeline(t, testConfig(), src, sink, threePeople, 0, WithObserver(obs))
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if frames != 6 || withImage != 6 {
		t.Fatalf("observer saw %d frames, %d with a colour image; want 6 and 6", frames, withImage)
	}
	if len(last) != 2 {
		t.Fatalf("last frame faces %+v, want 2", last)
	}
	for _, f := range last {
		if !f.Confirmed || f.ID == 0 || f.Samples != 4 || len(f.Labels) != 1 {
			t.Fatalf("face %+v, want a confirmed person with 4 samples and one label", f)
		}
		if l := f.Labels[0]; l.Task != "emotion" || l.Label != "happy" || l.Confidence != 1 {
			t.Fatalf("label %+v, want emotion happy 1", l)
		}
	}
}

// TestPipelineNoObserverNoCopy: without a preview the colour image is not
// copied into the pipeline's frames.
func TestPipelineNoObserverNoCopy(t *testing.T) {
	p := newTestPipeline(t, testConfig(), &fakeSource{}, &fakeSink{}, threePeople, 0)
	src := camera.Frame{Width: 2, Height: 1, Luma: []byte{1, 2}, Image: image.NewGray(image.Rect(0, 0, 2, 1))}
	var dst camera.Frame
	if n := testing.AllocsPerRun(10, func() { p.copyFrame(&dst, &src) }); n != 0 {
		t.Errorf("copyFrame: %v allocations, want 0", n)
	}
	if dst.Image != nil || &dst.Luma[0] == &src.Luma[0] {
		t.Error("copyFrame kept the source's image or luma buffer")
	}
}

func TestPipelineMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	sink := &fakeSink{err: errors.New("broker says no")}
	src := &fakeSource{n: 12, step: 100 * time.Millisecond, errAt: map[int]error{2: camera.ErrCorrupt}}
	p := newTestPipeline(t, testConfig(), src, sink, threePeople, 0, WithRegistry(reg))
	if err := p.Run(context.Background()); err != nil {
		t.Fatalf("Run = %v (a sink error must not stop the pipeline)", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			got[mf.GetName()] = m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			got[mf.GetName()] = float64(m.GetHistogram().GetSampleCount())
		case m.GetGauge() != nil:
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"edge_pipeline_frames_processed_total":  11,
		"edge_pipeline_frames_corrupt_total":    1,
		"edge_pipeline_frames_dropped_total":    0,
		"edge_pipeline_detect_seconds":          11,
		"edge_pipeline_publish_errors_total":    2, // a full window and the flushed one
		"edge_pipeline_windows_published_total": 0,
		"edge_pipeline_people_in_view":          2,
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
	// P1 and P2 are classified from frame 2 (their confirmation) on.
	if got["edge_pipeline_classify_face_seconds"] == 0 {
		t.Error("no classification latency observed")
	}
	// Registering the same metrics twice is a configuration error.
	if _, err := New(testConfig(), &fakeSource{}, nil, sink, WithRegistry(reg)); err == nil {
		t.Error("second pipeline on the same registry: no error")
	}
}

// TestPipelineClockJump: a frame clock that jumps by a year restarts the
// windows instead of publishing half a million empty ones.
func TestPipelineClockJump(t *testing.T) {
	sink := &fakeSink{}
	year := 365 * 24 * time.Hour
	src := &fakeSource{n: 4, step: 100 * time.Millisecond, at: map[int]time.Duration{3: year}}
	p := newTestPipeline(t, testConfig(), src, sink, threePeople, 0)
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	ws := sink.windows()
	if len(ws) != 2 {
		t.Fatalf("%d windows, want 2", len(ws))
	}
	if ws[0].Frames.Processed != 3 || !ws[1].Start.Equal(t0.Add(year)) || ws[1].Frames.Processed != 1 {
		t.Fatalf("windows %+v", ws)
	}
}

// uniformYCbCr is an fw x fh 4:2:0 picture of one colour.
func uniformYCbCr(y, cb, cr byte) *image.YCbCr {
	im := image.NewYCbCr(image.Rect(0, 0, fw, fh), image.YCbCrSubsampleRatio420)
	fill(im.Y, len(im.Y), 1, y)
	fill(im.Cb, len(im.Cb), 1, cb)
	fill(im.Cr, len(im.Cr), 1, cr)
	return im
}

// uniformYUYV is an fw x fh YUYV frame of one colour.
func uniformYUYV(y, cb, cr byte) *camera.YUYV {
	p := &camera.YUYV{Pix: make([]byte, 2*fw*fh), Stride: 2 * fw, Rect: image.Rect(0, 0, fw, fh)}
	for i := 0; i < len(p.Pix); i += 4 {
		p.Pix[i], p.Pix[i+1], p.Pix[i+2], p.Pix[i+3] = y, cb, y, cr
	}
	return p
}

// newColorFake is a gender model taking 8x8 Y Cb Cr crops; it records the
// chroma of every pixel it is shown.
func newColorFake(seen map[[2]byte]int) *fakeModel {
	m := newFake("gender", genderLabels)
	m.meta.Input.Channels, m.meta.Input.Color = 3, tflite.ColorYCbCr
	m.meta.FlipAverage = true
	m.fn = func(px []byte, p []float32) {
		for i := 0; i < len(px); i += 3 {
			seen[[2]byte{px[i+1], px[i+2]}]++
		}
		p[0] = 1
	}
	return m
}

// TestPipelineColorModel: a colour model sees the chroma of the frames the
// source delivered (kept past Next by the pipeline), or neutral chroma and a
// single warning when the frames have no colour.
func TestPipelineColorModel(t *testing.T) {
	tests := []struct {
		name   string
		pic    image.Image
		grey   bool
		chroma [2]byte
		warn   bool
	}{
		{name: "ycbcr 4:2:0", pic: uniformYCbCr(100, 90, 170), chroma: [2]byte{90, 170}},
		{name: "yuyv", pic: uniformYUYV(100, 60, 200), chroma: [2]byte{60, 200}},
		{name: "grey frames", grey: true, chroma: [2]byte{128, 128}, warn: true},
		{name: "no picture", chroma: [2]byte{128, 128}, warn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[[2]byte]int{}
			model := newColorFake(seen)
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, nil))
			src := &fakeSource{n: 10, step: 100 * time.Millisecond, pic: tt.pic, color: tt.grey}
			p, err := New(testConfig(), src, []Classifier{model}, &fakeSink{}, WithLogger(log))
			if err != nil {
				t.Fatal(err)
			}
			p.detect = fakeDetect(threePeople, 0)
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if model.calls == 0 {
				t.Fatal("the colour model was never run")
			}
			// Every face lies inside the frame: one colour throughout.
			if len(seen) != 1 || seen[tt.chroma] == 0 {
				t.Errorf("model saw chroma %v, want only %v", seen, tt.chroma)
			}
			if n := strings.Count(logs.String(), "without colour"); n != map[bool]int{false: 0, true: 1}[tt.warn] {
				t.Errorf("%d warnings about frames without colour, want warn=%t:\n%s", n, tt.warn, logs.String())
			}
		})
	}
}

// TestPipelineColorCopyNoAllocs: with a colour model, copyFrame keeps the
// picture in the frame's own reused buffers: no allocation per frame, and
// nothing shared with the source.
func TestPipelineColorCopyNoAllocs(t *testing.T) {
	for _, pic := range []image.Image{uniformYCbCr(1, 2, 3), uniformYUYV(1, 2, 3)} {
		t.Run(fmt.Sprintf("%T", pic), func(t *testing.T) {
			p, err := New(testConfig(), &fakeSource{}, []Classifier{newColorFake(map[[2]byte]int{})}, &fakeSink{})
			if err != nil {
				t.Fatal(err)
			}
			src := camera.Frame{Width: fw, Height: fh, Luma: make([]byte, fw*fh), Image: pic}
			var dst camera.Frame
			p.copyFrame(&dst, &src)
			if n := testing.AllocsPerRun(10, func() { p.copyFrame(&dst, &src) }); n != 0 {
				t.Errorf("copyFrame: %v allocations per frame, want 0", n)
			}
			if dst.Image == pic || dst.Image == nil || dst.Image.At(5, 5) != pic.At(5, 5) {
				t.Errorf("copyFrame kept %T %p, want a copy of the source's %p", dst.Image, dst.Image, pic)
			}
		})
	}
}
