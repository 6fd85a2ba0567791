package pipeline

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// rotateLuma returns the w x h image src turned by a radians about (cx, cy),
// positive clockwise as seen (y grows downwards), bilinearly, grey outside:
// a line of slope 0 through the centre comes out with slope tan(a), which is
// the roll [Leveler.Roll] reports and [Crop] undoes.
func rotateLuma(src []byte, w, h int, cx, cy, a float64) []byte {
	sin, cos := math.Sincos(a)
	at := func(x, y int) float64 {
		if x < 0 || y < 0 || x >= w || y >= h {
			return outside
		}
		return float64(src[y*w+x])
	}
	dst := make([]byte, w*h)
	for y := range h {
		for x := range w {
			dx, dy := float64(x)+0.5-cx, float64(y)+0.5-cy
			sx := cx + cos*dx + sin*dy - 0.5
			sy := cy - sin*dx + cos*dy - 0.5
			x0, y0 := math.Floor(sx), math.Floor(sy)
			tx, ty := sx-x0, sy-y0
			ix, iy := int(x0), int(y0)
			v := (at(ix, iy)*(1-tx)+at(ix+1, iy)*tx)*(1-ty) + (at(ix, iy+1)*(1-tx)+at(ix+1, iy+1)*tx)*ty
			dst[y*w+x] = byte(math.Floor(v + 0.5))
		}
	}
	return dst
}

const degree = math.Pi / 180

// TestLevelerRoll turns sample photos on a 640x480 frame, as a tilted head
// is seen by a wall camera, and checks that Detector.Level's roll follows the
// turn, or is 0 where the eyes or the face cascade did not confirm one (the
// crop then stays upright, as without levelling). The photos' own heads are
// not exactly upright, so the roll is compared with the upright photo's,
// which is itself 0 below 6°: hence the tolerance.
func TestLevelerRoll(t *testing.T) {
	d, err := NewDetector(DefaultDetectorConfig())
	if err != nil {
		t.Fatal(err)
	}
	var turned, levelled int
	for _, name := range []string{"nasa_eileen_collins.png", "nasa_ed_white.jpg", "nasa_sally_ride.jpg", "nasa_kalpana_chawla.jpg", "wh_obama_2012_portrait.jpg", "nasa_jim_lovell.jpg"} {
		frame := frame640(t, name)
		upright := d.Detect(frame, 640, 480, nil)
		if len(upright) == 0 {
			t.Fatalf("%s: no face in the upright photo", name)
		}
		b := d.Level(frame, 640, 480, upright[0])
		for _, deg := range []float64{-18, -10, 10, 18} {
			frame := rotateLuma(frame, 640, 480, b.X, b.Y, deg*degree)
			boxes := d.Detect(frame, 640, 480, nil)
			if len(boxes) == 0 {
				continue // the frontal cascade misses some heads turned by 18°
			}
			turned++
			roll := d.Level(frame, 640, 480, boxes[0]).Roll
			if roll == 0 {
				t.Logf("%s turned %+.0f°: not levelled", name, deg)
				continue
			}
			levelled++
			if got := (roll - b.Roll) / degree; math.Abs(got-deg) > 4.5 {
				t.Errorf("%s turned %+.0f°: roll %+.1f° relative to upright, want within 4.5° of it or 0", name, deg, got)
			}
		}
	}
	t.Logf("levelled %d of %d turned faces found (of 24 turned)", levelled, turned)
	if turned < 18 || levelled < turned*3/4 {
		t.Errorf("levelled %d of %d turned faces found (of 24 turned), want at least 18 found and 3/4 of them levelled", levelled, turned)
	}
}

// TestLevelerDeclines: nothing to level gives roll 0; invalid input also
// ok false. (A flat image has level "eyes": the cascade descends the same
// way from both start points.)
func TestLevelerDeclines(t *testing.T) {
	l, err := NewLeveler()
	if err != nil {
		t.Fatal(err)
	}
	flat := fill(nil, 160, 120, 128)
	for _, tt := range []struct {
		name string
		luma []byte
		box  Box
		ok   bool
	}{
		{"flat image", flat, Box{X: 80, Y: 60, S: 60}, true},
		{"box off the image", flat, Box{X: -500, Y: 900, S: 60}, true},
		{"empty box", flat, Box{X: 80, Y: 60}, false},
		{"NaN box", flat, Box{X: 80, Y: 60, S: math.NaN()}, false},
		{"NaN centre", flat, Box{X: math.NaN(), Y: 60, S: 60}, false},
		{"infinite box", flat, Box{X: 80, Y: 60, S: math.Inf(1)}, false},
		{"short buffer", flat[:100], Box{X: 80, Y: 60, S: 60}, false},
	} {
		if roll, ok := l.Roll(tt.luma, 160, 120, tt.box); roll != 0 || ok != tt.ok {
			t.Errorf("%s: Roll = %v, %v; want 0, %v", tt.name, roll, ok, tt.ok)
		}
	}
}

func TestParsePuploc(t *testing.T) {
	if _, err := parsePuploc(puploc); err != nil {
		t.Fatalf("embedded cascade: %v", err)
	}
	shape := func(stages, scale, trees, depth uint32) []byte {
		b := make([]byte, 16)
		for i, v := range []uint32{stages, scale, trees, depth} {
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
		return b
	}
	for _, tt := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"no trees", shape(0, 0, 0, 0), "implausible"},
		{"too deep", shape(4, 0, 10, 40), "implausible"},
		{"short body", append(shape(1, 0, 1, 2), make([]byte, 10)...), "bytes, want"},
		{"cut short", puploc[:len(puploc)-1], "bytes, want"},
	} {
		if _, err := parsePuploc(tt.b); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one about %q", tt.name, err, tt.want)
		}
	}
}

// BenchmarkLevel is Detector.Level on one face of about 100 px on a 640x480
// frame, upright and turned by 15° (where the face cascade also runs twice
// to confirm the roll); compare BenchmarkDetect's whole frame.
func BenchmarkLevel(b *testing.B) {
	frame := frame640(b, "nasa_ed_white.jpg")
	d, err := NewDetector(DefaultDetectorConfig())
	if err != nil {
		b.Fatal(err)
	}
	box := d.Detect(frame, 640, 480, nil)[0]
	for _, deg := range []float64{0, 15} {
		turned := rotateLuma(frame, 640, 480, box.X, box.Y, deg*degree)
		box := d.Detect(turned, 640, 480, nil)[0]
		b.Run(fmt.Sprintf("roll%.0f", deg), func(b *testing.B) {
			var roll float64
			for b.Loop() {
				roll = d.Level(turned, 640, 480, box).Roll
			}
			b.ReportMetric(roll/degree, "deg")
		})
	}
}

// TestDetectPaddedLevels: LevelPadded levels a box DetectPadded returned,
// with the roll found on its padded canvas.
func TestDetectPaddedLevels(t *testing.T) {
	frame := frame640(t, "nasa_ed_white.jpg")
	cfg := DefaultDetectorConfig()
	cfg.MinQ = 2
	d, err := NewDetector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := d.Detect(frame, 640, 480, nil)[0]
	// A dataset-like crop of 1.6 face sides around the face, turned by 15°.
	side := int(1.6 * b.S)
	x0, y0 := int(b.X)-side/2, int(b.Y)-side/2
	turned := rotateLuma(frame, 640, 480, b.X, b.Y, 15*degree)
	crop := make([]byte, side*side)
	for y := range side {
		copy(crop[y*side:(y+1)*side], turned[(y0+y)*640+x0:])
	}
	upright := d.Level(frame, 640, 480, b).Roll
	boxes := d.DetectPadded(crop, side, side, nil)
	if len(boxes) == 0 {
		t.Fatal("no face in the turned crop")
	}
	if boxes[0].Roll != 0 {
		t.Fatalf("DetectPadded's box has roll %v; it levels nothing itself", boxes[0].Roll)
	}
	boxes[0] = d.LevelPadded(boxes[0])
	if got := (boxes[0].Roll - upright) / degree; math.Abs(got-15) > 4.5 {
		t.Fatalf("roll %.1f° relative to upright, want about 15°", got)
	}
	cfg.Level = false
	if d, err = NewDetector(cfg); err != nil {
		t.Fatal(err)
	}
	if boxes = d.DetectPadded(crop, side, side, boxes); len(boxes) == 0 || d.LevelPadded(boxes[0]).Roll != 0 {
		t.Fatalf("Level off: boxes %+v, want one upright box", boxes)
	}
}
