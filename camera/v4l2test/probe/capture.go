package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edge-sensor/edge/camera"
)

func flagSet(name string) *flag.FlagSet {
	return flag.NewFlagSet(name, flag.ContinueOnError)
}

// window is one stats line: the fields of edge's MQTT stats payload that a
// capture-only run can fill, plus what the probe alone measures.
type window struct {
	Schema            int       `json:"schema"`
	Window            int       `json:"window"`
	Start             time.Time `json:"start"`
	End               time.Time `json:"end"`
	Frames            frames    `json:"frames"`
	SourceDownSeconds float64   `json:"source_down_seconds"`
	Probe             *probed   `json:"probe,omitempty"`
}

type frames struct {
	Processed uint64 `json:"processed"`
	Dropped   uint64 `json:"dropped"`
	Corrupt   uint64 `json:"corrupt"`
}

// probed is what the probe measures beyond edge's payload.
type probed struct {
	Width      int    `json:"width"`  // of the last frame
	Height     int    `json:"height"` // of the last frame
	Up         bool   `json:"up"`
	Reconnects uint64 `json:"reconnects"` // cumulative
	Matched    int    `json:"matched"`    // frames equal to a sample frame, byte for byte (with -expect)
	Unmatched  int    `json:"unmatched"`  // frames equal to none (with -expect)
	Blank      int    `json:"blank"`      // frames of a single luma value
	Distinct   int    `json:"distinct"`   // distinct sample frames seen so far, cumulative (with -expect)
	Expected   int    `json:"expected"`   // distinct non-blank sample frames (with -expect)
}

// captureCmd opens a source through camera.Open, reads it until ctx is done
// or -duration has passed, and prints a window line every -interval.
func captureCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fl := flagSet("capture")
	dev := fl.String("dev", "/dev/video0", "source spec for camera.Open")
	size := fl.String("size", "", "WxH (empty: the camera package's default)")
	fps := fl.Int("fps", 0, "frames per second to ask for")
	format := fl.String("format", "", "pixel format: yuyv, mjpeg, grey (empty: the camera package's choice)")
	interval := fl.Duration("interval", time.Second, "stats window")
	duration := fl.Duration("duration", 0, "stop after this long (0: on SIGTERM)")
	progress := fl.String("progress", "", "keep the count of frames read (delivered or corrupt) in this file, for probe write -pace")
	expect := fl.String("expect", "", "luma CRCs of the frames written into the device (from probe prep): match every captured frame against them")
	if err := fl.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := []camera.Option{camera.WithLogger(log), camera.WithFPS(*fps)}
	if *size != "" {
		w, h, err := parseSize(*size)
		if err != nil {
			return err
		}
		opts = append(opts, camera.WithSize(w, h))
	}
	if *format != "" {
		opts = append(opts, camera.WithFormat(*format))
	}
	var want map[uint32]bool
	if *expect != "" {
		var err error
		if _, _, want, err = readCRCs(*expect); err != nil {
			return err
		}
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	src, err := camera.Open(openCtx, *dev, opts...)
	cancel()
	if err != nil {
		return err
	}
	log.Info("probe capturing", "source", *dev)

	var (
		mu   sync.Mutex
		cur  probed // counts of the window in progress
		seen = map[uint32]bool{}
	)
	var count *counter
	if *progress != "" {
		var err error
		if count, err = newCounter(*progress); err != nil {
			src.Close()
			return err
		}
		defer count.close()
	}
	readErr := make(chan error, 1)
	go func() {
		for {
			f, err := src.Next(ctx)
			if err == nil || errors.Is(err, camera.ErrCorrupt) {
				count.inc()
			}
			switch {
			case err == nil:
			case errors.Is(err, camera.ErrCorrupt):
				log.Warn("corrupt frame", "err", err)
				continue
			case ctx.Err() != nil, errors.Is(err, fs.ErrClosed):
				readErr <- nil
				return
			default:
				readErr <- err
				return
			}
			mu.Lock()
			cur.Width, cur.Height = f.Width, f.Height
			switch {
			case flat(f.Luma):
				cur.Blank++
			case want != nil:
				if c := crc32.ChecksumIEEE(f.Luma); want[c] {
					cur.Matched++
					seen[c] = true
				} else {
					cur.Unmatched++
				}
			}
			mu.Unlock()
		}
	}()

	enc := json.NewEncoder(stdout)
	var last camera.SourceStats
	start := time.Now()
	emit := func(n int, end time.Time) error {
		st := src.Stats()
		mu.Lock()
		p := cur
		cur = probed{Width: cur.Width, Height: cur.Height}
		p.Distinct, p.Expected = len(seen), len(want)
		mu.Unlock()
		p.Up, p.Reconnects = st.Up, st.Reconnects
		w := window{
			Schema: 1, Window: n, Start: start, End: end,
			Frames: frames{
				Processed: st.Frames - last.Frames,
				Corrupt:   st.Corrupt - last.Corrupt,
			},
			SourceDownSeconds: (st.Down - last.Down).Seconds(),
			Probe:             &p,
		}
		last, start = st, end
		return enc.Encode(w)
	}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case now := <-tick.C:
			if err := emit(n, now); err != nil {
				src.Close()
				return err
			}
			continue
		case <-ctx.Done():
		case err = <-readErr:
		}
		// Close first: the last window then holds the final counts.
		cerr := src.Close()
		if eerr := emit(n, time.Now()); err == nil {
			err = eerr
		}
		if err == nil && cerr != nil {
			err = cerr
		}
		log.Info("probe done", "frames", src.Stats().Frames, "err", err)
		return err
	}
}

func parseSize(s string) (int, int, error) {
	ws, hs, ok := strings.Cut(strings.ToLower(s), "x")
	w, werr := strconv.Atoi(ws)
	h, herr := strconv.Atoi(hs)
	if !ok || werr != nil || herr != nil || w <= 0 || h <= 0 {
		return 0, 0, fmt.Errorf("bad size %q (want WxH)", s)
	}
	return w, h, nil
}

// flat reports whether a luma plane holds a single value (a blank frame).
func flat(luma []byte) bool {
	for _, v := range luma {
		if v != luma[0] {
			return false
		}
	}
	return true
}

// counter keeps a number in a file, rewritten in place: the frames a
// capture has read, which probe write -pace waits on.
type counter struct {
	f *os.File
	n uint64
}

func newCounter(name string) (*counter, error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, err
	}
	c := &counter{f: f}
	return c, c.write()
}

func (c *counter) inc() {
	if c == nil {
		return
	}
	c.n++
	c.write()
}

// write stores the count fixed-width, so a reader never sees a mix of two values' digits.
func (c *counter) write() error {
	_, err := c.f.WriteAt([]byte(fmt.Sprintf("%020d\n", c.n)), 0)
	return err
}

func (c *counter) close() {
	if c != nil {
		c.f.Close()
	}
}
