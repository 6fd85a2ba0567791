// Package preview serves the local preview: annotated frames as an MJPEG
// stream and a small live page.
//
// Privacy: frames leave the process only through this handler, which the
// edge command mounts only when the user turns the preview on, on an address
// the caller chooses (127.0.0.1 by default). Nothing is written to disk, and
// no frame is kept or encoded while nobody watches.
package preview

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the options.
const (
	DefaultMaxFPS      = 10
	DefaultJPEGQuality = 80
)

// Option configures a Server.
type Option func(*config)

type config struct {
	maxFPS  float64
	quality int
	log     *slog.Logger
}

// WithMaxFPS caps how many frames per second are annotated and encoded,
// whatever rate Update is called at. fps <= 0 removes the cap.
func WithMaxFPS(fps float64) Option {
	return func(c *config) { c.maxFPS = fps }
}

// WithJPEGQuality sets the JPEG quality, clamped to 1..100.
func WithJPEGQuality(q int) Option {
	return func(c *config) { c.quality = min(max(q, 1), 100) }
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// Server holds the latest annotated frame and stats and serves them over
// HTTP (see Handler). Its methods are safe for concurrent use.
type Server struct {
	cfg      config
	interval time.Duration // 0: no FPS cap

	// watchers counts connected stream and snapshot clients. It is atomic so
	// that Update, called for every camera frame, costs one load while nobody
	// watches.
	watchers atomic.Int64
	encodes  atomic.Uint64 // JPEG encodes done, for tests and debugging

	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	latest  *frame        // nil while nobody watches
	changed chan struct{} // closed and replaced when latest changes
	next    time.Time     // earliest time the next frame is admitted
	seq     uint64
	stats   []byte // latest stats as JSON
}

// frame is one annotated frame, encoded at most once, lazily, by whichever
// client needs it first; clients watching together share the bytes.
type frame struct {
	seq  uint64
	img  *image.RGBA
	once sync.Once
	jpeg []byte
	err  error
}

// New returns a Server. It starts no goroutines; Close ends open streams.
func New(opts ...Option) *Server {
	cfg := config{
		maxFPS:  DefaultMaxFPS,
		quality: DefaultJPEGQuality,
		log:     slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{
		cfg:     cfg,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		stats:   []byte("{}"),
	}
	if cfg.maxFPS > 0 {
		s.interval = time.Duration(float64(time.Second) / cfg.maxFPS)
	}
	return s
}

// Update offers the latest frame and its faces. While no client watches it
// returns at once. Otherwise, at most MaxFPS times a second, it draws the
// faces on a copy of img (so the caller may reuse img afterwards) and
// replaces the previous frame; encoding is left to the clients.
func (s *Server) Update(img image.Image, faces []Face) {
	if s.watchers.Load() == 0 || img == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.mu.Lock()
	ok := s.admit(time.Now())
	s.mu.Unlock()
	if !ok {
		return
	}
	// Annotate outside the lock: it is the costly part and touches only the copy.
	f := &frame{img: annotate(img, faces)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watchers.Load() == 0 {
		return // the last client left meanwhile; keep no frame
	}
	s.seq++
	f.seq = s.seq
	s.latest = f
	close(s.changed)
	s.changed = make(chan struct{})
}

// admit reports whether a frame at now fits the FPS cap. s.mu is held.
// next advances by whole intervals so the average rate stays at the cap
// despite camera jitter, and a quarter interval of slack keeps a camera that
// runs at exactly the cap from losing every other frame to jitter.
func (s *Server) admit(now time.Time) bool {
	if s.interval <= 0 {
		return true
	}
	if now.Before(s.next.Add(-s.interval / 4)) {
		return false
	}
	s.next = s.next.Add(s.interval)
	if s.next.Before(now) {
		// After a pause (or at the start) don't burst to catch up.
		s.next = now.Add(s.interval)
	}
	return true
}

// SetStats stores v, marshalled to JSON once, for /stats.json. On a marshal
// error the previous stats stay and the error is returned.
func (s *Server) SetStats(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("preview: marshal stats: %w", err)
	}
	s.mu.Lock()
	s.stats = b
	s.mu.Unlock()
	return nil
}

// Close ends all open streams and makes later Updates no-ops. The handler
// keeps answering /stats.json and the page. It is safe to call more than
// once. Call it before http.Server.Shutdown, which otherwise waits for
// streams that never go idle (e.g. via RegisterOnShutdown).
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return nil
}

// watch registers a client; the returned func unregisters it. The last
// client to leave drops the frame, so nothing is held while nobody watches.
func (s *Server) watch() (unwatch func()) {
	s.watchers.Add(1)
	return func() {
		if s.watchers.Add(-1) == 0 {
			s.mu.Lock()
			if s.watchers.Load() == 0 {
				s.latest = nil
			}
			s.mu.Unlock()
		}
	}
}

// current returns the latest frame (nil if none) and a channel closed when it
// is replaced.
func (s *Server) current() (*frame, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest, s.changed
}

func (s *Server) statsJSON() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// encode returns the frame as JPEG, encoding it on first use.
func (s *Server) encode(f *frame) ([]byte, error) {
	f.once.Do(func() {
		var buf bytes.Buffer
		// A JPEG of a camera frame is rarely larger than an eighth of its RGBA
		// size at usual qualities; one allocation in the common case.
		buf.Grow(len(f.img.Pix) / 8)
		if err := jpeg.Encode(&buf, f.img, &jpeg.Options{Quality: s.cfg.quality}); err != nil {
			f.err = fmt.Errorf("preview: encode frame %d: %w", f.seq, err)
			return
		}
		s.encodes.Add(1)
		f.jpeg = buf.Bytes()
		f.img = nil // only the JPEG is needed from now on
	})
	return f.jpeg, f.err
}
