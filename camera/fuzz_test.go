package camera

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Fuzz targets for every parser of untrusted bytes in this package. `go
// test` runs their seeds (f.Add and testdata/fuzz/<Name>); `make
// test-fuzz` explores each for a few seconds, and
// `go test -run '^$' -fuzz '^FuzzName$' -fuzztime 10m ./camera` for longer.
// The pixel limit is small so that explored inputs stay cheap.
const fuzzMaxPixels = 1 << 16

// FuzzDecodeEncoded: any bytes from a file, an archive, an MJPEG part or a
// snapshot give a frame within the pixel limit or a corrupt-frame error.
func FuzzDecodeEncoded(f *testing.F) {
	jpg := encodeJPEG(f, testPicture(32, 24, 1))
	f.Add(jpg)
	f.Add(stripDHT(f, jpg))
	f.Add(encodePNG(f, testPicture(16, 8, 2)))
	f.Add(withJPEGSize(f, jpg, 60000, 60000))
	f.Add(jpg[:len(jpg)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := decoder{maxPixels: fuzzMaxPixels}
		var fr Frame
		err := d.encoded(data, &fr)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if fr.Width <= 0 || fr.Height <= 0 || fr.Width*fr.Height > fuzzMaxPixels || len(fr.Luma) != fr.Width*fr.Height {
			t.Fatalf("frame %dx%d with %d luma bytes", fr.Width, fr.Height, len(fr.Luma))
		}
	})
}

// FuzzRawFrame: YUYV and GREY conversion of whatever a V4L2 driver hands
// over, at any geometry.
func FuzzRawFrame(f *testing.F) {
	f.Add(makeYUYV(8, 4, 16), uint16(8), uint16(4), uint16(16), false)
	f.Add(makeYUYV(8, 4, 20), uint16(8), uint16(4), uint16(20), false)
	f.Add(bytes.Repeat([]byte{7}, 32), uint16(8), uint16(4), uint16(8), true)
	f.Add([]byte{1, 2, 3}, uint16(8), uint16(4), uint16(8), true)
	f.Fuzz(func(t *testing.T, data []byte, w, h, stride uint16, grey bool) {
		if int(w)*int(h) > fuzzMaxPixels {
			return // the driver's size is bounded by the requested one
		}
		var d decoder
		var fr Frame
		var err error
		if grey {
			err = d.grey(data, int(w), int(h), int(stride), &fr)
		} else {
			err = d.yuyv(data, int(w), int(h), int(stride), &fr)
		}
		if err == nil && len(fr.Luma) != int(w)*int(h) {
			t.Fatalf("%dx%d frame with %d luma bytes", w, h, len(fr.Luma))
		}
		if yuyv, ok := fr.Image.(*YUYV); err == nil && ok {
			yuyv.YCbCr()
			yuyv.At(int(w)-1, int(h)-1)
		}
	})
}

// FuzzMJPEGStream: a multipart/x-mixed-replace body as a network camera (or
// anything answering at its address) sends it.
func FuzzMJPEGStream(f *testing.F) {
	jpg := encodeJPEG(f, testPicture(32, 24, 1))
	part := func(bound string, withLength bool, data []byte) []byte {
		var b bytes.Buffer
		b.WriteString("\r\n" + bound + "\r\nContent-Type: image/jpeg\r\n")
		if withLength {
			b.WriteString("Content-Length: " + strconv.Itoa(len(data)) + "\r\n")
		}
		b.WriteString("\r\n")
		b.Write(data)
		return b.Bytes()
	}
	two := append(part("--frame", true, jpg), part("--frame", false, jpg)...)
	f.Add(append(two, "\r\n--frame--\r\n"...), "frame")
	f.Add(append(part("--myboundary", true, jpg), "\r\n--myboundary--\r\n"...), "--myboundary")
	f.Add(part("--b", true, []byte("Content-Length lies")), "b")
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		if boundary == "" {
			return // dialHTTP refuses a multipart type without boundary
		}
		ctx, cancel := context.WithCancel(context.Background())
		s := newMJPEGSession(ctx, cancel, io.NopCloser(bytes.NewReader(body)), boundary, time.Minute, fuzzMaxPixels)
		defer s.close()
		for range len(body) + 2 {
			var fr Frame
			err := s.next(context.Background(), &fr)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				return // the stream ended or broke: the session is lost
			}
			if err == nil && fr.Width*fr.Height > fuzzMaxPixels {
				t.Fatalf("frame %dx%d over the limit", fr.Width, fr.Height)
			}
		}
		t.Fatal("more frames than bytes")
	})
}

// FuzzTarSource: an image archive given as the source, plain or gzipped.
func FuzzTarSource(f *testing.F) {
	files := []testFile{{name: "b.jpg", seed: 1}, {name: "a/c.png", seed: 2}, {name: "d.jpg", raw: []byte("not a picture")}}
	for _, gz := range []bool{false, true} {
		data, err := os.ReadFile(writeTar(f, "x.tar", gz, files))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, gz)
	}
	f.Add([]byte("not an archive"), false)
	f.Fuzz(func(t *testing.T, data []byte, gz bool) {
		name := "x.tar"
		if gz {
			name = "x.tar.gz"
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if n, err := CountImages(p); err != nil || n == 0 {
			return
		}
		s, err := Open(context.Background(), p, WithMaxPixels(fuzzMaxPixels), WithLogger(quietLogger()))
		if err != nil {
			return
		}
		defer s.Close()
		for range 1000 {
			fr, err := s.Next(context.Background())
			if err != nil && !errors.Is(err, ErrCorrupt) {
				return // io.EOF, or an archive broken further on
			}
			if err == nil && fr.Width*fr.Height > fuzzMaxPixels {
				t.Fatalf("frame %dx%d over the limit", fr.Width, fr.Height)
			}
		}
	})
}
