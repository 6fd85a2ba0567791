package camera

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
)

// decoder turns encoded or raw frames into a Frame's Luma and Image,
// reusing its buffers from frame to frame. It is not safe for concurrent use.
type decoder struct {
	// maxPixels refuses larger encoded pictures before decoding them (see
	// WithMaxPixels); 0 means DefaultMaxPixels.
	maxPixels int
	luma      []byte
	raw       []byte // copy of a YUYV frame, behind packed
	packed    YUYV
	gray      image.Gray
	spliced   []byte // JPEG with Huffman tables inserted
}

// grow returns buf resized to n bytes, reallocating only when it is too small.
func grow(buf []byte, n int) []byte {
	if cap(buf) < n {
		return make([]byte, n)
	}
	return buf[:n]
}

// encoded decodes a JPEG or PNG picture into f.
func (d *decoder) encoded(data []byte, f *Frame) error {
	switch {
	case len(data) >= 2 && data[0] == 0xFF && data[1] == 0xD8:
		return d.jpeg(data, f)
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		cfg, err := png.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%w: png: %v", ErrCorrupt, err)
		}
		if err := d.fits("png", cfg); err != nil {
			return err
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%w: png: %v", ErrCorrupt, err)
		}
		d.picture(img, f)
		return nil
	}
	return fmt.Errorf("%w: neither JPEG nor PNG (%d bytes)", ErrCorrupt, len(data))
}

// jpeg decodes a JPEG (or an MJPEG frame, which may lack Huffman tables) into f.
func (d *decoder) jpeg(data []byte, f *Frame) error {
	// The header is read first: a few hundred bytes can announce a picture
	// whose decoding would take gigabytes.
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: jpeg: %v", ErrCorrupt, err)
	}
	if err := d.fits("jpeg", cfg); err != nil {
		return err
	}
	data, d.spliced = withHuffmanTables(data, d.spliced)
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: jpeg: %v", ErrCorrupt, err)
	}
	d.picture(img, f)
	return nil
}

// fits refuses a picture larger than d.maxPixels. Pictures that decode to
// 16-bit colour (8 bytes a pixel: 16-bit RGB(A) PNGs) count their pixels
// twice, as they take twice the memory of the 8-bit RGBA the limit allows for.
func (d *decoder) fits(kind string, cfg image.Config) error {
	limit := d.maxPixels
	if limit <= 0 {
		limit = DefaultMaxPixels
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return fmt.Errorf("%w: %s: empty picture %dx%d", ErrCorrupt, kind, cfg.Width, cfg.Height)
	}
	cost := int64(cfg.Width) * int64(cfg.Height)
	if cfg.ColorModel == color.RGBA64Model || cfg.ColorModel == color.NRGBA64Model {
		cost *= 2
	}
	if cost > int64(limit) {
		return fmt.Errorf("%w: %s: %dx%d is more than the limit of %d pixels", ErrTooLarge, kind, cfg.Width, cfg.Height, limit)
	}
	return nil
}

// picture sets f from a decoded image. JPEGs give *image.YCbCr or
// *image.Gray, whose Y plane is the luma already; other images (PNG files)
// get BT.601 luma computed, which is slower but off the camera hot path.
func (d *decoder) picture(img image.Image, f *Frame) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	f.Width, f.Height, f.Image = w, h, img
	switch im := img.(type) {
	case *image.YCbCr:
		f.Luma = d.plane(im.Y, im.YStride, im.YOffset(b.Min.X, b.Min.Y), w, h)
	case *image.Gray:
		f.Luma = d.plane(im.Pix, im.Stride, im.PixOffset(b.Min.X, b.Min.Y), w, h)
	default:
		d.luma = grow(d.luma, w*h)
		rgbLuma(d.luma, img)
		f.Luma = d.luma
	}
}

// plane returns the w×h plane at pix[off:] with the given stride as a
// stride-w slice: pix itself when it already is one, else a copy.
func (d *decoder) plane(pix []byte, stride, off, w, h int) []byte {
	if stride == w {
		return pix[off : off+w*h : off+w*h]
	}
	d.luma = grow(d.luma, w*h)
	for y := 0; y < h; y++ {
		copy(d.luma[y*w:(y+1)*w], pix[off+y*stride:])
	}
	return d.luma
}

// rgbLuma writes the BT.601 luma of img into dst (len = w*h), in integer
// arithmetic, with fast paths for the types PNG decoding gives.
func rgbLuma(dst []byte, img image.Image) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	switch im := img.(type) {
	case *image.NRGBA: // alpha ignored: the colour of a translucent pixel is still its colour
		for y := 0; y < h; y++ {
			row := im.Pix[im.PixOffset(b.Min.X, b.Min.Y+y):][:4*w]
			out := dst[y*w : (y+1)*w]
			for x := range out {
				p := row[4*x : 4*x+3 : 4*x+3]
				out[x] = luma8(p[0], p[1], p[2])
			}
		}
	case *image.RGBA:
		for y := 0; y < h; y++ {
			row := im.Pix[im.PixOffset(b.Min.X, b.Min.Y+y):][:4*w]
			out := dst[y*w : (y+1)*w]
			for x := range out {
				p := row[4*x : 4*x+3 : 4*x+3]
				out[x] = luma8(p[0], p[1], p[2])
			}
		}
	default:
		i := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, g, b, _ := img.At(x, y).RGBA()
				dst[i] = luma16(r, g, b)
				i++
			}
		}
	}
}

// BT.601 weights 0.299, 0.587, 0.114 in 16.16 fixed point, as color.GrayModel uses.
const wr, wg, wb = 19595, 38470, 7471

// luma16 is the luma of 16-bit channels, rounded exactly like color.GrayModel.
func luma16(r, g, b uint32) uint8 { return uint8((wr*r + wg*g + wb*b + 1<<15) >> 24) }

// luma8 is luma16 for 8-bit channels (widened as color.RGBA does: v*0x101).
func luma8(r, g, b uint8) uint8 {
	return luma16(uint32(r)*0x101, uint32(g)*0x101, uint32(b)*0x101)
}

// yuyv fills f from a packed YUYV 4:2:2 frame (Y0 U Y1 V per pixel pair)
// with rows stride bytes apart. The luma is every other byte. The frame is
// copied (capture buffers go back to the driver) and becomes Image as a
// *YUYV, so the chroma is only unpacked if the colour picture is used.
func (d *decoder) yuyv(data []byte, w, h, stride int, f *Frame) error {
	if w <= 0 || h <= 0 || w%2 != 0 || stride < 2*w {
		return fmt.Errorf("yuyv: bad geometry %dx%d stride %d", w, h, stride)
	}
	need := stride*(h-1) + 2*w
	if len(data) < need {
		return fmt.Errorf("%w: yuyv: %d bytes, want %d for %dx%d", ErrCorrupt, len(data), need, w, h)
	}
	d.raw = grow(d.raw, need)
	copy(d.raw, data)
	d.luma = grow(d.luma, w*h)
	for y := 0; y < h; y++ {
		yuyvLuma(d.luma[y*w:(y+1)*w], d.raw[y*stride:y*stride+2*w])
	}
	d.packed = YUYV{Pix: d.raw, Stride: stride, Rect: image.Rect(0, 0, w, h)}
	f.Width, f.Height, f.Luma, f.Image = w, h, d.luma, &d.packed
	return nil
}

// yuyvLuma writes the Y bytes of one YUYV row src (len 2*len(dst)) into dst.
func yuyvLuma(dst, src []byte) {
	n := len(dst)
	src = src[:2*n]
	i := 0
	// Four pixels per 8-byte load: about a third faster than byte by byte.
	for ; i+4 <= n; i += 4 {
		a := binary.LittleEndian.Uint64(src[2*i:])
		binary.LittleEndian.PutUint32(dst[i:], uint32(a&0xff|a>>16&0xff<<8|a>>32&0xff<<16|a>>48&0xff<<24))
	}
	for ; i < n; i++ {
		dst[i] = src[2*i]
	}
}

// YUYV is a packed YUYV 4:2:2 picture as V4L2 cameras deliver it: per pair
// of pixels the bytes Y0 Cb Y1 Cr. Frame.Image is a *YUYV for such cameras,
// so that the chroma is only unpacked when the colour picture is used; call
// YCbCr to get the planar form that image/jpeg encodes quickly.
type YUYV struct {
	Pix    []byte
	Stride int // bytes between rows, at least 2*width
	Rect   image.Rectangle
}

func (p *YUYV) ColorModel() color.Model { return color.YCbCrModel }
func (p *YUYV) Bounds() image.Rectangle { return p.Rect }
func (p *YUYV) At(x, y int) color.Color { return p.YCbCrAt(x, y) }

// YCbCrAt returns the colour of the pixel at (x, y).
func (p *YUYV) YCbCrAt(x, y int) color.YCbCr {
	if !(image.Point{x, y}.In(p.Rect)) {
		return color.YCbCr{}
	}
	row, px := (y-p.Rect.Min.Y)*p.Stride, x-p.Rect.Min.X
	i := row + 2*px
	pair := row + 2*(px&^1) // Y0 Cb Y1 Cr of the pair holding x
	return color.YCbCr{Y: p.Pix[i], Cb: p.Pix[pair+1], Cr: p.Pix[pair+3]}
}

// YCbCr unpacks the picture into a new 4:2:2 *image.YCbCr.
func (p *YUYV) YCbCr() *image.YCbCr {
	w, h := p.Rect.Dx(), p.Rect.Dy()
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio422)
	for y := 0; y < h; y++ {
		src := p.Pix[y*p.Stride : y*p.Stride+2*w]
		yr := img.Y[y*img.YStride : y*img.YStride+w]
		cb := img.Cb[y*img.CStride : y*img.CStride+w/2]
		cr := img.Cr[y*img.CStride : y*img.CStride+w/2]
		yuyvLuma(yr, src)
		for i := range cb {
			cb[i] = src[4*i+1]
			cr[i] = src[4*i+3]
		}
	}
	return img
}

// grey fills f from an 8-bit grey frame with rows stride bytes apart. The
// bytes are copied: raw capture buffers go back to the driver after Next.
func (d *decoder) grey(data []byte, w, h, stride int, f *Frame) error {
	if w <= 0 || h <= 0 || stride < w {
		return fmt.Errorf("grey: bad geometry %dx%d stride %d", w, h, stride)
	}
	if need := stride*(h-1) + w; len(data) < need {
		return fmt.Errorf("%w: grey: %d bytes, want %d for %dx%d", ErrCorrupt, len(data), need, w, h)
	}
	d.luma = grow(d.luma, w*h)
	for y := 0; y < h; y++ {
		copy(d.luma[y*w:(y+1)*w], data[y*stride:])
	}
	d.setGrey(w, h, f)
	return nil
}

// setGrey sets f to the w×h luma in d.luma, with a grey Image sharing it.
func (d *decoder) setGrey(w, h int, f *Frame) {
	d.gray = image.Gray{Pix: d.luma, Stride: w, Rect: image.Rect(0, 0, w, h)}
	f.Width, f.Height, f.Luma, f.Image = w, h, d.luma, &d.gray
}

// withHuffmanTables returns data with the standard JPEG Huffman tables
// (ITU T.81 K.3) inserted before the first scan when it has none, as many
// webcams send MJPEG frames that rely on those implicit tables. Otherwise
// data is returned untouched. buf is reused for the spliced copy and
// returned for the next call.
func withHuffmanTables(data, buf []byte) (out, newBuf []byte) {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return data, buf
	}
	for i := 2; i+3 < len(data); {
		if data[i] != 0xFF {
			return data, buf // not at a marker: malformed, let the decoder say so
		}
		m := data[i+1]
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0xC4: // DHT: the frame brings its own tables
			return data, buf
		case m == 0xDA: // SOS without a DHT before it
			buf = grow(buf, len(data)+len(stdDHT))
			n := copy(buf, data[:i])
			n += copy(buf[n:], stdDHT)
			copy(buf[n:], data[i:])
			return buf, buf
		case m == 0x01 || (m >= 0xD0 && m <= 0xD7): // markers without a length
			i += 2
			continue
		}
		i += 2 + (int(data[i+2])<<8 | int(data[i+3]))
	}
	return data, buf
}

// stdDHT is a DHT segment holding the four standard tables of ITU T.81
// section K.3, in the order and layout image/jpeg's encoder writes them.
var stdDHT = func() []byte {
	type table struct {
		class  byte // 0 = DC, 1 = AC
		id     byte
		counts [16]byte
		values []byte
	}
	dcValues := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	tables := []table{
		{0, 0, [16]byte{0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}, dcValues},
		{1, 0, [16]byte{0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 125}, []byte{
			0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
			0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
			0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
			0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
			0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
			0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
			0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
			0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
			0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
			0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
			0xf9, 0xfa,
		}},
		{0, 1, [16]byte{0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}, dcValues},
		{1, 1, [16]byte{0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 119}, []byte{
			0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
			0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
			0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
			0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
			0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
			0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
			0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
			0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
			0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
			0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
			0xf9, 0xfa,
		}},
	}
	seg := []byte{0xFF, 0xC4, 0, 0} // length filled in below
	for _, t := range tables {
		seg = append(seg, t.class<<4|t.id)
		seg = append(seg, t.counts[:]...)
		seg = append(seg, t.values...)
	}
	n := len(seg) - 2
	seg[2], seg[3] = byte(n>>8), byte(n)
	return seg
}()
