package camera

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

// testPicture returns a w×h colour picture whose content depends on seed.
func testPicture(w, h, seed int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x*4 + seed), uint8(y*4 + 2*seed), uint8(seed * 40), 255})
		}
	}
	return img
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// makeYUYV packs a w×h frame with rows stride bytes apart; Y = x+y, U = 100+x/2, V = 200-y.
func makeYUYV(w, h, stride int) []byte {
	b := make([]byte, stride*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x += 2 {
			p := b[y*stride+2*x:]
			p[0], p[1], p[2], p[3] = byte(x+y), byte(100+x/2), byte(x+1+y), byte(200-y)
		}
	}
	return b
}

func TestYUYV(t *testing.T) {
	tests := []struct {
		name         string
		w, h, stride int
		data         []byte
		wantErr      bool
		wantCorrupt  bool
	}{
		{name: "packed", w: 8, h: 4, stride: 16},
		{name: "padded rows", w: 8, h: 4, stride: 24},
		{name: "last row unpadded", w: 8, h: 4, stride: 24, data: makeYUYV(8, 4, 24)[:24*3+16]},
		{name: "truncated", w: 8, h: 4, stride: 16, data: makeYUYV(8, 4, 16)[:60], wantErr: true, wantCorrupt: true},
		{name: "empty", w: 8, h: 4, stride: 16, data: []byte{}, wantErr: true, wantCorrupt: true},
		{name: "odd width", w: 7, h: 4, stride: 16, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data
			if data == nil {
				data = makeYUYV(tt.w, tt.h, tt.stride)
			}
			var d decoder
			var f Frame
			err := d.yuyv(data, tt.w, tt.h, tt.stride, &f)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				if got := errors.Is(err, ErrCorrupt); got != tt.wantCorrupt {
					t.Fatalf("errors.Is(%v, ErrCorrupt) = %v, want %v", err, got, tt.wantCorrupt)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Width != tt.w || f.Height != tt.h || len(f.Luma) != tt.w*tt.h {
				t.Fatalf("got %dx%d luma %d", f.Width, f.Height, len(f.Luma))
			}
			packed, ok := f.Image.(*YUYV)
			if !ok {
				t.Fatalf("Image = %T, want *YUYV", f.Image)
			}
			ycc := packed.YCbCr()
			if ycc.SubsampleRatio != image.YCbCrSubsampleRatio422 {
				t.Fatalf("YCbCr() ratio %v", ycc.SubsampleRatio)
			}
			for y := 0; y < tt.h; y++ {
				for x := 0; x < tt.w; x++ {
					if got := f.Luma[y*tt.w+x]; got != byte(x+y) {
						t.Fatalf("luma(%d,%d) = %d, want %d", x, y, got, x+y)
					}
					want := color.YCbCr{Y: byte(x + y), Cb: byte(100 + x/2), Cr: byte(200 - y)}
					if c := ycc.YCbCrAt(x, y); c != want {
						t.Fatalf("YCbCr().YCbCrAt(%d,%d) = %v, want %v", x, y, c, want)
					}
					if c := packed.At(x, y); c != want {
						t.Fatalf("At(%d,%d) = %v, want %v", x, y, c, want)
					}
				}
			}
		})
	}
}

func TestYUYVLumaRow(t *testing.T) {
	for _, w := range []int{1, 2, 3, 4, 5, 8, 13} { // around the 4-pixel unrolling
		src := make([]byte, 2*w)
		for i := range src {
			src[i] = byte(i)
		}
		dst := make([]byte, w)
		yuyvLuma(dst, src)
		for i, v := range dst {
			if v != byte(2*i) {
				t.Fatalf("w=%d: luma[%d] = %d, want %d", w, i, v, 2*i)
			}
		}
	}
}

func TestDecodeEncoded(t *testing.T) {
	gray := image.NewGray(image.Rect(0, 0, 30, 20))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i)
	}
	var pngBuf bytes.Buffer
	if err := png.Encode(&pngBuf, testPicture(12, 10, 3)); err != nil {
		t.Fatal(err)
	}
	pal := image.NewPaletted(image.Rect(0, 0, 4, 4), color.Palette{color.Black, color.RGBA{255, 0, 0, 255}})
	pal.Pix[5] = 1
	var palBuf bytes.Buffer
	if err := png.Encode(&palBuf, pal); err != nil {
		t.Fatal(err)
	}
	jpg := encodeJPEG(t, testPicture(64, 48, 1))

	tests := []struct {
		name      string
		data      []byte
		w, h      int
		wantImage string // %T of Frame.Image
		corrupt   bool
	}{
		{"colour jpeg, stride = width", jpg, 64, 48, "*image.YCbCr", false},
		{"colour jpeg, padded stride", encodeJPEG(t, testPicture(30, 20, 2)), 30, 20, "*image.YCbCr", false},
		{"grey jpeg", encodeJPEG(t, gray), 30, 20, "*image.Gray", false},
		{"png", pngBuf.Bytes(), 12, 10, "*image.RGBA", false}, // opaque: PNG stores RGB
		{"paletted png", palBuf.Bytes(), 4, 4, "*image.Paletted", false},
		{"truncated jpeg", jpg[:len(jpg)/2], 0, 0, "", true},
		{"not an image", []byte("hello"), 0, 0, "", true},
		{"empty", nil, 0, 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d decoder
			var f Frame
			err := d.encoded(tt.data, &f)
			if tt.corrupt {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("err = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Width != tt.w || f.Height != tt.h || len(f.Luma) != tt.w*tt.h {
				t.Fatalf("got %dx%d luma %d, want %dx%d", f.Width, f.Height, len(f.Luma), tt.w, tt.h)
			}
			if got := typeName(f.Image); got != tt.wantImage {
				t.Fatalf("Image is %s, want %s", got, tt.wantImage)
			}
			// Luma must be the BT.601 luma of the picture: the Y plane for
			// JPEG, computed for others (compare with color.GrayModel).
			for y := 0; y < tt.h; y++ {
				for x := 0; x < tt.w; x++ {
					var want uint8
					switch im := f.Image.(type) {
					case *image.YCbCr:
						want = im.Y[im.YOffset(x, y)]
					default:
						want = color.GrayModel.Convert(im.At(x, y)).(color.Gray).Y
					}
					if got := f.Luma[y*tt.w+x]; got != want {
						t.Fatalf("luma(%d,%d) = %d, want %d", x, y, got, want)
					}
				}
			}
		})
	}
}

// TestRGBLumaFastPaths checks the per-type loops against the generic one.
func TestRGBLumaFastPaths(t *testing.T) {
	nrgba := testPicture(13, 7, 9)
	rgba := image.NewRGBA(nrgba.Rect)
	for i := range rgba.Pix {
		rgba.Pix[i] = nrgba.Pix[i]
	}
	sub := nrgba.SubImage(image.Rect(3, 2, 11, 7))
	for _, img := range []image.Image{nrgba, rgba, sub} {
		b := img.Bounds()
		got := make([]byte, b.Dx()*b.Dy())
		rgbLuma(got, img)
		i := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				if want := color.GrayModel.Convert(img.At(x, y)).(color.Gray).Y; got[i] != want {
					t.Fatalf("%T luma(%d,%d) = %d, want %d", img, x, y, got[i], want)
				}
				i++
			}
		}
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *image.YCbCr:
		return "*image.YCbCr"
	case *image.Gray:
		return "*image.Gray"
	case *image.RGBA:
		return "*image.RGBA"
	case *image.Paletted:
		return "*image.Paletted"
	case nil:
		return "nil"
	}
	return "other"
}

// stripDHT removes the DHT segments of a JPEG, as some webcams send it.
func stripDHT(t testing.TB, data []byte) []byte {
	t.Helper()
	out := append([]byte(nil), data[:2]...)
	i := 2
	for {
		m := data[i+1]
		n := 2 + int(data[i+2])<<8 + int(data[i+3])
		if m == 0xDA {
			return append(out, data[i:]...)
		}
		if m != 0xC4 {
			out = append(out, data[i:i+n]...)
		}
		i += n
	}
}

func TestMissingHuffmanTables(t *testing.T) {
	orig := encodeJPEG(t, testPicture(64, 48, 5))
	bare := stripDHT(t, orig)
	if len(bare) >= len(orig) {
		t.Fatal("encoder wrote no DHT to strip")
	}
	if _, err := jpeg.Decode(bytes.NewReader(bare)); err == nil {
		t.Log("note: image/jpeg decodes frames without DHT by itself")
	}
	// image/jpeg writes the standard tables in one DHT before the scan, so
	// inserting them back must restore the file byte for byte.
	fixed, _ := withHuffmanTables(bare, nil)
	if !bytes.Equal(fixed, orig) {
		t.Fatalf("spliced JPEG differs from the original (%d vs %d bytes)", len(fixed), len(orig))
	}
	if same, _ := withHuffmanTables(orig, nil); &same[0] != &orig[0] {
		t.Fatal("a JPEG with tables was copied")
	}
	var d decoder
	var f Frame
	if err := d.jpeg(bare, &f); err != nil {
		t.Fatalf("decode without DHT: %v", err)
	}
	want, _ := jpeg.Decode(bytes.NewReader(orig))
	if !bytes.Equal(f.Luma, want.(*image.YCbCr).Y[:64*48]) {
		t.Fatal("luma differs from the original's")
	}
}

func TestFrameClone(t *testing.T) {
	var d decoder
	var f Frame
	if err := d.yuyv(makeYUYV(8, 2, 16), 8, 2, 16, &f); err != nil {
		t.Fatal(err)
	}
	c := f.Clone()
	if err := d.yuyv(make([]byte, 32), 8, 2, 16, &f); err != nil { // reuses the buffers
		t.Fatal(err)
	}
	if c.Luma[1] != 1 || c.Image.(*YUYV).YCbCrAt(0, 0).Cb != 100 {
		t.Fatal("clone shares memory with the source's buffers")
	}
}

// TestFrameCopyTo: CopyTo deep-copies the frame like Clone, into the
// destination's own buffers, and allocates nothing once they have grown.
func TestFrameCopyTo(t *testing.T) {
	var d decoder
	jpegData := encodeJPEG(t, testPicture(16, 8, 3))
	for _, tc := range []struct {
		name   string
		decode func(f *Frame) error
	}{
		{"ycbcr", func(f *Frame) error { return d.jpeg(jpegData, f) }},
		{"yuyv", func(f *Frame) error { return d.yuyv(makeYUYV(8, 2, 16), 8, 2, 16, f) }},
		{"gray", func(f *Frame) error { return d.grey(makeYUYV(8, 2, 16), 16, 2, 16, f) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var src, dst Frame
			if err := tc.decode(&src); err != nil {
				t.Fatal(err)
			}
			src.CopyTo(&dst)
			if n := testing.AllocsPerRun(5, func() { src.CopyTo(&dst) }); n != 0 {
				t.Errorf("CopyTo into grown buffers: %v allocations, want 0", n)
			}
			if &dst.Luma[0] == &src.Luma[0] || !bytes.Equal(dst.Luma, src.Luma) {
				t.Fatal("luma not copied")
			}
			if fmt.Sprintf("%T", dst.Image) != fmt.Sprintf("%T", src.Image) {
				t.Fatalf("Image is %T, want %T", dst.Image, src.Image)
			}
			b := src.Image.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					if g, w := dst.Image.At(x, y), src.Image.At(x, y); g != w {
						t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, g, w)
					}
				}
			}
			// Overwrite the source's buffers: the copy keeps its pixels.
			want := dst.Image.At(1, 1)
			clear(src.Luma)
			switch im := src.Image.(type) {
			case *image.YCbCr:
				clear(im.Cb)
				clear(im.Cr)
			case *YUYV:
				clear(im.Pix)
			}
			if got := dst.Image.At(1, 1); got != want || dst.Luma[1] == 0 {
				t.Fatalf("copy shares memory with the source: pixel %v, want %v", got, want)
			}
		})
	}
}

// BenchmarkYUYVLuma is what a 640x480 YUYV frame costs the V4L2 source:
// copy out of the capture buffer and extract the luma.
func BenchmarkYUYVLuma(b *testing.B) {
	src := makeYUYV(640, 480, 1280)
	var d decoder
	var f Frame
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.yuyv(src, 640, 480, 1280, &f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkYUYVToYCbCr is the price of the colour picture, paid only when used.
func BenchmarkYUYVToYCbCr(b *testing.B) {
	p := &YUYV{Pix: makeYUYV(640, 480, 1280), Stride: 1280, Rect: image.Rect(0, 0, 640, 480)}
	b.ReportAllocs()
	for b.Loop() {
		p.YCbCr()
	}
}

func BenchmarkJPEGDecode(b *testing.B) {
	data := encodeJPEG(b, testPicture(640, 480, 7))
	var d decoder
	var f Frame
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.jpeg(data, &f); err != nil {
			b.Fatal(err)
		}
	}
}
