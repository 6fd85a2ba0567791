package pipeline

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// A source of nothing but corrupt frames (a looped empty file, a camera
// sending garbage) would otherwise be read in a busy loop: hundreds of
// thousands of frames a second, a core burnt, and nothing in the logs. The
// capture loop backs off once corrupt frames come in a row, and says so at
// a bounded rate.
const (
	// corruptStreak is how many corrupt frames in a row are read at full
	// speed: an odd broken file or MJPEG glitch costs nothing.
	corruptStreak = 8
	// corruptMinBackoff doubles per further corrupt frame up to corruptMaxBackoff.
	corruptMinBackoff = time.Millisecond
	corruptMaxBackoff = time.Second
	// corruptLogEvery bounds the log lines about corrupt frames.
	corruptLogEvery = 30 * time.Second
)

// corruptGuard counts corrupt frames in a row for the capture goroutine,
// sleeps between them when they keep coming, and logs them rate-limited.
type corruptGuard struct {
	log *slog.Logger
	// sleep waits d or until ctx is done; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time

	streak   atomic.Uint64 // corrupt frames since the last good one; read by Run's goroutine
	backoff  time.Duration
	loggedAt time.Time // zero: nothing logged yet
	unlogged uint64    // corrupt frames since the last log line
}

func newCorruptGuard(log *slog.Logger) *corruptGuard {
	return &corruptGuard{log: log, sleep: sleepCtx, now: time.Now}
}

// corrupt records one corrupt frame and, past corruptStreak in a row,
// waits before the next read. It returns ctx's error if ctx ends meanwhile.
func (g *corruptGuard) corrupt(ctx context.Context, err error) error {
	n := g.streak.Add(1)
	g.unlogged++
	now := g.now()
	if g.loggedAt.IsZero() || now.Sub(g.loggedAt) >= corruptLogEvery {
		g.log.Warn("corrupt frames skipped", "count", g.unlogged, "in_a_row", n, "last_err", err)
		g.loggedAt, g.unlogged = now, 0
	}
	if n < corruptStreak {
		return nil
	}
	g.backoff = min(max(2*g.backoff, corruptMinBackoff), corruptMaxBackoff)
	return g.sleep(ctx, g.backoff)
}

// good records a good frame, ending a run of corrupt ones.
func (g *corruptGuard) good() {
	if g.streak.Load() == 0 {
		return
	}
	if g.streak.Load() >= corruptStreak {
		g.log.Info("frames decode again", "corrupt_in_a_row", g.streak.Load())
	}
	g.streak.Store(0)
	g.backoff = 0
}

// stuck reports whether the source has yielded only corrupt frames for a
// while (the capture loop is backing off).
func (g *corruptGuard) stuck() bool { return g.streak.Load() >= corruptStreak }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
