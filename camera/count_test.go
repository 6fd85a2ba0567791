package camera

import (
	"archive/tar"
	"os"
	"path/filepath"
	"testing"
)

func TestCountImages(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"happy/a.jpg", "happy/b.png", "sad/c.jpeg", "sad/notes.txt", ".hidden/d.jpg"} {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	archive := filepath.Join(t.TempDir(), "set.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, name := range []string{"angry/1.jpg", "angry/2.jpg", "README"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1})
		tw.Write([]byte("x"))
	}
	tw.Close()
	f.Close()
	tests := []struct {
		path string
		want int
	}{
		{dir, 3},
		{archive, 2},
		{filepath.Join(dir, "happy/a.jpg"), 1},
	}
	for _, tt := range tests {
		got, err := CountImages(tt.path)
		if err != nil || got != tt.want {
			t.Errorf("CountImages(%s) = %d, %v; want %d", tt.path, got, err, tt.want)
		}
	}
	if _, err := CountImages(filepath.Join(dir, "missing")); err == nil {
		t.Error("CountImages of a missing path succeeded")
	}
}
