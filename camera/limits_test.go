package camera

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-sensor/edge/internal/proctest"
)

// withJPEGSize returns a copy of a baseline JPEG whose SOF0 header claims
// w×h: a few hundred bytes that would make a decoder allocate for w×h.
func withJPEGSize(t testing.TB, data []byte, w, h int) []byte {
	t.Helper()
	out := bytes.Clone(data)
	i := bytes.Index(out, []byte{0xFF, 0xC0})
	if i < 0 {
		t.Fatal("no SOF0 marker")
	}
	binary.BigEndian.PutUint16(out[i+5:], uint16(h))
	binary.BigEndian.PutUint16(out[i+7:], uint16(w))
	return out
}

// withPNGSize returns a copy of a PNG whose IHDR claims w×h (CRC fixed up).
func withPNGSize(t testing.TB, data []byte, w, h int) []byte {
	t.Helper()
	out := bytes.Clone(data)
	// 8-byte signature, then length(4) "IHDR"(4) width(4) height(4) ... crc.
	if string(out[12:16]) != "IHDR" {
		t.Fatal("no IHDR")
	}
	binary.BigEndian.PutUint32(out[16:], uint32(w))
	binary.BigEndian.PutUint32(out[20:], uint32(h))
	binary.BigEndian.PutUint32(out[29:], crc32.ChecksumIEEE(out[12:29]))
	return out
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDecoderPixelLimit(t *testing.T) {
	jpg := encodeJPEG(t, testPicture(32, 24, 1)) // 768 pixels
	pngData := encodePNG(t, testPicture(32, 24, 2))
	tests := []struct {
		name      string
		data      []byte
		maxPixels int
		tooLarge  bool
	}{
		{"jpeg at the limit", jpg, 768, false},
		{"jpeg over the limit", jpg, 767, true},
		{"png at the limit", pngData, 768, false},
		{"png over the limit", pngData, 767, true},
		{"jpeg header claiming 60000x60000", withJPEGSize(t, jpg, 60000, 60000), 0, true},
		{"png header claiming 16000x16000", withPNGSize(t, pngData, 16000, 16000), 0, true},
		{"default limit takes 2560x1600", withJPEGSize(t, jpg, 2560, 1600), 0, false},
		{"default limit refuses 4K UHD", withJPEGSize(t, jpg, 3840, 2160), 0, true},
		{"16-bit png counts double", encodePNG(t, image.NewRGBA64(image.Rect(0, 0, 32, 24))), 1535, true},
		{"16-bit png within double", encodePNG(t, image.NewRGBA64(image.Rect(0, 0, 32, 24))), 1536, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decoder{maxPixels: tt.maxPixels}
			var f Frame
			err := d.encoded(tt.data, &f)
			if tt.tooLarge {
				if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrCorrupt) {
					t.Fatalf("err = %v, want ErrTooLarge (a corrupt frame)", err)
				}
				return
			}
			// The 2560x1600 case has a 32x24 body: it passes the limit and then
			// fails to decode, as a corrupt frame, not as too large.
			if errors.Is(err, ErrTooLarge) {
				t.Fatalf("err = %v, want the picture let through", err)
			}
		})
	}
}

func TestImageSourceSkipsOversizeFiles(t *testing.T) {
	const maxPixels = 1000 // maxEncodedBytes: 4000 + 64 KiB
	big := make([]byte, 200<<10)
	copy(big, encodeJPEG(t, testPicture(32, 24, 5)))
	files := []testFile{
		{name: "a.jpg", seed: 1},
		{name: "b.jpg", raw: big},
		{name: "c.jpg", raw: withJPEGSize(t, encodeJPEG(t, testPicture(32, 24, 3)), 100, 100)},
		{name: "d.jpg", seed: 4},
	}
	dir := writeDir(t, files)
	// Unsorted, so that the in-memory path is taken as well as the stream.
	unsorted := []testFile{files[3], files[1], files[0], files[2]}
	for _, src := range []struct{ name, path string }{
		{"folder", dir},
		{"sorted tar", writeTar(t, "s.tar", false, files)},
		{"unsorted tar.gz", writeTar(t, "u.tar.gz", true, unsorted)},
	} {
		t.Run(src.name, func(t *testing.T) {
			s, err := Open(context.Background(), src.path, WithMaxPixels(maxPixels), WithLogger(quietLogger()))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []string
			for {
				f, err := s.Next(context.Background())
				if err != nil {
					if errors.Is(err, ErrTooLarge) {
						got = append(got, "too large")
						continue
					}
					if err.Error() == "EOF" {
						break
					}
					t.Fatalf("Next: %v", err)
				}
				got = append(got, fmt.Sprint(f.Width, "x", f.Height))
			}
			if want := "[32x24 too large too large 32x24]"; fmt.Sprint(got) != want {
				t.Errorf("frames %v, want %s", got, want)
			}
			if st := s.Stats(); st.Frames != 2 || st.Corrupt != 2 {
				t.Errorf("stats %+v, want 2 frames and 2 corrupt", st)
			}
		})
	}
}

// TestImageSourceSparseFile: a 2 GiB file named .jpg is refused from its
// size, before a byte of it is read.
func TestImageSourceSparseFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.jpg")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0xFF, 0xD8})
	if err := f.Truncate(2 << 30); err != nil {
		t.Skipf("no sparse files here: %v", err)
	}
	f.Close()
	s, err := Open(context.Background(), p, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Next(context.Background()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Next = %v, want ErrTooLarge", err)
	}
}

func TestMJPEGPartLimit(t *testing.T) {
	const maxPixels = 1000
	good := encodeJPEG(t, testPicture(32, 24, 1))
	big := make([]byte, 200<<10)
	copy(big, good)
	huge := withPNGSize(t, encodePNG(t, testPicture(32, 24, 2)), 16000, 16000)
	for _, cl := range []bool{true, false} {
		t.Run(fmt.Sprint("content-length ", cl), func(t *testing.T) {
			// Without Content-Length a part ends at the next delimiter: the
			// fifth part lets the fourth be read.
			h := &mjpegHandler{parts: [][]byte{good, big, huge, good, good}, headerBound: "frame", bodyBound: "--frame", contentLength: cl, hold: make(chan struct{})}
			defer close(h.hold)
			srv := httptest.NewServer(h)
			defer srv.Close()
			s, err := Open(context.Background(), srv.URL, WithMaxPixels(maxPixels), WithLogger(quietLogger()))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var got []string
			for range 4 {
				f, err := s.Next(ctx)
				switch {
				case errors.Is(err, ErrTooLarge):
					got = append(got, "too large")
				case err != nil:
					t.Fatalf("Next: %v", err)
				default:
					got = append(got, fmt.Sprint(f.Width, "x", f.Height))
				}
			}
			if want := "[32x24 too large too large 32x24]"; fmt.Sprint(got) != want {
				t.Errorf("frames %v, want %s", got, want)
			}
			if st := s.Stats(); st.Reconnects != 0 || st.Corrupt != 2 {
				t.Errorf("stats %+v: an oversized part must be a corrupt frame, not a lost stream", st)
			}
		})
	}
}

func TestSnapshotLimit(t *testing.T) {
	big := make([]byte, 200<<10)
	copy(big, encodeJPEG(t, testPicture(32, 24, 1)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(big)
	}))
	defer srv.Close()
	s, err := Open(context.Background(), srv.URL, WithMaxPixels(1000), WithFPS(50), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 2 {
		if _, err := s.Next(context.Background()); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Next = %v, want ErrTooLarge", err)
		}
	}
}

// TestUnsortedTarMemoryBound: an archive not in name order is sorted in
// memory only up to a bound; a larger one is read in archive order, so an
// archive cannot make the source hold more than that.
func TestUnsortedTarMemoryBound(t *testing.T) {
	files := []testFile{{name: "c.jpg", seed: 4}, {name: "a.jpg", seed: 1}, {name: "b.jpg", seed: 3}}
	path := writeTar(t, "u.tar", false, files)
	for _, tt := range []struct {
		bound int64
		want  string
	}{{1 << 20, "[1 3 4]"}, {100, "[4 1 3]"}} {
		var logs proctest.SyncBuffer
		o, err := buildOptions([]Option{WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))})
		if err != nil {
			t.Fatal(err)
		}
		o.maxSortBytes = tt.bound
		s, err := openTar(path, false, o)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(readSeq(t, s, 3)); got != tt.want {
			t.Errorf("bound %d: order %s, want %s", tt.bound, got, tt.want)
		}
		s.Close()
		if tt.bound == 100 && !strings.Contains(logs.String(), "too large to sort in memory") {
			t.Errorf("no log line says the archive is read in archive order:\n%s", logs.String())
		}
	}
}
