package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/mqtt"
	"github.com/prometheus/client_golang/prometheus"
)

// Source is what the pipeline reads frames from; camera.Source satisfies it.
// A frame need only stay valid until the next call to Next: the pipeline
// copies what it keeps. Next returns io.EOF when a finite source ends and an
// error wrapping camera.ErrCorrupt for a frame that is skipped.
//
// When the source also has a `Stats() camera.SourceStats` method, its Down
// time is reported per window.
type Source interface {
	Next(ctx context.Context) (*camera.Frame, error)
}

type statser interface {
	Stats() camera.SourceStats
}

// Sink receives each closed window; *mqtt.Publisher satisfies it. A Publish
// error is logged and counted; the pipeline goes on.
type Sink interface {
	Publish(ctx context.Context, s mqtt.Stats) error
}

// Observer receives each processed frame with its faces, for the local
// preview. It is called on the processing goroutine, so it must return
// quickly, and it must not keep the Annotated (or anything in it) after it
// returns: copy what it needs.
type Observer interface {
	Observe(a *Annotated)
}

// Annotated is one processed frame and what the pipeline found in it.
type Annotated struct {
	Frame *camera.Frame
	Faces []Face
}

// Face is one track in an annotated frame.
type Face struct {
	// ID is the person's ID; 0 for a tentative track (not yet a person).
	ID        uint64
	Box       Box
	Confirmed bool
	// Matched is false when the face was not detected in this frame (the
	// box is the last detection).
	Matched bool
	// Samples is the number of classifications so far.
	Samples int
	// Labels has the current best label per enabled task, once classified.
	Labels []FaceLabel
}

// FaceLabel is a person's current best label for one task.
type FaceLabel struct {
	Task, Label string
	// Confidence is the label's mean probability over the samples.
	Confidence float32
}

// Config is the pipeline's settings.
type Config struct {
	Detector DetectorConfig
	Tracker  TrackerConfig
	Classify ClassifyConfig
	// Interval is the publish interval (one stats window).
	Interval time.Duration
	// LongWindow is the length of the long window published alongside the
	// short ones (Kind "hour"; see LongWindow); 0 disables it. It must be
	// at least Interval.
	LongWindow time.Duration
	// MinGroup withholds breakdowns that would single out fewer people
	// (see AggregatorConfig.MinGroup); 1 disables.
	MinGroup int
	// Buffer is the number of frames (1 or 2) waiting between capture and
	// processing. When processing falls behind, the oldest waiting frame is
	// dropped (and counted): stale frames are worth less than fresh ones,
	// and an unbounded queue would only grow latency and memory.
	Buffer int
	// Lossless makes capture wait for processing instead of dropping
	// frames, and windows follow the frames' clock only (no idle windows).
	// It is for offline runs over files read as fast as they are consumed
	// (no FPS pacing), where nothing is live and every frame should count;
	// a live camera must not use it.
	Lossless bool
	// FlushTimeout bounds publishing the last partial window after the
	// context is cancelled (graceful shutdown); 0 skips that publish.
	FlushTimeout time.Duration
}

// DefaultConfig returns the defaults of every stage, a one-minute window,
// MinGroup 3 and a one-frame buffer.
func DefaultConfig() Config {
	return Config{
		Detector:     DefaultDetectorConfig(),
		Tracker:      DefaultTrackerConfig(),
		Classify:     DefaultClassifyConfig(),
		Interval:     time.Minute,
		MinGroup:     3,
		Buffer:       1,
		FlushTimeout: 5 * time.Second,
	}
}

// Validate reports every invalid setting.
func (c Config) Validate() error {
	errs := []error{c.Detector.Validate(), c.Tracker.Validate(), c.Classify.Validate(), c.aggregator().Validate()}
	if c.Buffer < 1 || c.Buffer > 2 {
		errs = append(errs, fmt.Errorf("pipeline: Buffer %d: must be 1 or 2 frames", c.Buffer))
	}
	if c.LongWindow != 0 {
		if c.LongWindow < c.Interval {
			errs = append(errs, fmt.Errorf("pipeline: LongWindow %v: must be 0 (off) or at least Interval %v", c.LongWindow, c.Interval))
		} else {
			errs = append(errs, c.longAggregator().Validate())
		}
	}
	if c.FlushTimeout < 0 {
		errs = append(errs, fmt.Errorf("pipeline: FlushTimeout %v: must be >= 0", c.FlushTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid pipeline config: %w", err)
	}
	return nil
}

func (c Config) aggregator() AggregatorConfig {
	return AggregatorConfig{Interval: c.Interval, MinGroup: c.MinGroup, MinSamples: c.Classify.MinClassifications}
}

func (c Config) longAggregator() AggregatorConfig {
	a := c.aggregator()
	a.Interval = c.LongWindow
	return a
}

// Option sets an optional dependency of the pipeline.
type Option func(*Pipeline)

// WithObserver hands every processed frame to o (the local preview). Without
// an observer no annotation is built, and no frame's colour picture is
// copied unless a colour model needs its chroma.
func WithObserver(o Observer) Option { return func(p *Pipeline) { p.observer = o } }

// WithRegistry registers the pipeline's self-metrics on r.
func WithRegistry(r *prometheus.Registry) Option { return func(p *Pipeline) { p.registry = r } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(p *Pipeline) { p.log = l } }

// Pipeline reads frames from a Source and publishes one stats window per
// interval to a Sink. Run it once.
type Pipeline struct {
	cfg      Config
	src      Source
	sink     Sink
	observer Observer
	registry *prometheus.Registry
	log      *slog.Logger
	m        *metrics

	det     *Detector
	detect  func(luma []byte, w, h int, dst []Box) []Box // det.Detect; tests replace it
	bad     *corruptGuard
	tracker *Tracker
	labeler *Labeler
	agg     *Aggregator
	long    *LongWindow // nil when off

	ran atomic.Bool

	// Processing-goroutine state.
	boxes     []Box
	ann       Annotated
	labels    []FaceLabel
	lastTime  time.Time // frame clock of the latest frame
	lastWall  time.Time // wall clock when it was processed
	started   bool      // a frame has been processed
	processed atomic.Uint64
	dropped   atomic.Uint64
	corrupt   atomic.Uint64
	prevDrop  uint64
	prevCorr  uint64
	prevDown  time.Duration
	published uint64
}

// New builds a pipeline. models are the loaded classifiers (cfg.Classify.Tasks
// selects among them); src and sink are required.
func New(cfg Config, src Source, models []Classifier, sink Sink, opts ...Option) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil || sink == nil {
		return nil, errors.New("pipeline: source and sink are required")
	}
	p := &Pipeline{cfg: cfg, src: src, sink: sink}
	for _, o := range opts {
		o(p)
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.bad = newCorruptGuard(p.log)
	var err error
	if p.det, err = NewDetector(cfg.Detector); err != nil {
		return nil, err
	}
	p.detect = p.det.Detect
	if p.tracker, err = NewTracker(cfg.Tracker); err != nil {
		return nil, err
	}
	if p.labeler, err = NewLabeler(cfg.Classify, models, p.log); err != nil {
		return nil, err
	}
	p.labeler.level = p.det.Level
	if p.agg, err = NewAggregator(cfg.aggregator(), p.labeler.Tasks(), time.Time{}); err != nil {
		return nil, err
	}
	if cfg.LongWindow > 0 {
		if p.long, err = NewLongWindow(cfg.longAggregator(), p.labeler.Tasks(), time.Time{}); err != nil {
			return nil, err
		}
	}
	p.m = newMetrics()
	if p.registry != nil {
		if err := p.m.register(p.registry); err != nil {
			return nil, fmt.Errorf("pipeline: register metrics: %w", err)
		}
	}
	return p, nil
}

// Frames returns the frame counters since Run started; safe to call from
// any goroutine.
func (p *Pipeline) Frames() mqtt.Frames {
	return mqtt.Frames{Processed: p.processed.Load(), Dropped: p.dropped.Load(), Corrupt: p.corrupt.Load()}
}

// Tasks returns the enabled classification tasks.
func (p *Pipeline) Tasks() []*Task { return p.labeler.Tasks() }

// Run processes frames until the source ends (io.EOF: the last partial
// window is published and Run returns nil), the source fails (the partial
// window is published and the error returned) or ctx is cancelled (the
// partial window is published within FlushTimeout and ctx.Err() returned).
// Run returns only after its capture goroutine has stopped.
func (p *Pipeline) Run(ctx context.Context) error {
	if p.ran.Swap(true) {
		return errors.New("pipeline: Run called twice")
	}
	capCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()

	// The pool holds Buffer+2 frames: one being processed, Buffer waiting
	// and one being filled, so capture never waits for a free one.
	n := p.cfg.Buffer + 2
	free := make(chan *camera.Frame, n)
	for range n {
		free <- new(camera.Frame)
	}
	queue := make(chan *camera.Frame, p.cfg.Buffer)
	done := make(chan error, 1)
	wg.Go(func() { done <- p.capture(capCtx, free, queue) })

	p.resetWindows(time.Now())
	p.lastWall = time.Now()
	p.lastTime = p.lastWall
	idle := min(p.cfg.Interval/4, time.Second)
	tick := time.NewTicker(idle)
	defer tick.Stop()
	for {
		select {
		case f, ok := <-queue:
			if !ok {
				err := <-done
				p.flush(ctx, p.lastTime)
				if err != nil && ctx.Err() != nil {
					return ctx.Err()
				}
				return err
			}
			p.process(ctx, f)
			free <- f
		case <-tick.C:
			// No frame for a while (source down or slow): keep publishing
			// windows on time, advancing the frame clock by wall time.
			// While frames flow, their clock alone closes windows, so a
			// file processed slower than real time keeps exact windows;
			// offline (Lossless) runs follow the frame clock only, unless
			// their source yields nothing but corrupt frames: then there
			// is no frame clock, and windows must still close.
			if (!p.cfg.Lossless || p.bad.stuck()) && time.Since(p.lastWall) >= idle {
				p.closeDue(ctx, p.now())
			}
		case <-ctx.Done():
			stop()
			wg.Wait()
			end := p.now()
			if p.cfg.Lossless && !p.bad.stuck() {
				end = p.lastTime
			}
			p.flush(ctx, end)
			return ctx.Err()
		}
	}
}

// now is the frame clock advanced by the wall time since the latest frame.
func (p *Pipeline) now() time.Time {
	return p.lastTime.Add(time.Since(p.lastWall))
}

// capture reads frames into the pool and queue, dropping the oldest waiting
// frame when processing is behind. It closes queue when it returns.
func (p *Pipeline) capture(ctx context.Context, free, queue chan *camera.Frame) error {
	defer close(queue)
	for {
		f, err := p.src.Next(ctx)
		switch {
		case err == nil:
		case errors.Is(err, camera.ErrCorrupt):
			p.corrupt.Add(1)
			p.m.corrupt.Inc()
			if err := p.bad.corrupt(ctx, err); err != nil {
				return err
			}
			continue
		case errors.Is(err, io.EOF):
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			return fmt.Errorf("pipeline: source: %w", err)
		}
		if f == nil || f.Width <= 0 || f.Height <= 0 || len(f.Luma) < f.Width*f.Height {
			p.corrupt.Add(1)
			p.m.corrupt.Inc()
			if err := p.bad.corrupt(ctx, fmt.Errorf("%w: frame without its luma plane", camera.ErrCorrupt)); err != nil {
				return err
			}
			continue
		}
		p.bad.good()
		slot := <-free
		p.copyFrame(slot, f)
		if p.cfg.Lossless {
			select {
			case queue <- slot:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		select {
		case queue <- slot:
		default:
			select {
			case old := <-queue:
				free <- old
				p.dropped.Add(1)
				p.m.dropped.Inc()
			default: // the processor took it meanwhile
			}
			queue <- slot // cannot block: capture is the only sender
		}
	}
}

// copyFrame copies f into dst, reusing dst's buffers: the source may reuse f
// as soon as Next is called again. The colour picture is only kept for the
// observer (the preview) and for colour models (its chroma); otherwise only
// the luma is copied.
func (p *Pipeline) copyFrame(dst, f *camera.Frame) {
	if p.observer != nil || p.labeler.color {
		f.CopyTo(dst)
		return
	}
	luma := dst.Luma
	*dst = *f
	dst.Luma = append(luma[:0], f.Luma[:f.Width*f.Height]...)
	dst.Image = nil
}

func (p *Pipeline) process(ctx context.Context, f *camera.Frame) {
	t := f.Time
	if t.IsZero() {
		t = time.Now()
	}
	if !p.started {
		p.started = true
		if p.agg.Empty() && p.published == 0 {
			// Windows follow the frame clock (a file source's clock may
			// not be the wall clock).
			p.resetWindows(t)
		}
	}
	p.closeDue(ctx, t)
	p.processed.Add(1)
	p.lastTime, p.lastWall = t, time.Now()

	start := time.Now()
	p.boxes = p.detect(f.Luma, f.Width, f.Height, p.boxes)
	detect := time.Since(start)
	active, ended := p.tracker.Update(p.boxes, t)
	r := p.labeler.Update(f.Luma, f.Width, f.Height, f.Image, active, ended)
	p.agg.AddFrame(detect, r)
	if p.long != nil {
		p.long.AddFrame(detect, r)
	}

	p.m.frames.Inc()
	p.m.detect.Observe(detect.Seconds())
	for _, d := range r.Latency {
		p.m.classify.Observe(d.Seconds())
	}
	p.m.classifyErrors.Add(float64(r.Failed))
	p.m.people.Set(float64(len(r.Active)))

	if p.observer != nil {
		p.observe(f, active)
	}
}

// observe builds the annotation for the preview, reusing its slices.
func (p *Pipeline) observe(f *camera.Frame, active []*Track) {
	tasks := p.labeler.Tasks()
	p.ann.Frame = f
	p.ann.Faces = p.ann.Faces[:0]
	p.labels = p.labels[:0]
	for _, tr := range active {
		face := Face{ID: tr.ID, Box: tr.Box, Confirmed: tr.Confirmed, Matched: tr.Matched}
		if per := p.labeler.people[tr.ID]; tr.Confirmed && per != nil {
			face.Samples = per.Samples
			for ti, task := range tasks {
				if k, prob, ok := per.Top(ti); ok {
					p.labels = append(p.labels, FaceLabel{Task: task.Name, Label: task.Labels[k], Confidence: prob})
				}
			}
		}
		p.ann.Faces = append(p.ann.Faces, face)
	}
	// Point the faces into labels only now: appends above may have moved it.
	off := 0
	for i := range p.ann.Faces {
		n := 0
		if p.ann.Faces[i].Samples > 0 {
			n = len(tasks)
		}
		p.ann.Faces[i].Labels = p.labels[off : off+n : off+n]
		off += n
	}
	p.observer.Observe(&p.ann)
	p.ann.Frame = nil
}

// maxCatchUp bounds the empty windows published for one gap in the frame
// clock: an outage of hours is worth a window each (they carry the down
// time), a clock that jumps by years is not.
const maxCatchUp = 1000

// resetWindows restarts empty short and long windows at start.
func (p *Pipeline) resetWindows(start time.Time) {
	p.agg.Reset(start)
	if p.long != nil {
		p.long.Reset(start)
	}
}

// closeDue publishes every window that ended at or before t.
func (p *Pipeline) closeDue(ctx context.Context, t time.Time) {
	if t.Sub(p.agg.End()) > maxCatchUp*p.cfg.Interval {
		p.log.Warn("frame clock jumped; restarting windows", "from", p.agg.End(), "to", t)
		end := p.agg.End()
		c := p.counters(end, p.cfg.Interval)
		p.publish(ctx, p.agg.Close(end, c))
		if p.long != nil {
			if s, ok := p.long.Flush(end, c); ok {
				p.publish(ctx, s)
			}
		}
		p.resetWindows(t)
		return
	}
	for !t.Before(p.agg.End()) {
		p.closeShort(ctx, p.agg.End(), p.cfg.Interval)
	}
}

// closeShort closes and publishes the short window at end, then the long
// window when it is due with it.
func (p *Pipeline) closeShort(ctx context.Context, end time.Time, length time.Duration) {
	c := p.counters(end, length)
	s := p.agg.Close(end, c)
	p.publish(ctx, s)
	if p.long != nil {
		if ls, ok := p.long.ShortClosed(s.End, c); ok {
			p.publish(ctx, ls)
		}
	}
}

// flush ends all tracks and publishes the windows still open, the last one
// partial. After cancellation it publishes on a detached context bounded by
// FlushTimeout, so a graceful shutdown does not lose the last window.
func (p *Pipeline) flush(ctx context.Context, end time.Time) {
	if ctx.Err() != nil {
		if p.cfg.FlushTimeout == 0 {
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), p.cfg.FlushTimeout)
		defer cancel()
	}
	p.closeDue(ctx, end)
	ended := p.labeler.End(p.tracker.Flush())
	p.agg.AddEnded(ended)
	if p.long != nil {
		p.long.AddEnded(ended)
	}
	var c Counters
	if !p.agg.Empty() || end.After(p.agg.Start()) {
		c = p.counters(end, max(end.Sub(p.agg.Start()), 0))
		p.publish(ctx, p.agg.Close(end, c))
	}
	// The partial long window goes out too: its people would otherwise be
	// lost with the process.
	if p.long != nil {
		if s, ok := p.long.Flush(end, c); ok {
			p.publish(ctx, s)
		}
	}
}

// counters takes the capture counters and source down time accrued since the
// previous window.
func (p *Pipeline) counters(end time.Time, window time.Duration) Counters {
	d, c := p.dropped.Load(), p.corrupt.Load()
	out := Counters{Dropped: d - p.prevDrop, Corrupt: c - p.prevCorr}
	p.prevDrop, p.prevCorr = d, c
	if s, ok := p.src.(statser); ok {
		// Down time is sampled when a window closes, which can be after its
		// end: the outage time after the end belongs to the next window,
		// whether the source is still down or came back since. A window
		// never gets more than its own length; the rest carries over.
		st := s.Stats()
		pending := max(st.Down-p.prevDown, 0)
		var after time.Duration
		switch {
		case !st.Up:
			after = p.now().Sub(end)
		case st.BackAt.After(end):
			after = st.BackAt.Sub(end)
		}
		pending -= min(max(after, 0), pending)
		out.SourceDown = min(pending, window)
		p.prevDown += out.SourceDown
	}
	return out
}

func (p *Pipeline) publish(ctx context.Context, s mqtt.Stats) {
	p.published++
	if err := p.sink.Publish(ctx, s); err != nil {
		p.m.publishErrors.Inc()
		p.log.Error("publishing stats window failed", "start", s.Start, "end", s.End, "err", err)
		return
	}
	p.m.windows.Inc()
	p.log.Debug("stats window published", "kind", s.Kind, "start", s.Start, "end", s.End,
		"people_seen", s.PeopleSeen, "people_now", s.PeopleNow, "withheld", s.Withheld)
}

// metrics are the pipeline's self-metrics. They are created even without a
// registry so the hot path needs no nil checks.
type metrics struct {
	frames, dropped, corrupt prometheus.Counter
	classifyErrors           prometheus.Counter
	windows, publishErrors   prometheus.Counter
	detect, classify         prometheus.Histogram
	people                   prometheus.Gauge
}

func newMetrics() *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "edge", Subsystem: "pipeline", Name: name, Help: help})
	}
	return &metrics{
		frames:         counter("frames_processed_total", "Frames run through detection, tracking and classification."),
		dropped:        counter("frames_dropped_total", "Frames dropped because processing was behind capture."),
		corrupt:        counter("frames_corrupt_total", "Frames skipped because the source could not decode them."),
		classifyErrors: counter("classify_errors_total", "Faces whose classification failed."),
		windows:        counter("windows_published_total", "Stats windows handed to the sink."),
		publishErrors:  counter("publish_errors_total", "Stats windows the sink refused."),
		detect: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "edge", Subsystem: "pipeline", Name: "detect_seconds",
			Help: "Face detection time per frame.",
			// 0.5 ms .. ~1 s: pigo on 640x480 takes a few ms when tuned, tens when not.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 12),
		}),
		classify: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "edge", Subsystem: "pipeline", Name: "classify_face_seconds",
			Help: "Classification time per face (levelling where a model asks for it, crop and every enabled model).",
			// 0.2 ms .. ~400 ms: an int8 48x48 model takes ~1 ms per pass.
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 12),
		}),
		people: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "edge", Subsystem: "pipeline", Name: "people_in_view",
			Help: "Confirmed people in view in the latest frame.",
		}),
	}
}

func (m *metrics) register(r *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{m.frames, m.dropped, m.corrupt, m.classifyErrors, m.windows, m.publishErrors, m.detect, m.classify, m.people} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
