package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/edge-sensor/edge/camera"
)

const camerasUsage = `Usage: edge cameras

Lists the V4L2 cameras (/dev/video*) with each pixel format, frame size and
frame rate they offer: what EDGE_SOURCE, EDGE_FORMAT, EDGE_SIZE and EDGE_FPS
of edge run can ask for.
`

func camerasCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	for _, a := range args {
		switch a {
		case "-h", "--help", "-help", "help":
			fmt.Fprint(stdout, camerasUsage)
			return nil
		default:
			fmt.Fprint(stderr, camerasUsage)
			return usageError{fmt.Sprintf("edge cameras takes no arguments (got %q)", a)}
		}
	}
	return listCameras("/dev", stdout)
}

// listCameras prints the capture devices among dir's video* nodes.
func listCameras(dir string, w io.Writer) error {
	devs, err := camera.ListV4L2(dir)
	if err != nil {
		return err
	}
	writeCameras(w, devs)
	return nil
}

func writeCameras(w io.Writer, devs []camera.V4L2Device) {
	if len(devs) == 0 {
		fmt.Fprintln(w, "no V4L2 cameras found (no /dev/video* capture device)")
		return
	}
	for i, d := range devs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if d.Err != nil {
			fmt.Fprintf(w, "%s: cannot be queried: %v\n", d.Path, d.Err)
			continue
		}
		fmt.Fprintf(w, "%s %q, driver %s\n", d.Path, d.Card, d.Driver)
		if len(d.Formats) == 0 {
			fmt.Fprintln(w, "  no capture formats")
		}
		for _, f := range d.Formats {
			fmt.Fprintf(w, "  %s (%s)\n", f.FourCC, f.Description)
			if f.Sizes == nil {
				fmt.Fprintln(w, "    any size (the driver lists none)")
			}
			for _, s := range f.Sizes {
				rates := "frame rates not listed"
				if len(s.Rates) > 0 {
					rates = strings.Join(s.Rates, ", ") + " fps"
				}
				fmt.Fprintf(w, "    %-11s %s\n", s.Size, rates)
			}
		}
	}
	if ex := example(devs); ex != "" {
		fmt.Fprintf(w, "\nfor example: %s edge run\n", ex)
	}
}

// example is the EDGE_* settings for the first size of the first format
// edge run can ask for (EDGE_FORMAT takes yuyv, mjpeg and grey).
func example(devs []camera.V4L2Device) string {
	names := map[string]string{"YUYV": "yuyv", "MJPG": "mjpeg", "GREY": "grey"}
	for _, d := range devs {
		for _, f := range d.Formats {
			if names[f.FourCC] == "" || len(f.Sizes) == 0 {
				continue
			}
			s := f.Sizes[0]
			ex := fmt.Sprintf("EDGE_SOURCE=%s EDGE_FORMAT=%s EDGE_SIZE=%s", d.Path, names[f.FourCC], s.Size)
			// the highest whole rate: drivers list them in either order
			best := 0
			for _, r := range s.Rates {
				if n, err := strconv.Atoi(r); err == nil && n > best {
					best = n
				}
			}
			if best > 0 {
				ex += fmt.Sprintf(" EDGE_FPS=%d", best)
			}
			if strings.Contains(s.Size, "-") { // a range: its smallest size
				ex = strings.Replace(ex, s.Size, s.Size[:strings.Index(s.Size, "-")], 1)
			}
			return ex
		}
	}
	return ""
}
