package camera

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestListV4L2(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"video10", "video2", "video0", "video1", "media0", "vbi0", "videoX"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	probe := func(path string) (V4L2Device, error) {
		switch filepath.Base(path) {
		case "video1": // a UVC camera's metadata node
			return V4L2Device{}, errNotCapture
		case "video2":
			return V4L2Device{}, errors.New("device busy")
		}
		return V4L2Device{Path: path, Card: "cam " + filepath.Base(path), Driver: "fake"}, nil
	}
	got, err := listV4L2(dir, probe)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, d := range got {
		lines = append(lines, d.Summary())
	}
	want := []string{
		filepath.Join(dir, "video0") + ` "cam video0" (fake): no capture formats`,
		filepath.Join(dir, "video2") + ": device busy",
		filepath.Join(dir, "video10") + ` "cam video10" (fake): no capture formats`,
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("got %q\nwant %q", lines, want)
	}
	if _, err := listV4L2(filepath.Join(dir, "none"), probe); err == nil {
		t.Error("a missing folder listed without error")
	}
}

func TestRate(t *testing.T) {
	for _, tc := range []struct {
		num, den uint32
		want     string
	}{{1, 30, "30"}, {2, 15, "7.5"}, {1001, 30000, "29.97"}, {0, 30, "?"}, {5, 1, "0.2"}} {
		if got := rate(tc.num, tc.den); got != tc.want {
			t.Errorf("rate(%d/%d) = %q, want %q", tc.num, tc.den, got, tc.want)
		}
	}
}

func TestFourCCName(t *testing.T) {
	for _, tc := range []struct {
		code uint32
		want string
	}{
		{fourCC("YUYV"), "YUYV"},
		{fourCC("Y16 "), "Y16"},
		{fourCC("Y16 ") | 1<<31, "Y16-BE"},
	} {
		if got := fourCCName(tc.code); got != tc.want {
			t.Errorf("fourCCName(%#x) = %q, want %q", tc.code, got, tc.want)
		}
	}
}
