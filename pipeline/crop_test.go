package pipeline

import (
	"math"
	"slices"
	"testing"
)

// ramp returns a w x h image with pixel (x, y) = x + 10*y.
func ramp(w, h int) []byte {
	img := make([]byte, w*h)
	for y := range h {
		for x := range w {
			img[y*w+x] = byte(x + 10*y)
		}
	}
	return img
}

func TestCrop(t *testing.T) {
	tests := []struct {
		name       string
		luma       []byte
		w, h       int
		box        Box
		f          Framing
		outW, outH int
		want       []byte
	}{
		{
			name: "shrink by 2 is a 2x2 area average",
			luma: ramp(6, 6), w: 6, h: 6,
			box: Box{X: 3, Y: 3, S: 4}, f: Framing{Scale: 1},
			outW: 2, outH: 2,
			// (11+12+21+22)/4 = 16.5 rounds to 17, and so on.
			want: []byte{17, 19, 37, 39},
		},
		{
			name: "scale and offsets move the square",
			luma: ramp(6, 6), w: 6, h: 6,
			// side 2*2 = 4 centred at (3+0.5*2, 3-0.5*2) = (4, 2): [2,6) x [0,4).
			box: Box{X: 3, Y: 3, S: 2}, f: Framing{Scale: 2, OffsetX: 0.5, OffsetY: -0.5},
			outW: 4, outH: 4,
			want: []byte{
				2, 3, 4, 5,
				12, 13, 14, 15,
				22, 23, 24, 25,
				32, 33, 34, 35,
			},
		},
		{
			name: "outside the frame is mid grey",
			luma: make([]byte, 16), w: 4, h: 4,
			box: Box{X: 0, Y: 0, S: 4}, f: Framing{Scale: 1},
			outW: 2, outH: 2,
			want: []byte{128, 128, 128, 0},
		},
		{
			name: "half outside averages with grey",
			luma: make([]byte, 16), w: 4, h: 4,
			// [-1,3) x [0,4) into 2x2: the left cells are half grey.
			box: Box{X: 1, Y: 2, S: 4}, f: Framing{Scale: 1},
			outW: 2, outH: 2,
			want: []byte{64, 0, 64, 0},
		},
		{
			name: "enlarging is bilinear, with grey beyond the border",
			luma: []byte{0, 100, 0, 100}, w: 2, h: 2,
			box: Box{X: 1, Y: 1, S: 2}, f: Framing{Scale: 1},
			outW: 4, outH: 4,
			// Along x the samples sit at -0.25, 0.25, 0.75, 1.25 pixel
			// centres: 0.25*128+0.75*0 = 32, 25, 75, 0.75*100+0.25*128 = 107.
			// Rows 0 and 3 mix a quarter of grey in the same way.
			want: []byte{
				56, 51, 88, 112,
				32, 25, 75, 107,
				32, 25, 75, 107,
				56, 51, 88, 112,
			},
		},
		{
			name: "empty box is all grey",
			luma: ramp(4, 4), w: 4, h: 4,
			box: Box{X: 2, Y: 2, S: 0}, f: Framing{Scale: 1},
			outW: 2, outH: 1,
			want: []byte{128, 128},
		},
		{
			name: "short image is all grey",
			luma: ramp(4, 1), w: 4, h: 4,
			box: Box{X: 2, Y: 2, S: 2}, f: Framing{Scale: 1},
			outW: 1, outH: 1,
			want: []byte{128},
		},
		{
			name: "no output size",
			luma: ramp(4, 4), w: 4, h: 4,
			box: Box{X: 2, Y: 2, S: 2}, f: Framing{Scale: 1},
			outW: 0, outH: 3,
			want: []byte{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Crop(tt.luma, tt.w, tt.h, tt.box, tt.f, tt.outW, tt.outH, nil)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Crop = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestResizeGray(t *testing.T) {
	tests := []struct {
		name       string
		src        []byte
		w, h       int
		outW, outH int
		want       []byte
	}{
		{
			name: "fractional area average",
			src:  []byte{0, 90, 180}, w: 3, h: 1, outW: 2, outH: 1,
			// [0,1.5): (0 + 0.5*90)/1.5 = 30; [1.5,3): (0.5*90 + 180)/1.5 = 150.
			want: []byte{30, 150},
		},
		{
			name: "bilinear enlarging repeats the edge",
			src:  []byte{0, 100}, w: 2, h: 1, outW: 4, outH: 1,
			want: []byte{0, 25, 75, 100},
		},
		{
			name: "identity",
			src:  ramp(3, 2), w: 3, h: 2, outW: 3, outH: 2,
			want: ramp(3, 2),
		},
		{
			name: "shrink one axis, enlarge the other",
			src:  []byte{0, 100, 200, 50}, w: 4, h: 1, outW: 2, outH: 2,
			want: []byte{50, 125, 50, 125},
		},
		{
			name: "to a single pixel",
			src:  ramp(4, 4), w: 4, h: 4, outW: 1, outH: 1,
			want: []byte{17}, // mean 16.5
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ResizeGray(tt.src, tt.w, tt.h, tt.outW, tt.outH, nil); !slices.Equal(got, tt.want) {
				t.Fatalf("ResizeGray = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMirror(t *testing.T) {
	tests := []struct {
		name    string
		src     []byte
		w, h, c int
		want    []byte
	}{
		{name: "grey", src: []byte{1, 2, 3, 4, 5, 6}, w: 3, h: 2, c: 1, want: []byte{3, 2, 1, 6, 5, 4}},
		{
			name: "ycbcr mirrors pixels, not bytes",
			src: []byte{
				1, 2, 3, 4, 5, 6, 7, 8, 9,
				11, 12, 13, 14, 15, 16, 17, 18, 19,
			},
			w: 3, h: 2, c: 3,
			want: []byte{
				7, 8, 9, 4, 5, 6, 1, 2, 3,
				17, 18, 19, 14, 15, 16, 11, 12, 13,
			},
		},
		{name: "one pixel wide", src: []byte{1, 2, 3, 4, 5, 6}, w: 1, h: 2, c: 3, want: []byte{1, 2, 3, 4, 5, 6}},
		{name: "short source is grey", src: []byte{1, 2, 3}, w: 2, h: 1, c: 3, want: []byte{128, 128, 128, 128, 128, 128}},
		{name: "empty", src: nil, w: 0, h: 2, c: 3, want: []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Mirror(tt.src, tt.w, tt.h, tt.c, nil)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Mirror = %v, want %v", got, tt.want)
			}
			if back := Mirror(got, tt.w, tt.h, tt.c, nil); len(tt.src) == len(tt.want) && !slices.Equal(back, tt.src) {
				t.Fatalf("mirroring twice = %v, want the source %v", back, tt.src)
			}
		})
	}
}

func TestFramingValidate(t *testing.T) {
	for _, f := range []Framing{{Scale: 0}, {Scale: -1}, {Scale: 1, OffsetX: math.Inf(1)}, {Scale: math.NaN()}} {
		if f.Validate() == nil {
			t.Errorf("%+v: Validate() = nil, want an error", f)
		}
	}
	if err := (Framing{Scale: 1.25, OffsetY: 0.05}).Validate(); err != nil {
		t.Errorf("valid framing: %v", err)
	}
}

// TestCropReusesDst checks that a crop into a buffer with capacity writes in
// place and allocates nothing: it runs for every face on every classification.
func TestCropReusesDst(t *testing.T) {
	luma := ramp(64, 48)
	dst := make([]byte, 0, 48*48)
	box := Box{X: 30, Y: 20, S: 30}
	f := Framing{Scale: 1.25, OffsetY: 0.05}
	var got, mirrored []byte
	mirrored = make([]byte, 48*48)
	n := testing.AllocsPerRun(10, func() {
		got = Crop(luma, 64, 48, box, f, 48, 48, dst)
		mirrored = Mirror(got, 48, 48, 1, mirrored)
	})
	if n != 0 {
		t.Fatalf("Crop+Mirror: %v allocations, want 0", n)
	}
	if &got[0] != &dst[:1][0] {
		t.Fatal("Crop did not write into dst")
	}
}

// pattern is a smooth test scene, in continuous frame coordinates.
func pattern(x, y float64) float64 {
	return 128 + 50*math.Sin(x/9)*math.Cos(y/7) + 0.3*(x-y)
}

// render draws pattern over a w x h frame turned by roll about (cx, cy): the
// point at offset (u, v) from the centre of the upright scene appears at
// (cx, cy) + R(roll)·(u, v), as a head tilted by roll would.
func render(w, h int, cx, cy, roll float64) []byte {
	sin, cos := math.Sincos(roll)
	img := make([]byte, w*h)
	for y := range h {
		for x := range w {
			dx, dy := float64(x)+0.5-cx, float64(y)+0.5-cy
			img[y*w+x] = byte(math.Round(pattern(cx+cos*dx+sin*dy, cy-sin*dx+cos*dy)))
		}
	}
	return img
}

// TestCropTurned checks that a box's Roll undoes the turn of the scene: the
// crop of a turned scene with the turn as Roll matches the crop of the
// upright scene, framing offsets included (they follow the face's axes).
func TestCropTurned(t *testing.T) {
	const w, h, cx, cy = 200, 160, 97.3, 81.6
	upright := render(w, h, cx, cy, 0)
	for _, tt := range []struct {
		name string
		deg  float64
		side float64
		f    Framing
		out  int
	}{
		{"shrink 10°", 10, 80, Framing{Scale: 1.2, OffsetY: 0.08, Level: true}, 48},
		{"shrink -20° offset", -20, 90, Framing{Scale: 1.1, OffsetX: 0.1, OffsetY: -0.1, Level: true}, 32},
		{"enlarge 25°", 25, 40, Framing{Scale: 1, Level: true}, 64},
		{"quarter turn", 90, 70, Framing{Scale: 1, OffsetY: 0.1, Level: true}, 48},
	} {
		t.Run(tt.name, func(t *testing.T) {
			roll := tt.deg * degree
			want := Crop(upright, w, h, Box{X: cx, Y: cy, S: tt.side}, tt.f, tt.out, tt.out, nil)
			got := Crop(render(w, h, cx, cy, roll), w, h, Box{X: cx, Y: cy, S: tt.side, Roll: roll}, tt.f, tt.out, tt.out, nil)
			var sum, worst float64
			for i := range want {
				d := math.Abs(float64(got[i]) - float64(want[i]))
				sum += d
				worst = max(worst, d)
			}
			// Two resamplings (the turned scene, then the crop) against one:
			// the difference is interpolation error, not misplacement, which
			// would be tens of levels on this pattern.
			if mean := sum / float64(len(want)); mean > 1.5 || worst > 10 {
				t.Fatalf("turned crop differs from the upright one by %.2f on average, %v at worst", mean, worst)
			}
			unlevelled := Crop(render(w, h, cx, cy, roll), w, h, Box{X: cx, Y: cy, S: tt.side}, tt.f, tt.out, tt.out, nil)
			var off float64
			for i := range want {
				off += math.Abs(float64(unlevelled[i]) - float64(want[i]))
			}
			if off/float64(len(want)) < 5 {
				t.Fatalf("the upright crop of the turned scene is as close (%.2f): the test cannot tell", off/float64(len(want)))
			}
			// A framing without Level ignores the roll.
			f := tt.f
			f.Level = false
			if ignored := Crop(render(w, h, cx, cy, roll), w, h, Box{X: cx, Y: cy, S: tt.side, Roll: roll}, f, tt.out, tt.out, nil); !slices.Equal(ignored, unlevelled) {
				t.Fatal("a framing without Level turned the crop")
			}
		})
	}
}
