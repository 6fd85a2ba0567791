package pipeline

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edge-sensor/edge/mqtt"
)

func testTasks(names ...string) []*Task {
	labels := map[string][]string{"emotion": emotionLabels, "age": ageLabels, "gender": genderLabels}
	var out []*Task
	for _, n := range names {
		out = append(out, &Task{Name: n, Labels: labels[n]})
	}
	return out
}

// person builds a classified person whose mean probabilities put prob on
// label k of each task (the rest spread evenly), seen from first to last.
func person(id uint64, samples int, first, last time.Duration, tasks []*Task, k ...int) *Person {
	p := &Person{ID: id, FirstSeen: t0.Add(first), LastSeen: t0.Add(last), Samples: samples}
	for ti, t := range tasks {
		row := make([]float32, len(t.Labels))
		for i := range row {
			row[i] = 0.2 / float32(len(row)-1)
		}
		row[k[ti]] = 0.8
		p.Probs = append(p.Probs, row)
	}
	return p
}

func newTestAggregator(t *testing.T, minGroup int, tasks []*Task) *Aggregator {
	t.Helper()
	a, err := NewAggregator(AggregatorConfig{Interval: time.Minute, MinGroup: minGroup, MinSamples: 3}, tasks, t0)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// closeValid closes the window and checks the result against the mqtt
// package's own validation of what may be published.
func closeValid(t *testing.T, a *Aggregator, end time.Time, c Counters) mqtt.Stats {
	t.Helper()
	s := a.Close(end, c)
	if err := s.Validate(); err != nil {
		t.Fatalf("window fails mqtt validation: %v", err)
	}
	return s
}

func TestAggregatorConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  AggregatorConfig
		want string
	}{
		{AggregatorConfig{Interval: time.Millisecond, MinGroup: 1, MinSamples: 1}, "Interval"},
		{AggregatorConfig{Interval: time.Minute, MinGroup: 0, MinSamples: 1}, "MinGroup"},
		{AggregatorConfig{Interval: time.Minute, MinGroup: 1, MinSamples: 0}, "MinSamples"},
		{AggregatorConfig{Interval: time.Minute, MinGroup: 1, MinSamples: 1, MaxLatencySamples: -1}, "MaxLatencySamples"},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: Validate() = %v, want an error about %s", tt.cfg, err, tt.want)
		}
	}
}

const (
	happy = 3
	sad   = 5
	fem   = 0
	male  = 1
)

// TestAggregatorMinGroup covers the withholding rule, including cells that
// could be derived by subtraction.
func TestAggregatorMinGroup(t *testing.T) {
	tasks := testTasks("emotion", "gender")
	type who struct {
		samples      int
		emotion, sex int
	}
	many := func(n int, w who) []who { return slices.Repeat([]who{w}, n) }
	tests := []struct {
		name         string
		minGroup     int
		people       []who
		wantWithheld []string
		wantEmotion  map[string]int // nil: no breakdown
		wantGender   map[string]int
		wantUncl     int
	}{
		{
			name:     "4 happy 1 sad: 5-4 reveals the sad one",
			minGroup: 3,
			people:   append(many(4, who{5, happy, fem}), who{5, sad, fem}),
			// Gender: 5 female, 0 male: publishable.
			wantWithheld: []string{"emotion"},
			wantGender:   map[string]int{"female": 5, "male": 0},
		},
		{
			name:         "3 and 3 is publishable",
			minGroup:     3,
			people:       append(many(3, who{5, happy, fem}), many(3, who{5, sad, male})...),
			wantWithheld: []string{},
			wantEmotion:  map[string]int{"happy": 3, "sad": 3, "angry": 0, "disgust": 0, "fear": 0, "neutral": 0, "surprise": 0},
			wantGender:   map[string]int{"female": 3, "male": 3},
		},
		{
			name:         "fewer classified people than MinGroup withholds everything",
			minGroup:     3,
			people:       append(many(2, who{5, happy, fem}), many(4, who{1, happy, fem})...),
			wantWithheld: []string{"emotion", "gender"},
			wantUncl:     4,
		},
		{
			name:     "unclassified people are not guessed",
			minGroup: 3,
			// 3 classified happy women, 2 with too few samples.
			people:       append(many(3, who{3, happy, fem}), many(2, who{2, sad, male})...),
			wantWithheld: []string{},
			wantEmotion:  map[string]int{"happy": 3, "sad": 0, "angry": 0, "disgust": 0, "fear": 0, "neutral": 0, "surprise": 0},
			wantGender:   map[string]int{"female": 3, "male": 0},
			wantUncl:     2,
		},
		{
			name:         "MinGroup 1 disables withholding",
			minGroup:     1,
			people:       append(many(4, who{5, happy, fem}), who{5, sad, male}),
			wantWithheld: []string{},
			wantEmotion:  map[string]int{"happy": 4, "sad": 1, "angry": 0, "disgust": 0, "fear": 0, "neutral": 0, "surprise": 0},
			wantGender:   map[string]int{"female": 4, "male": 1},
		},
		{
			name:         "nobody classified: no breakdown, nothing withheld",
			minGroup:     3,
			people:       many(4, who{0, 0, 0}),
			wantWithheld: []string{},
			wantUncl:     4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAggregator(t, tt.minGroup, tasks)
			r := &LabelResult{}
			for i, w := range tt.people {
				r.Active = append(r.Active, person(uint64(i+1), w.samples, 0, 10*time.Second, tasks, w.emotion, w.sex))
			}
			a.AddFrame(time.Millisecond, r)
			s := closeValid(t, a, t0.Add(time.Minute), Counters{})
			if s.PeopleSeen != len(tt.people) || s.Unclassified != tt.wantUncl {
				t.Errorf("people seen %d, unclassified %d; want %d, %d", s.PeopleSeen, s.Unclassified, len(tt.people), tt.wantUncl)
			}
			if !slices.Equal(s.Withheld, tt.wantWithheld) {
				t.Errorf("withheld %v, want %v", s.Withheld, tt.wantWithheld)
			}
			checkCounts(t, "emotion", s.Emotion, tt.wantEmotion)
			checkCounts(t, "gender", s.Gender, tt.wantGender)
			if s.Age != nil {
				t.Errorf("age breakdown %v for a disabled task", s.Age)
			}
		})
	}
}

func checkCounts(t *testing.T, task string, b *mqtt.Breakdown, want map[string]int) {
	t.Helper()
	if want == nil {
		if b != nil {
			t.Errorf("%s: breakdown %v, want none", task, b.Counts)
		}
		return
	}
	if b == nil {
		t.Errorf("%s: no breakdown, want counts %v", task, want)
		return
	}
	for l, n := range want {
		if b.Counts[l] != n {
			t.Errorf("%s: counts %v, want %v", task, b.Counts, want)
			return
		}
	}
	var sum float64
	for _, m := range b.Mass {
		sum += m
	}
	if math.Abs(sum-1) > 1e-5 {
		t.Errorf("%s: mass %v sums to %v, want 1", task, b.Mass, sum)
	}
}

func TestAggregatorMass(t *testing.T) {
	tasks := testTasks("gender")
	a := newTestAggregator(t, 1, tasks)
	p1 := &Person{ID: 1, Samples: 3, Probs: [][]float32{{0.9, 0.1}}}
	p2 := &Person{ID: 2, Samples: 3, Probs: [][]float32{{0.3, 0.7}}}
	a.AddFrame(0, &LabelResult{Active: []*Person{p1, p2}})
	s := closeValid(t, a, t0.Add(time.Minute), Counters{})
	if math.Abs(s.Gender.Mass["female"]-0.6) > 1e-6 || math.Abs(s.Gender.Mass["male"]-0.4) > 1e-6 {
		t.Fatalf("mass %v, want female 0.6 male 0.4", s.Gender.Mass)
	}
}

// TestAggregatorWindows follows people across two windows: seen and now
// counts, dwell, frame counters, and that an ended person counts in the
// window where the track ended.
func TestAggregatorWindows(t *testing.T) {
	a := newTestAggregator(t, 1, nil)
	alice := person(1, 0, 0, 0, nil)
	bob := person(2, 0, 0, 0, nil)
	// Window 1: Alice from 0 s to 50 s (still there), Bob 10 s to 30 s, ends.
	for sec := 0; sec < 60; sec += 10 {
		r := &LabelResult{}
		alice.LastSeen = t0.Add(time.Duration(sec) * time.Second)
		r.Active = append(r.Active, alice)
		switch {
		case sec >= 10 && sec <= 30:
			bob.FirstSeen = t0.Add(10 * time.Second)
			bob.LastSeen = t0.Add(time.Duration(sec) * time.Second)
			r.Active = append(r.Active, bob)
		case sec == 40:
			r.Ended = append(r.Ended, bob)
		}
		a.AddFrame(2*time.Millisecond, r)
	}
	s := closeValid(t, a, a.End(), Counters{Dropped: 2, Corrupt: 1, SourceDown: 3 * time.Second})
	if s.PeopleSeen != 2 || s.PeopleNow != 1 {
		t.Errorf("window 1: seen %d now %d, want 2 and 1", s.PeopleSeen, s.PeopleNow)
	}
	// Alice 50 s, Bob 20 s.
	if s.DwellSecondsMean != 35 {
		t.Errorf("window 1: dwell %v, want 35", s.DwellSecondsMean)
	}
	if s.Frames != (mqtt.Frames{Processed: 6, Dropped: 2, Corrupt: 1}) || s.SourceDownSeconds != 3 {
		t.Errorf("window 1: frames %+v down %v", s.Frames, s.SourceDownSeconds)
	}
	if !s.Start.Equal(t0) || !s.End.Equal(t0.Add(time.Minute)) {
		t.Errorf("window 1: %v..%v, want the first minute", s.Start, s.End)
	}

	// Window 2: Alice stays until 70 s and leaves.
	alice.LastSeen = t0.Add(70 * time.Second)
	a.AddFrame(time.Millisecond, &LabelResult{Active: []*Person{alice}})
	a.AddFrame(time.Millisecond, &LabelResult{Ended: []*Person{alice}})
	s = closeValid(t, a, a.End(), Counters{})
	if s.PeopleSeen != 1 || s.PeopleNow != 0 || s.DwellSecondsMean != 70 {
		t.Errorf("window 2: seen %d now %d dwell %v, want 1, 0, 70 (dwell is not clipped to the window)", s.PeopleSeen, s.PeopleNow, s.DwellSecondsMean)
	}
	if !s.Start.Equal(t0.Add(time.Minute)) || s.Frames.Processed != 2 {
		t.Errorf("window 2: start %v processed %d", s.Start, s.Frames.Processed)
	}

	// Window 3: nothing at all.
	s = closeValid(t, a, a.End(), Counters{})
	if s.PeopleSeen != 0 || s.PeopleNow != 0 || s.Frames.Processed != 0 || s.LatencyMS.Detect.Mean != 0 {
		t.Errorf("window 3: %+v, want an empty window", s)
	}
}

// TestAggregatorDwellWithheld: the mean dwell of fewer than MinGroup people
// is one person's presence, so it is not published.
func TestAggregatorDwellWithheld(t *testing.T) {
	for _, tt := range []struct {
		people int
		want   float64
	}{{2, 0}, {3, 20}} {
		a := newTestAggregator(t, 3, nil)
		r := &LabelResult{}
		for i := range tt.people {
			r.Active = append(r.Active, person(uint64(i+1), 0, 0, 20*time.Second, nil))
		}
		a.AddFrame(0, r)
		if s := closeValid(t, a, a.End(), Counters{}); s.DwellSecondsMean != tt.want {
			t.Errorf("%d people: dwell %v, want %v", tt.people, s.DwellSecondsMean, tt.want)
		}
	}
}

func TestAggregatorLatency(t *testing.T) {
	tests := []struct {
		name       string
		maxSamples int
		n          int
		wantMean   float64
		wantP95    float64
	}{
		// 1..20 ms: mean 10.5, nearest-rank p95 = 19th value.
		{"all kept", 0, 20, 10.5, 19},
		// Only the last 10 (11..20 ms) kept for the percentile; the mean
		// still covers all of them.
		{"bounded", 10, 20, 10.5, 20},
		{"one sample", 0, 1, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewAggregator(AggregatorConfig{Interval: time.Minute, MinGroup: 1, MinSamples: 1, MaxLatencySamples: tt.maxSamples}, nil, t0)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= tt.n; i++ {
				d := time.Duration(i) * time.Millisecond
				a.AddFrame(d, &LabelResult{Latency: []time.Duration{d, d}})
			}
			s := closeValid(t, a, a.End(), Counters{})
			for name, got := range map[string]mqtt.Latency{"detect": s.LatencyMS.Detect, "classify": s.LatencyMS.ClassifyPerFace} {
				if math.Abs(got.Mean-tt.wantMean) > 1e-9 || got.P95 != tt.wantP95 {
					t.Errorf("%s: %+v, want mean %v p95 %v", name, got, tt.wantMean, tt.wantP95)
				}
			}
		})
	}
}

// TestAggregatorSeenOnce: a person present in many frames is one person.
func TestAggregatorSeenOnce(t *testing.T) {
	tasks := testTasks("gender")
	a := newTestAggregator(t, 1, tasks)
	p := person(1, 5, 0, time.Second, tasks, male)
	for range 100 {
		a.AddFrame(0, &LabelResult{Active: []*Person{p}})
	}
	s := closeValid(t, a, a.End(), Counters{})
	if s.PeopleSeen != 1 || s.Gender.Counts["male"] != 1 {
		t.Fatalf("seen %d, male %d; want 1 person counted once", s.PeopleSeen, s.Gender.Counts["male"])
	}
}
