package scene

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-sensor/edge/camera"
)

// testFace is a synthetic face crop: a vertical and horizontal grating
// (plenty of high frequencies for the blur tests) in skin-like colours.
func testFace(side int) *image.RGBA {
	im := image.NewRGBA(image.Rect(0, 0, side, side))
	for y := range side {
		for x := range side {
			v := uint8(90)
			if (x/3+y/3)%2 == 0 {
				v = 200
			}
			im.Set(x, y, color.RGBA{v, uint8(float64(v) * 0.8), uint8(float64(v) * 0.7), 255})
		}
	}
	return im
}

// flatFace is a uniform crop of one colour, easy to find in a frame.
func flatFace(side int, c color.RGBA) *image.RGBA {
	im := image.NewRGBA(image.Rect(0, 0, side, side))
	for i := 0; i < len(im.Pix); i += 4 {
		im.Pix[i], im.Pix[i+1], im.Pix[i+2], im.Pix[i+3] = c.R, c.G, c.B, 255
	}
	return im
}

func render(t *testing.T, face image.Image, c Condition, seed uint64) *Frame {
	t.Helper()
	f, err := NewRenderer().Render(face, c, seed)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// faceRect is the square the face was placed in (before any turn).
func faceRect(p Placement) image.Rectangle {
	return image.Rect(int(p.X-p.Side/2), int(p.Y-p.Side/2), int(p.X+p.Side/2), int(p.Y+p.Side/2)).Intersect(image.Rect(0, 0, Width, Height))
}

// inner is the central part of r (fraction f of each side), clear of the
// feathered edge.
func inner(r image.Rectangle, f float64) image.Rectangle {
	d := int(float64(r.Dx()) * (1 - f) / 2)
	return r.Inset(d)
}

// hfEnergy is the mean squared difference of horizontally and vertically
// neighbouring luma pixels inside r.
func hfEnergy(luma []byte, r image.Rectangle) (h, v float64) {
	n := 0
	for y := r.Min.Y; y < r.Max.Y-1; y++ {
		for x := r.Min.X; x < r.Max.X-1; x++ {
			p := float64(luma[y*Width+x])
			dh := float64(luma[y*Width+x+1]) - p
			dv := float64(luma[(y+1)*Width+x]) - p
			h += dh * dh
			v += dv * dv
			n++
		}
	}
	return h / float64(n), v / float64(n)
}

// diffStats is the mean and standard deviation of a-b over r.
func diffStats(a, b []byte, r image.Rectangle) (mean, std float64) {
	var s, ss float64
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			d := float64(a[y*Width+x]) - float64(b[y*Width+x])
			s += d
			ss += d * d
			n++
		}
	}
	mean = s / float64(n)
	return mean, math.Sqrt(max(ss/float64(n)-mean*mean, 0))
}

func TestRenderIsDeterministic(t *testing.T) {
	face := testFace(120)
	for _, c := range Suite() {
		a := render(t, face, c, 42)
		b := render(t, face, c, 42)
		if !bytes.Equal(a.Luma, b.Luma) || a.Face != b.Face {
			t.Errorf("%s: two renders with seed 42 differ", c.Name)
		}
		if d := render(t, face, c, 43); bytes.Equal(a.Luma, d.Luma) {
			t.Errorf("%s: seeds 42 and 43 render the same frame", c.Name)
		}
	}
	// Conditions that do not change the size see the same layout.
	clean := render(t, face, Condition{Name: "clean"}, 7).Face
	for _, c := range []Condition{{Name: "noise", Noise: 5}, {Name: "cap", Occlusion: Cap}, {Name: "jpeg", JPEG: 50}} {
		if p := render(t, face, c, 7).Face; p != clean {
			t.Errorf("%s: placement %+v, clean %+v: want the same scene", c.Name, p, clean)
		}
	}
}

func TestSuiteIsValid(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Suite() {
		if err := c.Validate(); err != nil {
			t.Error(err)
		}
		if seen[c.Name] {
			t.Errorf("condition %q listed twice", c.Name)
		}
		seen[c.Name] = true
		if c.String() == "" {
			t.Errorf("%s: empty description", c.Name)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	for _, c := range []Condition{
		{Name: "tiny", MinSize: 8},
		{Name: "inverted", MinSize: 100, MaxSize: 50},
		{Name: "huge", MinSize: 300, MaxSize: 300},
		{Name: "roll", Roll: 90},
		{Name: "yaw", Yaw: 0.7},
		{Name: "occluder", Occlusion: Occluder(9)},
		{Name: "blur", Focus: -1},
		{Name: "light", Light: 0.01},
		{Name: "noise", Noise: math.NaN()},
		{Name: "gamma", Gamma: 9},
		{Name: "cast", Cast: [3]float64{-1, 1, 1}},
		{Name: "jpeg", JPEG: 101},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: %+v accepted", c.Name, c)
		}
		if _, err := NewRenderer().Render(testFace(48), c, 1); err == nil {
			t.Errorf("%s: Render accepted an invalid condition", c.Name)
		}
	}
	if _, err := NewRenderer().Render(testFace(4), Condition{}, 1); err == nil {
		t.Error("Render accepted a 4x4 face")
	}
}

func TestDistanceSetsTheFaceSize(t *testing.T) {
	for _, c := range []Condition{{Name: "far", MinSize: 40, MaxSize: 56}, {Name: "near", MinSize: 144, MaxSize: 160}, {Name: "default"}} {
		lo, hi := c.sizes()
		for seed := range uint64(20) {
			p := render(t, testFace(200), c, seed).Face
			if p.Side < lo || p.Side > hi {
				t.Errorf("%s seed %d: face side %.1f outside %g-%g", c.Name, seed, p.Side, lo, hi)
			}
		}
	}
}

func TestBlurReducesHighFrequencies(t *testing.T) {
	face := testFace(120)
	clean := render(t, face, Condition{Name: "clean"}, 3)
	r := inner(faceRect(clean.Face), 0.8)
	h0, v0 := hfEnergy(clean.Luma, r)
	for _, c := range []Condition{{Name: "focus", Focus: 1.6}, {Name: "motion", Motion: 9}} {
		f := render(t, face, c, 3)
		h, v := hfEnergy(f.Luma, r)
		t.Logf("%s: neighbour difference energy horizontal %.0f -> %.0f, vertical %.0f -> %.0f", c.Name, h0, h, v0, v)
		if h > h0/2 {
			t.Errorf("%s: horizontal high-frequency energy %.0f, clean %.0f: want at most half", c.Name, h, h0)
		}
		if c.Focus > 0 && v > v0/2 {
			t.Errorf("%s: vertical high-frequency energy %.0f, clean %.0f: want at most half", c.Name, v, v0)
		}
	}
}

// extent returns the bounding box of the frame pixels that are the flat
// face's colour (magenta: far from any background colour).
func extent(f *Frame) image.Rectangle {
	im := f.Image.(*image.YCbCr)
	var r image.Rectangle
	for y := range Height {
		for x := range Width {
			c := im.YCbCrAt(x, y)
			if c.Cr > 200 && c.Cb > 170 {
				r = r.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	return r
}

func TestRollAndYawTurnTheFace(t *testing.T) {
	magenta := flatFace(100, color.RGBA{255, 0, 255, 255})
	for seed := range uint64(30) {
		for _, c := range []Condition{{Name: "roll", Roll: 20, MinSize: 150, MaxSize: 160}, {Name: "max roll", Roll: 45, MinSize: 200, MaxSize: 240}} {
			f := render(t, magenta, c, seed)
			p := f.Face
			if math.Abs(p.Roll) != c.Roll {
				t.Fatalf("%s: placement roll %v, want ±%v", c.Name, p.Roll, c.Roll)
			}
			// The turned square's corners stay in the frame ...
			th := p.Roll * math.Pi / 180
			for _, k := range [4][2]float64{{-1, -1}, {1, -1}, {-1, 1}, {1, 1}} {
				dx, dy := k[0]*p.Side/2, k[1]*p.Side/2
				x := p.X + dx*math.Cos(th) - dy*math.Sin(th)
				y := p.Y + dx*math.Sin(th) + dy*math.Cos(th)
				if x < 0 || y < 0 || x > Width || y > Height {
					t.Fatalf("%s seed %d: corner (%.1f, %.1f) of the turned face is outside the frame", c.Name, seed, x, y)
				}
			}
			// ... and the face covers more width than it would upright.
			if e := extent(f); float64(e.Dx()) < p.Side*1.1 {
				t.Errorf("%s seed %d: face %d px wide, side %.0f: not turned", c.Name, seed, e.Dx(), p.Side)
			}
		}
	}
	upright := extent(render(t, magenta, Condition{Name: "clean", MinSize: 120, MaxSize: 120}, 5))
	turned := extent(render(t, magenta, Condition{Name: "yaw", MinSize: 120, MaxSize: 120, Yaw: 0.25}, 5))
	t.Logf("yaw 0.25: face %dx%d -> %dx%d", upright.Dx(), upright.Dy(), turned.Dx(), turned.Dy())
	if w := float64(turned.Dx()) / float64(upright.Dx()); w < 0.7 || w > 0.8 {
		t.Errorf("yaw 0.25: width ratio %.2f, want about 0.75", w)
	}
}

func TestJPEGQuality(t *testing.T) {
	face := testFace(120)
	clean := render(t, face, Condition{Name: "clean"}, 9)
	r := faceRect(clean.Face)
	var errs []float64
	for _, q := range []int{30, 90} {
		f := render(t, face, Condition{Name: "q", JPEG: q}, 9)
		_, std := diffStats(f.Luma, clean.Luma, r)
		errs = append(errs, std)
	}
	t.Logf("luma error against the uncompressed frame: q30 %.2f, q90 %.2f", errs[0], errs[1])
	if errs[1] == 0 || errs[0] < 1.5*errs[1] {
		t.Errorf("q30 error %.2f, q90 %.2f: want compression at q90 and much more at q30", errs[0], errs[1])
	}
}

func TestSensorNoiseAndLowLight(t *testing.T) {
	face := flatFace(120, color.RGBA{120, 110, 100, 255})
	clean := render(t, face, Condition{Name: "clean"}, 11)
	r := inner(faceRect(clean.Face), 0.7)
	noisy := render(t, face, Condition{Name: "noise", Noise: 10}, 11)
	if m, s := diffStats(noisy.Luma, clean.Luma, r); math.Abs(m) > 1 || s < 5 || s > 9 {
		// Luma averages three channels of independent noise: sigma 10 * sqrt(.299²+.587²+.114²) ≈ 6.7.
		t.Errorf("noise sigma 10: luma difference mean %.2f, std %.2f; want about 0 and 6.7", m, s)
	}
	// Far from the face (outside the region noise is drawn in) nothing changes.
	corner := image.Rect(0, 0, 8, 8)
	if roiOf(clean.Face).Overlaps(corner) {
		corner = image.Rect(Width-8, Height-8, Width, Height)
	}
	if _, s := diffStats(noisy.Luma, clean.Luma, corner); s != 0 {
		t.Errorf("noise outside the face's region: std %.2f", s)
	}
	dark := render(t, face, Condition{Name: "low light", Light: 0.25}, 11)
	darkNoisy := render(t, face, Condition{Name: "low light", Light: 0.25, Noise: 2}, 11)
	_, sDark := diffStats(darkNoisy.Luma, dark.Luma, r)
	t.Logf("low light: sensor noise 2 has std %.2f in luma after the gain", sDark)
	if sDark < 3.5 {
		t.Errorf("light 1/4, noise 2: luma noise std %.2f after the gain, want about 4x2x0.67", sDark)
	}
	// A smooth grey ramp at a quarter of the light, quantised by the
	// sensor and gained back, comes out in bands about four levels apart.
	ramp := image.NewGray(image.Rect(0, 0, 160, 160))
	for y := range 160 {
		for x := range 160 {
			ramp.Pix[y*160+x] = uint8(50 + x)
		}
	}
	// Share of the face's pixels whose luma is a multiple of 4: a quarter
	// by chance, all of them when the gain of 4 multiplies whole sensor
	// values (R = G = B, so luma is that value).
	steps := func(f *Frame) float64 {
		rr := inner(faceRect(f.Face), 0.7)
		n, on := 0, 0
		for y := rr.Min.Y; y < rr.Max.Y; y++ {
			for x := rr.Min.X; x < rr.Max.X; x++ {
				n++
				if f.Luma[y*Width+x]%4 == 0 {
					on++
				}
			}
		}
		return float64(on) / float64(n)
	}
	bright := steps(render(t, ramp, Condition{Name: "clean"}, 11))
	banded := steps(render(t, ramp, Condition{Name: "low light", Light: 0.25}, 11))
	t.Logf("ramp: luma on multiples of 4: %.2f clean, %.2f in low light", bright, banded)
	if bright > 0.5 || banded != 1 {
		t.Errorf("low light: %.2f of the ramp's pixels on the gain's steps of 4 (clean %.2f): want all", banded, bright)
	}
	gamma := render(t, face, Condition{Name: "gamma", Gamma: 1.5}, 11)
	if m, _ := diffStats(gamma.Luma, clean.Luma, r); m > -10 {
		t.Errorf("gamma 1.5: mid-grey face moved by %.1f levels, want darker", m)
	}
}

func TestColourCastAndGreyCamera(t *testing.T) {
	face := testFace(120)
	clean := render(t, face, Condition{Name: "clean"}, 13)
	meanChroma := func(f *Frame) (cb, cr float64) {
		im := f.Image.(*image.YCbCr)
		for i := range im.Cb {
			cb += float64(im.Cb[i])
			cr += float64(im.Cr[i])
		}
		return cb / float64(len(im.Cb)), cr / float64(len(im.Cr))
	}
	cb0, cr0 := meanChroma(clean)
	warm := render(t, face, Condition{Name: "warm", Cast: [3]float64{1.25, 1, 0.7}}, 13)
	cb, cr := meanChroma(warm)
	if cb > cb0-5 || cr < cr0+5 {
		t.Errorf("warm cast: mean Cb %.1f -> %.1f, Cr %.1f -> %.1f; want bluer less, redder more", cb0, cb, cr0, cr)
	}
	cool := render(t, face, Condition{Name: "cool", Cast: [3]float64{0.8, 1, 1.25}}, 13)
	if cb, cr := meanChroma(cool); cb < cb0+5 || cr > cr0-5 {
		t.Errorf("cool cast: mean Cb %.1f -> %.1f, Cr %.1f -> %.1f", cb0, cb, cr0, cr)
	}
	grey := render(t, face, Condition{Name: "grey", Grey: true}, 13)
	if _, ok := grey.Image.(*image.Gray); !ok {
		t.Fatalf("grey camera: frame is %T, want *image.Gray", grey.Image)
	}
	if !bytes.Equal(grey.Luma, clean.Luma) {
		t.Error("grey camera: luma differs from the colour camera's")
	}
}

func TestOccludersCoverTheirPartOfTheFace(t *testing.T) {
	face := flatFace(100, color.RGBA{150, 150, 150, 255})
	clean := render(t, face, Condition{Name: "clean", MinSize: 120, MaxSize: 120}, 17)
	p := clean.Face
	top := p.Y - p.Side/2
	for _, c := range []struct {
		o      Occluder
		y0, y1 float64 // the band of the face (fractions of its side) that may change
	}{
		{Glasses, eyeY - 0.1, eyeY + 0.1},
		{Cap, 0, 0.3},
		{Hand, 0.55, 1},
	} {
		f := render(t, face, Condition{Name: c.o.String(), MinSize: 120, MaxSize: 120, Occlusion: c.o}, 17)
		changed, outside := 0, 0
		for y := range Height {
			for x := range Width {
				if d := int(f.Luma[y*Width+x]) - int(clean.Luma[y*Width+x]); d > 2 || d < -2 {
					changed++
					fy := (float64(y) + 0.5 - top) / p.Side
					// The crop's edge pixels fade out over a feather of 6% beyond it.
					if fy < c.y0-0.08 || fy > c.y1+0.08 || math.Abs(float64(x)+0.5-p.X) > p.Side*0.58 {
						outside++
					}
				}
			}
		}
		t.Logf("%s: %d pixels changed (%.0f%% of the face), %d outside its band", c.o, changed, 100*float64(changed)/(p.Side*p.Side), outside)
		if float64(changed) < 0.04*p.Side*p.Side || outside > 0 {
			t.Errorf("%s: %d pixels changed, %d of them outside rows %.2f-%.2f of the face", c.o, changed, outside, c.y0, c.y1)
		}
	}
}

func TestSourceRendersEachFace(t *testing.T) {
	dir := t.TempDir()
	for i, c := range []color.RGBA{{200, 150, 120, 255}, {90, 70, 60, 255}, {160, 120, 100, 255}} {
		writePNG(t, filepath.Join(dir, "happy", fmt.Sprintf("%d.png", i)), flatFace(64, c))
	}
	writePNG(t, filepath.Join(dir, "sad", "tiny.png"), flatFace(4, color.RGBA{1, 2, 3, 255}))
	open := func() *Source {
		faces, err := camera.Open(context.Background(), dir, camera.WithFPS(0))
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSource(faces, Condition{Name: "jpeg", JPEG: 70}, 5)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	var frames, corrupt int
	for {
		fa, err := a.Next(context.Background())
		fb, errB := b.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, camera.ErrCorrupt) {
			corrupt++
			if !errors.Is(errB, camera.ErrCorrupt) {
				t.Fatalf("the second source did not find %v corrupt: %v", err, errB)
			}
			continue
		}
		if err != nil || errB != nil {
			t.Fatal(err, errB)
		}
		frames++
		p := a.Face()
		if fa.Width != Width || fa.Height != Height || len(fa.Luma) != Width*Height || !strings.HasPrefix(fa.Name, "happy/") {
			t.Errorf("frame %q %dx%d, luma %d", fa.Name, fa.Width, fa.Height, len(fa.Luma))
		}
		if p.Side < DefaultMinSize || p.X < 0 || p.X > Width || p.Y < 0 || p.Y > Height {
			t.Errorf("%s: face at %+v", fa.Name, p)
		}
		if !bytes.Equal(fa.Luma, fb.Luma) || p != b.Face() {
			t.Errorf("%s: two sources over the same faces differ", fa.Name)
		}
	}
	if frames != 3 || corrupt != 1 {
		t.Errorf("%d frames and %d corrupt, want 3 and the 4x4 face", frames, corrupt)
	}
	if _, err := NewSource(nil, Condition{Roll: 99}, 1); err == nil {
		t.Error("NewSource accepted an invalid condition")
	}
}

func writePNG(t *testing.T, path string, im image.Image) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, im); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
