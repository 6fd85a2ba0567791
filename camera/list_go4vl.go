package camera

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/vladimirvivien/go4vl/v4l2"
)

// errNotCapture marks a node that is not a video capture device (a UVC
// camera's metadata node, an output-only loopback): not listed.
var errNotCapture = errors.New("not a video capture device")

// maxEnum bounds the enumeration loops against a driver that never ends them.
const maxEnum = 256

// probeGo4vl queries a device node with go4vl's ioctls: capability, formats,
// frame sizes and frame intervals. It neither sets a format nor streams, so
// a camera in use by another process can still be listed.
func probeGo4vl(path string) (V4L2Device, error) {
	fd, err := v4l2.OpenDevice(path, syscall.O_RDWR|syscall.O_NONBLOCK, 0)
	if err != nil {
		return V4L2Device{}, errors.Unwrap(err) // "open device: " is go4vl's wording
	}
	defer v4l2.CloseDevice(fd)
	c, err := v4l2.GetCapability(fd)
	if err != nil {
		return V4L2Device{}, fmt.Errorf("query capability: %w", err)
	}
	if c.GetCapabilities()&v4l2.CapVideoCapture == 0 {
		return V4L2Device{}, errNotCapture
	}
	d := V4L2Device{Path: path, Card: c.Card, Driver: c.Driver}
	descs, err := v4l2.GetAllFormatDescriptions(fd)
	if err != nil && len(descs) == 0 {
		return V4L2Device{}, fmt.Errorf("list formats: %w", err)
	}
	for _, desc := range descs {
		f := V4L2Format{FourCC: fourCCName(desc.PixelFormat), Description: strings.TrimSpace(desc.Description)}
		sizes, err := v4l2.GetFormatFrameSizes(fd, desc.PixelFormat)
		if err == nil {
			for _, s := range sizes {
				f.Sizes = append(f.Sizes, probeSize(fd, desc.PixelFormat, s))
			}
		}
		d.Formats = append(d.Formats, f)
	}
	return d, nil
}

// probeSize describes one frame size entry and the frame rates offered at it
// (at its largest size for a range).
func probeSize(fd uintptr, pf v4l2.FourCCType, s v4l2.FrameSizeEnum) V4L2Size {
	z := s.Size
	fs := frameSize{minW: int(z.MinWidth), maxW: int(z.MaxWidth), stepW: int(z.StepWidth),
		minH: int(z.MinHeight), maxH: int(z.MaxHeight), stepH: int(z.StepHeight)}
	out := V4L2Size{Size: fs.String()}
	for i := uint32(0); i < maxEnum; i++ {
		iv, err := v4l2.GetFormatFrameInterval(fd, i, pf, z.MaxWidth, z.MaxHeight)
		if err != nil {
			break
		}
		if iv.Type == v4l2.FrameIntervalTypeDiscrete {
			out.Rates = append(out.Rates, rate(iv.Interval.Min.Numerator, iv.Interval.Min.Denominator))
			continue
		}
		// a range: the shortest interval is the highest rate
		out.Rates = append(out.Rates, rate(iv.Interval.Max.Numerator, iv.Interval.Max.Denominator)+"-"+
			rate(iv.Interval.Min.Numerator, iv.Interval.Min.Denominator))
		break
	}
	return out
}
