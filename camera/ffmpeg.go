package camera

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"io/fs"
	"net/url"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-sensor/edge/internal/redact"
)

// ffmpeg decodes video files and network streams. It writes grey PGM
// images to its stdout: raw grey pixels behind a few bytes of header that
// carry the size, so no ffprobe is needed and rotated or size-changing
// streams come out right.

// ffmpegStall is how long a network stream may go without a frame before it
// counts as lost.
const ffmpegStall = 15 * time.Second

func ffmpegArgs(input string, live bool, o options) []string {
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error"}
	if live {
		// TCP: UDP packet loss on busy networks shows as smeared frames.
		args = append(args, "-rtsp_transport", "tcp")
	} else if o.loop {
		args = append(args, "-stream_loop", "-1")
	}
	args = append(args, "-i", input, "-an", "-sn", "-dn")
	var vf string
	if o.fps > 0 {
		vf = "fps=" + strconv.Itoa(o.fps)
	}
	if o.width > 0 {
		if vf != "" {
			vf += ","
		}
		vf += fmt.Sprintf("scale=%d:%d", o.width, o.height)
	}
	if vf != "" {
		args = append(args, "-vf", vf)
	}
	return append(args, "-f", "image2pipe", "-c:v", "pgm", "-pix_fmt", "gray", "-")
}

func lookFFmpeg() (string, error) {
	p, err := exec.LookPath("ffmpeg")
	if err != nil {
		return "", fmt.Errorf("ffmpeg is needed for video files and RTSP (apt install ffmpeg): %w", err)
	}
	return p, nil
}

// openFFmpegFile decodes a video file. The first frame is decoded before
// Open returns, so that a file ffmpeg cannot read fails here.
func openFFmpegFile(ctx context.Context, file string, o options) (Source, error) {
	bin, err := lookFFmpeg()
	if err != nil {
		return nil, fmt.Errorf("camera: open %q: %w", file, err)
	}
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	sess, err := startFFmpeg(ctx, life, bin, file, ffmpegArgs(file, false, o), 0, pgmLimit(o))
	if err != nil {
		stop()
		return nil, fmt.Errorf("camera: open %q: %w", file, err)
	}
	s := &ffmpegFileSource{name: file, sess: sess, pace: newPacer(o.fps), life: life, stop: stop}
	s.stats.setUp(time.Now())
	return s, nil
}

// openFFmpegLive decodes a network stream, restarting ffmpeg when it is lost.
func openFFmpegLive(ctx context.Context, rawURL string, o options) (Source, error) {
	bin, err := lookFFmpeg()
	if err != nil {
		return nil, fmt.Errorf("camera: open: %w", err)
	}
	name := redact.URL(rawURL)
	if u, err := url.Parse(rawURL); err == nil {
		name = u.Redacted()
	}
	args := ffmpegArgs(rawURL, true, o)
	dial := func(call, life context.Context) (session, error) {
		s, err := startFFmpeg(call, life, bin, name, args, ffmpegStall, pgmLimit(o))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		o.log.Info("camera opened", "source", name, "kind", "ffmpeg")
		return s, nil
	}
	s, err := newLiveSource(ctx, name, dial, o)
	if err != nil {
		return nil, fmt.Errorf("camera: %w", err)
	}
	return s, nil
}

// ffmpegSession is one ffmpeg process. A goroutine reads its frames into a
// few recycled buffers, so that Next can honour ctx and a stall is noticed.
type ffmpegSession struct {
	name    string
	cmd     *exec.Cmd
	frames  chan pgmFrame
	free    chan []byte
	done    chan struct{} // closed when the reader exits; err is then set
	err     error
	stderr  *tailBuffer
	killed  atomic.Bool // by close or the watchdog
	stalled atomic.Bool // by the watchdog

	stopLife func() bool // undoes the kill on the end of life

	held   []byte    // buffer behind the last frame returned, recycled on the next
	primed *pgmFrame // the first frame, read by startFFmpeg
	gray   image.Gray
}

type pgmFrame struct {
	w, h int
	pix  []byte
}

// startFFmpeg starts ffmpeg and waits for its first frame (or failure),
// bounded by ctx. The process is killed when life is done, and when stall > 0
// and it goes that long without a frame.
// pgmLimit is the most pixels a frame from ffmpeg may have: ffmpeg scales
// to WithSize when it is set, so only a stream without one can exceed it.
func pgmLimit(o options) int { return max(o.maxPixels, o.width*o.height) }

func startFFmpeg(ctx, life context.Context, bin, name string, args []string, stall time.Duration, maxPixels int) (*ffmpegSession, error) {
	cmd := exec.Command(bin, args...)
	s := &ffmpegSession{
		name: name, cmd: cmd,
		frames: make(chan pgmFrame, 1), free: make(chan []byte, 3), done: make(chan struct{}),
		stderr: &tailBuffer{max: 2048},
	}
	cmd.Stderr = s.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ffmpeg: %w", err)
	}
	for range cap(s.free) {
		s.free <- nil
	}
	s.stopLife = context.AfterFunc(life, s.kill)
	go s.read(out, stall, maxPixels)

	var first pgmFrame
	select {
	case first = <-s.frames:
	case <-s.done:
		s.stopLife()
		err := s.err
		if err == io.EOF {
			err = errors.New("ffmpeg gave no frames")
		}
		return nil, err
	case <-ctx.Done():
		s.close()
		return nil, ctx.Err()
	}
	s.primed = &first
	return s, nil
}

func (s *ffmpegSession) read(out io.Reader, stall time.Duration, maxPixels int) {
	defer close(s.done)
	// The watchdog only runs while waiting for ffmpeg, not while waiting
	// for the consumer to take a frame or give a buffer back.
	watchdog := time.AfterFunc(time.Hour, func() { s.stalled.Store(true); s.kill() })
	watchdog.Stop()
	defer watchdog.Stop()
	br := bufio.NewReaderSize(out, 64<<10)
	err := func() error {
		for {
			buf := <-s.free
			if stall > 0 {
				watchdog.Reset(stall)
			}
			w, h, err := readPGMHeader(br)
			if err != nil {
				return err
			}
			if int64(w)*int64(h) > int64(maxPixels) {
				// Not a frame to skip: ffmpeg would go on sending such frames.
				return fmt.Errorf("ffmpeg frame %dx%d is more than the limit of %d pixels: set a smaller size", w, h, maxPixels)
			}
			buf = grow(buf, w*h)
			if _, err := io.ReadFull(br, buf); err != nil {
				return fmt.Errorf("truncated frame: %w", err)
			}
			watchdog.Stop()
			s.frames <- pgmFrame{w, h, buf}
		}
	}()
	watchdog.Stop()
	if err != io.EOF {
		s.kill() // it may go on writing frames nobody reads
	}
	werr := s.cmd.Wait()
	switch {
	case s.stalled.Load():
		s.err = fmt.Errorf("ffmpeg: %w for %v", errStalled, stall)
	case werr != nil && !s.killed.Load():
		s.err = fmt.Errorf("ffmpeg: %w: %s", werr, s.stderr.String())
	default:
		s.err = err // io.EOF at a clean end
	}
}

// readPGMHeader reads "P5 <w> <h> <maxval>" and the single whitespace byte after it.
func readPGMHeader(br *bufio.Reader) (w, h int, err error) {
	var magic string
	var maxval int
	if _, err := fmt.Fscan(br, &magic, &w, &h, &maxval); err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			// Nothing more: ffmpeg ended at a frame boundary.
			if _, perr := br.Peek(1); perr == io.EOF {
				return 0, 0, io.EOF
			}
		}
		return 0, 0, fmt.Errorf("pgm header: %w", err)
	}
	if magic != "P5" || maxval != 255 || w <= 0 || h <= 0 {
		return 0, 0, fmt.Errorf("pgm header: unexpected %q %dx%d maxval %d", magic, w, h, maxval)
	}
	if _, err := br.ReadByte(); err != nil {
		return 0, 0, fmt.Errorf("pgm header: %w", err)
	}
	return w, h, nil
}

func (s *ffmpegSession) next(ctx context.Context, f *Frame) error {
	var fr pgmFrame
	if s.primed != nil {
		fr, s.primed = *s.primed, nil
	} else {
		if s.held != nil {
			s.free <- s.held // the previous frame is no longer valid
			s.held = nil
		}
		select {
		case fr = <-s.frames:
		case <-s.done:
			select {
			case fr = <-s.frames:
			default:
				return s.err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.held = fr.pix
	s.gray = image.Gray{Pix: fr.pix, Stride: fr.w, Rect: image.Rect(0, 0, fr.w, fr.h)}
	f.Time, f.Width, f.Height, f.Luma, f.Image = time.Now(), fr.w, fr.h, fr.pix, &s.gray
	return nil
}

func (s *ffmpegSession) kill() {
	s.killed.Store(true)
	if s.cmd.Process != nil {
		s.cmd.Process.Kill() //nolint:errcheck // it may have exited already
	}
}

func (s *ffmpegSession) close() error {
	s.stopLife()
	select {
	case <-s.done:
	default:
		s.kill()
		// Unblock the reader if it waits to hand over a frame or for a buffer.
		for {
			select {
			case <-s.done:
				return nil
			case <-s.frames:
			case s.free <- nil:
			}
		}
	}
	return nil
}

// ffmpegFileSource is a finite Source over one ffmpeg process.
type ffmpegFileSource struct {
	name  string
	pace  pacer
	stats statsKeeper

	life context.Context // done on Close, which kills ffmpeg and so ends a blocked Next
	stop context.CancelFunc

	mu     sync.Mutex
	sess   *ffmpegSession
	seq    uint64
	closed bool
}

func (s *ffmpegFileSource) Next(ctx context.Context) (*Frame, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("camera: %s: %w", s.name, fs.ErrClosed)
	}
	f := &Frame{}
	if err := s.sess.next(ctx, f); err != nil {
		if s.life.Err() != nil {
			return nil, fmt.Errorf("camera: %s: %w", s.name, fs.ErrClosed)
		}
		if err == io.EOF {
			s.stats.ended()
			return nil, io.EOF
		}
		if ctx.Err() != nil {
			return nil, err
		}
		s.stats.ended()
		return nil, fmt.Errorf("camera: %s: %w", s.name, err)
	}
	if err := s.pace.wait(ctx, s.life.Done()); err != nil {
		if errors.Is(err, fs.ErrClosed) {
			return nil, fmt.Errorf("camera: %s: %w", s.name, err)
		}
		return nil, err
	}
	s.seq++
	f.Seq = s.seq
	s.stats.frame()
	return f, nil
}

func (s *ffmpegFileSource) Stats() SourceStats { return s.stats.get(time.Now()) }

func (s *ffmpegFileSource) Close() error {
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.stats.close(time.Now())
	return s.sess.close()
}

// tailBuffer keeps the last max bytes written to it (ffmpeg's stderr, for errors).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(trimSpace(t.b))
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
