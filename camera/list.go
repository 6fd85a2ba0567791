package camera

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// V4L2Device is one V4L2 video capture device, as `edge cameras` and the
// error for a missing EDGE_SOURCE list it.
type V4L2Device struct {
	Path    string
	Card    string // the device's own name, e.g. "Integrated Camera"
	Driver  string // e.g. uvcvideo, vivid, v4l2 loopback
	Formats []V4L2Format
	// Err is why a node that exists could not be queried (busy, no
	// permission); the node is listed with it.
	Err error
}

// V4L2Format is a pixel format a device offers.
type V4L2Format struct {
	FourCC      string // "YUYV", "MJPG", "GREY"
	Description string
	Sizes       []V4L2Size // nil: the driver does not enumerate sizes (any may work)
}

// V4L2Size is a frame size, or a range of them, with the frame rates the
// device offers at it.
type V4L2Size struct {
	Size  string   // "640x480", or a range "16x16-1920x1080"
	Rates []string // "30", "7.5", or a range "1-30"; nil when not enumerated
}

// Summary is the device on one line: path, name, driver and formats.
func (d V4L2Device) Summary() string {
	if d.Err != nil {
		return fmt.Sprintf("%s: %v", d.Path, d.Err)
	}
	var fs []string
	for _, f := range d.Formats {
		fs = append(fs, f.FourCC)
	}
	formats := strings.Join(fs, ", ")
	if formats == "" {
		formats = "no capture formats"
	}
	return fmt.Sprintf("%s %q (%s): %s", d.Path, d.Card, d.Driver, formats)
}

// videoNode matches the capture nodes V4L2 creates: video0, video10, …
var videoNode = regexp.MustCompile(`^video[0-9]+$`)

// deviceProber queries one device node.
type deviceProber func(path string) (V4L2Device, error)

// ListV4L2 lists the video capture devices among the video* nodes of dir
// (/dev on a real system), in numeric order. Nodes that are not capture
// devices (a UVC camera's metadata node) are left out; nodes that cannot be
// queried are listed with the reason. No nodes is no error: an empty list.
func ListV4L2(dir string) ([]V4L2Device, error) {
	return listV4L2(dir, probeGo4vl)
}

func listV4L2(dir string, probe deviceProber) ([]V4L2Device, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("camera: list %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if videoNode.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		x, _ := strconv.Atoi(strings.TrimPrefix(a, "video"))
		y, _ := strconv.Atoi(strings.TrimPrefix(b, "video"))
		return x - y
	})
	var out []V4L2Device
	for _, n := range names {
		d, err := probe(filepath.Join(dir, n))
		if err != nil {
			if err == errNotCapture {
				continue
			}
			d = V4L2Device{Path: filepath.Join(dir, n), Err: err}
		}
		out = append(out, d)
	}
	return out, nil
}

// fourCCName is a pixel format's code as V4L2 documents it: big-endian
// variants (bit 31 set, which fourCCString would print as a stray byte) get
// a "-BE" suffix, as in v4l2-ctl's listing.
func fourCCName(c uint32) string {
	const bigEndian = 1 << 31
	if c&bigEndian != 0 {
		return fourCCString(c&^bigEndian) + "-BE"
	}
	return fourCCString(c)
}

// rate is a frame rate as a reader writes it: 30, 7.5, 0.2.
func rate(num, den uint32) string {
	if num == 0 {
		return "?"
	}
	return strconv.FormatFloat(math.Round(float64(den)/float64(num)*100)/100, 'f', -1, 64)
}
