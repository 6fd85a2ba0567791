// Package camera provides frame sources: V4L2 devices, MJPEG over HTTP, image folders and archives, and video files.
package camera

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edge-sensor/edge/internal/redact"
)

// ErrCorrupt marks a frame that could not be decoded (a JPEG that does not
// decode, a truncated raw buffer). It is never fatal: the caller counts the
// frame as lost and calls Next again.
var ErrCorrupt = errors.New("corrupt frame")

// ErrTooLarge marks a frame or file refused before decoding because it
// would take more memory than WithMaxPixels allows. It wraps ErrCorrupt:
// such frames are counted and skipped like any undecodable one.
var ErrTooLarge = fmt.Errorf("%w: too large", ErrCorrupt)

// DefaultMaxPixels is the default WithMaxPixels: 4 MiP, 2560x1600 or
// 2688x1520 (4 MP cameras). edge's whole process measured 117 MB of peak
// RSS at 2560x1440 with the preview open, 256 MB at 3840x2160.
const DefaultMaxPixels = 4 << 20

// Frame is one picture from a Source.
//
// A Frame and the memory behind Luma and Image belong to the Source and stay
// valid until the next call to Next on that Source: sources reuse their
// buffers so that the hot path does not allocate a frame's worth of memory per
// frame. Use Clone to keep a frame longer.
type Frame struct {
	Seq           uint64    // 1 for the first frame a Source delivers, then +1 per frame
	Time          time.Time // wall-clock time the frame was received
	Width, Height int
	Luma          []byte      // Width*Height grey plane, stride = Width
	Image         image.Image // the colour picture when cheap to keep (*image.YCbCr, *YUYV, *image.Gray, ...); nil allowed
	// Name is the image's path inside a folder or archive source, e.g.
	// "happy/img_1.jpg" (data sets carry labels there); empty for live sources.
	Name string
}

// Clone returns a deep copy of f's Luma (and of Image when it is one of the
// types sources produce) that stays valid after the Source moves on.
func (f *Frame) Clone() *Frame {
	c := new(Frame)
	f.CopyTo(c)
	return c
}

// CopyTo makes dst a copy of f like Clone does, reusing dst's buffers (its
// Luma, and its Image when that has the same type as f's) so that copying a
// stream of same-sized frames allocates nothing once the buffers have grown.
// Whatever dst held is overwritten.
func (f *Frame) CopyTo(dst *Frame) {
	luma, prev := dst.Luma, dst.Image
	*dst = *f
	dst.Luma = append(luma[:0], f.Luma...)
	switch im := f.Image.(type) {
	case *image.YCbCr:
		cp, ok := prev.(*image.YCbCr)
		if !ok {
			cp = new(image.YCbCr)
		}
		y, cb, cr := cp.Y, cp.Cb, cp.Cr
		*cp = *im
		cp.Y = append(y[:0], im.Y...)
		cp.Cb = append(cb[:0], im.Cb...)
		cp.Cr = append(cr[:0], im.Cr...)
		dst.Image = cp
	case *YUYV:
		cp, ok := prev.(*YUYV)
		if !ok {
			cp = new(YUYV)
		}
		*cp = YUYV{Pix: append(cp.Pix[:0], im.Pix...), Stride: im.Stride, Rect: im.Rect}
		dst.Image = cp
	case *image.Gray:
		// Grey images from sources share their pixels with Luma.
		cp, ok := prev.(*image.Gray)
		if !ok {
			cp = new(image.Gray)
		}
		*cp = image.Gray{Pix: dst.Luma, Stride: dst.Width, Rect: image.Rect(0, 0, dst.Width, dst.Height)}
		dst.Image = cp
	}
}

// SourceStats are a Source's counters since Open.
type SourceStats struct {
	Frames     uint64        // frames delivered by Next
	Corrupt    uint64        // frames that failed to decode (Next returned ErrCorrupt)
	Reconnects uint64        // times a live source came back after being lost
	Down       time.Duration // total time a live source was lost, including an outage in progress
	Up         bool          // the source is delivering (false while lost, after EOF and after Close)
	BackAt     time.Time     // when a live source last came back from a loss; zero if it never did
	// Attempts counts the connections a live source tried after a loss or
	// while waited for at Open, failed or not: it grows while the source
	// is being reconnected, which tells a waiting source from a hung one.
	Attempts uint64
	// Err says why a live source is down (the loss or the last failed
	// reconnection, credentials redacted); empty while it is up.
	Err string
}

// Source delivers frames. Next and Close may be called from different
// goroutines, as may Stats; Next itself must not be called concurrently.
type Source interface {
	// Next blocks until the next frame. It returns io.EOF when a finite
	// source ends and an error wrapping ErrCorrupt for a bad frame (the
	// source goes on). A live source that is lost blocks Next, reconnecting,
	// until it is back or ctx is done.
	Next(ctx context.Context) (*Frame, error)
	Stats() SourceStats
	Close() error
}

// Option configures Open.
type Option func(*options)

type options struct {
	width, height int
	fps           int
	loop          bool
	format        string // "", "mjpeg", "yuyv" or "grey"
	log           *slog.Logger
	minBackoff    time.Duration
	maxBackoff    time.Duration
	maxPixels     int
	wait          bool // a live source unreachable at Open is waited for
	// maxSortBytes bounds the images of an archive not in name order that
	// are held in memory to be sorted; a larger one is read in archive order.
	maxSortBytes int64
}

// defaultMaxSortBytes is options.maxSortBytes unless a test changes it.
const defaultMaxSortBytes = 64 << 20

// WithSize asks for frames of w×h pixels. A V4L2 device must offer that
// size; a video file is scaled to it. Image folders and archives deliver
// their images at their own size.
func WithSize(w, h int) Option { return func(o *options) { o.width, o.height = w, h } }

// WithFPS sets the frame rate: the capture rate of a V4L2 device, the polling
// rate of a snapshot URL, and for image and video files the pace at which
// Next delivers (a video is also resampled to that rate). 0, the default,
// means the device's own rate, and for files as fast as frames are consumed.
func WithFPS(fps int) Option { return func(o *options) { o.fps = fps } }

// WithLoop makes image folders, archives and video files start over at the
// end instead of returning io.EOF.
func WithLoop(loop bool) Option { return func(o *options) { o.loop = loop } }

// WithFormat forces the V4L2 pixel format: "mjpeg", "yuyv" or "grey"
// ("jpeg" and "gray" are accepted too). The default picks what the device
// offers, preferring uncompressed formats at small sizes.
func WithFormat(format string) Option {
	return func(o *options) { o.format = strings.ToLower(strings.TrimSpace(format)) }
}

// WithLogger sets the logger for source loss and recovery (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithBackoff sets the delay between reconnection attempts of a lost live
// source: min, doubling up to max (defaults 250ms and 5s).
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithMaxPixels bounds the pictures a source decodes from encoded input
// (image files, archive entries, HTTP MJPEG parts and snapshots, V4L2 MJPEG
// frames): a picture whose header announces more than n pixels is not
// decoded but counted as corrupt (ErrTooLarge), and a file or part longer
// than maxEncodedBytes(n) is not read. Decoding needs several bytes per
// pixel, so this is what bounds the memory hostile or broken input can
// take. A V4L2 device's negotiated size is always allowed. Default
// DefaultMaxPixels.
func WithMaxPixels(n int) Option { return func(o *options) { o.maxPixels = n } }

// maxEncodedBytes bounds an encoded picture of at most maxPixels pixels: 4
// bytes a pixel (an 8-bit RGBA PNG that did not compress at all) and 64 KiB
// of headers and metadata.
func maxEncodedBytes(maxPixels int) int64 { return 4*int64(maxPixels) + 64<<10 }

func buildOptions(opts []Option) (options, error) {
	o := options{minBackoff: 250 * time.Millisecond, maxBackoff: 5 * time.Second, maxPixels: DefaultMaxPixels, maxSortBytes: defaultMaxSortBytes}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	switch o.format {
	case "", "yuyv", "mjpeg", "grey":
	case "jpeg":
		o.format = "mjpeg"
	case "gray":
		o.format = "grey"
	default:
		return o, fmt.Errorf("unknown pixel format %q (want mjpeg, yuyv or grey)", o.format)
	}
	switch {
	case o.width < 0 || o.height < 0 || (o.width == 0) != (o.height == 0):
		return o, fmt.Errorf("invalid size %dx%d", o.width, o.height)
	case o.fps < 0:
		return o, fmt.Errorf("invalid fps %d", o.fps)
	case o.maxPixels <= 0:
		return o, fmt.Errorf("invalid max pixels %d", o.maxPixels)
	case o.minBackoff <= 0 || o.maxBackoff < o.minBackoff:
		return o, fmt.Errorf("invalid backoff %v..%v", o.minBackoff, o.maxBackoff)
	}
	return o, nil
}

// Extensions by source kind, lower case.
var (
	imageExts = []string{".jpg", ".jpeg", ".png"}
	videoExts = []string{
		".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".mjpeg", ".mjpg", ".mpg", ".mpeg",
		".ts", ".m2ts", ".flv", ".wmv", ".3gp", ".ogv", ".y4m", ".h264", ".264", ".h265", ".hevc",
	}
)

// Open opens the frame source that spec names:
//
//   - "/dev/video0" (any path under /dev): a V4L2 capture device; prefer the
//     /dev/v4l/by-id/... links, which stay the same when a USB camera comes
//     back as another /dev/videoN
//   - "http://..." or "https://...": an MJPEG stream (multipart/x-mixed-replace) or a JPEG snapshot URL polled at WithFPS
//   - "rtsp://..." or "rtsps://...": a network stream decoded by ffmpeg
//   - a directory, a .tar, .tar.gz or .tgz of .jpg/.png images: those images sorted by name
//   - a single .jpg or .png: that image
//   - a video file (.mp4, .mkv, .avi, .mov, .webm, .mjpeg, ...): decoded by ffmpeg
//
// ctx bounds opening only; the source lives until Close. A V4L2 device must
// be there at Open; a network camera (HTTP, RTSP) that cannot be reached at
// Open is waited for (it may boot after this device): the source starts
// down, with SourceStats.Err saying why, and Next dials with backoff as
// after a loss. A malformed URL is an error at once. A live source lost
// later is reconnected with backoff inside Next; it counts as down from its
// last frame until a frame comes again.
func Open(ctx context.Context, spec string, opts ...Option) (Source, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("camera: open %q: %w", spec, err)
	}
	lower := strings.ToLower(spec)
	switch {
	case spec == "":
		return nil, errors.New("camera: open: empty source")
	case strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://"),
		strings.HasPrefix(lower, "rtsp://") || strings.HasPrefix(lower, "rtsps://"):
		if err := CheckURL(spec); err != nil {
			return nil, fmt.Errorf("camera: open: %w", err)
		}
		o.wait = true
		if strings.HasPrefix(lower, "http") {
			return openHTTP(ctx, spec, o)
		}
		return openFFmpegLive(ctx, spec, o)
	case strings.Contains(spec, "://"):
		return nil, fmt.Errorf("camera: open %q: unsupported URL scheme (want http, https, rtsp)", redact.URL(spec))
	case strings.HasPrefix(spec, "/dev/"):
		return openV4L2(ctx, spec, o, openGo4vl)
	}

	fi, err := os.Stat(spec)
	if err != nil {
		return nil, fmt.Errorf("camera: open %q: %w", spec, err)
	}
	if fi.IsDir() {
		return openImageDir(spec, o)
	}
	ext := strings.ToLower(filepath.Ext(spec))
	switch {
	case strings.HasSuffix(lower, ".tar"):
		return openTar(spec, false, o)
	case strings.HasSuffix(lower, ".tar.gz") || strings.HasSuffix(lower, ".tgz"):
		return openTar(spec, true, o)
	case hasExt(imageExts, ext):
		return openImageFiles(spec, []string{spec}, o)
	case hasExt(videoExts, ext):
		return openFFmpegFile(ctx, spec, o)
	}
	return nil, fmt.Errorf("camera: open %q: not a V4L2 device, URL, image directory, image archive (.tar, .tar.gz, .tgz), image (%s) or video file (%s)",
		spec, strings.Join(imageExts, " "), strings.Join(videoExts, " "))
}

// CheckURL reports whether a camera URL is well formed: parsable, with a
// host. The error never holds the URL's password.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL, credentials included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("malformed camera URL: %w", err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("malformed camera URL %q: no host", u.Redacted())
	}
	return nil
}

func hasExt(exts []string, ext string) bool {
	for _, e := range exts {
		if e == ext {
			return true
		}
	}
	return false
}

// pacer spaces frames 1/fps apart for sources that could deliver faster than
// real time (files). A zero pacer does not wait.
type pacer struct {
	every time.Duration
	next  time.Time
}

func newPacer(fps int) pacer {
	if fps <= 0 {
		return pacer{}
	}
	return pacer{every: time.Second / time.Duration(fps)}
}

// wait blocks until the next frame is due, ctx is done (its error) or stop
// is closed (fs.ErrClosed).
func (p *pacer) wait(ctx context.Context, stop <-chan struct{}) error {
	if p.every == 0 {
		return ctx.Err()
	}
	now := time.Now()
	if p.next.IsZero() || now.Sub(p.next) > p.every {
		// First frame, or the consumer fell behind by more than a frame:
		// restart the schedule rather than bursting to catch up.
		p.next = now
	}
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return fs.ErrClosed
		}
	}
	p.next = p.next.Add(p.every)
	return nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
