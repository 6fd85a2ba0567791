package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// sampleFrame is one JPEG of a sample sequence.
type sampleFrame struct {
	name string
	jpeg []byte
}

// loadTar reads the .jpg files of a tar archive, sorted by name.
func loadTar(file string) ([]sampleFrame, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var frames []sampleFrame
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		ext := strings.ToLower(path.Ext(hdr.Name))
		if hdr.Typeflag != tar.TypeReg || (ext != ".jpg" && ext != ".jpeg") {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, hdr.Name, err)
		}
		frames = append(frames, sampleFrame{name: hdr.Name, jpeg: data})
	}
	if len(frames) == 0 {
		return nil, fmt.Errorf("%s: no .jpg files", file)
	}
	sort.Slice(frames, func(i, j int) bool { return frames[i].name < frames[j].name })
	return frames, nil
}

// decodeYCbCr decodes a JPEG into its YCbCr planes.
func decodeYCbCr(data []byte) (*image.YCbCr, error) {
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	switch im := img.(type) {
	case *image.YCbCr:
		return im, nil
	case *image.Gray:
		b := im.Bounds()
		y := image.NewYCbCr(b, image.YCbCrSubsampleRatio444)
		for r := 0; r < b.Dy(); r++ {
			copy(y.Y[r*y.YStride:r*y.YStride+b.Dx()], im.Pix[r*im.Stride:])
		}
		for i := range y.Cb {
			y.Cb[i], y.Cr[i] = 128, 128
		}
		return y, nil
	}
	return nil, fmt.Errorf("unexpected JPEG image type %T", img)
}

// luma returns the Y plane of img with stride = width, as camera.Frame.Luma holds it.
func luma(img *image.YCbCr) []byte {
	b := img.Rect
	w, h := b.Dx(), b.Dy()
	out := make([]byte, w*h)
	for y := 0; y < h; y++ {
		copy(out[y*w:(y+1)*w], img.Y[y*img.YStride:])
	}
	return out
}

// yuyv packs img as YUYV 4:2:2 with stride 2*width: the luma is kept
// exactly, the chroma is taken from the left pixel of each pair.
func yuyv(img *image.YCbCr) []byte {
	b := img.Rect
	w, h := b.Dx(), b.Dy()
	out := make([]byte, 2*w*h)
	for y := 0; y < h; y++ {
		row := out[y*2*w:]
		for x := 0; x+1 < w; x += 2 {
			c := img.COffset(b.Min.X+x, b.Min.Y+y)
			row[2*x] = img.Y[img.YOffset(b.Min.X+x, b.Min.Y+y)]
			row[2*x+1] = img.Cb[c]
			row[2*x+2] = img.Y[img.YOffset(b.Min.X+x+1, b.Min.Y+y)]
			row[2*x+3] = img.Cr[c]
		}
	}
	return out
}

// blankYUYV is a mid-grey YUYV picture.
func blankYUYV(w, h int) []byte {
	return bytes.Repeat([]byte{128}, 2*w*h)
}

// blankJPEG is a mid-grey JPEG picture; it decodes to luma 128 everywhere.
func blankJPEG(w, h int) ([]byte, error) {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for i := range g.Pix {
		g.Pix[i] = 128
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, g, &jpeg.Options{Quality: 90}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
