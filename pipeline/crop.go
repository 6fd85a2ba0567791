package pipeline

import (
	"fmt"
	"image"
	"math"
)

// Framing places a model's input square relative to a detection box, as
// stored in each model's metadata (the README's "Face framing").
type Framing struct {
	// Scale is the side of the crop in units of the box side.
	Scale float64
	// OffsetX and OffsetY move the crop centre, in units of the box side.
	OffsetX, OffsetY float64
	// Level cuts the crop turned by the box's Roll, offsets included, so
	// the face comes out level: for models trained on aligned faces. Without
	// it a box's Roll is ignored.
	Level bool
}

// Validate reports whether the framing can produce a crop.
func (f Framing) Validate() error {
	if !(f.Scale > 0) || math.IsInf(f.Scale, 0) {
		return fmt.Errorf("framing: scale %v: must be a finite number > 0", f.Scale)
	}
	if math.IsNaN(f.OffsetX) || math.IsInf(f.OffsetX, 0) || math.IsNaN(f.OffsetY) || math.IsInf(f.OffsetY, 0) {
		return fmt.Errorf("framing: offsets (%v, %v) must be finite", f.OffsetX, f.OffsetY)
	}
	return nil
}

// outside is the value of every pixel outside the frame: mid grey, which is
// 0 after the models' input quantisation (q = pixel-128), i.e. "no signal".
const outside = 128

// Crop cuts the model input for box out of the w x h grey image luma (stride
// w) and returns it as outW x outH grey pixels in dst (reused when it has the
// capacity). It implements the framing contract: the crop is the square of
// side f.Scale*box.S centred at (box.X+f.OffsetX*box.S, box.Y+f.OffsetY*box.S);
// pixels outside the frame are 128; each axis is area-averaged when shrinking
// and bilinearly interpolated when enlarging. With f.Level, a box with a Roll
// is cut turned by it, offsets included, so that the face comes out level
// (see [cropFrom]).
//
// Coordinates are continuous (pixel i covers [i, i+1)), values are rounded to
// the nearest integer. An image shorter than w*h bytes or an empty box gives an
// all-grey crop; outW or outH < 1 gives an empty slice.
func Crop(luma []byte, w, h int, box Box, f Framing, outW, outH int, dst []byte) []byte {
	var scratch []byte
	return cropLuma(luma, w, h, box, f, outW, outH, &scratch, dst)
}

// cropLuma is Crop with the scratch of a turned crop supplied by the caller
// (a [Cropper] keeps its own).
func cropLuma(luma []byte, w, h int, box Box, f Framing, outW, outH int, scratch *[]byte, dst []byte) []byte {
	if len(luma) < w*h {
		return fill(dst, outW, outH, outside)
	}
	return cropFrom(greyPlane(luma, w, h), 1, 1, box, f, outW, outH, scratch, dst)
}

// cropFrom resamples the framing contract's square for box out of src, a
// plane whose pixel coordinates are the frame's scaled by (sx, sy) (1, 1 for
// luma; less for subsampled chroma), to outW x outH pixels in dst.
//
// An upright box (Roll 0) is resampled directly. A turned one is cut in two
// steps: the upright square around it is resampled into *scratch at the
// output's pixel pitch (area-averaged, so shrinking does not alias), and the
// output's pixel centres, turned by Roll about the crop's centre, are read
// from it bilinearly.
func cropFrom(src plane, sx, sy float64, box Box, f Framing, outW, outH int, scratch *[]byte, dst []byte) []byte {
	g, ok := cropGrid(box, f, outW, outH)
	if !ok {
		return fill(dst, outW, outH, outside)
	}
	if g.roll == 0 {
		return resample(src, g.x0*sx, g.y0*sy, g.kx*sx, g.ky*sy, outW, outH, false, dst)
	}
	*scratch = resample(src, g.x0*sx, g.y0*sy, g.k*sx, g.k*sy, g.m, g.m, false, *scratch)
	return turn(*scratch, g, outW, outH, dst)
}

// grid is the upright square of the frame a crop reads, from (x0, y0) with
// side: the crop's own square for an upright crop, with pixel pitch kx, ky;
// for one turned by roll the square around it, resampled to m x m pixels of
// pitch k with a pixel to spare on every side.
type grid struct {
	x0, y0, side float64
	kx, ky       float64
	roll         float64
	k            float64
	m            int
	crop         float64 // the crop square's side
}

// cropGrid returns the grid for box; ok is false when there is no crop
// square (empty box, NaN or infinite values).
func cropGrid(box Box, f Framing, outW, outH int) (grid, bool) {
	var roll float64
	if f.Level {
		roll = box.Roll
	}
	side := f.Scale * box.S
	sin, cos := math.Sincos(roll)
	u, v := f.OffsetX*box.S, f.OffsetY*box.S
	cx, cy := box.X+u, box.Y+v
	if roll != 0 {
		// The framing offsets are along the face's own axes.
		cx, cy = box.X+cos*u-sin*v, box.Y+sin*u+cos*v
	}
	if !(side > 0) || math.IsInf(side, 0) || math.IsNaN(cx) || math.IsNaN(cy) || math.IsNaN(roll) || math.IsInf(roll, 0) || outW < 1 || outH < 1 {
		return grid{}, false
	}
	g := grid{x0: cx - side/2, y0: cy - side/2, side: side, crop: side, roll: roll,
		kx: side / float64(outW), ky: side / float64(outH)}
	if roll == 0 {
		return g, true
	}
	g.k = min(g.kx, g.ky)
	g.m = int(math.Ceil(side*(math.Abs(cos)+math.Abs(sin))/g.k)) + 2
	g.side = float64(g.m) * g.k
	g.x0, g.y0 = cx-g.side/2, cy-g.side/2
	return g, true
}

// turn reads the outW x outH crop turned by the grid's roll out of its m x m
// pixels, bilinearly at each output pixel's centre.
func turn(pix []byte, g grid, outW, outH int, dst []byte) []byte {
	dst = grow(dst, outW*outH)
	sin, cos := math.Sincos(g.roll)
	mid := float64(g.m) / 2
	at := func(x, y int) float64 {
		if x < 0 || y < 0 || x >= g.m || y >= g.m {
			return outside
		}
		return float64(pix[y*g.m+x])
	}
	for j := range outH {
		v := ((float64(j)+0.5)*g.ky - g.crop/2) / g.k
		for i := range outW {
			u := ((float64(i)+0.5)*g.kx - g.crop/2) / g.k
			x := mid + cos*u - sin*v - 0.5
			y := mid + sin*u + cos*v - 0.5
			x0, y0 := math.Floor(x), math.Floor(y)
			tx, ty := x-x0, y-y0
			ix, iy := int(x0), int(y0)
			val := (at(ix, iy)*(1-tx)+at(ix+1, iy)*tx)*(1-ty) + (at(ix, iy+1)*(1-tx)+at(ix+1, iy+1)*tx)*ty
			dst[j*outW+i] = byte(min(max(math.Floor(val+0.5), 0), 255))
		}
	}
	return dst
}

// ResizeGray resizes the whole w x h grey image src to outW x outH with the
// same resampling as [Crop] (area average when shrinking, bilinear when
// enlarging, per axis). `edge eval` uses it on dataset crops, which already
// are the models' framing. Shrinking reads no pixel outside the image; when
// enlarging, the half pixel beyond the border repeats the edge pixel (there
// is no "outside" to fill in a whole image), where Crop would read grey.
func ResizeGray(src []byte, w, h, outW, outH int, dst []byte) []byte {
	if w <= 0 || h <= 0 || len(src) < w*h {
		return fill(dst, outW, outH, outside)
	}
	return resample(greyPlane(src, w, h), 0, 0, float64(w)/float64(outW), float64(h)/float64(outH), outW, outH, true, dst)
}

// Mirror writes the horizontal mirror image of the w x h image src, c bytes
// per pixel, to dst (reused when it has the capacity) and returns it: pixel x
// of a row becomes pixel w-1-x with its c bytes (Y, Cb, Cr) kept in order.
// Models whose metadata asks for flip averaging run on a crop and on its
// mirror.
func Mirror(src []byte, w, h, c int, dst []byte) []byte {
	row := max(w, 0) * max(c, 0)
	n := row * max(h, 0)
	if len(src) < n {
		return fill(dst, row, h, outside)
	}
	dst = grow(dst, n)
	for y := range h {
		s, d := src[y*row:(y+1)*row], dst[y*row:(y+1)*row]
		for x := range w {
			m := (w - 1 - x) * c
			for k := range c {
				d[x*c+k] = s[m+k]
			}
		}
	}
	return dst
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func fill(dst []byte, w, h int, v byte) []byte {
	if w <= 0 || h <= 0 {
		return dst[:0]
	}
	dst = grow(dst, w*h)
	for i := range dst {
		dst[i] = v
	}
	return dst
}

// span is the set of source pixels, with weights, that make one output pixel
// along one axis: pixels i0..i1, weight w0 on i0, w1 on i1 (if i1 > i0) and 1
// in between, divided by norm.
type span struct {
	i0, i1 int
	w0, w1 float64
	norm   float64
}

// snapEps absorbs floating-point noise so that integer-aligned sampling gives
// exact weights (and exact, testable pixels) instead of 1e-16 leaks into a
// neighbour.
const snapEps = 1e-9

func snap(v float64) float64 {
	if r := math.Round(v); math.Abs(v-r) < snapEps {
		return r
	}
	return v
}

// axisSpan returns output pixel u's source span on an axis where the output
// starts at source coordinate origin and each output pixel is k source
// pixels wide.
func axisSpan(origin, k float64, u int) span {
	if k >= 1 {
		// Area average: the exact overlap of [a, b) with each source pixel.
		a := snap(origin + float64(u)*k)
		b := snap(origin + float64(u+1)*k)
		i0 := int(math.Floor(a))
		i1 := int(math.Ceil(b)) - 1
		if i1 <= i0 {
			return span{i0: i0, i1: i0, w0: b - a, norm: b - a}
		}
		return span{i0: i0, i1: i1, w0: float64(i0+1) - a, w1: b - float64(i1), norm: b - a}
	}
	// Bilinear: sample at the output pixel's centre; pixel i's centre is i+0.5.
	s := snap(origin + (float64(u)+0.5)*k - 0.5)
	i0 := math.Floor(s)
	t := s - i0
	if t == 0 {
		return span{i0: int(i0), i1: int(i0), w0: 1, norm: 1}
	}
	return span{i0: int(i0), i1: int(i0) + 1, w0: 1 - t, w1: t, norm: 1}
}

func (s span) weight(i int) float64 {
	switch {
	case i == s.i0:
		return s.w0
	case i == s.i1:
		return s.w1
	}
	return 1
}

// plane is one 8-bit channel of a picture, in the channel's own pixel
// coordinates: pixel (x, y) of rect is pix[(y-rect.Min.Y)*stride +
// (x-rect.Min.X)*step]. step > 1 reads a channel packed with others (YUYV);
// a rect that is part of a plane holds the only pixels a resample reads.
type plane struct {
	pix          []byte
	stride, step int
	rect         image.Rectangle
}

// greyPlane is the w x h plane pix with stride w, such as a frame's luma.
func greyPlane(pix []byte, w, h int) plane {
	return plane{pix: pix, stride: w, step: 1, rect: image.Rect(0, 0, w, h)}
}

// resample renders the outW x outH grid whose pixel (u, v) covers source
// [x0+u*kx, x0+(u+1)*kx) x [y0+v*ky, y0+(v+1)*ky), treating the plane as
// embedded in an infinite mid-grey plane, or, with clamp, in the repetition
// of its edge pixels.
func resample(src plane, x0, y0, kx, ky float64, outW, outH int, clamp bool, dst []byte) []byte {
	if outW <= 0 || outH <= 0 {
		return dst[:0]
	}
	dst = grow(dst, outW*outH)
	b := src.rect
	for v := range outH {
		sy := axisSpan(y0, ky, v)
		for u := range outW {
			sx := axisSpan(x0, kx, u)
			var sum float64
			for j := sy.i0; j <= sy.i1; j++ {
				wy := sy.weight(j)
				r := j
				if clamp {
					r = min(max(r, b.Min.Y), b.Max.Y-1)
				}
				if r < b.Min.Y || r >= b.Max.Y {
					// The whole row is outside: weight of the span times grey.
					sum += wy * outside * sx.norm
					continue
				}
				row := src.pix[(r-b.Min.Y)*src.stride:]
				var rs float64
				for i := sx.i0; i <= sx.i1; i++ {
					p := float64(outside)
					switch {
					case clamp:
						p = float64(row[(min(max(i, b.Min.X), b.Max.X-1)-b.Min.X)*src.step])
					case i >= b.Min.X && i < b.Max.X:
						p = float64(row[(i-b.Min.X)*src.step])
					}
					rs += sx.weight(i) * p
				}
				sum += wy * rs
			}
			val := math.Floor(sum/(sx.norm*sy.norm) + 0.5)
			dst[v*outW+u] = byte(min(max(val, 0), 255))
		}
	}
	return dst
}
