package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// writeCmd feeds a sample sequence into a v4l2loopback device through the
// V4L2 output API and write(2), as a camera would deliver it: mid-grey
// frames until the -go file exists (so that the reader is streaming before
// the sequence starts), the sequence once (or in a loop), then mid-grey
// frames again until it is stopped. A .tar of JPEGs is written as MJPEG, a
// .yuyv file of raw frames (from probe prep) as YUYV.
func writeCmd(ctx context.Context, args []string) error {
	fl := flagSet("write")
	dev := fl.String("dev", "/dev/video10", "v4l2loopback device")
	src := fl.String("src", "people.tar", "frames: a .tar of JPEGs (MJPEG) or a .yuyv file of raw frames (YUYV)")
	size := fl.String("size", "640x480", "frame size of a .yuyv file")
	blankFile := fl.String("blank", "", "JPEG to write between sequences (MJPEG; default: one is encoded)")
	fps := fl.Int("fps", 10, "frames per second")
	goFile := fl.String("go", "", "start the sequence once this file exists (empty: at once)")
	loop := fl.Bool("loop", false, "repeat the sequence instead of ending on grey frames")
	pace := fl.String("pace", "", "a file of the reader's frame count (probe capture -progress) or the URL of edge's /metrics: write the next frame only once the reader has taken one more, so that a slow reader drops nothing")
	paceTimeout := fl.Duration("pace-timeout", 10*time.Second, "write anyway after waiting this long on -pace")
	sabotage := fl.String("sabotage", "", "break the stream on purpose: truncate (write each frame half-length)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *fps <= 0 {
		return fmt.Errorf("write: -fps must be > 0")
	}
	seq, err := openSequence(*src, *size, *blankFile)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	defer seq.close()

	fd, err := syscall.Open(*dev, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("write: open %s: %w", *dev, err)
	}
	defer syscall.Close(fd)
	bufSize, err := setOutputFormat(fd, seq.pixfmt, seq.w, seq.h, seq.bytesPerLine, seq.sizeImage)
	if err != nil {
		return fmt.Errorf("write: %s: %w", *dev, err)
	}
	if err := setOutputRate(fd, *fps); err != nil {
		return fmt.Errorf("write: %s: %w", *dev, err)
	}
	put := func(b []byte) error {
		if len(b) > bufSize {
			return fmt.Errorf("write: %s: a %d-byte frame does not fit the driver's %d-byte buffer", *dev, len(b), bufSize)
		}
		if *sabotage == "truncate" {
			b = b[:len(b)/2]
		}
		for {
			_, err := syscall.Write(fd, b)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("write: %s: %w", *dev, err)
			}
			return nil
		}
	}

	tick := time.NewTicker(time.Second / time.Duration(*fps))
	defer tick.Stop()
	const (
		waiting = iota
		playing
		done
	)
	phase, next := waiting, 0
	var base, paced uint64 // reader's count at the start; frames written since
	for n := 0; ; n++ {
		if phase == waiting && (*goFile == "" || exists(*goFile)) {
			phase = playing
			if *pace != "" {
				base = drain(ctx, *pace)
			}
			fmt.Fprintf(os.Stderr, "write: sequence start: %d frames\n", seq.n)
		}
		out := seq.blank
		if phase == playing {
			if out, err = seq.frame(next); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			next++
		}
		if err := put(out); err != nil {
			return err
		}
		// Pacing starts with the sequence (the reader opens the device only
		// after the writer's first frames): the reader's count goes up by
		// one for every frame it takes, so frame k is written once it has
		// taken k frames since the start, however slow it is.
		if *pace != "" && phase != waiting {
			paced++
			waitProgress(ctx, *pace, base+paced, *paceTimeout)
		}
		if n == 0 {
			fmt.Fprintf(os.Stderr, "write: ready: %s %s %dx%d at %d fps, buffer %d bytes\n",
				*dev, fourCCString(seq.pixfmt), seq.w, seq.h, *fps, bufSize)
		}
		if phase == playing && next == seq.n {
			next = 0
			if !*loop {
				phase = done
				fmt.Fprintf(os.Stderr, "write: sequence done\n")
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// readProgress reads a reader's frame count: the number in a file, or the
// sum of edge's frames processed, dropped and corrupt counters on its
// Prometheus /metrics page.
func readProgress(src string) (uint64, error) {
	if !strings.HasPrefix(src, "http://") {
		data, err := os.ReadFile(src)
		if err != nil {
			return 0, err
		}
		return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	}
	resp, err := http.Get(src)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n uint64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		switch name {
		case "edge_pipeline_frames_processed_total", "edge_pipeline_frames_dropped_total", "edge_pipeline_frames_corrupt_total":
		default:
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); ok && err == nil {
			n += uint64(v)
		}
	}
	return n, sc.Err()
}

// waitProgress polls src until its count reaches want, for at most timeout.
func waitProgress(ctx context.Context, src string, want uint64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if n, err := readProgress(src); err == nil && n >= want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drain stops writing until the reader has taken every frame already
// written (its count, once readable, stays put for a second; at most 10
// seconds) and returns its count. Frames still queued when the paced
// sequence starts would otherwise fill the reader's queues and push
// sequence frames out.
func drain(ctx context.Context, src string) uint64 {
	var last uint64
	read := false
	start, still := time.Now(), time.Now()
	for time.Since(start) < 10*time.Second && ctx.Err() == nil {
		n, err := readProgress(src)
		switch {
		case err != nil:
			read = false
		case !read || n != last:
			read, last, still = true, n, time.Now()
		case time.Since(still) >= time.Second:
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "write: %s: the reader's count did not settle; pacing from %d\n", src, last)
	return last
}

func exists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// sequence is the frames a writer plays.
type sequence struct {
	pixfmt                  uint32
	w, h                    int
	bytesPerLine, sizeImage int
	n                       int
	blank                   []byte
	frame                   func(i int) ([]byte, error)
	close                   func() error
}

func openSequence(src, size, blankFile string) (*sequence, error) {
	switch {
	case strings.HasSuffix(src, ".tar"):
		samples, err := loadTar(src)
		if err != nil {
			return nil, err
		}
		first, err := decodeYCbCr(samples[0].jpeg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", samples[0].name, err)
		}
		w, h := first.Rect.Dx(), first.Rect.Dy()
		var blank []byte
		if blankFile != "" {
			blank, err = os.ReadFile(blankFile)
		} else {
			blank, err = blankJPEG(w, h)
		}
		if err != nil {
			return nil, err
		}
		return &sequence{
			pixfmt: fourCC("MJPG"), w: w, h: h, sizeImage: 2 * w * h,
			n: len(samples), blank: blank,
			frame: func(i int) ([]byte, error) { return samples[i].jpeg, nil },
			close: func() error { return nil },
		}, nil
	case strings.HasSuffix(src, ".yuyv"):
		w, h, err := parseSize(size)
		if err != nil {
			return nil, err
		}
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		fsize := 2 * w * h
		if fi.Size() == 0 || fi.Size()%int64(fsize) != 0 {
			f.Close()
			return nil, fmt.Errorf("%s: %d bytes is not a whole number of %dx%d YUYV frames", src, fi.Size(), w, h)
		}
		buf := make([]byte, fsize)
		return &sequence{
			pixfmt: fourCC("YUYV"), w: w, h: h, bytesPerLine: 2 * w, sizeImage: fsize,
			n: int(fi.Size() / int64(fsize)), blank: blankYUYV(w, h),
			frame: func(i int) ([]byte, error) {
				if _, err := f.ReadAt(buf, int64(i)*int64(fsize)); err != nil && !errors.Is(err, io.EOF) {
					return nil, err
				}
				return buf, nil
			},
			close: f.Close,
		}, nil
	}
	return nil, fmt.Errorf("%s: want a .tar of JPEGs or a .yuyv file", src)
}
