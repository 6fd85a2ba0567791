package mqtt

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readmeExample returns the JSON block following marker in README.md.
func readmeExample(t *testing.T, marker string) []byte {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)" + regexp.QuoteMeta(marker) + "\\s*```json\\n(.*?)```")
	m := re.FindSubmatch(b)
	if m == nil {
		t.Fatalf("README.md: no ```json block after %s", marker)
	}
	return m[1]
}

func exampleStats() Stats {
	s := sampleStats(0)
	s.Schema, s.Kind, s.Device, s.Department, s.Window = SchemaVersion, KindWindow, "cam-1", "assembly", 42
	s.Gender = &Breakdown{Counts: map[string]int{"female": 2, "male": 2}, Mass: map[string]float64{"female": 0.52, "male": 0.48}}
	return s
}

func TestStatsJSONMatchesREADME(t *testing.T) {
	want := readmeExample(t, "<!-- stats-example -->")
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatalf("README example is not valid JSON: %v", err)
	}
	got, err := json.Marshal(exampleStats())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, compact.Bytes()) {
		t.Errorf("Stats JSON differs from the README example:\n got %s\nwant %s", got, compact.Bytes())
	}
	var back Stats
	if err := json.Unmarshal(want, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, exampleStats()) {
		t.Errorf("README example decodes to %+v, want %+v", back, exampleStats())
	}
}

func TestDiagnosticsJSONMatchesREADME(t *testing.T) {
	want := readmeExample(t, "<!-- diagnostics-example -->")
	var d Diagnostics
	dec := json.NewDecoder(bytes.NewReader(want))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("README diagnostics example does not decode strictly: %v", err)
	}
	got, _ := json.Marshal(d)
	var compact bytes.Buffer
	_ = json.Compact(&compact, want)
	if !bytes.Equal(got, compact.Bytes()) {
		t.Errorf("Diagnostics JSON differs from the README example:\n got %s\nwant %s", got, compact.Bytes())
	}
}

func TestStatsNormalize(t *testing.T) {
	s := Stats{Start: time.Date(2025, 1, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))}
	s.normalize()
	b, _ := json.Marshal(s)
	for _, want := range []string{`"schema":1`, `"kind":"window"`, `"withheld":[]`, `"start":"2025-01-01T11:00:00Z"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("normalized JSON %s lacks %s", b, want)
		}
	}
	if strings.Contains(string(b), `"emotion"`) {
		t.Errorf("absent breakdown must be omitted: %s", b)
	}
}

func TestStatsValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Stats)
		want   string // error substring; "" = valid
	}{
		{"valid", func(*Stats) {}, ""},
		{"withheld task with breakdown", func(s *Stats) { s.Withheld = []string{"emotion"} }, "emotion: breakdown present although the task is withheld"},
		{"unknown withheld task", func(s *Stats) { s.Withheld = []string{"mood"} }, `unknown task "mood"`},
		{"negative people", func(s *Stats) { s.PeopleNow = -1 }, "people_now is negative"},
		{"NaN dwell", func(s *Stats) { s.DwellSecondsMean = math.NaN() }, "dwell_seconds_mean must be a finite"},
		{"inf latency", func(s *Stats) { s.LatencyMS.Detect.P95 = math.Inf(1) }, "latency_ms.detect.p95"},
		{"end before start", func(s *Stats) { s.End = s.Start.Add(-time.Second) }, "is before start"},
		{"mass above one", func(s *Stats) { s.Emotion.Mass["happy"] = 1.5 }, `mass of "happy" must be within [0,1]`},
		{"negative count", func(s *Stats) { s.Emotion.Counts["happy"] = -2 }, `count of "happy" is negative`},
		{"bad device", func(s *Stats) { s.Device = "a/b" }, `invalid device "a/b"`},
		{"kind window", func(s *Stats) { s.Kind = KindWindow }, ""},
		{"kind hour", func(s *Stats) { s.Kind = KindHour }, ""},
		{"unknown kind", func(s *Stats) { s.Kind = "day" }, `kind "day"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := sampleStats(0)
			tc.mutate(&s)
			err := s.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNewTopics(t *testing.T) {
	tests := []struct {
		prefix, dept, dev string
		want              string // stats topic, or error substring prefixed with "!"
	}{
		{"edge", "assembly", "cam-1", "edge/assembly/cam-1/stats"},
		{"edge", "Halle 2", "kamera-ä", "edge/Halle 2/kamera-ä/stats"},
		{"", "a", "b", "!prefix must not be empty"},
		{"edge", "", "b", "!department must not be empty"},
		{"edge", "a", "", "!device must not be empty"},
		{"ed/ge", "a", "b", "!must not contain '+', '#' or '/'"},
		{"edge", "a+", "b", "!must not contain '+', '#' or '/'"},
		{"edge", "a", "#", "!must not contain '+', '#' or '/'"},
		{"$SYS", "a", "b", "!must not start with '$'"},
		{"edge", " a", "b", "!surrounding spaces"},
		{"edge", "a", "b\x00", "!control characters"},
		{"edge", "a", strings.Repeat("x", 129), "!longer than 128 bytes"},
		{"edge", "a", "\xff", "!not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			got, err := NewTopics(tc.prefix, tc.dept, tc.dev)
			if strings.HasPrefix(tc.want, "!") {
				if err == nil || !strings.Contains(err.Error(), tc.want[1:]) {
					t.Fatalf("err = %v, want %q", err, tc.want[1:])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			base := strings.TrimSuffix(tc.want, "stats")
			want := Topics{Stats: tc.want, Status: base + "status", Diagnostics: base + "diagnostics"}
			if got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
}
