package camera

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vladimirvivien/go4vl/device"
	"github.com/vladimirvivien/go4vl/v4l2"
)

// go4vlDevice is a videoDevice backed by go4vl.
type go4vlDevice struct {
	dev     *device.Device
	cancel  context.CancelFunc // stops the capture goroutine
	frames  <-chan *device.Frame
	errs    <-chan error
	lastErr error // last error the capture goroutine reported
}

// Enough buffers to ride out a slow frame without the driver dropping, few
// enough that frames are not stale by the time they are read.
const go4vlBuffers = 4

func openGo4vl(path string) (videoDevice, error) {
	dev, err := device.Open(path, device.WithBufferSize(go4vlBuffers))
	if err != nil {
		return nil, err
	}
	if !dev.Capability().IsVideoCaptureSupported() {
		dev.Close()
		return nil, fmt.Errorf("%s is not a video capture device (%s)", path, dev.Capability().Card)
	}
	return &go4vlDevice{dev: dev}, nil
}

func (d *go4vlDevice) Formats() ([]deviceFormat, error) {
	descs, err := d.dev.GetFormatDescriptions()
	if err != nil {
		return nil, err
	}
	out := make([]deviceFormat, 0, len(descs))
	for _, desc := range descs {
		f := deviceFormat{fourcc: desc.PixelFormat, desc: strings.TrimSpace(desc.Description)}
		// Some drivers (v4l2loopback) do not enumerate sizes; nil sizes
		// then mean "ask and see".
		if sizes, err := v4l2.GetFormatFrameSizes(d.dev.Fd(), desc.PixelFormat); err == nil {
			for _, s := range sizes {
				z := s.Size
				f.sizes = append(f.sizes, frameSize{
					minW: int(z.MinWidth), maxW: int(z.MaxWidth), stepW: int(z.StepWidth),
					minH: int(z.MinHeight), maxH: int(z.MaxHeight), stepH: int(z.StepHeight),
				})
			}
		}
		out = append(out, f)
	}
	return out, nil
}

func (d *go4vlDevice) SetFormat(fourcc uint32, w, h, fps int) (negotiated, error) {
	err := d.dev.SetPixFormat(v4l2.PixFormat{
		Width: uint32(w), Height: uint32(h), PixelFormat: fourcc, Field: v4l2.FieldNone,
	})
	if err != nil {
		return negotiated{}, err
	}
	// go4vl remembers the requested format; ask the driver what it set.
	pf, err := v4l2.GetPixFormat(d.dev.Fd())
	if err != nil {
		return negotiated{}, err
	}
	got := negotiated{fourcc: pf.PixelFormat, width: int(pf.Width), height: int(pf.Height), stride: int(pf.BytesPerLine)}
	if fps > 0 {
		// After the format: drivers reset the frame interval on a format change.
		if err := d.dev.SetFrameRate(uint32(fps)); err != nil {
			return negotiated{}, err
		}
	}
	if p, err := d.dev.GetStreamParam(); err == nil && p.Capture.TimePerFrame.Numerator > 0 {
		got.fps = int(p.Capture.TimePerFrame.Denominator / p.Capture.TimePerFrame.Numerator)
	}
	return got, nil
}

func (d *go4vlDevice) Start(ctx context.Context) error {
	ctx, d.cancel = context.WithCancel(ctx)
	// GetFrames before Start selects go4vl's pooled-buffer streaming
	// (GetOutput allocates a frame per frame and is deprecated); the
	// channels themselves exist only once started.
	d.dev.GetFrames()
	if err := d.dev.Start(ctx); err != nil {
		d.cancel()
		d.cancel = nil // nothing streams: Close just closes
		return err
	}
	d.frames, d.errs = d.dev.GetFrames(), d.dev.GetError()
	return nil
}

func (d *go4vlDevice) Read(ctx context.Context) ([]byte, func(), error) {
	for {
		select {
		case fr, ok := <-d.frames:
			if !ok {
				if d.lastErr == nil {
					// The goroutine may have sent its reason just before closing.
					select {
					case err, ok := <-d.errs:
						if ok {
							d.lastErr = err
						}
					default:
					}
				}
				if d.lastErr != nil {
					return nil, nil, fmt.Errorf("stream ended: %w", d.lastErr)
				}
				return nil, nil, errors.New("stream ended")
			}
			return fr.Data, fr.Release, nil
		case err, ok := <-d.errs:
			// Dropped frames and buffers flagged bad are reported here too;
			// they are not fatal. A fatal error is followed by the frame
			// channel closing, handled above.
			if !ok {
				d.errs = nil
				continue
			}
			d.lastErr = err
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

func (d *go4vlDevice) Close() error {
	if d.cancel == nil { // never started
		return d.dev.Close()
	}
	d.cancel()
	// Wait for the capture goroutine to exit, giving back frames it still
	// delivers. go4vl marks the device as not streaming when that goroutine
	// exits, after which its Stop does nothing, leaving the buffers mapped;
	// so unmap and stop the stream here, once the goroutine is surely done.
	timeout := time.NewTimer(time.Second)
	defer timeout.Stop()
	for done := false; !done; {
		select {
		case fr, ok := <-d.frames:
			if !ok {
				done = true
				break
			}
			fr.Release()
		case <-timeout.C:
			// Leave the buffers mapped rather than unmap memory the
			// goroutine may still read.
			return d.dev.Close()
		}
	}
	var errs []error
	if d.dev.Buffers() != nil {
		if err := v4l2.UnmapMemoryBuffers(d.dev); err != nil {
			errs = append(errs, err)
		}
	}
	// Fails on an unplugged device; nothing to do about it.
	_ = v4l2.StreamOff(d.dev)
	if err := d.dev.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
