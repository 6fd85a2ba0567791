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

// permanentError is a failure to open a network camera that waiting will
// not cure: the server answers, but not with a stream (HTTP 4xx, another
// content type). Open reports it at once instead of waiting.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// errStalled marks a session lost because it went too long without a
// frame: the source has been down since its last frame, not since the
// loss was noticed.
var errStalled = errors.New("no frame")

// stillDownEvery bounds the log lines about a source that stays down.
const stillDownEvery = time.Minute

// firstDialTimeout bounds the first connection to a network source that is
// waited for (WithWait): Open must not hang on a host that drops packets.
const firstDialTimeout = 20 * time.Second

// liveSource turns sessions into a Source that survives losing them: on loss
// it logs, marks itself down, and redials with exponential backoff inside
// Next until a session is back and delivers a frame.
type liveSource struct {
	name string
	dial dialFunc
	log  *slog.Logger

	minBackoff, maxBackoff time.Duration
	// wait sleeps between dial attempts; tests replace it to observe backoff.
	wait func(ctx context.Context, d time.Duration) error

	life context.Context // done on Close
	stop context.CancelFunc

	nextMu   sync.Mutex // held by Next, so Close can wait for it to return
	cur      session
	seq      uint64
	up       bool          // a frame came since the last loss (or Open)
	lastGood time.Time     // when the last frame came, or the source was opened
	backoff  time.Duration // wait before the next dial; 0 after a frame
	attempts int           // dials since the last frame
	loggedAt time.Time     // last "camera still down" line
	stats    statsKeeper
}

// newLiveSource dials the first session. If that fails, Open fails with the
// error, so that a wrong or missing device is reported at once; with wait
// (network cameras, which may boot after the device) the source starts down
// instead and Next keeps dialling with backoff, as after a loss.
func newLiveSource(ctx context.Context, name string, dial dialFunc, o options) (*liveSource, error) {
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &liveSource{
		name: name, dial: dial, log: o.log.With("source", name),
		minBackoff: o.minBackoff, maxBackoff: o.maxBackoff,
		wait: sleep, life: life, stop: stop,
	}
	dctx := ctx
	if o.wait {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, firstDialTimeout)
		defer cancel()
	}
	cur, err := dial(dctx, life)
	now := time.Now()
	if err != nil {
		var perm permanentError
		if !o.wait || ctx.Err() != nil || errors.As(err, &perm) {
			stop()
			return nil, err
		}
		s.log.Warn("camera not reachable; waiting for it, retrying with backoff", "err", err, "max_backoff", s.maxBackoff)
		s.stats.setDown(now, err)
		s.stats.attempt()
		s.backoff, s.attempts, s.loggedAt = s.minBackoff, 1, now
		return s, nil
	}
	s.cur, s.up, s.lastGood = cur, true, now
	s.stats.setUp(now)
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
			s.delivered(f.Time)
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
		since := time.Now()
		if errors.Is(err, errStalled) && s.up {
			// A camera that hangs with its connection open has been down
			// since its last frame, not since the stall was noticed.
			since = s.lastGood
		}
		if s.up {
			s.log.Warn("camera lost", "err", err)
		} else {
			s.log.Debug("camera lost again before a frame", "err", err)
		}
		s.up = false
		s.stats.setDown(since, err)
		if cerr := s.cur.close(); cerr != nil {
			s.log.Debug("closing lost session", "err", cerr)
		}
		s.cur = nil
	}
}

// delivered marks a frame: the source is up (again), and the backoff
// starts over at the next loss.
func (s *liveSource) delivered(t time.Time) {
	s.lastGood = t
	if !s.up {
		down := s.stats.setUp(t)
		s.log.Info("camera back", "down", down.Round(time.Millisecond), "attempts", s.attempts)
		s.up = true
	}
	s.backoff, s.attempts = 0, 0
}

// reconnect dials until a session is up, ctx is done or the source is
// closed. A session that connects but is lost again before its first frame
// (a camera that accepts and hangs up, or sends headers and nothing) does not
// reset the backoff: only a frame does.
func (s *liveSource) reconnect(ctx context.Context) error {
	for {
		if s.backoff > 0 {
			// Wait on both the caller's ctx and Close.
			wctx, cancel := context.WithCancel(ctx)
			stopAfter := context.AfterFunc(s.life, cancel)
			werr := s.wait(wctx, s.backoff)
			stopAfter()
			cancel()
			if s.life.Err() != nil {
				return fmt.Errorf("camera: %s: %w", s.name, fs.ErrClosed)
			}
			if werr != nil {
				return werr
			}
		}
		s.backoff = min(max(2*s.backoff, s.minBackoff), s.maxBackoff)
		s.attempts++
		s.stats.attempt()
		cur, err := s.dial(ctx, s.life)
		if err == nil {
			s.cur = cur
			s.log.Debug("camera reconnected; waiting for a frame", "attempts", s.attempts)
			return nil
		}
		if s.life.Err() != nil {
			return fmt.Errorf("camera: %s: %w", s.name, fs.ErrClosed)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.stats.setErr(err)
		s.log.Debug("camera reconnect failed", "attempt", s.attempts, "retry_in", s.backoff, "err", err)
		if now := time.Now(); now.Sub(s.loggedAt) >= stillDownEvery {
			s.log.Warn("camera still down; retrying with backoff", "attempts", s.attempts, "down", s.stats.get(now).Down.Round(time.Second), "err", err)
			s.loggedAt = now
		}
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
	k.st.Err = ""
	return down
}

// setDown marks the source lost since the given time, for the reason err.
func (k *statsKeeper) setDown(since time.Time, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.downSince.IsZero() {
		k.downSince = since
	}
	k.st.Up = false
	k.st.Err = err.Error()
}

func (k *statsKeeper) attempt() {
	k.mu.Lock()
	k.st.Attempts++
	k.mu.Unlock()
}

// setErr updates why a lost source is still down.
func (k *statsKeeper) setErr(err error) {
	k.mu.Lock()
	k.st.Err = err.Error()
	k.mu.Unlock()
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
