package pipeline

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/edge-sensor/edge/mqtt"
)

// AggregatorConfig is the aggregation stage's settings.
type AggregatorConfig struct {
	// Interval is the length of a stats window.
	Interval time.Duration
	// MinGroup is the smallest group a published number may describe.
	//
	// The rule, deliberately simple so it is easy to audit: a task's
	// breakdown is published only if every label count is 0 or at least
	// MinGroup, and at least MinGroup people were classified; otherwise the
	// task is listed in Withheld and its counts and mass are omitted. Since
	// people_seen and unclassified are published, a breakdown with a count
	// below MinGroup would expose it even if that cell alone were hidden
	// (5 people seen, 4 happy: 5-4 = 1 reveals the sad one), so the whole
	// breakdown goes. With every cell 0 or >= MinGroup, anything derived by
	// subtraction is itself such a cell. The mean dwell time of fewer than
	// MinGroup people is reported as 0 for the same reason (one person's
	// dwell is that person's working pattern).
	//
	// Not covered: differencing consecutive windows, and a breakdown with a
	// single non-zero label (everyone is "happy" tells the attribute of each
	// of them). MinGroup 1 disables withholding.
	MinGroup int
	// MinSamples is how many classifications a person needs to be counted
	// under a label (see ClassifyConfig.MinClassifications).
	MinSamples int
	// MaxLatencySamples bounds the latency samples kept per window, to
	// bound memory (the newest replace the oldest beyond it). 0 means 8192.
	MaxLatencySamples int
}

// Validate reports the first invalid setting.
func (c AggregatorConfig) Validate() error {
	switch {
	case c.Interval < time.Second:
		return fmt.Errorf("aggregate: Interval %v: must be at least 1s", c.Interval)
	case c.MinGroup < 1:
		return fmt.Errorf("aggregate: MinGroup %d: must be at least 1 (1 disables withholding)", c.MinGroup)
	case c.MinSamples < 1:
		return fmt.Errorf("aggregate: MinSamples %d: must be at least 1", c.MinSamples)
	case c.MaxLatencySamples < 0:
		return fmt.Errorf("aggregate: MaxLatencySamples %d: must be >= 0", c.MaxLatencySamples)
	}
	return nil
}

// Counters are the per-window frame and source counters the pipeline adds
// when a window closes.
type Counters struct {
	Dropped, Corrupt uint64
	SourceDown       time.Duration
}

// Aggregator turns the per-frame results into one [mqtt.Stats] per window.
// It is not safe for concurrent use.
type Aggregator struct {
	cfg   AggregatorConfig
	tasks []*Task

	start     time.Time
	seen      map[uint64]*Person
	peopleNow int
	processed uint64
	detect    samples
	classify  samples
}

// NewAggregator validates cfg; tasks are the enabled tasks (from
// [Labeler.Tasks]). The first window starts at start.
func NewAggregator(cfg AggregatorConfig, tasks []*Task, start time.Time) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := cfg.MaxLatencySamples
	if n == 0 {
		n = 8192
	}
	return &Aggregator{
		cfg:      cfg,
		tasks:    tasks,
		start:    start,
		seen:     make(map[uint64]*Person),
		detect:   samples{max: n},
		classify: samples{max: n},
	}, nil
}

// Start is the start of the current window.
func (a *Aggregator) Start() time.Time { return a.start }

// End is the end of the current window.
func (a *Aggregator) End() time.Time { return a.start.Add(a.cfg.Interval) }

// Reset restarts an empty current window at start (used when the first frame's
// clock differs from the one the pipeline started with).
func (a *Aggregator) Reset(start time.Time) {
	a.start = start
	a.clearWindow()
}

// Empty reports whether nothing was recorded in the current window.
func (a *Aggregator) Empty() bool { return a.processed == 0 && len(a.seen) == 0 }

// AddFrame records one processed frame: its detection latency and the
// classification stage's result.
func (a *Aggregator) AddFrame(detect time.Duration, r *LabelResult) {
	a.processed++
	a.detect.add(detect)
	for _, d := range r.Latency {
		a.classify.add(d)
	}
	for _, p := range r.Active {
		a.seen[p.ID] = p
	}
	for _, p := range r.Ended {
		a.seen[p.ID] = p
	}
	a.peopleNow = len(r.Active)
}

// AddEnded records people whose tracks were ended without a frame (the flush
// at the end of a run). PeopleNow keeps the count of the last frame: they
// were in view when the window ended.
func (a *Aggregator) AddEnded(r *LabelResult) {
	for _, p := range r.Ended {
		a.seen[p.ID] = p
	}
}

// Close ends the current window at end, returns its statistics and starts the
// next window at end. Device, department and window id are left for the
// publisher.
func (a *Aggregator) Close(end time.Time, c Counters) mqtt.Stats {
	s := mqtt.Stats{
		Kind:              mqtt.KindWindow,
		Start:             a.start,
		End:               end,
		Withheld:          []string{},
		Frames:            mqtt.Frames{Processed: a.processed, Dropped: c.Dropped, Corrupt: c.Corrupt},
		SourceDownSeconds: max(c.SourceDown.Seconds(), 0),
		LatencyMS: mqtt.Latencies{
			Detect:          a.detect.summary(),
			ClassifyPerFace: a.classify.summary(),
		},
	}
	if end.Before(a.start) {
		s.End = a.start
	}
	if a.processed > 0 {
		// Without a frame in the window nobody was seen "now".
		s.PeopleNow = a.peopleNow
	}
	s.PeopleSeen = len(a.seen)

	var dwell time.Duration
	classified := 0
	for _, p := range a.seen {
		dwell += p.Dwell()
		if p.Samples >= a.cfg.MinSamples {
			classified++
		}
	}
	s.Unclassified = s.PeopleSeen - classified
	if s.PeopleSeen >= a.cfg.MinGroup && s.PeopleSeen > 0 {
		s.DwellSecondsMean = dwell.Seconds() / float64(s.PeopleSeen)
	}

	if classified > 0 {
		for ti, t := range a.tasks {
			b, ok := a.breakdown(ti, t, classified)
			if !ok {
				s.Withheld = append(s.Withheld, t.Name)
				continue
			}
			switch t.Name {
			case mqtt.TaskEmotion:
				s.Emotion = b
			case mqtt.TaskAge:
				s.Age = b
			case mqtt.TaskGender:
				s.Gender = b
			}
		}
	}

	a.start = s.End
	a.clearWindow()
	return s
}

// breakdown counts each classified person once, under the argmax of their
// mean probabilities, and averages their probabilities per label. ok is false
// when MinGroup withholds it.
func (a *Aggregator) breakdown(ti int, t *Task, classified int) (b *mqtt.Breakdown, ok bool) {
	if classified < a.cfg.MinGroup {
		return nil, false
	}
	counts := make([]int, len(t.Labels))
	mass := make([]float64, len(t.Labels))
	for _, p := range a.seen {
		if p.Samples < a.cfg.MinSamples {
			continue
		}
		top, _, ok := p.Top(ti)
		if !ok {
			continue
		}
		counts[top]++
		for k, v := range p.Probs[ti] {
			mass[k] += float64(v)
		}
	}
	for _, c := range counts {
		if c > 0 && c < a.cfg.MinGroup {
			return nil, false
		}
	}
	b = &mqtt.Breakdown{Counts: make(map[string]int, len(t.Labels)), Mass: make(map[string]float64, len(t.Labels))}
	for k, l := range t.Labels {
		b.Counts[l] = counts[k]
		// Clamp: int8 softmax outputs sum to 1 only within quantisation error.
		b.Mass[l] = min(max(mass[k]/float64(classified), 0), 1)
	}
	return b, true
}

func (a *Aggregator) clearWindow() {
	clear(a.seen)
	a.processed = 0
	a.peopleNow = 0
	a.detect.reset()
	a.classify.reset()
}

// samples keeps a window's latencies, at most max of them.
type samples struct {
	max  int
	n    int // samples added, including overwritten ones
	sum  time.Duration
	vals []time.Duration
}

func (s *samples) add(d time.Duration) {
	s.sum += d
	if len(s.vals) < s.max {
		s.vals = append(s.vals, d)
	} else {
		s.vals[s.n%s.max] = d
	}
	s.n++
}

func (s *samples) reset() {
	s.n, s.sum, s.vals = 0, 0, s.vals[:0]
}

// summary gives the mean (over all samples) and the nearest-rank 95th
// percentile (over the kept ones), in milliseconds.
func (s *samples) summary() mqtt.Latency {
	if s.n == 0 {
		return mqtt.Latency{}
	}
	slices.Sort(s.vals)
	rank := int(math.Ceil(0.95*float64(len(s.vals)))) - 1
	return mqtt.Latency{
		Mean: ms(s.sum / time.Duration(s.n)),
		P95:  ms(s.vals[max(rank, 0)]),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// LongWindow aggregates the same frames as the short windows over a longer
// window (an hour by default) and closes in step with them. Breakdowns need
// every label count to be 0 or at least MinGroup, which a short window of a
// small department rarely meets; a withheld window cannot be recovered by
// summing windows later, but the people of a whole hour form groups large
// enough to publish under the very same rule.
//
// A long window ends at the first short window end at or after each
// multiple of its length on the clock (time.Truncate), so with 1h it covers
// one clock hour plus at most one short window, and its frame and source
// counters are exactly the sums of its short windows'. It is not safe for
// concurrent use.
type LongWindow struct {
	agg   *Aggregator
	every time.Duration
	due   time.Time // the long window closes with the first short window ending at or after it
	acc   Counters
}

// NewLongWindow validates cfg, whose Interval is the long window's length,
// and starts the first long window at start.
func NewLongWindow(cfg AggregatorConfig, tasks []*Task, start time.Time) (*LongWindow, error) {
	agg, err := NewAggregator(cfg, tasks, start)
	if err != nil {
		return nil, fmt.Errorf("long window: %w", err)
	}
	l := &LongWindow{agg: agg, every: cfg.Interval}
	l.Reset(start)
	return l, nil
}

// Reset restarts an empty long window at start.
func (l *LongWindow) Reset(start time.Time) {
	l.agg.Reset(start)
	l.acc = Counters{}
	l.due = nextBoundary(start, l.every)
}

// nextBoundary is the first multiple of every on the clock after t.
func nextBoundary(t time.Time, every time.Duration) time.Time {
	return t.Truncate(every).Add(every)
}

// Start is the start of the current long window.
func (l *LongWindow) Start() time.Time { return l.agg.Start() }

// Due is the clock boundary at or after which the next short window end
// closes the long window.
func (l *LongWindow) Due() time.Time { return l.due }

// AddFrame records one processed frame (see [Aggregator.AddFrame]).
func (l *LongWindow) AddFrame(detect time.Duration, r *LabelResult) { l.agg.AddFrame(detect, r) }

// AddEnded records people whose tracks ended without a frame.
func (l *LongWindow) AddEnded(r *LabelResult) { l.agg.AddEnded(r) }

// ShortClosed is called with each short window's end and counters, after
// the short window was closed. When the long window is due it closes it at
// end and returns it (Kind [mqtt.KindHour]); ok is false otherwise.
func (l *LongWindow) ShortClosed(end time.Time, c Counters) (s mqtt.Stats, ok bool) {
	l.add(c)
	if end.Before(l.due) {
		return mqtt.Stats{}, false
	}
	return l.close(end), true
}

// Flush closes the long window early at end (shutdown, or a clock jump),
// with c, the counters of the last short window, added. ok is false when
// nothing was recorded in a window of no length.
func (l *LongWindow) Flush(end time.Time, c Counters) (s mqtt.Stats, ok bool) {
	l.add(c)
	if l.agg.Empty() && !end.After(l.agg.Start()) && l.acc == (Counters{}) {
		return mqtt.Stats{}, false
	}
	return l.close(end), true
}

func (l *LongWindow) add(c Counters) {
	l.acc.Dropped += c.Dropped
	l.acc.Corrupt += c.Corrupt
	l.acc.SourceDown += c.SourceDown
}

func (l *LongWindow) close(end time.Time) mqtt.Stats {
	s := l.agg.Close(end, l.acc)
	s.Kind = mqtt.KindHour
	l.acc = Counters{}
	l.due = nextBoundary(s.End, l.every)
	return s
}
