package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-sensor/edge/camera"
)

func TestCorruptGuard(t *testing.T) {
	var logs bytes.Buffer
	g := newCorruptGuard(slog.New(slog.NewTextHandler(&logs, nil)))
	var slept []time.Duration
	g.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	now := time.Unix(0, 0)
	g.now = func() time.Time { return now }
	bad := fmt.Errorf("x.jpg: %w", camera.ErrCorrupt)

	for range corruptStreak + 12 {
		if err := g.corrupt(context.Background(), bad); err != nil {
			t.Fatal(err)
		}
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000, 1000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if fmt.Sprint(slept) != fmt.Sprint(want) {
		t.Errorf("slept %v, want nothing for the first %d in a row, then %v", slept, corruptStreak-1, want)
	}
	if !g.stuck() {
		t.Error("not stuck after 20 corrupt frames in a row")
	}
	if n := strings.Count(logs.String(), "corrupt frames skipped"); n != 1 {
		t.Errorf("%d log lines for 20 corrupt frames within a second, want 1:\n%s", n, logs.String())
	}
	now = now.Add(corruptLogEvery)
	g.corrupt(context.Background(), bad)
	if !strings.Contains(logs.String(), "count=20") {
		t.Errorf("the second line does not count the 20 frames since the first:\n%s", logs.String())
	}

	g.good()
	if g.stuck() || !strings.Contains(logs.String(), "frames decode again") {
		t.Errorf("a good frame does not end the run: stuck %v\n%s", g.stuck(), logs.String())
	}
	slept = nil
	for range corruptStreak {
		g.corrupt(context.Background(), bad)
	}
	if fmt.Sprint(slept) != "[1ms]" {
		t.Errorf("after a good frame the backoff starts over: slept %v, want [1ms]", slept)
	}
}

// corruptSource yields nothing but corrupt frames, as a looped empty JPEG does.
type corruptSource struct{ calls atomic.Int64 }

func (s *corruptSource) Next(ctx context.Context) (*camera.Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.calls.Add(1)
	return nil, fmt.Errorf("empty.jpg: %w", camera.ErrCorrupt)
}

// TestPipelineCorruptOnlySource: an offline (Lossless) run over a source of
// only corrupt frames neither spins nor withholds its windows.
func TestPipelineCorruptOnlySource(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 1 s window")
	}
	sink := &fakeSink{}
	src := &corruptSource{}
	var logs bytes.Buffer
	p := newTestPipeline(t, testConfig(), src, sink, threePeople, 0, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx, cancel := context.WithTimeout(context.Background(), 1700*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v", err)
	}
	// At full speed this is hundreds of thousands of reads; backing off to
	// 1 s it is a few dozen.
	if n := src.calls.Load(); n > 100 {
		t.Errorf("%d reads of a corrupt-only source in 1.7 s: it spins", n)
	}
	ws := sink.windows()
	if len(ws) < 2 {
		t.Fatalf("%d windows in 1.7 s of 1 s windows, want a full one and the partial one", len(ws))
	}
	var corrupt uint64
	for _, w := range ws {
		corrupt += w.Frames.Corrupt
	}
	if corrupt != uint64(src.calls.Load()) {
		t.Errorf("windows count %d corrupt frames, the source gave %d", corrupt, src.calls.Load())
	}
	if !strings.Contains(logs.String(), "corrupt frames skipped") {
		t.Errorf("nothing logged about corrupt frames:\n%s", logs.String())
	}
}
