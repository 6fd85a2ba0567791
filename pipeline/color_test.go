package pipeline

import (
	"fmt"
	"image"
	"image/color"
	"slices"
	"testing"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/tflite"
)

// The colour test picture: luma and smooth chroma gradients as functions of
// full-resolution pixel coordinates.
const cw, ch = 64, 48

func lumaAt(x, y int) byte { return byte(3*x + y) }
func cbAt(x, _ int) byte   { return byte(40 + x) }
func crAt(_, y int) byte   { return byte(220 - 2*y) }

// blockMean is the rounded mean of f over the luma pixels [x0,x0+dx) x
// [y0,y0+dy) inside the picture: what a camera's chroma sample holds.
func blockMean(f func(x, y int) byte, x0, y0, dx, dy int) byte {
	sum, n := 0, 0
	for y := y0; y < min(y0+dy, ch); y++ {
		for x := x0; x < min(x0+dx, cw); x++ {
			sum += int(f(x, y))
			n++
		}
	}
	return byte((sum + n/2) / n)
}

// testYCbCr is the test picture with its chroma subsampled by ratio.
func testYCbCr(ratio image.YCbCrSubsampleRatio) *image.YCbCr {
	im := image.NewYCbCr(image.Rect(0, 0, cw, ch), ratio)
	dx, dy := subsampling(ratio)
	for y := range ch {
		for x := range cw {
			im.Y[im.YOffset(x, y)] = lumaAt(x, y)
			if x%dx == 0 && y%dy == 0 {
				im.Cb[im.COffset(x, y)] = blockMean(cbAt, x, y, dx, dy)
				im.Cr[im.COffset(x, y)] = blockMean(crAt, x, y, dx, dy)
			}
		}
	}
	return im
}

// testYUYV is the test picture packed as a YUYV camera frame, with padded rows.
func testYUYV() *camera.YUYV {
	stride := 2*cw + 8
	p := &camera.YUYV{Pix: make([]byte, stride*ch), Stride: stride, Rect: image.Rect(0, 0, cw, ch)}
	for y := range ch {
		for x := 0; x < cw; x += 2 {
			i := y*stride + 2*x
			p.Pix[i], p.Pix[i+1], p.Pix[i+2], p.Pix[i+3] = lumaAt(x, y), blockMean(cbAt, x, y, 2, 1), lumaAt(x+1, y), blockMean(crAt, x, y, 2, 1)
		}
	}
	return p
}

// testRGB is the picture as RGB, the way PNG files decode.
func testRGB() *image.NRGBA {
	im := image.NewNRGBA(image.Rect(0, 0, cw, ch))
	for y := range ch {
		for x := range cw {
			r, g, b := color.YCbCrToRGB(lumaAt(x, y), cbAt(x, y), crAt(x, y))
			im.SetNRGBA(x, y, color.NRGBA{r, g, b, 255})
		}
	}
	return im
}

func testLuma() []byte {
	luma := make([]byte, cw*ch)
	for y := range ch {
		for x := range cw {
			luma[y*cw+x] = lumaAt(x, y)
		}
	}
	return luma
}

// referenceCrop is an independent colour crop: img converted pixel by pixel
// (image/color's definition of each pixel's colour) into full-resolution Cb
// and Cr planes, each cropped like the luma.
func referenceCrop(img image.Image, luma []byte, box Box, f Framing, outW, outH int) []byte {
	cb, cr := fill(nil, cw, ch, outside), fill(nil, cw, ch, outside)
	if HasColor(img) {
		b := img.Bounds()
		for y := range ch {
			for x := range cw {
				c := color.YCbCrModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.YCbCr)
				cb[y*cw+x], cr[y*cw+x] = c.Cb, c.Cr
			}
		}
	}
	planes := [3][]byte{
		Crop(luma, cw, ch, box, f, outW, outH, nil),
		Crop(cb, cw, ch, box, f, outW, outH, nil),
		Crop(cr, cw, ch, box, f, outW, outH, nil),
	}
	out := make([]byte, 0, 3*outW*outH)
	for i := range planes[0] {
		out = append(out, planes[0][i], planes[1][i], planes[2][i])
	}
	return out
}

func TestCropperColor(t *testing.T) {
	luma := testLuma()
	// A 4:2:0 picture one pixel larger, cut at (1, 1): its chroma blocks
	// straddle the cut, so it is converted pixel by pixel.
	odd := image.NewYCbCr(image.Rect(0, 0, cw+1, ch+1), image.YCbCrSubsampleRatio420)
	for y := range ch + 1 {
		for x := range cw + 1 {
			odd.Cb[odd.COffset(x, y)] = cbAt(x, y)
			odd.Cr[odd.COffset(x, y)] = crAt(x, y)
		}
	}
	pictures := []struct {
		name string
		img  image.Image
		// tol is the largest difference from the reference in Cb and Cr:
		// 0 where the picture has a chroma sample per pixel, 1 where the
		// reference repeats a sample over its block and Cropper treats
		// the block's samples as the smooth picture they come from. With
		// subsampling, a sample at the border is a block wide, so the blend
		// with the grey outside reaches further: pixels centred within a
		// block of the border are left to TestCropperSubsampledBorder.
		tol int
	}{
		{"ycbcr 4:4:4", testYCbCr(image.YCbCrSubsampleRatio444), 0},
		{"ycbcr 4:2:2", testYCbCr(image.YCbCrSubsampleRatio422), 1},
		{"ycbcr 4:2:0", testYCbCr(image.YCbCrSubsampleRatio420), 1},
		{"ycbcr 4:4:0", testYCbCr(image.YCbCrSubsampleRatio440), 1},
		{"yuyv", testYUYV(), 1},
		{"nrgba", testRGB(), 0},
		{"ycbcr 4:2:0 at an odd offset", odd.SubImage(image.Rect(1, 1, cw+1, ch+1)), 0},
		{"nil", nil, 0},
		{"gray", &image.Gray{Pix: luma, Stride: cw, Rect: image.Rect(0, 0, cw, ch)}, 0},
	}
	boxes := []struct {
		name       string
		box        Box
		outW, outH int
	}{
		{"shrink inside", Box{X: 30, Y: 22, S: 24}, 8, 8},
		{"shrink, not square output", Box{X: 33.3, Y: 20.7, S: 27.5}, 12, 7},
		{"enlarge inside", Box{X: 31, Y: 25, S: 6}, 16, 16},
		{"enlarge off a chroma sample", Box{X: 20.25, Y: 17.6, S: 5}, 16, 12},
		{"partly outside", Box{X: 2, Y: 44, S: 20}, 8, 8},
		{"enlarge across the border", Box{X: 62, Y: 1, S: 6}, 12, 12},
		{"whole frame", Box{X: 32, Y: 24, S: 64}, 16, 16},
	}
	f := Framing{Scale: 1.25, OffsetY: 0.05}
	for _, pic := range pictures {
		for _, b := range boxes {
			t.Run(pic.name+"/"+b.name, func(t *testing.T) {
				c := NewCropper(tflite.InputSpec{Width: b.outW, Height: b.outH, Channels: 3, Color: tflite.ColorYCbCr})
				got := c.Crop(luma, cw, ch, pic.img, b.box, f)
				want := referenceCrop(pic.img, luma, b.box, f, b.outW, b.outH)
				if len(got) != len(want) {
					t.Fatalf("%d bytes, want %d", len(got), len(want))
				}
				grey := Crop(luma, cw, ch, b.box, f, b.outW, b.outH, nil)
				g, _ := cropGrid(b.box, f, b.outW, b.outH)
				x0, y0, side := g.x0, g.y0, g.side
				for i := range grey {
					if got[3*i] != grey[i] {
						t.Fatalf("Y of pixel %d = %d, want Crop's %d", i, got[3*i], grey[i])
					}
					const block = 2 // luma pixels per chroma sample, at most, in these pictures
					px := x0 + (float64(i%b.outW)+0.5)*side/float64(b.outW)
					py := y0 + (float64(i/b.outW)+0.5)*side/float64(b.outH)
					if pic.tol > 0 && (px < block || px > cw-block || py < block || py > ch-block) {
						continue
					}
					for k := 1; k < 3; k++ {
						if d := int(got[3*i+k]) - int(want[3*i+k]); d < -pic.tol || d > pic.tol {
							t.Fatalf("pixel %d channel %d = %d, reference %d (tolerance %d)\ngot  %v\nwant %v", i, k, got[3*i+k], want[3*i+k], pic.tol, got, want)
						}
					}
				}
			})
		}
	}
}

// TestCropperColorOutside: pixels outside the frame are neutral grey in every
// channel, and frames without colour have neutral chroma.
func TestCropperColorOutside(t *testing.T) {
	luma := testLuma()
	in := tflite.InputSpec{Width: 4, Height: 3, Channels: 3, Color: tflite.ColorYCbCr}
	grey := []byte{128, 128, 128}
	tests := []struct {
		name string
		img  image.Image
		box  Box
		// chroma128: every pixel's Cb and Cr are 128 (Y is still the luma).
		chroma128 bool
	}{
		{"ycbcr beyond the right edge", testYCbCr(image.YCbCrSubsampleRatio420), Box{X: 200, Y: 20, S: 30}, true},
		{"yuyv above the frame", testYUYV(), Box{X: 20, Y: -100, S: 30}, true},
		{"nrgba below the frame", testRGB(), Box{X: 20, Y: 300, S: 30}, true},
		{"nil picture", nil, Box{X: 30, Y: 20, S: 30}, true},
		{"grey picture", &image.Gray{Pix: luma, Stride: cw, Rect: image.Rect(0, 0, cw, ch)}, Box{X: 30, Y: 20, S: 30}, true},
		{"picture of another size", testYCbCr(image.YCbCrSubsampleRatio444).SubImage(image.Rect(0, 0, 10, 10)), Box{X: 30, Y: 20, S: 30}, true},
		{"corrupt yuyv", &camera.YUYV{Pix: make([]byte, 10), Stride: 2 * cw, Rect: image.Rect(0, 0, cw, ch)}, Box{X: 30, Y: 20, S: 30}, true},
		{"ycbcr inside", testYCbCr(image.YCbCrSubsampleRatio420), Box{X: 30, Y: 20, S: 30}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCropper(in)
			got := c.Crop(luma, cw, ch, tt.img, tt.box, Framing{Scale: 1})
			y := Crop(luma, cw, ch, tt.box, Framing{Scale: 1}, in.Width, in.Height, nil)
			allOutside := slices.Equal(y, fill(nil, in.Width, in.Height, outside))
			for i := range y {
				px := got[3*i : 3*i+3]
				switch {
				case allOutside && !slices.Equal(px, grey):
					t.Fatalf("pixel %d outside the frame = %v, want %v", i, px, grey)
				case px[0] != y[i]:
					t.Fatalf("pixel %d: Y %d, want Crop's %d", i, px[0], y[i])
				case tt.chroma128 && (px[1] != 128 || px[2] != 128):
					t.Fatalf("pixel %d: Cb Cr %v, want 128 128", i, px[1:])
				case !tt.chroma128 && px[1] == 128 && px[2] == 128:
					t.Fatalf("pixel %d: neutral chroma from a colour picture", i)
				}
			}
		})
	}
}

// TestCropperGrey: a grey model's crop is Crop's, whatever the picture.
// TestCropperSubsampledBorder: chroma is resampled in its own plane's
// coordinates, so an enlarged 4:2:2 crop interpolates between samples two
// luma pixels apart and blends with the grey beyond the border over half a
// sample.
func TestCropperSubsampledBorder(t *testing.T) {
	// 4x4 YUYV, each row Y0 Cb Y1 Cr pairs with Cb 100 then 200 and Cr 50.
	row := []byte{10, 100, 20, 50, 30, 200, 40, 50}
	p := &camera.YUYV{Stride: 8, Rect: image.Rect(0, 0, 4, 4)}
	luma := make([]byte, 0, 16)
	for range 4 {
		p.Pix = append(p.Pix, row...)
		luma = append(luma, 10, 20, 30, 40)
	}
	c := NewCropper(tflite.InputSpec{Width: 8, Height: 1, Channels: 3, Color: tflite.ColorYCbCr})
	got := c.Crop(luma, 4, 4, p, Box{X: 2, Y: 2, S: 4}, Framing{Scale: 1})
	// Cb samples at chroma x = -0.375, -0.125, ... 1.375 (sample i centred
	// at i+0.5): 0.375*128 + 0.625*100 = 110.5 -> 111, 0.125*128 + 0.875*100
	// = 103.5 -> 104, 0.875*100 + 0.125*200 = 112.5 -> 113, and so on.
	wantCb := []byte{111, 104, 113, 138, 163, 188, 191, 173}
	wantCr := []byte{79, 60, 50, 50, 50, 50, 60, 79}
	for i := range 8 {
		if got[3*i+1] != wantCb[i] || got[3*i+2] != wantCr[i] {
			t.Fatalf("Cb Cr of pixel %d = %v, want %d %d (crop %v)", i, got[3*i+1:3*i+3], wantCb[i], wantCr[i], got)
		}
	}
}

func TestCropperGrey(t *testing.T) {
	luma := testLuma()
	c := NewCropper(tflite.InputSpec{Width: 8, Height: 8, Channels: 1, Color: tflite.ColorGray})
	box, f := Box{X: 30, Y: 22, S: 24}, Framing{Scale: 1.25, OffsetY: 0.05}
	want := Crop(luma, cw, ch, box, f, 8, 8, nil)
	for _, img := range []image.Image{nil, testYCbCr(image.YCbCrSubsampleRatio420), testYUYV()} {
		if got := c.Crop(luma, cw, ch, img, box, f); !slices.Equal(got, want) || c.Color() {
			t.Fatalf("%T: grey crop %v, want %v", img, got, want)
		}
	}
}

// TestCropperTurned: a turned box's colour crop reads Cb and Cr turned the
// same way as Y. In a 4:4:4 picture each chroma plane is a full-resolution
// grey image, so its crop must be Crop's of that plane, byte for byte.
func TestCropperTurned(t *testing.T) {
	im := testYCbCr(image.YCbCrSubsampleRatio444)
	c := NewCropper(tflite.InputSpec{Width: 16, Height: 16, Channels: 3, Color: tflite.ColorYCbCr})
	box, f := Box{X: 31, Y: 23, S: 26, Roll: 0.3}, Framing{Scale: 1.2, OffsetX: 0.05, OffsetY: 0.08, Level: true}
	got := c.Crop(im.Y, cw, ch, im, box, f)
	for k, p := range [][]byte{im.Y, im.Cb, im.Cr} {
		want := Crop(p, cw, ch, box, f, 16, 16, nil)
		for i, v := range want {
			if got[3*i+k] != v {
				t.Fatalf("channel %d, pixel %d: %d, want %d", k, i, got[3*i+k], v)
			}
		}
	}
	if upright := Crop(im.Y, cw, ch, Box{X: 31, Y: 23, S: 26}, f, 16, 16, nil); slices.Equal(upright, Crop(im.Y, cw, ch, box, f, 16, 16, nil)) {
		t.Fatal("the turned crop equals the upright one: the test cannot tell")
	}
}

// TestCropperNoAllocs: once its buffers have grown, a colour crop allocates
// nothing, for every kind of picture cameras deliver, upright or turned.
func TestCropperNoAllocs(t *testing.T) {
	luma := testLuma()
	c := NewCropper(tflite.InputSpec{Width: 48, Height: 48, Channels: 3, Color: tflite.ColorYCbCr})
	f := Framing{Scale: 1.25, OffsetY: 0.05, Level: true}
	var mirrored []byte
	for _, img := range []image.Image{nil, testYCbCr(image.YCbCrSubsampleRatio420), testYUYV(), testRGB()} {
		for _, box := range []Box{{X: 30, Y: 22, S: 24}, {X: 30, Y: 22, S: 24, Roll: -0.35}} {
			t.Run(fmt.Sprintf("%T/roll %v", img, box.Roll), func(t *testing.T) {
				n := testing.AllocsPerRun(10, func() {
					crop := c.Crop(luma, cw, ch, img, box, f)
					mirrored = Mirror(crop, 48, 48, 3, mirrored)
				})
				if n != 0 {
					t.Fatalf("Crop+Mirror: %v allocations, want 0", n)
				}
			})
		}
	}
}

func TestHasColor(t *testing.T) {
	for _, tc := range []struct {
		img  image.Image
		want bool
	}{
		{nil, false},
		{image.NewGray(image.Rect(0, 0, 1, 1)), false},
		{image.NewGray16(image.Rect(0, 0, 1, 1)), false},
		{image.NewYCbCr(image.Rect(0, 0, 2, 2), image.YCbCrSubsampleRatio420), true},
		{&camera.YUYV{}, true},
		{image.NewNRGBA(image.Rect(0, 0, 1, 1)), true},
	} {
		if got := HasColor(tc.img); got != tc.want {
			t.Errorf("HasColor(%T) = %t, want %t", tc.img, got, tc.want)
		}
	}
}
