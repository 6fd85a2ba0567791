package camera

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// videoDevice is the part of a V4L2 device that the source needs. The go4vl
// implementation lives in v4l2_go4vl.go; tests use a fake, so that format
// choice and reconnection run without /dev/video*.
type videoDevice interface {
	// Formats lists the pixel formats the device offers with their frame sizes.
	Formats() ([]deviceFormat, error)
	// SetFormat asks for a format, size and rate (fps 0: leave as is) and
	// returns what the driver settled on.
	SetFormat(fourcc uint32, width, height, fps int) (negotiated, error)
	// Start starts streaming until ctx is done or Close.
	Start(ctx context.Context) error
	// Read returns the next captured frame. release hands its buffer back
	// and must be called once data is no longer needed. An error means the
	// stream is over (device gone, stream stopped).
	Read(ctx context.Context) (data []byte, release func(), err error)
	Close() error
}

// deviceOpener opens the device at path.
type deviceOpener func(path string) (videoDevice, error)

// deviceFormat is one pixel format a device offers.
type deviceFormat struct {
	fourcc uint32
	desc   string
	sizes  []frameSize // nil when the driver does not enumerate sizes: any size may work
}

// frameSize is a discrete size (min = max) or a stepwise range of sizes.
type frameSize struct {
	minW, maxW, stepW int
	minH, maxH, stepH int
}

func discrete(w, h int) frameSize { return frameSize{minW: w, maxW: w, minH: h, maxH: h} }

// nearest returns the size in s closest to w×h.
func (s frameSize) nearest(w, h int) (int, int) {
	snap := func(v, lo, hi, step int) int {
		v = max(lo, min(hi, v))
		if step > 1 {
			v = lo + (v-lo)/step*step
		}
		return v
	}
	return snap(w, s.minW, s.maxW, s.stepW), snap(h, s.minH, s.maxH, s.stepH)
}

func (s frameSize) String() string {
	if s.minW == s.maxW && s.minH == s.maxH {
		return fmt.Sprintf("%dx%d", s.minW, s.minH)
	}
	return fmt.Sprintf("%dx%d-%dx%d", s.minW, s.minH, s.maxW, s.maxH)
}

// negotiated is the format a device actually streams.
type negotiated struct {
	fourcc        uint32
	width, height int
	stride        int // bytes per line of raw formats; 0 = tightly packed
	fps           int // 0 when unknown
}

func fourCC(s string) uint32 {
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// Pixel formats the source decodes.
var (
	fccYUYV  = fourCC("YUYV")
	fccMJPEG = fourCC("MJPG")
	fccJPEG  = fourCC("JPEG")
	fccGREY  = fourCC("GREY")
)

func fourCCString(c uint32) string {
	b := []byte{byte(c), byte(c >> 8), byte(c >> 16), byte(c >> 24)}
	return strings.TrimRight(string(b), " \x00")
}

// formatsFor lists the fourccs that can serve the wanted format name, best first.
func formatsFor(name string, w, h int) []uint32 {
	switch name {
	case "yuyv":
		return []uint32{fccYUYV}
	case "mjpeg":
		return []uint32{fccMJPEG, fccJPEG}
	case "grey":
		return []uint32{fccGREY}
	}
	// Uncompressed frames cost no decoding but take USB bandwidth that
	// grows with the size: above VGA they often only come at a few fps,
	// while MJPEG keeps the full rate.
	if w*h <= 640*480 {
		return []uint32{fccGREY, fccYUYV, fccMJPEG, fccJPEG}
	}
	return []uint32{fccMJPEG, fccJPEG, fccGREY, fccYUYV}
}

// Without WithSize the source asks for VGA, or the offered size nearest to it:
// enough for face detection at a few metres, cheap to process.
const defaultWidth, defaultHeight = 640, 480

// chooseFormat picks the pixel format and size to ask the device for.
func chooseFormat(offered []deviceFormat, o options) (fourcc uint32, w, h int, err error) {
	tw, th := o.width, o.height
	exact := tw > 0
	if !exact {
		tw, th = defaultWidth, defaultHeight
	}
	type choice struct {
		fourcc uint32
		w, h   int
		rank   int
	}
	var best *choice
	for rank, c := range formatsFor(o.format, tw, th) {
		i := slices.IndexFunc(offered, func(f deviceFormat) bool { return f.fourcc == c })
		if i < 0 {
			continue
		}
		sizes := offered[i].sizes
		if sizes == nil { // not enumerable: ask for the target and check what the driver gives
			sizes = []frameSize{discrete(tw, th)}
		}
		for _, s := range sizes {
			w, h := s.nearest(tw, th)
			if exact && (w != tw || h != th) {
				continue
			}
			// Nearer in area wins; at equal distance the preferred format (lower rank) wins.
			if best == nil || abs(w*h-tw*th) < abs(best.w*best.h-tw*th) {
				best = &choice{c, w, h, rank}
			}
		}
	}
	if best == nil {
		want := "a supported pixel format (YUYV, MJPEG, GREY)"
		if o.format != "" {
			want = strings.ToUpper(o.format)
		}
		if exact {
			want = fmt.Sprintf("%dx%d in %s", tw, th, want)
		}
		return 0, 0, 0, fmt.Errorf("does not offer %s; it offers: %s", want, describeFormats(offered))
	}
	return best.fourcc, best.w, best.h, nil
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// describeFormats lists formats and sizes for error messages.
func describeFormats(offered []deviceFormat) string {
	if len(offered) == 0 {
		return "no capture formats"
	}
	var b strings.Builder
	for i, f := range offered {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(fourCCString(f.fourcc))
		if f.desc != "" {
			fmt.Fprintf(&b, " (%s)", f.desc)
		}
		if f.sizes == nil {
			b.WriteString(" any size")
		}
		for _, s := range f.sizes {
			b.WriteString(" ")
			b.WriteString(s.String())
		}
	}
	return b.String()
}

// stallTimeout is how long a V4L2 device may go without a frame before the
// source treats it as lost: drivers of unplugged USB cameras do not always
// report an error, they just stop.
func stallTimeout(fps int) time.Duration {
	d := 5 * time.Second
	if fps > 0 {
		d = max(d, 10*time.Second/time.Duration(fps))
	}
	return d
}

func openV4L2(ctx context.Context, path string, o options, open deviceOpener) (Source, error) {
	return newV4L2Source(ctx, path, o, open, stallTimeout(o.fps))
}

func newV4L2Source(ctx context.Context, path string, o options, open deviceOpener, stall time.Duration) (*liveSource, error) {
	dial := func(call, life context.Context) (session, error) {
		return dialV4L2(life, path, o, open, stall)
	}
	s, err := newLiveSource(ctx, path, dial, o)
	if err != nil {
		return nil, fmt.Errorf("camera: %w", err)
	}
	return s, nil
}

// dialV4L2 opens, configures and starts the device.
func dialV4L2(life context.Context, path string, o options, open deviceOpener, stall time.Duration) (_ session, err error) {
	dev, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			dev.Close()
		}
	}()
	formats, err := dev.Formats()
	if err != nil {
		return nil, fmt.Errorf("%s: list formats: %w", path, err)
	}
	fourcc, w, h, err := chooseFormat(formats, o)
	if err != nil {
		return nil, fmt.Errorf("%s %w", path, err)
	}
	got, err := dev.SetFormat(fourcc, w, h, o.fps)
	if err != nil {
		return nil, fmt.Errorf("%s: set format %s %dx%d: %w", path, fourCCString(fourcc), w, h, err)
	}
	if got.fourcc != fourcc || got.width != w || got.height != h {
		return nil, fmt.Errorf("%s: asked for %s %dx%d, driver gave %s %dx%d; it offers: %s",
			path, fourCCString(fourcc), w, h, fourCCString(got.fourcc), got.width, got.height, describeFormats(formats))
	}
	if err := dev.Start(life); err != nil {
		return nil, fmt.Errorf("%s: start streaming: %w", path, err)
	}
	o.log.Info("camera opened", "source", path, "format", fourCCString(got.fourcc),
		"width", got.width, "height", got.height, "fps", got.fps)
	// The negotiated size is allowed whatever the pixel limit: it is what was asked for.
	dec := decoder{maxPixels: max(o.maxPixels, got.width*got.height)}
	return &v4l2Session{dev: dev, format: got, stall: stall, dec: dec}, nil
}

// v4l2Session decodes the frames of one started device.
type v4l2Session struct {
	dev    videoDevice
	format negotiated
	stall  time.Duration
	dec    decoder
}

func (s *v4l2Session) next(ctx context.Context, f *Frame) error {
	rctx, cancel := context.WithTimeoutCause(ctx, s.stall, fmt.Errorf("%w from device for %v", errStalled, s.stall))
	data, release, err := s.dev.Read(rctx)
	cause := context.Cause(rctx) // before cancel, which would set its own
	cancel()
	if err != nil {
		if errors.Is(cause, errStalled) {
			return cause
		}
		return err
	}
	defer release()
	f.Time = time.Now()
	g := s.format
	switch g.fourcc {
	case fccYUYV:
		return s.dec.yuyv(data, g.width, g.height, max(g.stride, 2*g.width), f)
	case fccGREY:
		return s.dec.grey(data, g.width, g.height, max(g.stride, g.width), f)
	default:
		if len(data) == 0 {
			return fmt.Errorf("%w: empty frame", ErrCorrupt)
		}
		return s.dec.jpeg(data, f)
	}
}

func (s *v4l2Session) close() error { return s.dev.Close() }
