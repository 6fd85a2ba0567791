package camera

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testFile is one file of a test image set. seed > 0 makes a picture of
// that seed (see testPicture); the file's bytes are then JPEG (or PNG for
// .png names). seed == 0 uses raw as the content.
type testFile struct {
	name string
	seed int
	raw  []byte
}

// testImageSet is the set the image source tests read, given out of name
// order, with a corrupt JPEG in the middle and files that must be ignored.
func testImageSet(t *testing.T) []testFile {
	good := encodeJPEG(t, testPicture(32, 24, 9))
	return []testFile{
		{name: "frame-003.png", seed: 3},
		{name: "frame-001.jpg", seed: 1},
		{name: "notes.txt", raw: []byte("not an image")},
		{name: "frame-002.jpg", raw: good[:len(good)/3]}, // truncated: corrupt
		{name: "._frame-000.jpg", raw: []byte("macOS resource fork")},
		{name: "frame-004.JPEG", seed: 4},
	}
}

func (f testFile) bytes(t testing.TB) []byte {
	if f.seed == 0 {
		return f.raw
	}
	img := testPicture(32, 24, f.seed)
	if strings.HasSuffix(f.name, ".png") {
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	return encodeJPEG(t, img)
}

func writeDir(t *testing.T, files []testFile) string {
	dir := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.bytes(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.jpg"), 0o755); err != nil { // a directory named like an image
		t.Fatal(err)
	}
	return dir
}

// writeTar writes files into an archive in the given order, under a folder
// as tar -C parent folder does.
func writeTar(t testing.TB, name string, gz bool, files []testFile) string {
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: "clip/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b := f.bytes(t)
		if err := tw.WriteHeader(&tar.Header{Name: "clip/" + f.name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sortedByName(files []testFile) []testFile {
	out := append([]testFile(nil), files...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].name < out[i].name {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// checkFrame checks that f is testPicture(32, 24, seed) by its luma.
func checkFrame(t *testing.T, f *Frame, seed int) {
	t.Helper()
	if f.Width != 32 || f.Height != 24 || len(f.Luma) != 32*24 || f.Image == nil {
		t.Fatalf("frame %dx%d luma %d image %T", f.Width, f.Height, len(f.Luma), f.Image)
	}
	var want [32 * 24]byte
	rgbLuma(want[:], testPicture(32, 24, seed))
	// JPEG is lossy: compare the mean difference.
	var diff int
	for i, v := range f.Luma {
		diff += abs(int(v) - int(want[i]))
	}
	if mean := float64(diff) / float64(len(f.Luma)); mean > 3 {
		t.Fatalf("frame %d does not look like picture %d (mean luma difference %.1f)", f.Seq, seed, mean)
	}
}

// readAll reads n results from s: the seeds of good frames, 0 for corrupt ones, -1 for EOF.
func readSeq(t *testing.T, s Source, n int) []int {
	t.Helper()
	var got []int
	for range n {
		f, err := s.Next(context.Background())
		switch {
		case errors.Is(err, io.EOF):
			got = append(got, -1)
		case errors.Is(err, ErrCorrupt):
			got = append(got, 0)
		case err != nil:
			t.Fatalf("Next: %v", err)
		default:
			seed := 0
			for _, cand := range []int{1, 3, 4} {
				var want [32 * 24]byte
				rgbLuma(want[:], testPicture(32, 24, cand))
				var diff int
				for i, v := range f.Luma {
					diff += abs(int(v) - int(want[i]))
				}
				if diff < 3*len(want) {
					seed = cand
				}
			}
			if seed == 0 {
				t.Fatalf("frame %d matches no test picture", f.Seq)
			}
			checkFrame(t, f, seed)
			got = append(got, seed)
		}
	}
	return got
}

func TestImageSources(t *testing.T) {
	files := testImageSet(t)
	good := []testFile{{name: "a.jpg", seed: 1}, {name: "b.jpg", seed: 3}}
	tests := []struct {
		name string
		spec func(t *testing.T) string
		loop bool
		n    int
		want []int
	}{
		{"dir", func(t *testing.T) string { return writeDir(t, files) }, false, 6, []int{1, 0, 3, 4, -1, -1}},
		{"dir loop", func(t *testing.T) string { return writeDir(t, files) }, true, 9, []int{1, 0, 3, 4, 1, 0, 3, 4, 1}},
		{"tar sorted", func(t *testing.T) string { return writeTar(t, "x.tar", false, sortedByName(files)) }, false, 5, []int{1, 0, 3, 4, -1}},
		{"tar unsorted", func(t *testing.T) string { return writeTar(t, "x.tar", false, files) }, false, 5, []int{1, 0, 3, 4, -1}},
		{"tar.gz sorted loop", func(t *testing.T) string { return writeTar(t, "x.tar.gz", true, sortedByName(files)) }, true, 9, []int{1, 0, 3, 4, 1, 0, 3, 4, 1}},
		{"tgz unsorted loop", func(t *testing.T) string { return writeTar(t, "x.tgz", true, files) }, true, 6, []int{1, 0, 3, 4, 1, 0}},
		{"single image", func(t *testing.T) string { return filepath.Join(writeDir(t, good), "b.jpg") }, false, 2, []int{3, -1}},
		{"single image loop", func(t *testing.T) string { return filepath.Join(writeDir(t, good), "b.jpg") }, true, 3, []int{3, 3, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), tt.spec(t), WithLoop(tt.loop))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !s.Stats().Up {
				t.Error("not Up after Open")
			}
			got := readSeq(t, s, tt.n)
			if !equalInts(got, tt.want) {
				t.Fatalf("read %v, want %v (seed per frame, 0 corrupt, -1 EOF)", got, tt.want)
			}
			var frames, corrupt uint64
			for _, v := range got {
				switch {
				case v > 0:
					frames++
				case v == 0:
					corrupt++
				}
			}
			st := s.Stats()
			if st.Frames != frames || st.Corrupt != corrupt {
				t.Errorf("Stats = %+v, want %d frames, %d corrupt", st, frames, corrupt)
			}
			if ended := got[len(got)-1] == -1; st.Up == ended {
				t.Errorf("Stats.Up = %v after %v", st.Up, got)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Next(context.Background()); !errors.Is(err, fs.ErrClosed) {
				t.Fatalf("Next after Close: %v, want fs.ErrClosed", err)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestImageSourceSeqAndTime(t *testing.T) {
	dir := writeDir(t, []testFile{{name: "a.jpg", seed: 1}, {name: "b.jpg", seed: 3}})
	s, err := Open(context.Background(), dir, WithFPS(20))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	for want := uint64(1); want <= 2; want++ {
		f, err := s.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if f.Seq != want || f.Time.Before(start) {
			t.Fatalf("frame Seq %d Time %v, want Seq %d after %v", f.Seq, f.Time, want, start)
		}
	}
	// Paced at 20 fps: the second frame comes 50ms after the first.
	if d := time.Since(start); d < 45*time.Millisecond {
		t.Fatalf("two frames at 20 fps took %v", d)
	}
}

func TestImageSourceCancelled(t *testing.T) {
	dir := writeDir(t, []testFile{{name: "a.jpg", seed: 1}})
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with cancelled ctx: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	empty := t.TempDir()
	text := filepath.Join(empty, "readme.txt")
	if err := os.WriteFile(text, []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	notTar := filepath.Join(t.TempDir(), "x.tar.gz")
	if err := os.WriteFile(notTar, []byte("not gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	noImagesTar := writeTar(t, "n.tar", false, []testFile{{name: "a.txt", raw: []byte("x")}})
	tests := []struct {
		name, spec string
		opts       []Option
		want       string // in the error
	}{
		{"empty spec", "", nil, "empty"},
		{"missing file", filepath.Join(empty, "nope.mp4"), nil, "no such file"},
		{"missing device", "/dev/video-does-not-exist", nil, "/dev/video-does-not-exist"},
		{"dir without images", empty, nil, "no images"},
		{"unknown file type", text, nil, "not a V4L2 device"},
		{"bad gzip", notTar, nil, "gzip"},
		{"archive without images", noImagesTar, nil, "no images"},
		{"unknown scheme", "ftp://example.com/x", nil, "unsupported URL scheme"},
		{"bad format", empty, []Option{WithFormat("h264")}, "unknown pixel format"},
		{"bad size", empty, []Option{WithSize(640, 0)}, "invalid size"},
		{"bad backoff", empty, []Option{WithBackoff(time.Second, time.Millisecond)}, "invalid backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), tt.spec, tt.opts...)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}
