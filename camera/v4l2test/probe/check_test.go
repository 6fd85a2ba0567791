package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// statsLine is one stats line as edge prints it, length seconds long.
func statsLine(start time.Time, length float64, processed, corrupt int, down float64, people *int) string {
	end := start.Add(time.Duration(length * float64(time.Second)))
	p := ""
	if people != nil {
		p = fmt.Sprintf(`"people_seen":%d,`, *people)
	}
	return fmt.Sprintf(`{"schema":1,"start":%q,"end":%q,%s"frames":{"processed":%d,"dropped":0,"corrupt":%d},"source_down_seconds":%g}`,
		start.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano), p, processed, corrupt, down)
}

func TestCheck(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	two, six := 2, 6
	steady := []string{
		"time=... level=INFO msg=\"camera opened\" source=/dev/video0 format=YUYV width=320 height=180 fps=15",
		statsLine(t0, 2, 30, 0, 0, &two),
		statsLine(t0.Add(2*time.Second), 2, 30, 0, 0, &six),
	}
	outage := []string{
		statsLine(t0, 2, 30, 0, 0, nil),
		statsLine(t0.Add(2*time.Second), 2, 0, 0, 2, nil),
		statsLine(t0.Add(4*time.Second), 2, 20, 0, 0.7, nil),
	}
	tests := []struct {
		name  string
		lines []string
		args  []string
		ok    bool
		want  string // in the result line
	}{
		{"steady", steady, []string{"-min-frames", "60", "-fps", "15", "-size", "320x180", "-people", "6"}, true, "people=6"},
		{"sum of people", steady, []string{"-people", "8", "-people-agg", "sum"}, true, "people=8"},
		{"wrong headcount", steady, []string{"-people", "5"}, false, "headcount 6, want 5"},
		{"too few frames", steady, []string{"-min-frames", "61"}, false, "60 frames processed, want >= 61"},
		{"too fast", steady, []string{"-fps", "10"}, false, "want <= 12.5"},
		{"too slow", steady, []string{"-fps", "60"}, false, "want >= 30.0"},
		{"too slow but starved", steady, []string{"-fps", "60", "-vm-busy", "0.97"}, true, "starved="},
		{"wrong size", steady, []string{"-size", "640x480"}, false, "width 640 height 480"},
		{"corrupt", []string{statsLine(t0, 2, 30, 1, 0, nil)}, nil, false, "1 corrupt frames"},
		{"corrupt allowed", []string{statsLine(t0, 2, 30, 1, 0, nil)}, []string{"-max-corrupt", "-1"}, true, "corrupt=1"},
		{"no stats", []string{"not json"}, nil, false, "no stats lines"},
		{"outage", outage, []string{"-min-down", "2.5", "-max-down", "3", "-no-invented", "-tail-frames", "10"}, true, "down_s=2.7"},
		{"long window not counted twice", append(slices.Clone(outage), strings.Replace(statsLine(t0, 6, 50, 0, 2.7, nil), "{", `{"kind":"hour",`, 1)),
			[]string{"-min-down", "2.5", "-max-down", "3"}, true, "down_s=2.7"},
		{"outage too short", outage, []string{"-min-down", "3"}, false, "want >= 3.0s"},
		{"frames while down", []string{statsLine(t0, 2, 5, 0, 2, nil)}, []string{"-no-invented"}, false, "while the source was down throughout"},
		{"frames in the last 5% of up time", []string{statsLine(t0, 2, 2, 0, 1.85, nil)}, []string{"-no-invented", "-fps", "15", "-fps-min", "0"}, true, "down_s=1.9"},
		{"more frames than the up time holds", []string{statsLine(t0, 2, 4, 0, 1.9, nil)}, []string{"-no-invented", "-fps", "15", "-fps-min", "0"}, false, "while the source was down throughout"},
		{"down longer than window", []string{statsLine(t0, 2, 5, 0, 2.5, nil)}, nil, false, "2.50s down in a 2.00s window"},
		{"resume late", steady, []string{"-resume", "6.2"}, false, "resumed 6.2s after"},
		{"exit wanted", nil, []string{"-stats", "", "-exit", "1", "-want-exit", "nonzero", "-log-has", "offers.*YUYV"}, false, "log lacks"},
		{"died", steady, []string{"-alive", "no"}, false, "process died"},
		{"log lacks", steady, []string{"-log-lacks", "camera opened"}, false, "log has"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "run")
			if err := os.WriteFile(file, []byte(strings.Join(tt.lines, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"-scenario", "t", "-stats", file, "-log", file}, tt.args...)
			var out bytes.Buffer
			ok, err := checkCmd(args, &out)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok || !strings.Contains(out.String(), tt.want) || !strings.HasPrefix(out.String(), "EDGE-RESULT scenario=t ok=") {
				t.Errorf("ok = %v, want %v; result line %q should contain %q", ok, tt.ok, out.String(), tt.want)
			}
		})
	}
}

func TestYUYVKeepsLuma(t *testing.T) {
	samples, err := loadTar("../../testdata/people.tar")
	if err != nil {
		t.Skip(err)
	}
	img, err := decodeYCbCr(samples[len(samples)/2].jpeg)
	if err != nil {
		t.Fatal(err)
	}
	l, p := luma(img), yuyv(img)
	for i := range l {
		if p[2*i] != l[i] {
			t.Fatalf("YUYV luma %d = %d, JPEG luma %d", i, p[2*i], l[i])
		}
	}
}
