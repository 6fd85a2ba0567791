package camera

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"
)

// session is one connection to a live source: an open V4L2 device, an HTTP
// stream, an ffmpeg process. When next fails with anything but ErrCorrupt
// or the caller's ctx, the session is lost and liveSource dials a new one.
type session interface {
	next(ctx context.Context, f *Frame) error
	close() error
}

// dialFunc opens a session. call bounds the attempt; the session lives until
// life is done or it is closed.
type dialFunc func(call, life context.Context) (session, error)

// liveSource turns sessions into a Source that survives losing them: on loss
// it logs, marks itself down, and redials with exponential backoff inside
// Next until a session is back.
type liveSource struct {
	name string
	dial dialFunc
	log  *slog.Logger

	minBackoff, maxBackoff time.Duration
	// wait sleeps between dial attempts; tests replace it to observe backoff.
	wait func(ctx context.Context, d time.Duration) error

	life context.Context // done on Close
	stop context.CancelFunc

	nextMu sync.Mutex // held by Next, so Close can wait for it to return
	cur    session
	seq    uint64
	stats  statsKeeper
}

// newLiveSource dials the first session, failing if that fails, so that
// Open reports a wrong or missing source at once.
func newLiveSource(ctx context.Context, name string, dial dialFunc, o options) (*liveSource, error) {
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &liveSource{
		name: name, dial: dial, log: o.log.With("source", name),
		minBackoff: o.minBackoff, maxBackoff: o.maxBackoff,
		wait: sleep, life: life, stop: stop,
	}
	cur, err := dial(ctx, life)
	if err != nil {
		stop()
		return nil, err
	}
	s.cur = cur
	s.stats.setUp(time.Now())
	return s, nil
}

func (s *liveSource) Next(ctx context.Context) (*Frame, error) {
	s.nextMu.Lock()
	defer s.nextMu.Unlock()
	for {
		if err := s.life.Err(); err != nil {
			return nil, fmt.Errorf("camera: %s: %w", s.name, fs.ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.cur == nil {
			if err := s.reconnect(ctx); err != nil {
				return nil, err
			}
		}
		f := &Frame{}
		err := s.cur.next(ctx, f)
		switch {
		case err == nil:
			s.seq++
			f.Seq = s.seq
			if f.Time.IsZero() {
				f.Time = time.Now()
			}
			s.stats.frame()
			return f, nil
		case errors.Is(err, ErrCorrupt):
			s.stats.corrupt()
			return nil, fmt.Errorf("camera: %s: %w", s.name, err)
		case ctx.Err() != nil:
			// The caller gave up; the session itself is fine.
			return nil, ctx.Err()
		case s.life.Err() != nil:
			continue // closed while reading
		}
		s.log.Warn("camera lost", "err", err)
		s.stats.setDown(time.Now())
		if cerr := s.cur.close(); cerr != nil {
			s.log.Debug("closing lost session", "err", cerr)
		}
		s.cur = nil
	}
}

// reconnect dials until a session is up, ctx is done or the source is closed.
func (s *liveSource) reconnect(ctx context.Context) error {
	backoff := s.minBackoff
	for attempt := 1; ; attempt++ {
		cur, err := s.dial(ctx, s.life)
		if err == nil {
			s.cur = cur
			down := s.stats.setUp(time.Now())
			s.log.Info("camera back", "down", down.Round(time.Millisecond), "attempts", attempt)
			return nil
		}
		s.log.Debug("camera reconnect failed", "attempt", attempt, "retry_in", backoff, "err", err)
		// Wait on both the caller's ctx and Close.
		wctx, cancel := context.WithCancel(ctx)
		stopAfter := context.AfterFunc(s.life, cancel)
		werr := s.wait(wctx, backoff)
		stopAfter()
		cancel()
		if s.life.Err() != nil {
			return fmt.Errorf("camera: %s: %w", s.name, fs.ErrClosed)
		}
		if werr != nil {
			return werr
		}
		backoff = min(2*backoff, s.maxBackoff)
	}
}

func (s *liveSource) Stats() SourceStats { return s.stats.get(time.Now()) }

// Close ends the source; a Next blocked in it returns an error wrapping fs.ErrClosed.
func (s *liveSource) Close() error {
	s.stop()
	s.nextMu.Lock()
	defer s.nextMu.Unlock()
	s.stats.close(time.Now())
	if s.cur == nil {
		return nil
	}
	err := s.cur.close()
	s.cur = nil
	if err != nil {
		return fmt.Errorf("camera: %s: close: %w", s.name, err)
	}
	return nil
}

// statsKeeper holds SourceStats for concurrent readers.
type statsKeeper struct {
	mu        sync.Mutex
	st        SourceStats
	downSince time.Time // zero unless a live source is lost
	closed    bool
}

func (k *statsKeeper) frame() {
	k.mu.Lock()
	k.st.Frames++
	k.mu.Unlock()
}

func (k *statsKeeper) corrupt() {
	k.mu.Lock()
	k.st.Corrupt++
	k.mu.Unlock()
}

// setUp marks the source delivering. Coming back from a loss counts a
// reconnect; the outage's length is returned.
func (k *statsKeeper) setUp(now time.Time) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	var down time.Duration
	if !k.downSince.IsZero() {
		down = now.Sub(k.downSince)
		k.st.Down += down
		k.st.Reconnects++
		k.st.BackAt = now
		k.downSince = time.Time{}
	}
	k.st.Up = !k.closed
	return down
}

// setDown marks the source lost from now on.
func (k *statsKeeper) setDown(now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.downSince.IsZero() {
		k.downSince = now
	}
	k.st.Up = false
}

// ended marks a finite source as no longer delivering, without counting it as down.
func (k *statsKeeper) ended() {
	k.mu.Lock()
	k.st.Up = false
	k.mu.Unlock()
}

// close stops the clock of an outage in progress, since a closed source is not down.
func (k *statsKeeper) close(now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.downSince.IsZero() {
		k.st.Down += now.Sub(k.downSince)
		k.downSince = time.Time{}
	}
	k.st.Up = false
	k.closed = true
}

func (k *statsKeeper) get(now time.Time) SourceStats {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.st
	if !k.downSince.IsZero() {
		st.Down += now.Sub(k.downSince)
	}
	return st
}
