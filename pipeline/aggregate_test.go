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

// TestLongWindow drives short windows of one minute and a long window over
// them, as the pipeline does: the long window closes with the first short
// window ending at or after each multiple of its length, sums their
// counters, counts each person once, and applies the same MinGroup rule to
// its own counts.
func TestLongWindow(t *testing.T) {
	tasks := testTasks("emotion", "gender")
	type who struct{ id, emotion, sex int }
	emo := func(h, s int) map[string]int {
		return map[string]int{"happy": h, "sad": s, "angry": 0, "disgust": 0, "fear": 0, "neutral": 0, "surprise": 0}
	}
	// oneEach puts person i (of the given labels) alone in short window i.
	oneEach := func(ps ...who) [][]who {
		out := make([][]who, len(ps))
		for i, p := range ps {
			out[i] = []who{p}
		}
		return out
	}
	tests := []struct {
		name     string
		minGroup int
		long     time.Duration
		startOff time.Duration // first window start after t0 (t0 is on the hour)
		windows  [][]who       // who is in view in each short window
		// wantClose lists the short windows (0-based) whose close also
		// closed the long window; the checks below are on the first.
		wantClose    []int
		wantStart    time.Duration // of the first long window, after t0
		wantEnd      time.Duration
		wantSeen     int
		wantWithheld []string
		wantEmotion  map[string]int
		wantGender   map[string]int
	}{
		{
			name:     "one person a minute: every short window withholds, the long one publishes",
			minGroup: 3, long: 6 * time.Minute,
			windows:   oneEach(who{1, happy, fem}, who{2, sad, male}, who{3, happy, fem}, who{4, sad, male}, who{5, happy, fem}, who{6, sad, male}),
			wantClose: []int{5}, wantEnd: 6 * time.Minute, wantSeen: 6,
			wantWithheld: []string{},
			wantEmotion:  emo(3, 3),
			wantGender:   map[string]int{"female": 3, "male": 3},
		},
		{
			name:     "the long window's own counts are held to MinGroup",
			minGroup: 3, long: 6 * time.Minute,
			windows:   oneEach(who{1, happy, fem}, who{2, happy, fem}, who{3, happy, fem}, who{4, happy, fem}, who{5, sad, fem}, who{6, sad, fem}),
			wantClose: []int{5}, wantEnd: 6 * time.Minute, wantSeen: 6,
			wantWithheld: []string{"emotion"}, // 4 and 2: the 2 is under 3
			wantGender:   map[string]int{"female": 6, "male": 0},
		},
		{
			name:     "a person in view for several short windows is one person of the long one",
			minGroup: 3, long: 4 * time.Minute,
			windows: [][]who{
				{{1, happy, fem}, {2, happy, fem}},
				{{1, happy, fem}, {2, happy, fem}, {3, happy, fem}},
				{{3, happy, fem}},
				{{3, happy, fem}},
			},
			wantClose: []int{3}, wantEnd: 4 * time.Minute, wantSeen: 3,
			wantWithheld: []string{},
			wantEmotion:  emo(3, 0),
			wantGender:   map[string]int{"female": 3, "male": 0},
		},
		{
			name:     "ends at the first short window end at or after the clock boundary",
			minGroup: 1, long: 5 * time.Minute, startOff: 23 * time.Second,
			// Short windows end at 1:23, 2:23, … 5:23: the one at 5:23 is
			// the first at or after 5:00; the next boundary is 10:00.
			windows:   oneEach(who{1, happy, fem}, who{2, happy, fem}, who{3, happy, fem}, who{4, happy, fem}, who{5, happy, fem}, who{6, happy, fem}, who{7, happy, fem}, who{8, happy, fem}, who{9, happy, fem}, who{10, happy, fem}),
			wantClose: []int{4, 9}, wantStart: 23 * time.Second, wantEnd: 5*time.Minute + 23*time.Second, wantSeen: 5,
			wantWithheld: []string{},
			wantEmotion:  emo(5, 0),
			wantGender:   map[string]int{"female": 5, "male": 0},
		},
		{
			name:     "a long window equal to the short one closes with each",
			minGroup: 1, long: time.Minute,
			windows:   oneEach(who{1, happy, fem}, who{2, sad, male}),
			wantClose: []int{0, 1}, wantEnd: time.Minute, wantSeen: 1,
			wantWithheld: []string{},
			wantEmotion:  emo(1, 0),
			wantGender:   map[string]int{"female": 1, "male": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := t0.Add(tt.startOff)
			cfg := AggregatorConfig{Interval: time.Minute, MinGroup: tt.minGroup, MinSamples: 3}
			short, err := NewAggregator(cfg, tasks, start)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Interval = tt.long
			long, err := NewLongWindow(cfg, tasks, start)
			if err != nil {
				t.Fatal(err)
			}
			people := map[int]*Person{}
			var closedAt []int
			var first mqtt.Stats
			for i, w := range tt.windows {
				r := &LabelResult{}
				ws := short.Start()
				for _, p := range w {
					if people[p.id] == nil {
						people[p.id] = person(uint64(p.id), 5, ws.Sub(t0), ws.Sub(t0), tasks, p.emotion, p.sex)
					}
					people[p.id].LastSeen = ws.Add(30 * time.Second)
					r.Active = append(r.Active, people[p.id])
				}
				short.AddFrame(time.Millisecond, r)
				long.AddFrame(time.Millisecond, r)
				c := Counters{Dropped: 1, Corrupt: 2, SourceDown: time.Second}
				s := closeValid(t, short, short.End(), c)
				if s.Kind != mqtt.KindWindow {
					t.Errorf("short window kind %q", s.Kind)
				}
				if tt.minGroup > 1 && len(w) < tt.minGroup && !slices.Equal(s.Withheld, []string{"emotion", "gender"}) {
					t.Errorf("short window %d of %d people: withheld %v, want both tasks", i, len(w), s.Withheld)
				}
				ls, ok := long.ShortClosed(s.End, c)
				if !ok {
					continue
				}
				if err := ls.Validate(); err != nil {
					t.Fatalf("long window fails mqtt validation: %v", err)
				}
				if len(closedAt) == 0 {
					first = ls
				}
				closedAt = append(closedAt, i)
			}
			if !slices.Equal(closedAt, tt.wantClose) {
				t.Fatalf("long window closed with short windows %v, want %v", closedAt, tt.wantClose)
			}
			s := first
			if s.Kind != mqtt.KindHour {
				t.Errorf("kind %q, want %q", s.Kind, mqtt.KindHour)
			}
			if !s.Start.Equal(t0.Add(tt.wantStart)) || !s.End.Equal(t0.Add(tt.wantEnd)) {
				t.Errorf("long window %v..%v, want %v..%v", s.Start.Sub(t0), s.End.Sub(t0), tt.wantStart, tt.wantEnd)
			}
			shorts := uint64(tt.wantClose[0] + 1)
			if s.PeopleSeen != tt.wantSeen || s.Frames != (mqtt.Frames{Processed: shorts, Dropped: shorts, Corrupt: 2 * shorts}) ||
				s.SourceDownSeconds != float64(shorts) {
				t.Errorf("seen %d frames %+v down %v; want %d seen and the sums of %d short windows", s.PeopleSeen, s.Frames, s.SourceDownSeconds, tt.wantSeen, shorts)
			}
			if !slices.Equal(s.Withheld, tt.wantWithheld) {
				t.Errorf("withheld %v, want %v", s.Withheld, tt.wantWithheld)
			}
			checkCounts(t, "emotion", s.Emotion, tt.wantEmotion)
			checkCounts(t, "gender", s.Gender, tt.wantGender)
		})
	}
}

// TestLongWindowFlush: a stop publishes the partial long window with the
// last short window's counters; an empty window of no length is not published.
func TestLongWindowFlush(t *testing.T) {
	tasks := testTasks("gender")
	cfg := AggregatorConfig{Interval: time.Hour, MinGroup: 1, MinSamples: 3}
	l, err := NewLongWindow(cfg, tasks, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Flush(t0, Counters{}); ok {
		t.Fatal("an empty long window of no length was published")
	}
	l.AddFrame(time.Millisecond, &LabelResult{Active: []*Person{person(1, 5, 0, time.Second, tasks, fem)}})
	if _, ok := l.ShortClosed(t0.Add(time.Minute), Counters{Dropped: 1}); ok {
		t.Fatal("closed before its hour")
	}
	l.AddEnded(&LabelResult{Ended: []*Person{person(2, 5, 0, time.Second, tasks, male)}})
	s, ok := l.Flush(t0.Add(90*time.Second), Counters{Dropped: 2})
	if !ok {
		t.Fatal("partial long window not published")
	}
	if s.Kind != mqtt.KindHour || s.PeopleSeen != 2 || s.Frames.Dropped != 3 || !s.End.Equal(t0.Add(90*time.Second)) {
		t.Errorf("flushed long window: kind %q seen %d dropped %d end %v; want hour, 2, 3, +90s", s.Kind, s.PeopleSeen, s.Frames.Dropped, s.End.Sub(t0))
	}
	if !l.Due().Equal(t0.Add(time.Hour)) || !l.Start().Equal(s.End) {
		t.Errorf("after the flush: start %v due %v; want the flush end and the next hour", l.Start().Sub(t0), l.Due().Sub(t0))
	}
}
