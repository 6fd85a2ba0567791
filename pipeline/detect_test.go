package pipeline

import (
	"image"
	"image/color"
	_ "image/jpeg"
	_ "image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// samplesDir is ../shared/samples/faces beside the checkout (this package
// runs its tests in pipeline/).
var samplesDir = filepath.Join("..", "..", "shared", "samples", "faces")

// sampleLuma decodes a sample photo into its grey plane (BT.601 luma, as a
// camera's Y plane). It skips the test when the shared samples are absent,
// unless CI is set, where their absence is a failure.
func sampleLuma(tb testing.TB, name string) (luma []byte, w, h int) {
	tb.Helper()
	path := filepath.Join(samplesDir, name)
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) && os.Getenv("CI") == "" {
			tb.Skipf("sample photo %s not found: ../shared is absent (a fresh clone); with CI set it is a failure", path)
		}
		tb.Fatalf("sample photo: %v (CI needs ../shared beside the checkout)", err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		tb.Fatalf("decode %s: %v", path, err)
	}
	b := img.Bounds()
	w, h = b.Dx(), b.Dy()
	luma = make([]byte, w*h)
	for y := range h {
		for x := range w {
			luma[y*w+x] = color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
		}
	}
	return luma, w, h
}

// frame640 places a sample photo, shrunk to fit, on a 640x480 grey frame:
// the live frame size the defaults are tuned for.
func frame640(tb testing.TB, name string) []byte {
	tb.Helper()
	l, w, h := sampleLuma(tb, name)
	f := math.Min(640/float64(w), 480/float64(h))
	nw, nh := int(float64(w)*f), int(float64(h)*f)
	r := ResizeGray(l, w, h, nw, nh, nil)
	out := fill(nil, 640, 480, 128)
	ox, oy := (640-nw)/2, (480-nh)/2
	for y := range nh {
		copy(out[(oy+y)*640+ox:], r[y*nw:(y+1)*nw])
	}
	return out
}

func TestDetectorConfigValidate(t *testing.T) {
	ok := DefaultDetectorConfig()
	tests := []struct {
		name   string
		modify func(*DetectorConfig)
		want   string // substring of the error; "" for valid
	}{
		{"default", func(*DetectorConfig) {}, ""},
		{"min size", func(c *DetectorConfig) { c.MinSize = 4 }, "MinSize"},
		{"max below min", func(c *DetectorConfig) { c.MaxSize = 20 }, "MaxSize"},
		{"shift", func(c *DetectorConfig) { c.ShiftFactor = 0 }, "ShiftFactor"},
		{"scale", func(c *DetectorConfig) { c.ScaleFactor = 1 }, "ScaleFactor"},
		{"iou", func(c *DetectorConfig) { c.IoU = 1 }, "IoU"},
		{"q", func(c *DetectorConfig) { c.MinQ = math.NaN() }, "MinQ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.want)
			}
			if _, err := NewDetector(c); err == nil {
				t.Fatal("NewDetector accepted an invalid config")
			}
		})
	}
}

func TestBoxIoU(t *testing.T) {
	tests := []struct {
		a, b Box
		want float64
	}{
		{Box{X: 10, Y: 10, S: 10}, Box{X: 10, Y: 10, S: 10}, 1},
		{Box{X: 10, Y: 10, S: 10}, Box{X: 15, Y: 10, S: 10}, 50.0 / 150},
		{Box{X: 10, Y: 10, S: 10}, Box{X: 30, Y: 10, S: 10}, 0},
		{Box{X: 10, Y: 10, S: 10}, Box{X: 10, Y: 10, S: 0}, 0},
		{Box{X: 10, Y: 10, S: 20}, Box{X: 10, Y: 10, S: 10}, 0.25},
	}
	for _, tt := range tests {
		if got := tt.a.IoU(tt.b); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%v.IoU(%v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestSuppress(t *testing.T) {
	boxes := []Box{
		{X: 100, Y: 100, S: 130, Q: 50},
		{X: 101, Y: 100, S: 143, Q: 40}, // the same face again, bigger
		{X: 300, Y: 100, S: 60, Q: 30},  // another face
		{X: 120, Y: 110, S: 50, Q: 10},  // inside the first, IoU 0.15: kept
	}
	want := []Box{boxes[0], boxes[2], boxes[3]}
	got := suppress(boxes, 0, 0.2)
	if len(got) != len(want) {
		t.Fatalf("suppress kept %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("suppress kept %v, want %v", got, want)
		}
	}
}

// TestDetectorSamples runs the real detector with the default parameters on
// a real photo and expects exactly the one face, where the photo has it.
func TestDetectorSamples(t *testing.T) {
	luma, w, h := sampleLuma(t, "nasa_eileen_collins.png")
	d, err := NewDetector(DefaultDetectorConfig())
	if err != nil {
		t.Fatal(err)
	}
	boxes := d.Detect(luma, w, h, nil)
	if len(boxes) != 1 {
		t.Fatalf("found %d faces %v, want 1", len(boxes), boxes)
	}
	// The face is around (224, 111), about 100 px (OpenCV: ~95 px).
	if b := boxes[0]; math.Abs(b.X-224) > 15 || math.Abs(b.Y-111) > 15 || b.S < 70 || b.S > 140 {
		t.Fatalf("face at %+v, want about (224, 111) side 100", b)
	}

	// The same photo shrunk onto a 640x480 frame, as a live camera sees it.
	frame := frame640(t, "nasa_eileen_collins.png")
	if boxes = d.Detect(frame, 640, 480, boxes); len(boxes) != 1 {
		t.Fatalf("on a 640x480 frame: found %d faces %v, want 1", len(boxes), boxes)
	}
}

// TestDetectPadded checks that a face filling the image is found with padding
// and reported in the original image's coordinates.
func TestDetectPadded(t *testing.T) {
	luma, w, _ := sampleLuma(t, "nasa_eileen_collins.png")
	// A tight 120x120 crop around the face, like a dataset crop.
	const side, x0, y0 = 120, 224 - 60, 111 - 60
	crop := make([]byte, side*side)
	for y := range side {
		copy(crop[y*side:(y+1)*side], luma[(y0+y)*w+x0:])
	}
	cfg := DefaultDetectorConfig()
	cfg.MinQ = 2 // pigo-facts.md: padded dataset crops are scored lower
	d, err := NewDetector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	boxes := d.DetectPadded(crop, side, side, nil)
	if len(boxes) == 0 {
		t.Fatal("no face found in the padded crop")
	}
	if b := boxes[0]; math.Abs(b.X-60) > 15 || math.Abs(b.Y-60) > 15 || b.S < 70 {
		t.Fatalf("face at %+v, want about (60, 60) in the crop's coordinates", b)
	}
	if got := d.DetectPadded(crop[:10], side, side, boxes); len(got) != 0 {
		t.Fatalf("short image: got %v, want no boxes", got)
	}
}

func TestDetectEmpty(t *testing.T) {
	d, err := NewDetector(DefaultDetectorConfig())
	if err != nil {
		t.Fatal(err)
	}
	grey := fill(nil, 64, 48, 128)
	tests := []struct {
		name string
		luma []byte
		w, h int
	}{
		{"flat image", grey, 64, 48},
		{"short buffer", grey[:100], 64, 48},
		{"zero size", nil, 0, 0},
		{"smaller than MinSize", grey, 40, 30},
	}
	for _, tt := range tests {
		if got := d.Detect(tt.luma, tt.w, tt.h, make([]Box, 3)); len(got) != 0 {
			t.Errorf("%s: got %v, want no boxes", tt.name, got)
		}
	}
}

// TestDetectAllocs pins the detector's own allocations at zero: on a flat
// frame pigo finds nothing and allocates nothing either.
func TestDetectAllocs(t *testing.T) {
	d, err := NewDetector(DefaultDetectorConfig())
	if err != nil {
		t.Fatal(err)
	}
	grey := fill(nil, 640, 480, 128)
	dst := make([]Box, 0, 8)
	if n := testing.AllocsPerRun(5, func() { dst = d.Detect(grey, 640, 480, dst) }); n != 0 {
		t.Fatalf("Detect on a flat frame: %v allocations, want 0", n)
	}
	padded := make([]byte, 200*200)
	d.DetectPadded(padded, 200, 200, dst) // grows the padding canvas once
	if n := testing.AllocsPerRun(5, func() { dst = d.DetectPadded(padded, 200, 200, dst) }); n != 0 {
		t.Fatalf("DetectPadded after warm-up: %v allocations, want 0", n)
	}
}

// BenchmarkDetect measures a 640x480 frame with one face (run with -benchmem;
// the remaining allocations are pigo's RunCascade and ClusterDetections
// slices) for the defaults and the configurations pigo-facts.md compares.
func BenchmarkDetect(b *testing.B) {
	frame := frame640(b, "nasa_ed_white.jpg")
	configs := []struct {
		name string
		cfg  DetectorConfig
	}{
		{"default", DefaultDetectorConfig()},
		{"min40_shift0.10_scale1.10", DetectorConfig{MinSize: 40, ShiftFactor: 0.1, ScaleFactor: 1.1, IoU: 0.2, MinQ: 5}},
		{"min60_shift0.15_scale1.20", DetectorConfig{MinSize: 60, ShiftFactor: 0.15, ScaleFactor: 1.2, IoU: 0.2, MinQ: 5}},
		{"turned", func() DetectorConfig { c := DefaultDetectorConfig(); c.Turned = true; return c }()},
	}
	for _, c := range configs {
		b.Run(c.name, func(b *testing.B) {
			d, err := NewDetector(c.cfg)
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]Box, 0, 8)
			b.ReportAllocs()
			for b.Loop() {
				dst = d.Detect(frame, 640, 480, dst)
			}
			b.ReportMetric(float64(len(dst)), "faces")
		})
	}
}

// TestDetectorTurned: a head tilted by 28° is beyond the upright cascade on
// these photos; the turned scans find it, where it is.
func TestDetectorTurned(t *testing.T) {
	cfg := DefaultDetectorConfig()
	upright, err := NewDetector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Turned = true
	turned, err := NewDetector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var missed, found int
	for _, name := range []string{"nasa_eileen_collins.png", "nasa_ed_white.jpg", "nasa_sally_ride.jpg", "nasa_kalpana_chawla.jpg", "wh_obama_2012_portrait.jpg", "nasa_jim_lovell.jpg"} {
		frame := frame640(t, name)
		b := upright.Detect(frame, 640, 480, nil)[0]
		for _, deg := range []float64{-28, 28} {
			f := rotateLuma(frame, 640, 480, b.X, b.Y, deg*degree)
			if len(upright.Detect(f, 640, 480, nil)) == 0 {
				missed++
			}
			boxes := turned.Detect(f, 640, 480, nil)
			if len(boxes) == 0 {
				continue
			}
			if got := boxes[0]; math.Hypot(got.X-b.X, got.Y-b.Y) > b.S/3 || got.S < b.S/2 || got.S > 2*b.S {
				t.Errorf("%s turned %+.0f°: face at %+v, want near %+v", name, deg, got, b)
				continue
			}
			found++
		}
	}
	t.Logf("12 heads turned by 28°: upright scan missed %d, turned scans found %d", missed, found)
	if missed < 6 || found < 10 {
		t.Errorf("upright scan missed %d of 12, turned scans found %d: want the upright to miss at least 6 and the turned to find at least 10", missed, found)
	}
}
