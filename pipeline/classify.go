package pipeline

import (
	"errors"
	"fmt"
	"image"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/edge-sensor/edge/mqtt"
	"github.com/edge-sensor/edge/tflite"
)

// Classifier is one face model. *tflite.Model satisfies it.
type Classifier interface {
	// Meta describes the model: task, labels, input size, framing.
	Meta() tflite.Meta
	// Classify writes one probability per label for an input-sized crop
	// (grey, or Y Cb Cr per pixel as the metadata's input colour says); it
	// must not retain pixels or probs.
	Classify(pixels []byte, probs []float32) error
}

// FaceModel runs a classifier on face crops the way its metadata asks: once,
// or, for a flip-averaging model, on the crop and its mirror image with the
// two outputs averaged. It keeps its scratch buffers, so a face costs no
// allocation. Not safe for concurrent use.
type FaceModel struct {
	model   Classifier
	flip    bool
	w, h, c int // input size and bytes per pixel
	mirror  []byte
	second  []float32
}

// NewFaceModel reads m's metadata once; ClassifyFace then takes crops of its
// input size.
func NewFaceModel(m Classifier) *FaceModel {
	meta := m.Meta()
	return &FaceModel{model: m, flip: meta.FlipAverage, w: meta.Input.Width, h: meta.Input.Height,
		c: meta.Input.Channels, second: make([]float32, len(meta.Labels))}
}

// ClassifyFace writes one probability per label for an input-sized crop.
func (f *FaceModel) ClassifyFace(crop []byte, probs []float32) error {
	if err := f.model.Classify(crop, probs); err != nil {
		return err
	}
	if !f.flip {
		return nil
	}
	f.mirror = Mirror(crop, f.w, f.h, f.c, f.mirror)
	if err := f.model.Classify(f.mirror, f.second); err != nil {
		return fmt.Errorf("mirrored: %w", err)
	}
	for k := range probs {
		probs[k] = (probs[k] + f.second[k]) / 2
	}
	return nil
}

// ClassifyConfig is the classification stage's settings.
type ClassifyConfig struct {
	// Tasks names the tasks to run ("emotion", "age", "gender"); each needs
	// a model. Nil runs every model given; an empty non-nil list runs none
	// (people are counted, not classified).
	Tasks []string
	// Every is the cadence: a person is classified at most once every Every
	// processed frames. Consecutive frames of one face are nearly identical,
	// so classifying each would spend CPU on the same answer.
	Every int
	// MinFaceSize is the smallest detection side, in pixels, that is
	// classified. Smaller faces carry too little detail for 48-64 px models
	// and would add noise to the person's average rather than information.
	MinFaceSize float64
	// MinClassifications is the number of samples a person needs to be
	// counted under a label; people with fewer are reported as unclassified
	// rather than guessed from one or two glimpses.
	MinClassifications int
}

// DefaultClassifyConfig classifies each person about three times a second at
// 15 fps, faces of at least 60 px (the classifiers take 48-64 px crops, and
// pigo-facts.md notes smaller faces carry little information for them), and
// asks for 3 samples before a person is labelled.
func DefaultClassifyConfig() ClassifyConfig {
	return ClassifyConfig{Every: 5, MinFaceSize: 60, MinClassifications: 3}
}

// Validate reports the first invalid setting.
func (c ClassifyConfig) Validate() error {
	switch {
	case c.Every < 1:
		return fmt.Errorf("classify: Every %d: must be at least 1 frame", c.Every)
	case !(c.MinFaceSize >= 0) || math.IsInf(c.MinFaceSize, 0):
		return fmt.Errorf("classify: MinFaceSize %v: must be a finite number >= 0", c.MinFaceSize)
	case c.MinClassifications < 1:
		return fmt.Errorf("classify: MinClassifications %d: must be at least 1", c.MinClassifications)
	}
	for i, t := range c.Tasks {
		if !slices.Contains(mqtt.Tasks(), t) {
			return fmt.Errorf("classify: unknown task %q (want one of %v)", t, mqtt.Tasks())
		}
		if slices.Contains(c.Tasks[:i], t) {
			return fmt.Errorf("classify: task %q listed twice", t)
		}
	}
	return nil
}

// Person is a confirmed track as the classification stage sees it. Fields
// are read-only for users.
type Person struct {
	ID                  uint64
	FirstSeen, LastSeen time.Time
	// Box is the latest detection of the face.
	Box Box
	// Samples is the number of times the person was classified (by every
	// enabled model).
	Samples int
	// Probs holds, per task in [Labeler.Tasks] order, the running mean of
	// the probabilities over the samples; nil rows before the first sample.
	Probs [][]float32

	lastFrame uint64 // Labeler frame number of the latest sample
}

// Dwell is how long the person has been in view: first to latest sighting.
func (p *Person) Dwell() time.Duration { return max(p.LastSeen.Sub(p.FirstSeen), 0) }

// Top returns the most probable label index of task t and its mean
// probability; ok is false before the first sample.
func (p *Person) Top(t int) (label int, prob float32, ok bool) {
	if t < 0 || t >= len(p.Probs) || len(p.Probs[t]) == 0 {
		return 0, 0, false
	}
	row := p.Probs[t]
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best, row[best], true
}

// Task is one enabled model.
type Task struct {
	Name    string
	Labels  []string
	Width   int
	Height  int
	Framing Framing
	Flip    bool

	face *FaceModel
	crop *Cropper
}

// LabelResult is what one [Labeler.Update] produced. Its slices are reused by
// the next Update.
type LabelResult struct {
	// Active are the confirmed people in view (matched or briefly missed).
	Active []*Person
	// Ended are the people whose track ended, in their final state. The
	// Labeler forgets them; the pointers stay valid for the caller.
	Ended []*Person
	// Latency has one entry per face classified: crop plus every model.
	Latency []time.Duration
	// Failed counts faces whose classification failed (logged, not counted
	// as samples).
	Failed int
}

// Labeler is the classification stage: it crops each confirmed person's face
// and runs the enabled models on it, at most every ClassifyConfig.Every
// frames, keeping a running mean of the probabilities per person.
// It is not safe for concurrent use (and neither are the models).
type Labeler struct {
	cfg    ClassifyConfig
	tasks  []*Task
	people map[uint64]*Person
	frame  uint64
	log    *slog.Logger
	res    LabelResult
	sample [][]float32 // one face's probabilities per task, before committing
	// color: a task takes colour crops, so frames' chroma is needed;
	// warned: it was logged that such a task ran on a frame without colour.
	color, warned bool
	// level sets a face's roll before it is cropped ([Detector.Level]);
	// nil leaves faces upright. levels: a task's framing asks for level
	// crops, so the roll is worth finding.
	level  func(luma []byte, w, h int, b Box) Box
	levels bool
}

// NewLabeler validates cfg and the models' metadata and selects the models of
// cfg.Tasks (all of them when cfg.Tasks is nil). Task order follows cfg.Tasks,
// or the models' order. log may be nil.
func NewLabeler(cfg ClassifyConfig, models []Classifier, log *slog.Logger) (*Labeler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	byTask := make(map[string]Classifier, len(models))
	var order []string
	for i, m := range models {
		if m == nil {
			return nil, fmt.Errorf("classify: model %d is nil", i)
		}
		meta := m.Meta()
		if err := validateMeta(meta); err != nil {
			return nil, fmt.Errorf("classify: model %d: %w", i, err)
		}
		if _, dup := byTask[meta.Task]; dup {
			return nil, fmt.Errorf("classify: two models for task %q", meta.Task)
		}
		byTask[meta.Task] = m
		order = append(order, meta.Task)
	}
	if cfg.Tasks != nil {
		order = cfg.Tasks
	}
	l := &Labeler{cfg: cfg, people: make(map[uint64]*Person), log: log}
	for _, name := range order {
		m, ok := byTask[name]
		if !ok {
			return nil, fmt.Errorf("classify: task %q is enabled but no model for it was loaded", name)
		}
		meta := m.Meta()
		n := len(meta.Labels)
		l.tasks = append(l.tasks, &Task{
			Name:    meta.Task,
			Labels:  slices.Clone(meta.Labels),
			Width:   meta.Input.Width,
			Height:  meta.Input.Height,
			Framing: Framing(meta.Framing),
			Flip:    meta.FlipAverage,
			face:    NewFaceModel(m),
			crop:    NewCropper(meta.Input),
		})
		l.sample = append(l.sample, make([]float32, n))
		l.color = l.color || meta.Input.Color == tflite.ColorYCbCr
		l.levels = l.levels || meta.Framing.Level
	}
	return l, nil
}

func validateMeta(m tflite.Meta) error {
	switch {
	case !slices.Contains(mqtt.Tasks(), m.Task):
		return fmt.Errorf("task %q is not one the stats payload carries (%v)", m.Task, mqtt.Tasks())
	case len(m.Labels) < 2:
		return fmt.Errorf("task %q: %d labels, want at least 2", m.Task, len(m.Labels))
	case m.Input.Width < 1 || m.Input.Height < 1:
		return fmt.Errorf("task %q: input %dx%d", m.Task, m.Input.Width, m.Input.Height)
	case tflite.Channels(m.Input.Color) != m.Input.Channels:
		return fmt.Errorf("task %q: input %q with %d channels; the pipeline feeds %q (1 channel) or %q (3 channels) crops",
			m.Task, m.Input.Color, m.Input.Channels, tflite.ColorGray, tflite.ColorYCbCr)
	}
	if err := Framing(m.Framing).Validate(); err != nil {
		return fmt.Errorf("task %q: %w", m.Task, err)
	}
	return nil
}

// Tasks returns the enabled tasks in the order of [Person.Probs].
func (l *Labeler) Tasks() []*Task { return l.tasks }

// Update follows the tracker's output for one frame (luma is its w x h grey
// plane, img its colour picture or nil): it creates a Person for each newly
// confirmed track, classifies the people that are due, and hands over the
// people whose track ended. Only colour models read img.
func (l *Labeler) Update(luma []byte, w, h int, img image.Image, active, ended []*Track) *LabelResult {
	l.frame++
	r := &l.res
	r.Active, r.Ended, r.Latency, r.Failed = r.Active[:0], r.Ended[:0], r.Latency[:0], 0
	for _, tr := range active {
		if !tr.Confirmed {
			continue
		}
		p := l.person(tr)
		if tr.Matched && l.due(p, tr.Box) {
			start := time.Now()
			err := l.classify(p, luma, w, h, img, tr.Box)
			r.Latency = append(r.Latency, time.Since(start))
			if err != nil {
				r.Failed++
				l.log.Warn("classification failed", "person", p.ID, "err", err)
			}
		}
		r.Active = append(r.Active, p)
	}
	for _, tr := range ended {
		r.Ended = append(r.Ended, l.person(tr))
		delete(l.people, tr.ID)
	}
	return r
}

// End hands over every remaining person (tracks flushed at the end of a run).
func (l *Labeler) End(ended []*Track) *LabelResult {
	return l.Update(nil, 0, 0, nil, nil, ended)
}

func (l *Labeler) person(tr *Track) *Person {
	p := l.people[tr.ID]
	if p == nil {
		p = &Person{ID: tr.ID, FirstSeen: tr.FirstSeen, Probs: make([][]float32, len(l.tasks))}
		l.people[tr.ID] = p
	}
	p.LastSeen, p.Box = tr.LastSeen, tr.Box
	return p
}

func (l *Labeler) due(p *Person, b Box) bool {
	if len(l.tasks) == 0 || b.S < l.cfg.MinFaceSize {
		return false
	}
	return p.Samples == 0 || l.frame-p.lastFrame >= uint64(l.cfg.Every)
}

// classify runs every task on the face and, only if all succeed, folds the
// sample into the person's running means, so every task of a person has the
// same number of samples.
func (l *Labeler) classify(p *Person, luma []byte, w, h int, img image.Image, b Box) error {
	if l.color && !l.warned && !HasColor(img) {
		// Once: a grey camera stays grey, and a warning per face would flood the log.
		l.warned = true
		l.log.Warn("a colour model runs on frames without colour; it sees neutral chroma (Cb = Cr = 128)")
	}
	if l.level != nil && l.levels {
		b = l.level(luma, w, h, b)
	}
	for i, t := range l.tasks {
		crop := t.crop.Crop(luma, w, h, img, b, t.Framing)
		if err := t.face.ClassifyFace(crop, l.sample[i]); err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
		if err := checkProbs(l.sample[i]); err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
	}
	p.Samples++
	p.lastFrame = l.frame
	n := float32(p.Samples)
	for i, s := range l.sample {
		if p.Probs[i] == nil {
			p.Probs[i] = make([]float32, len(s))
		}
		for k, v := range s {
			p.Probs[i][k] += (v - p.Probs[i][k]) / n
		}
	}
	return nil
}

var errBadProbs = errors.New("model returned a probability outside [0, 1]")

func checkProbs(p []float32) error {
	for _, v := range p {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("%w: %v", errBadProbs, v)
		}
	}
	return nil
}
