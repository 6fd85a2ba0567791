// Package scene renders face crops into synthetic camera frames, the way a
// wall camera sees people: a face of 40-160 px at a random place in a
// 640x480 frame with a generated room behind it, turned and partly covered,
// and seen through a camera's optics (focus, motion), sensor (noise, low
// light), tone curve, white balance and MJPEG compression.
//
// `edge eval --camera` uses it to measure the models through the real
// pipeline path (detector on the whole frame, framing, crop, model) on the
// labelled faces of the val sets. [Source] turns any camera.Source of face
// crops into a source of such frames, for tests and demos.
//
// Everything is deterministic: a frame depends only on the face, the
// [Condition] and the seed. The layout (position, size within the
// condition's range, background, which way the head turns) is drawn from
// the seed alone, so one seed gives the same scene under every condition and
// conditions can be compared face by face.
package scene

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/edge-sensor/edge/camera"
)

// The frame size of the rendered scenes: a common webcam mode.
const (
	Width  = 640
	Height = 480
)

// Default face sizes (the side of the placed face crop, in frame pixels)
// when a Condition leaves them zero: a person 2-4 m from a wall camera.
const (
	DefaultMinSize = 72
	DefaultMaxSize = 128
)

// Occluder is something in front of part of the face.
type Occluder int

const (
	NoOcclusion Occluder = iota
	// Hand: a hand-sized skin-toned ellipse over the mouth and one cheek.
	Hand
	// Glasses: dark frames with lightly tinted lenses over the eyes.
	Glasses
	// Cap: a cap's crown and brim over the forehead.
	Cap
)

func (o Occluder) String() string {
	switch o {
	case NoOcclusion:
		return "none"
	case Hand:
		return "hand"
	case Glasses:
		return "glasses"
	case Cap:
		return "cap"
	}
	return fmt.Sprintf("Occluder(%d)", int(o))
}

// MarshalText writes the occluder's name in JSON reports.
func (o Occluder) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Condition is how the camera sees the face. The zero value is a clean,
// well-lit, frontal face of the default size, uncompressed.
type Condition struct {
	Name string `json:"name"`
	// MinSize and MaxSize bound the side of the placed face crop in
	// pixels (0: DefaultMinSize, DefaultMaxSize).
	MinSize float64 `json:"min_size,omitempty"`
	MaxSize float64 `json:"max_size,omitempty"`
	// Roll turns the head in the image plane by this many degrees, to the
	// left or right as the seed draws.
	Roll float64 `json:"roll,omitempty"`
	// Yaw in [0, 0.5) turns the head away: the face's width shrinks by
	// this fraction and its far side's height by half as much (a
	// perspective keystone); the side is drawn from the seed.
	Yaw       float64  `json:"yaw,omitempty"`
	Occlusion Occluder `json:"occlusion,omitempty"`
	// Focus is the sigma in frame pixels of a Gaussian defocus blur.
	Focus float64 `json:"focus,omitempty"`
	// Motion is the length in frame pixels of a linear motion blur, in a
	// direction drawn from the seed (mostly horizontal: people walk).
	Motion float64 `json:"motion,omitempty"`
	// Light in (0, 1] is the scene's brightness relative to a well-lit one
	// (0 means 1). The sensor quantises the dim signal and the camera's
	// gain (1/Light) brings it back up, noise and banding included.
	Light float64 `json:"light,omitempty"`
	// Noise is the sensor noise sigma in grey levels before the gain,
	// independent per colour channel.
	Noise float64 `json:"noise,omitempty"`
	// Gamma is a tone curve exponent applied after the gain (0 means 1;
	// above 1 darkens the mid tones, as a contrasty low-light curve does).
	Gamma float64 `json:"gamma,omitempty"`
	// Cast are the R, G, B gains of a white-balance error (zeros: none).
	Cast [3]float64 `json:"cast,omitempty"`
	// Grey is a monochrome camera: the frame carries luma only.
	Grey bool `json:"grey,omitempty"`
	// JPEG is the MJPEG quality, 1-100 (0: uncompressed). The frame is
	// encoded with 4:2:0 chroma as webcams send it and decoded again.
	JPEG int `json:"jpeg,omitempty"`
}

// Validate reports the first parameter out of range.
func (c Condition) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	for _, v := range []float64{c.MinSize, c.MaxSize, c.Roll, c.Yaw, c.Focus, c.Motion, c.Light, c.Noise, c.Gamma, c.Cast[0], c.Cast[1], c.Cast[2]} {
		if !finite(v) {
			return fmt.Errorf("scene: condition %q: parameters must be finite numbers", c.Name)
		}
	}
	lo, hi := c.sizes()
	switch {
	case lo < 16 || hi < lo || hi > Height/2:
		return fmt.Errorf("scene: condition %q: face size %v-%v px: want 16 <= min <= max <= %d", c.Name, lo, hi, Height/2)
	case math.Abs(c.Roll) > 45:
		return fmt.Errorf("scene: condition %q: roll %v: want at most 45 degrees", c.Name, c.Roll)
	case c.Yaw < 0 || c.Yaw >= 0.5:
		return fmt.Errorf("scene: condition %q: yaw %v: want 0 <= yaw < 0.5", c.Name, c.Yaw)
	case c.Occlusion < NoOcclusion || c.Occlusion > Cap:
		return fmt.Errorf("scene: condition %q: unknown occluder %d", c.Name, int(c.Occlusion))
	case c.Focus < 0 || c.Focus > 10 || c.Motion < 0 || c.Motion > 40:
		return fmt.Errorf("scene: condition %q: blur focus %v, motion %v: want 0-10 and 0-40 px", c.Name, c.Focus, c.Motion)
	case c.Light < 0 || c.Light > 1 || (c.Light > 0 && c.Light < 0.05):
		return fmt.Errorf("scene: condition %q: light %v: want 0 (full) or 0.05-1", c.Name, c.Light)
	case c.Noise < 0 || c.Noise > 64:
		return fmt.Errorf("scene: condition %q: noise %v: want 0-64 grey levels", c.Name, c.Noise)
	case c.Gamma < 0 || c.Gamma > 4:
		return fmt.Errorf("scene: condition %q: gamma %v: want 0 (none) or up to 4", c.Name, c.Gamma)
	case c.JPEG < 0 || c.JPEG > 100:
		return fmt.Errorf("scene: condition %q: JPEG quality %d: want 0 (none) or 1-100", c.Name, c.JPEG)
	}
	for _, g := range c.Cast {
		if g < 0 || g > 4 {
			return fmt.Errorf("scene: condition %q: colour cast gains %v: want 0-4", c.Name, c.Cast)
		}
	}
	return nil
}

func (c Condition) sizes() (lo, hi float64) {
	lo, hi = c.MinSize, c.MaxSize
	if lo == 0 {
		lo = DefaultMinSize
	}
	if hi == 0 {
		hi = max(lo, DefaultMaxSize)
	}
	return lo, hi
}

// Suite is the test suite of `edge eval --camera`: a clean scene, then each
// condition alone at a strength a real installation meets, then all of them
// together at a milder strength. Training augmentation (models/data.py)
// draws from other parameters on purpose, so that this stays a test.
func Suite() []Condition {
	return []Condition{
		{Name: "clean"},
		{Name: "far", MinSize: 40, MaxSize: 56},
		{Name: "near", MinSize: 144, MaxSize: 160},
		{Name: "focus-blur", Focus: 1.6},
		{Name: "motion-blur", Motion: 9},
		{Name: "noise", Noise: 10},
		{Name: "low-light", Light: 0.25, Noise: 2, Gamma: 1.3},
		{Name: "mjpeg-q30", JPEG: 30},
		{Name: "mjpeg-q60", JPEG: 60},
		{Name: "warm-cast", Cast: [3]float64{1.25, 1, 0.7}},
		{Name: "cool-cast", Cast: [3]float64{0.8, 1, 1.25}},
		{Name: "grey-camera", Grey: true},
		{Name: "roll-10", Roll: 10},
		{Name: "roll-20", Roll: 20},
		{Name: "yaw", Yaw: 0.25},
		{Name: "hand", Occlusion: Hand},
		{Name: "glasses", Occlusion: Glasses},
		{Name: "cap", Occlusion: Cap},
		{Name: "combined", MinSize: 56, MaxSize: 96, Roll: 10, Yaw: 0.15, Focus: 0.8, Motion: 4,
			Light: 0.5, Noise: 3, Gamma: 1.1, Cast: [3]float64{1.1, 1, 0.85}, JPEG: 50},
	}
}

// String describes the condition's parameters, e.g. "face 40-56 px, roll 20°".
func (c Condition) String() string {
	var parts []string
	add := func(format string, a ...any) { parts = append(parts, fmt.Sprintf(format, a...)) }
	lo, hi := c.sizes()
	add("face %g-%g px", lo, hi)
	if c.Roll != 0 {
		add("roll ±%g°", c.Roll)
	}
	if c.Yaw != 0 {
		add("yaw squeeze %g", c.Yaw)
	}
	if c.Occlusion != NoOcclusion {
		add("%s", c.Occlusion)
	}
	if c.Focus != 0 {
		add("focus blur σ %g px", c.Focus)
	}
	if c.Motion != 0 {
		add("motion blur %g px", c.Motion)
	}
	if c.Light != 0 && c.Light != 1 {
		add("light %g", c.Light)
	}
	if c.Noise != 0 {
		add("noise σ %g", c.Noise)
	}
	if c.Gamma != 0 && c.Gamma != 1 {
		add("gamma %g", c.Gamma)
	}
	if c.Cast != [3]float64{} {
		add("RGB gains %g/%g/%g", c.Cast[0], c.Cast[1], c.Cast[2])
	}
	if c.Grey {
		add("grey")
	}
	if c.JPEG != 0 {
		add("MJPEG q%d", c.JPEG)
	}
	return strings.Join(parts, ", ")
}

// Placement is where the face crop went: the centre and side, in frame
// pixels, of the square it filled before it was turned (Roll, degrees).
type Placement struct {
	X, Y, Side, Roll float64
}

// Frame is a rendered scene.
type Frame struct {
	// Image is an *image.YCbCr with 4:2:0 chroma, or an *image.Gray for
	// a grey camera. Luma is its Y plane (stride Width).
	Image image.Image
	Luma  []byte
	Face  Placement
}

// Renderer renders scenes. It keeps its working buffers between calls, so
// it is not safe for concurrent use: give each goroutine its own.
type Renderer struct {
	rgb  [3][]float32 // the frame, linear in the camera's output code values 0-255
	tmp  []float32    // blur scratch
	face [3][]float32 // the face crop in RGB
}

// NewRenderer returns a renderer.
func NewRenderer() *Renderer {
	r := &Renderer{tmp: make([]float32, Width*Height)}
	for i := range r.rgb {
		r.rgb[i] = make([]float32, Width*Height)
	}
	return r
}

// layout is what the seed decides, drawn in a fixed order so that every
// condition sees the same scene.
type layout struct {
	size, cx, cy float64 // fractions in [0, 1) mapped per condition
	rollSign     float64
	yawSign      float64
	motionAngle  float64 // radians
	handSide     float64 // -1 or 1
	wall, floor  [3]float32
	floorY       int
	rects        []rect
	shirt        [3]float32
	capColor     [3]float32
	textureSeed  uint64
}

type rect struct {
	x0, y0, x1, y1 int
	c              [3]float32
}

func newLayout(seed uint64) layout {
	// Hashed, so that consecutive seeds (image indices) give unrelated scenes.
	rng := rand.New(rand.NewPCG(hash(seed, 1), hash(seed, 2)))
	l := layout{size: rng.Float64(), cx: rng.Float64(), cy: rng.Float64()}
	l.rollSign = sign(rng)
	l.yawSign = sign(rng)
	// Mostly horizontal motion: within ±30° of the horizon.
	l.motionAngle = (rng.Float64()*2 - 1) * math.Pi / 6
	l.handSide = sign(rng)
	l.wall = muted(rng, 90, 210)
	l.floor = muted(rng, 50, 150)
	l.floorY = Height*6/10 + rng.IntN(Height/5)
	for range 3 + rng.IntN(4) {
		x0, y0 := rng.IntN(Width), rng.IntN(Height)
		l.rects = append(l.rects, rect{x0: x0, y0: y0, x1: x0 + 30 + rng.IntN(200), y1: y0 + 30 + rng.IntN(240), c: muted(rng, 30, 230)})
	}
	l.shirt = muted(rng, 20, 220)
	l.capColor = muted(rng, 15, 120)
	l.textureSeed = rng.Uint64()
	return l
}

func sign(rng *rand.Rand) float64 {
	if rng.IntN(2) == 0 {
		return -1
	}
	return 1
}

// muted is a colour of low saturation and a value in [lo, hi): walls,
// floors and clothes rather than signal colours.
func muted(rng *rand.Rand, lo, hi float64) [3]float32 {
	v := lo + rng.Float64()*(hi-lo)
	var c [3]float32
	for i := range c {
		c[i] = float32(min(max(v*(0.8+0.4*rng.Float64()), 0), 255))
	}
	return c
}

// Render draws face (a face crop: *image.YCbCr, *image.Gray or any image)
// into a scene under c, laid out by seed.
func (r *Renderer) Render(face image.Image, c Condition, seed uint64) (*Frame, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	fb := face.Bounds()
	if fb.Dx() < 8 || fb.Dy() < 8 {
		return nil, fmt.Errorf("scene: face image %dx%d: want at least 8x8", fb.Dx(), fb.Dy())
	}
	l := newLayout(seed)
	lo, hi := c.sizes()
	side := lo + l.size*(hi-lo)
	// A turned square needs side*(|cos|+|sin|) of room, and its feather a little more.
	ext := side * 1.12 * (math.Abs(math.Cos(c.Roll*math.Pi/180)) + math.Abs(math.Sin(c.Roll*math.Pi/180))) / 2
	cx := ext + 2 + l.cx*(Width-2*ext-4)
	cy := ext + 2 + l.cy*(Height-2*ext-4)
	p := Placement{X: cx, Y: cy, Side: side}
	if c.Roll != 0 {
		p.Roll = l.rollSign * c.Roll
	}

	r.background(l)
	r.body(l, p)
	r.loadFace(face)
	r.occlude(c.Occlusion, l, fb.Dx(), fb.Dy())
	r.composite(fb.Dx(), fb.Dy(), p, c.Yaw*l.yawSign)

	roi := roiOf(p)
	if c.Focus > 0 {
		r.blur(roi, gaussKernel(c.Focus))
	}
	if c.Motion > 0 {
		r.streak(roi, boxKernel(c.Motion), l.motionAngle)
	}
	r.sensor(c, roi, seed)
	r.tone(c)
	img := r.encode(c.Grey)
	if c.JPEG > 0 {
		if err := compress(img, roi, c.JPEG); err != nil {
			return nil, err
		}
	}
	f := &Frame{Image: img, Face: p}
	switch im := img.(type) {
	case *image.YCbCr:
		f.Luma = im.Y
	case *image.Gray:
		f.Luma = im.Pix
	}
	return f, nil
}

// roiOf is the part of the frame around the face that blur, noise and
// compression work on (the face and one face side around it, aligned to
// JPEG's 16-pixel MCUs): the rest of the frame stays as the background was
// drawn, which saves most of the cost and changes nothing the detector
// needs to find this face.
func roiOf(p Placement) image.Rectangle {
	m := p.Side * 1.5
	x0 := int(math.Floor((p.X-m)/16)) * 16
	y0 := int(math.Floor((p.Y-m)/16)) * 16
	x1 := int(math.Ceil((p.X+m)/16)) * 16
	y1 := int(math.Ceil((p.Y+m)/16)) * 16
	return image.Rect(x0, y0, x1, y1).Intersect(image.Rect(0, 0, Width, Height))
}

// background draws the room: a wall with a vertical light gradient, a
// floor, furniture-like rectangles and a faint fixed texture.
func (r *Renderer) background(l layout) {
	for y := range Height {
		c := l.wall
		shade := float32(1.1 - 0.25*float64(y)/Height)
		if y >= l.floorY {
			c = l.floor
			shade = 1
		}
		row := y * Width
		for x := range Width {
			t := float32(int(hash(l.textureSeed, uint64(y*Width+x))&7) - 4)
			for k := range 3 {
				r.rgb[k][row+x] = c[k]*shade + t
			}
		}
	}
	for _, q := range l.rects {
		r.fillRect(q.x0, q.y0, q.x1, q.y1, q.c)
	}
}

func (r *Renderer) fillRect(x0, y0, x1, y1 int, c [3]float32) {
	x0, y0 = max(x0, 0), max(y0, 0)
	x1, y1 = min(x1, Width), min(y1, Height)
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			for k := range 3 {
				r.rgb[k][y*Width+x] = c[k]
			}
		}
	}
}

// body draws shoulders and a torso under the face, as an ellipse in the
// shirt colour.
func (r *Renderer) body(l layout, p Placement) {
	ex, ey := p.X, p.Y+1.6*p.Side
	ax, ay := 1.25*p.Side, 0.95*p.Side
	for y := max(int(ey-ay), 0); y < min(int(ey+ay)+1, Height); y++ {
		for x := max(int(ex-ax), 0); x < min(int(ex+ax)+1, Width); x++ {
			dx, dy := (float64(x)+0.5-ex)/ax, (float64(y)+0.5-ey)/ay
			if dx*dx+dy*dy <= 1 {
				for k := range 3 {
					r.rgb[k][y*Width+x] = l.shirt[k]
				}
			}
		}
	}
}

// loadFace converts the face crop to RGB in r.face.
func (r *Renderer) loadFace(face image.Image) {
	b := face.Bounds()
	n := b.Dx() * b.Dy()
	for k := range r.face {
		if cap(r.face[k]) < n {
			r.face[k] = make([]float32, n)
		}
		r.face[k] = r.face[k][:n]
	}
	i := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			var R, G, B uint8
			switch im := face.(type) {
			case *image.YCbCr:
				c := im.YCbCrAt(x, y)
				R, G, B = color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
			case *image.Gray:
				v := im.GrayAt(x, y).Y
				R, G, B = v, v, v
			default:
				r16, g16, b16, _ := face.At(x, y).RGBA()
				R, G, B = uint8(r16>>8), uint8(g16>>8), uint8(b16>>8)
			}
			r.face[0][i], r.face[1][i], r.face[2][i] = float32(R), float32(G), float32(B)
			i++
		}
	}
}

// Where the occluders go, in units of the face crop's side: the data sets'
// crops are centred on the face with the eyes a little above the middle.
const (
	eyeY   = 0.42
	eyeDX  = 0.17 // each eye's distance from the vertical centre line
	mouthY = 0.76
)

// occlude draws the occluder onto the face crop (w x h), so that it turns
// and scales with the face.
func (r *Renderer) occlude(o Occluder, l layout, w, h int) {
	fw, fh := float64(w), float64(h)
	ellipse := func(cx, cy, ax, ay float64, fn func(i int, d float64)) {
		for y := max(int((cy-ay)*fh), 0); y < min(int((cy+ay)*fh)+1, h); y++ {
			for x := max(int((cx-ax)*fw), 0); x < min(int((cx+ax)*fw)+1, w); x++ {
				dx := ((float64(x)+0.5)/fw - cx) / ax
				dy := ((float64(y)+0.5)/fh - cy) / ay
				if d := dx*dx + dy*dy; d <= 1 {
					fn(y*w+x, d)
				}
			}
		}
	}
	set := func(i int, c [3]float32, a float32) {
		for k := range 3 {
			r.face[k][i] = r.face[k][i]*(1-a) + c[k]*a
		}
	}
	switch o {
	case Hand:
		// Skin tone from the face's own centre, a little lighter, with a
		// darker rim so that it reads as a separate object.
		var skin [3]float32
		ci := (h/2)*w + w/2
		for k := range 3 {
			skin[k] = min(r.face[k][ci]*1.08+6, 255)
		}
		ellipse(0.5+l.handSide*0.12, mouthY+0.04, 0.26, 0.18, func(i int, d float64) {
			c := skin
			if d > 0.8 {
				for k := range c {
					c[k] *= 0.8
				}
			}
			set(i, c, 1)
		})
	case Glasses:
		frame := [3]float32{20, 20, 24}
		for _, s := range []float64{-1, 1} {
			ellipse(0.5+s*eyeDX, eyeY, 0.12, 0.075, func(i int, d float64) {
				if d > 0.7 {
					set(i, frame, 1)
				} else {
					set(i, frame, 0.3) // tinted lens
				}
			})
		}
		for y := int((eyeY - 0.01) * fh); y <= int((eyeY+0.01)*fh); y++ {
			for x := int((0.5 - eyeDX + 0.12) * fw); x < int((0.5+eyeDX-0.12)*fw)+1; x++ {
				if x >= 0 && x < w && y >= 0 && y < h {
					set(y*w+x, frame, 1)
				}
			}
		}
	case Cap:
		// Crown down to the top of the brow, and a brim a little wider.
		for y := range int(0.2 * fh) {
			for x := range w {
				set(y*w+x, l.capColor, 1)
			}
		}
		dark := l.capColor
		for k := range dark {
			dark[k] *= 0.6
		}
		ellipse(0.5, 0.22, 0.42, 0.05, func(i int, _ float64) { set(i, dark, 1) })
	}
}

// composite draws the face crop (w x h, in r.face) into the frame at p,
// turned by p.Roll and by yaw (signed: which side turns away), with a
// feathered edge so that no square outline is left for the detector.
func (r *Renderer) composite(w, h int, p Placement, yaw float64) {
	// Shrink the crop by whole pixels first so that point samples of it
	// average what a camera's pixels would.
	k := max(int(float64(w)/p.Side), 1)
	sw, sh := w/k, h/k
	src := r.face
	if k > 1 {
		var small [3][]float32
		for c := range small {
			small[c] = make([]float32, sw*sh)
			for y := range sh {
				for x := range sw {
					var s float32
					for j := range k {
						row := src[c][(y*k+j)*w+x*k:]
						for i := range k {
							s += row[i]
						}
					}
					small[c][y*sw+x] = s / float32(k*k)
				}
			}
		}
		src = small
	}
	th := p.Roll * math.Pi / 180
	cos, sin := math.Cos(th), math.Sin(th)
	squeeze := 1 - math.Abs(yaw)
	const feather = 0.06 // of the side
	half := p.Side * (1 + 2*feather) * (math.Abs(cos) + math.Abs(sin)) / 2
	x0, x1 := max(int(p.X-half)-1, 0), min(int(p.X+half)+2, Width)
	y0, y1 := max(int(p.Y-half)-1, 0), min(int(p.Y+half)+2, Height)
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			var acc [3]float64
			var alpha float64
			// 2x2 supersampling per frame pixel.
			for _, o := range [4][2]float64{{0.25, 0.25}, {0.75, 0.25}, {0.25, 0.75}, {0.75, 0.75}} {
				dx, dy := float64(x)+o[0]-p.X, float64(y)+o[1]-p.Y
				rx, ry := cos*dx+sin*dy, -sin*dx+cos*dy
				u := rx / squeeze / p.Side // -0.5..0.5 across the face
				// The far side (sign of yaw) is shorter.
				hs := 1 - math.Abs(yaw)*0.5*(0.5+math.Copysign(1, yaw)*u)
				v := ry / hs / p.Side
				if yaw == 0 {
					v = ry / p.Side
				}
				// The crop's own pixels stay whole (a tight crop like
				// FER2013's is all face); its edge pixels fade out over a
				// feather beyond it, so no square outline is left.
				e := min(0.5-math.Abs(u), 0.5-math.Abs(v))
				if e <= -feather {
					continue
				}
				a := min(1+e/feather, 1)
				fx, fy := (u+0.5)*float64(sw)-0.5, (v+0.5)*float64(sh)-0.5
				for c := range 3 {
					acc[c] += a * bilinear(src[c], sw, sh, fx, fy)
				}
				alpha += a
			}
			if alpha == 0 {
				continue
			}
			i := y*Width + x
			for c := range 3 {
				r.rgb[c][i] = float32(acc[c]/4 + float64(r.rgb[c][i])*(1-alpha/4))
			}
		}
	}
}

func bilinear(p []float32, w, h int, x, y float64) float64 {
	x = min(max(x, 0), float64(w-1))
	y = min(max(y, 0), float64(h-1))
	x0, y0 := int(x), int(y)
	x1, y1 := min(x0+1, w-1), min(y0+1, h-1)
	tx, ty := x-float64(x0), y-float64(y0)
	top := float64(p[y0*w+x0])*(1-tx) + float64(p[y0*w+x1])*tx
	bot := float64(p[y1*w+x0])*(1-tx) + float64(p[y1*w+x1])*tx
	return top*(1-ty) + bot*ty
}

// kernel is a 1-D blur kernel: weights at integer offsets -r..r, summing to 1.
type kernel []float32

func gaussKernel(sigma float64) kernel {
	rad := int(math.Ceil(3 * sigma))
	k := make(kernel, 2*rad+1)
	var s float32
	for i := range k {
		d := float64(i - rad)
		k[i] = float32(math.Exp(-d * d / (2 * sigma * sigma)))
		s += k[i]
	}
	for i := range k {
		k[i] /= s
	}
	return k
}

// boxKernel is a motion streak of the given length (fractional ends weighted).
func boxKernel(length float64) kernel {
	rad := int(math.Ceil((length - 1) / 2))
	k := make(kernel, 2*rad+1)
	var s float32
	for i := range k {
		d := math.Abs(float64(i - rad))
		k[i] = float32(min(max((length/2+0.5)-d, 0), 1))
		s += k[i]
	}
	for i := range k {
		k[i] /= s
	}
	return k
}

// blur convolves the frame inside roi with the Gaussian k along both axes.
func (r *Renderer) blur(roi image.Rectangle, k kernel) {
	for c := range r.rgb {
		convolve(r.rgb[c], r.tmp, roi, k, 1, 0)
		convolve(r.tmp, r.rgb[c], roi, k, 0, 1)
	}
}

// streak convolves the frame inside roi with k along the direction angle
// (radians from the horizontal), sampling between pixels: a motion blur.
func (r *Renderer) streak(roi image.Rectangle, k kernel, angle float64) {
	rad := len(k) / 2
	dx, dy := math.Cos(angle), math.Sin(angle)
	for c := range r.rgb {
		p := r.rgb[c]
		for y := roi.Min.Y; y < roi.Max.Y; y++ {
			for x := roi.Min.X; x < roi.Max.X; x++ {
				var s float32
				for i, w := range k {
					t := float64(i - rad)
					s += w * float32(bilinear(p, Width, Height, float64(x)+t*dx, float64(y)+t*dy))
				}
				r.tmp[y*Width+x] = s
			}
		}
		for y := roi.Min.Y; y < roi.Max.Y; y++ {
			copy(p[y*Width+roi.Min.X:y*Width+roi.Max.X], r.tmp[y*Width+roi.Min.X:y*Width+roi.Max.X])
		}
	}
}

// convolve writes src convolved with k along (dx, dy) to dst inside roi;
// outside roi dst gets src's values (so a second pass reads them).
func convolve(src, dst []float32, roi image.Rectangle, k kernel, dx, dy int) {
	rad := len(k) / 2
	ext := roi.Inset(-rad).Intersect(image.Rect(0, 0, Width, Height))
	for y := ext.Min.Y; y < ext.Max.Y; y++ {
		copy(dst[y*Width+ext.Min.X:y*Width+ext.Max.X], src[y*Width+ext.Min.X:y*Width+ext.Max.X])
	}
	for y := roi.Min.Y; y < roi.Max.Y; y++ {
		for x := roi.Min.X; x < roi.Max.X; x++ {
			var s float32
			for i, w := range k {
				xx := min(max(x+(i-rad)*dx, 0), Width-1)
				yy := min(max(y+(i-rad)*dy, 0), Height-1)
				s += w * src[yy*Width+xx]
			}
			dst[y*Width+x] = s
		}
	}
}

// sensor applies the light level, sensor noise and the camera's gain: the
// dim signal plus noise is quantised to whole code values (the ADC) and
// multiplied back up, so low light shows as amplified noise and banding.
// Noise is drawn inside roi only (see roiOf).
func (r *Renderer) sensor(c Condition, roi image.Rectangle, seed uint64) {
	light := c.Light
	if light == 0 {
		light = 1
	}
	if light == 1 && c.Noise == 0 {
		return
	}
	gain := float32(1 / light)
	var rng *rand.Rand
	if c.Noise > 0 {
		rng = rand.New(rand.NewPCG(hash(seed, 3), nameKey(c.Name)))
	}
	for k := range r.rgb {
		p := r.rgb[k]
		for y := range Height {
			inROI := y >= roi.Min.Y && y < roi.Max.Y
			for x := range Width {
				i := y*Width + x
				v := p[i] * float32(light)
				if rng != nil && inROI && x >= roi.Min.X && x < roi.Max.X {
					v += float32(rng.NormFloat64() * c.Noise)
				}
				v = float32(math.Round(float64(min(max(v, 0), 255))))
				p[i] = v * gain
			}
		}
	}
}

// tone applies the gamma curve and the white-balance error.
func (r *Renderer) tone(c Condition) {
	g := c.Gamma
	cast := c.Cast != [3]float64{}
	if (g == 0 || g == 1) && !cast {
		return
	}
	var lut [256]float32
	for i := range lut {
		lut[i] = float32(i)
		if g != 0 && g != 1 {
			lut[i] = float32(255 * math.Pow(float64(i)/255, g))
		}
	}
	for k := range r.rgb {
		m := float32(1)
		if cast {
			m = float32(c.Cast[k])
		}
		p := r.rgb[k]
		for i, v := range p {
			p[i] = lut[int(min(max(v, 0), 255)+0.5)] * m
		}
	}
}

// encode converts the frame to 8-bit Y Cb Cr (JFIF full range) with
// 4:2:0 chroma, or to grey.
func (r *Renderer) encode(grey bool) image.Image {
	R, G, B := r.rgb[0], r.rgb[1], r.rgb[2]
	y8 := func(i int) uint8 {
		return clamp8(0.299*R[i] + 0.587*G[i] + 0.114*B[i])
	}
	if grey {
		im := image.NewGray(image.Rect(0, 0, Width, Height))
		for i := range im.Pix {
			im.Pix[i] = y8(i)
		}
		return im
	}
	im := image.NewYCbCr(image.Rect(0, 0, Width, Height), image.YCbCrSubsampleRatio420)
	for i := range im.Y {
		im.Y[i] = y8(i)
	}
	for cy := range Height / 2 {
		for cx := range Width / 2 {
			var cb, cr float32
			for _, i := range [4]int{2*cy*Width + 2*cx, 2*cy*Width + 2*cx + 1, (2*cy+1)*Width + 2*cx, (2*cy+1)*Width + 2*cx + 1} {
				r, g, b := min(max(R[i], 0), 255), min(max(G[i], 0), 255), min(max(B[i], 0), 255)
				cb += 128 - 0.168736*r - 0.331264*g + 0.5*b
				cr += 128 + 0.5*r - 0.418688*g - 0.081312*b
			}
			im.Cb[cy*im.CStride+cx] = clamp8(cb / 4)
			im.Cr[cy*im.CStride+cx] = clamp8(cr / 4)
		}
	}
	return im
}

func clamp8(v float32) uint8 {
	return uint8(min(max(v+0.5, 0), 255))
}

// compress runs roi of img through a JPEG encoder at quality q and back.
// roi is MCU-aligned, so the result equals compressing the whole frame
// inside it (JPEG's blocks are coded independently).
func compress(img image.Image, roi image.Rectangle, q int) error {
	var buf bytes.Buffer
	sub := img.(interface {
		SubImage(image.Rectangle) image.Image
	}).SubImage(roi)
	if err := jpeg.Encode(&buf, sub, &jpeg.Options{Quality: q}); err != nil {
		return fmt.Errorf("scene: jpeg encode: %w", err)
	}
	dec, err := jpeg.Decode(&buf)
	if err != nil {
		return fmt.Errorf("scene: jpeg decode: %w", err)
	}
	switch dst := img.(type) {
	case *image.YCbCr:
		d, ok := dec.(*image.YCbCr)
		if !ok || d.SubsampleRatio != image.YCbCrSubsampleRatio420 {
			return fmt.Errorf("scene: jpeg decoded to %T, want 4:2:0 Y Cb Cr", dec)
		}
		for y := range roi.Dy() {
			copy(dst.Y[(roi.Min.Y+y)*dst.YStride+roi.Min.X:], d.Y[y*d.YStride:y*d.YStride+roi.Dx()])
		}
		for y := range roi.Dy() / 2 {
			o := (roi.Min.Y/2+y)*dst.CStride + roi.Min.X/2
			copy(dst.Cb[o:o+roi.Dx()/2], d.Cb[y*d.CStride:])
			copy(dst.Cr[o:o+roi.Dx()/2], d.Cr[y*d.CStride:])
		}
	case *image.Gray:
		d, ok := dec.(*image.Gray)
		if !ok {
			return fmt.Errorf("scene: jpeg decoded to %T, want grey", dec)
		}
		for y := range roi.Dy() {
			copy(dst.Pix[(roi.Min.Y+y)*dst.Stride+roi.Min.X:], d.Pix[y*d.Stride:y*d.Stride+roi.Dx()])
		}
	}
	return nil
}

func nameKey(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// hash mixes a seed and an index (splitmix64): a fixed texture without a
// random stream.
func hash(seed, i uint64) uint64 {
	z := seed + i*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Source renders every frame of a source of face crops (a data set folder
// or archive) into a scene under one condition: a camera source of known
// faces for tests and demos. The layout of frame n is drawn from seed and
// the face frame's Seq, so two Sources over the same faces agree.
type Source struct {
	faces camera.Source
	cond  Condition
	seed  uint64
	r     *Renderer
	last  Placement
}

// NewSource wraps faces; it validates c now rather than on every frame.
func NewSource(faces camera.Source, c Condition, seed uint64) (*Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &Source{faces: faces, cond: c, seed: seed, r: NewRenderer()}, nil
}

// Next renders the next face. A face the renderer cannot use (smaller than
// 8x8) is a corrupt frame: the error wraps camera.ErrCorrupt and the source
// goes on.
func (s *Source) Next(ctx context.Context) (*camera.Frame, error) {
	f, err := s.faces.Next(ctx)
	if err != nil {
		return nil, err
	}
	face := f.Image
	if face == nil {
		face = &image.Gray{Pix: f.Luma, Stride: f.Width, Rect: image.Rect(0, 0, f.Width, f.Height)}
	}
	out, err := s.r.Render(face, s.cond, s.seed^hash(f.Seq, 4))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", camera.ErrCorrupt, f.Name, err)
	}
	s.last = out.Face
	return &camera.Frame{Seq: f.Seq, Time: f.Time, Width: Width, Height: Height, Luma: out.Luma, Image: out.Image, Name: f.Name}, nil
}

// Face is where the face of the latest frame went.
func (s *Source) Face() Placement { return s.last }

// Stats are the face source's.
func (s *Source) Stats() camera.SourceStats { return s.faces.Stats() }

// Close closes the face source.
func (s *Source) Close() error { return s.faces.Close() }
