package mqtt

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestBoard(t *testing.T) {
	var b Board
	var buf bytes.Buffer
	if err := b.Render(&buf); err != nil || !strings.Contains(buf.String(), "no stats") {
		t.Fatalf("empty board: %q, %v", buf.String(), err)
	}

	mk := func(dept, dev string, window uint64, now, seen int, dwell float64) Stats {
		s := sampleStats(int(window))
		s.Department, s.Device, s.Window = dept, dev, window
		s.PeopleNow, s.PeopleSeen, s.DwellSecondsMean = now, seen, dwell
		return s
	}
	a1 := mk("assembly", "cam-1", 7, 3, 5, 10)
	a1.Emotion = &Breakdown{Counts: map[string]int{"happy": 3, "sad": 1}, Mass: map[string]float64{"happy": 0.6, "sad": 0.4}}
	a2 := mk("assembly", "cam-2", 3, 2, 5, 20)
	a2.Emotion = &Breakdown{Counts: map[string]int{"happy": 1}, Mass: map[string]float64{"happy": 1}}
	a2.Withheld = []string{}
	a2.Age = &Breakdown{Counts: map[string]int{"20-39": 1}, Mass: map[string]float64{"20-39": 1}}
	p1 := mk("packing", "cam-9", 1, 1, 1, 5)
	p1.Emotion, p1.Withheld = nil, []string{TaskEmotion, TaskAge}

	b.Update(a1)
	b.Update(a2)
	b.Update(p1)
	stale := mk("assembly", "cam-1", 6, 99, 99, 1) // older window: ignored
	stale.End = a1.End.Add(-time.Minute)
	b.Update(stale)

	sums := b.Summaries()
	if len(sums) != 2 || sums[0].Department != "assembly" || sums[1].Department != "packing" {
		t.Fatalf("summaries: %+v", sums)
	}
	a := sums[0]
	if a.PeopleNow != 5 || a.PeopleSeen != 10 || a.DwellSecondsMean != 15 || len(a.Devices) != 2 {
		t.Fatalf("assembly aggregate: now %d seen %d dwell %v devices %d", a.PeopleNow, a.PeopleSeen, a.DwellSecondsMean, len(a.Devices))
	}
	em := a.Tasks[TaskEmotion]
	// weighted by classified people: (0.6*4 + 1*1)/5 = 0.68
	if em.Counts["happy"] != 4 || math.Abs(em.Share["happy"]-68) > 1e-9 || math.Abs(em.Share["sad"]-32) > 1e-9 || em.Reporting != 2 {
		t.Fatalf("emotion summary: %+v", em)
	}
	if age := a.Tasks[TaskAge]; age.Reporting != 1 || age.Withheld != 1 {
		t.Fatalf("age summary: %+v", age)
	}
	if pk := sums[1].Tasks[TaskEmotion]; pk.Reporting != 0 || pk.Withheld != 1 {
		t.Fatalf("packing emotion: %+v", pk)
	}

	buf.Reset()
	if err := b.Render(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"== assembly: 2 device(s)",
		"people in view now 5   seen in the window 10   of them unclassified 2   mean time in view 15.0s",
		"emotion  people by most likely label: happy 4 (80%), sad 1 (20%)\n",
		"         mean probability:           happy 68.0%, sad 32.0%\n",
		"age      people by most likely label: 20-39 1 (100%)  (withheld by 1 device(s))\n",
		"         mean probability:           20-39 100.0%\n",
		"== packing: 1 device(s)",
		"emotion  withheld (too few people)\n",
		"DEVICE", "PEOPLE NOW", "PEOPLE SEEN", "SOURCE DOWN s", "CLASSIFY p95 ms/face", "cam-1", "cam-2", "cam-9",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "99") {
		t.Errorf("stale window rendered:\n%s", out)
	}

	if err := b.Render(failWriter{}); err == nil {
		t.Error("Render ignored a write error")
	}
}

// Long windows are kept and summed apart from the short ones: an hour's
// people seen never replaces or adds to a device's latest short window.
func TestBoardKinds(t *testing.T) {
	var b Board
	short := sampleStats(0)
	short.Department, short.Device, short.Window, short.PeopleSeen = "assembly", "cam-1", 40, 5
	hour := sampleStats(0)
	hour.Department, hour.Device, hour.Window, hour.Kind, hour.PeopleSeen = "assembly", "cam-1", 2, KindHour, 61
	hour.End = short.End.Add(time.Hour)
	b.Update(short)
	b.Update(hour) // lower id, other sequence: must not be taken for a reset of the short one
	sums := b.Summaries()
	if len(sums) != 2 || sums[0].Kind != KindWindow || sums[1].Kind != KindHour {
		t.Fatalf("summaries: %+v", sums)
	}
	if sums[0].PeopleSeen != 5 || sums[1].PeopleSeen != 61 {
		t.Fatalf("people seen: short %d hour %d, want 5 and 61", sums[0].PeopleSeen, sums[1].PeopleSeen)
	}
	var buf bytes.Buffer
	if err := b.Render(&buf); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "== assembly: 1 device(s), latest window") || !strings.Contains(out, "== assembly: 1 device(s), hourly windows") {
		t.Errorf("render does not show both kinds apart:\n%s", out)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("boom") }

func TestDeduper(t *testing.T) {
	d := newDeduper(3)
	const w, h = KindWindow, KindHour
	steps := []struct {
		dept, dev, kind string
		window          uint64
		first           bool
	}{
		{"a", "cam-1", w, 1, true},
		{"a", "cam-1", w, 1, false},
		{"a", "cam-2", w, 1, true}, // other device
		{"b", "cam-1", w, 1, true}, // other department
		{"a", "cam-1", h, 1, true}, // the hourly sequence is another one
		{"a", "cam-1", h, 1, false},
		{"a", "cam-1", w, 2, true},
		{"a", "cam-1", w, 3, true},
		{"a", "cam-1", w, 2, false},
		{"a", "cam-1", w, 4, true}, // evicts 1
		{"a", "cam-1", w, 1, true}, // a device whose state was reset starts again
		{"a", "cam-1", w, 4, false},
		{"a", "cam-1", h, 1, false}, // not evicted by the short windows
	}
	for i, s := range steps {
		if got := d.first(s.dept, s.dev, s.kind, s.window); got != s.first {
			t.Fatalf("step %d %+v: first = %v", i, s, got)
		}
	}
}
