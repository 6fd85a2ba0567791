package pipeline

import (
	"image"
	"image/color"
	"math"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/tflite"
)

// Cropper cuts a model's input out of frames: for a tflite.ColorGray model
// the grey crop of [Crop]; for a tflite.ColorYCbCr model the same square in
// three channels, interleaved Y Cb Cr per pixel. It keeps its buffers, so a
// crop allocates nothing once they have grown. Not safe for concurrent use.
type Cropper struct {
	w, h  int
	color bool

	out       []byte
	y, cb, cr []byte    // a colour crop's planes, before interleaving
	conv      [2][]byte // Cb and Cr of a picture without planes, crop region only
	grid      []byte    // a turned crop's upright square (cropFrom)
}

// NewCropper makes crops of the model input in.
func NewCropper(in tflite.InputSpec) *Cropper {
	return &Cropper{w: in.Width, h: in.Height, color: in.Color == tflite.ColorYCbCr}
}

// Color reports whether the crops are Y Cb Cr (3 bytes per pixel) rather
// than grey.
func (c *Cropper) Color() bool { return c.color }

// Crop returns the model input for box out of a w x h frame: luma is its
// grey plane (stride w) and img its colour picture, nil if it has none; a
// grey model's crop reads only luma. The result is reused by the next call.
//
// A colour crop's Y is byte for byte the grey crop. Cb and Cr come from
// img's own chroma planes, at their own resolution: the luma square maps to
// plane coordinates (x*cw/w, y*ch/h) and is resampled like Crop does
// (area average when shrinking, bilinear when enlarging, 128 outside the
// frame). Without colour (img nil or grey) Cb and Cr are 128; pictures of
// other types are converted with color.YCbCrModel, over the crop only.
func (c *Cropper) Crop(luma []byte, w, h int, img image.Image, box Box, f Framing) []byte {
	if !c.color {
		c.out = cropLuma(luma, w, h, box, f, c.w, c.h, &c.grid, c.out)
		return c.out
	}
	c.y = cropLuma(luma, w, h, box, f, c.w, c.h, &c.grid, c.y)
	g, ok := cropGrid(box, f, c.w, c.h)
	var cb, cr plane
	var sx, sy float64
	if ok && len(luma) >= w*h {
		cb, cr, sx, sy, ok = c.chroma(img, w, h, cropRegion(g.x0, g.y0, g.side, w, h))
	}
	if !ok {
		c.cb = fill(c.cb, c.w, c.h, outside)
		c.cr = fill(c.cr, c.w, c.h, outside)
		return c.interleave()
	}
	c.cb = cropFrom(cb, sx, sy, box, f, c.w, c.h, &c.grid, c.cb)
	c.cr = cropFrom(cr, sx, sy, box, f, c.w, c.h, &c.grid, c.cr)
	return c.interleave()
}

// interleave packs the crop's Y, Cb and Cr planes into c.out, pixel by pixel.
func (c *Cropper) interleave() []byte {
	n := len(c.y)
	c.out = grow(c.out, 3*n)
	for i, v := range c.y {
		c.out[3*i], c.out[3*i+1], c.out[3*i+2] = v, c.cb[i], c.cr[i]
	}
	return c.out
}

// HasColor reports whether img is a colour picture that colour crops take
// Cb and Cr from; nil and grey pictures have none (their Cb and Cr are 128).
func HasColor(img image.Image) bool {
	switch img.(type) {
	case nil, *image.Gray, *image.Gray16:
		return false
	}
	return true
}

// chroma returns the Cb and Cr planes of img, the colour picture of a w x h
// frame, and the scale from frame to plane coordinates. need is the part of
// the frame the crop reads; only pictures without planes of their own are
// converted there. ok is false when img carries no usable colour.
func (c *Cropper) chroma(img image.Image, w, h int, need image.Rectangle) (cb, cr plane, sx, sy float64, ok bool) {
	if !HasColor(img) || img.Bounds().Dx() != w || img.Bounds().Dy() != h {
		return plane{}, plane{}, 0, 0, false
	}
	switch im := img.(type) {
	case *image.YCbCr:
		if cb, cr, ok = ycbcrPlanes(im); ok {
			return cb, cr, float64(cb.rect.Dx()) / float64(w), float64(cb.rect.Dy()) / float64(h), true
		}
	case *camera.YUYV:
		cb, cr, ok = yuyvPlanes(im)
		// A YUYV frame that does not hold its own size is corrupt: no colour.
		return cb, cr, 0.5, 1, ok
	}
	// Full resolution, converted over the crop only: frame and plane
	// coordinates are the same.
	n := need.Dx() * need.Dy()
	c.conv[0], c.conv[1] = grow(c.conv[0], n), grow(c.conv[1], n)
	convertChroma(img, need, c.conv[0], c.conv[1])
	cb = plane{pix: c.conv[0], stride: need.Dx(), step: 1, rect: need}
	cr = plane{pix: c.conv[1], stride: need.Dx(), step: 1, rect: need}
	return cb, cr, 1, 1, true
}

// cropRegion is the part of a w x h frame that resampling the square at
// (x0, y0) of the given side reads, with a pixel to spare on each side (a
// bilinear sample reaches half a pixel beyond the square).
func cropRegion(x0, y0, side float64, w, h int) image.Rectangle {
	span := func(lo float64, n int) (int, int) {
		a := max(math.Floor(lo)-1, 0)
		b := min(math.Ceil(lo+side)+1, float64(n))
		if !(a < b) {
			return 0, 0
		}
		return int(a), int(b)
	}
	ax, bx := span(x0, w)
	ay, by := span(y0, h)
	return image.Rect(ax, ay, bx, by)
}

// subsampling returns how many luma pixels share one chroma sample across
// and down for ratio r, or 0, 0 for a ratio image.YCbCr does not define.
func subsampling(r image.YCbCrSubsampleRatio) (dx, dy int) {
	switch r {
	case image.YCbCrSubsampleRatio444:
		return 1, 1
	case image.YCbCrSubsampleRatio422:
		return 2, 1
	case image.YCbCrSubsampleRatio420:
		return 2, 2
	case image.YCbCrSubsampleRatio440:
		return 1, 2
	case image.YCbCrSubsampleRatio411:
		return 4, 1
	case image.YCbCrSubsampleRatio410:
		return 4, 2
	}
	return 0, 0
}

// ycbcrPlanes returns im's chroma planes, cw x ch samples laid over its
// rectangle. ok is false when they are not a plain grid over it (an unknown
// ratio, a rectangle that does not start on a chroma sample, planes too
// short); callers then convert pixel by pixel.
func ycbcrPlanes(im *image.YCbCr) (cb, cr plane, ok bool) {
	r := im.Rect
	dx, dy := subsampling(im.SubsampleRatio)
	if dx == 0 || r.Min.X < 0 || r.Min.Y < 0 || r.Min.X%dx != 0 || r.Min.Y%dy != 0 {
		return plane{}, plane{}, false
	}
	// The plane size image.NewYCbCr allocates.
	cw := (r.Max.X+dx-1)/dx - r.Min.X/dx
	ch := (r.Max.Y+dy-1)/dy - r.Min.Y/dy
	off := im.COffset(r.Min.X, r.Min.Y)
	end := off + (ch-1)*im.CStride + cw
	if cw <= 0 || ch <= 0 || im.CStride < cw || len(im.Cb) < end || len(im.Cr) < end {
		return plane{}, plane{}, false
	}
	rect := image.Rect(0, 0, cw, ch)
	return plane{pix: im.Cb[off:], stride: im.CStride, step: 1, rect: rect},
		plane{pix: im.Cr[off:], stride: im.CStride, step: 1, rect: rect}, true
}

// yuyvPlanes returns p's chroma as two w/2 x h planes read in place: per
// pair of pixels the bytes are Y0 Cb Y1 Cr.
func yuyvPlanes(p *camera.YUYV) (cb, cr plane, ok bool) {
	w, h := p.Rect.Dx(), p.Rect.Dy()
	if w <= 0 || h <= 0 || w%2 != 0 || p.Stride < 2*w || len(p.Pix) < (h-1)*p.Stride+2*w {
		return plane{}, plane{}, false
	}
	rect := image.Rect(0, 0, w/2, h)
	return plane{pix: p.Pix[1:], stride: p.Stride, step: 4, rect: rect},
		plane{pix: p.Pix[3:], stride: p.Stride, step: 4, rect: rect}, true
}

// convertChroma writes the Cb and Cr of the pixels of img in r (frame
// coordinates: (0, 0) is img's top-left corner) to cb and cr, r.Dx() per row.
func convertChroma(img image.Image, r image.Rectangle, cb, cr []byte) {
	o := img.Bounds().Min
	i := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cb[i], cr[i] = chromaAt(img, o.X+x, o.Y+y)
			i++
		}
	}
}

// chromaAt is the Cb and Cr of img's pixel (x, y), without allocating for
// the types sources produce.
func chromaAt(img image.Image, x, y int) (cb, cr uint8) {
	switch im := img.(type) {
	case interface{ YCbCrAt(x, y int) color.YCbCr }: // *image.YCbCr, *camera.YUYV
		c := im.YCbCrAt(x, y)
		return c.Cb, c.Cr
	case *image.NRGBA:
		// Alpha is ignored, as for the luma of such pictures (camera): a
		// translucent pixel's colour is still its colour.
		p := im.Pix[im.PixOffset(x, y):]
		_, cb, cr = color.RGBToYCbCr(p[0], p[1], p[2])
		return cb, cr
	case *image.RGBA:
		p := im.Pix[im.PixOffset(x, y):]
		_, cb, cr = color.RGBToYCbCr(p[0], p[1], p[2])
		return cb, cr
	}
	c := color.YCbCrModel.Convert(img.At(x, y)).(color.YCbCr)
	return c.Cb, c.Cr
}
