package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/camera/scene"
	"github.com/edge-sensor/edge/pipeline"
	"github.com/edge-sensor/edge/tflite"
)

// cameraResult is what `edge eval --camera --json` prints: the val faces
// placed into synthetic camera frames (package scene) under each
// condition, found by the pipeline's detector on the whole frame, cropped
// with each model's framing and classified.
type cameraResult struct {
	Data   string            `json:"data"`
	Tasks  []string          `json:"tasks"`
	Models map[string]string `json:"models"`
	// LabelSource is "dataset" (the archive's own labels) or "ferplus".
	LabelSource string                  `json:"label_source"`
	Sampled     int                     `json:"sampled"` // val images used, spread evenly over the set
	Seed        uint64                  `json:"seed"`
	Detector    pipeline.DetectorConfig `json:"detector"`
	// Crop is the accuracy on the same images' own crops fed straight to
	// the model (`edge eval` without --detect): the clean val figure of this
	// sample, which the conditions are compared with.
	Crop       map[string]float64 `json:"crop_accuracy"`
	Conditions []conditionResult  `json:"conditions"`
	// Worst is, per task, the single condition (clean and combined left
	// out) with the lowest accuracy on the faces found.
	Worst   map[string]worstCondition `json:"worst"`
	Seconds float64                   `json:"seconds"`
}

type conditionResult struct {
	Condition scene.Condition       `json:"condition"`
	N         int                   `json:"n"`
	Faces     int                   `json:"faces"`
	FaceRate  float64               `json:"face_rate"`
	Tasks     map[string]*taskScore `json:"tasks"`
}

type taskScore struct {
	Correct         int     `json:"correct"`
	AccuracyOnFaces float64 `json:"accuracy_on_faces"`
	// Accuracy counts a face not found as wrong.
	Accuracy float64 `json:"accuracy"`
	// Drop is the crop-fed accuracy minus AccuracyOnFaces, in points.
	Drop float64 `json:"drop_points"`
	// StdErr is AccuracyOnFaces' binomial standard error, in points: at
	// a few hundred faces it is 2-3 points, so smaller differences between
	// conditions or models are not told apart by one run.
	StdErr float64 `json:"std_err_points"`
}

type worstCondition struct {
	Condition       string  `json:"condition"`
	AccuracyOnFaces float64 `json:"accuracy_on_faces"`
	Drop            float64 `json:"drop_points"`
	StdErr          float64 `json:"std_err_points"`
}

// single reports whether a suite entry varies one thing: the baseline
// "clean" and the "combined" entry are not.
func single(c scene.Condition) bool { return c.Name != "clean" && c.Name != "combined" }

// cameraDetectorConfig is edge run's detector (DefaultDetectorConfig) with
// MinSize 40, the smallest face the camera validation places
// (EDGE_MIN_FACE=40 in edge run).
func cameraDetectorConfig() pipeline.DetectorConfig {
	cfg := pipeline.DefaultDetectorConfig()
	cfg.MinSize = 40
	return cfg
}

type cameraFlags struct {
	tasks      []string
	models     map[string]string
	data       string
	relabel    map[string]string
	labelSrc   string
	conditions []scene.Condition
	limit      int
	workers    int
	seed       uint64
	detector   pipeline.DetectorConfig
}

// cameraJob is one sampled val image and its label per task.
type cameraJob struct {
	idx    int
	face   image.Image // the colour picture, or grey
	luma   []byte
	w, h   int
	labels []int // per task, index into the model's labels
}

// cameraOutcome is what the workers made of one image: per task the
// crop-fed prediction, and per condition whether the face was found and
// each task's prediction.
type cameraOutcome struct {
	job   cameraJob
	crop  []int
	found []bool
	preds [][]int // [condition][task]
	err   error
}

// cameraWorker owns everything one goroutine needs: models are not safe for
// concurrent use.
type cameraWorker struct {
	render   *scene.Renderer
	detector *pipeline.Detector
	boxes    []pipeline.Box
	tasks    []*cameraTask
	levels   bool // a task's framing asks for level crops (levelsAny)
}

type cameraTask struct {
	meta  tflite.Meta
	face  *pipeline.FaceModel
	crop  *pipeline.Cropper
	plain *faceClassifier // the dataset crop, fed straight to the model
	probs []float32
}

// evaluateCamera runs the camera-realistic validation.
func evaluateCamera(ctx context.Context, f cameraFlags, progress func(done, total int)) (*cameraResult, error) {
	if len(f.conditions) == 0 {
		return nil, errors.New("eval --camera: no conditions")
	}
	for _, c := range f.conditions {
		if err := c.Validate(); err != nil {
			return nil, err
		}
	}
	workers := make([]*cameraWorker, max(f.workers, 1))
	var metas []tflite.Meta
	for i := range workers {
		w, ms, closeW, err := newCameraWorker(f)
		if err != nil {
			return nil, err
		}
		defer closeW()
		workers[i] = w
		metas = ms
	}
	total, err := camera.CountImages(f.data)
	if err != nil {
		return nil, fmt.Errorf("eval --camera: %s: %w", f.data, err)
	}
	if total == 0 {
		return nil, fmt.Errorf("eval --camera: %s holds no images", f.data)
	}
	want := total
	if f.limit > 0 {
		want = min(f.limit, total)
	}
	// Every stride-th image: data sets are sorted by class (FER2013) or by
	// age (UTKFace), so the first images would be one class.
	stride := max(total/want, 1)
	src, err := camera.Open(ctx, f.data, camera.WithFPS(0))
	if err != nil {
		return nil, err
	}
	defer src.Close()

	res := &cameraResult{Data: f.data, Tasks: f.tasks, Models: f.models, LabelSource: f.labelSrc, Seed: f.seed,
		Detector: f.detector, Crop: map[string]float64{}, Worst: map[string]worstCondition{}}
	for _, c := range f.conditions {
		cr := conditionResult{Condition: c, Tasks: map[string]*taskScore{}}
		for _, t := range f.tasks {
			cr.Tasks[t] = &taskScore{}
		}
		res.Conditions = append(res.Conditions, cr)
	}
	start := time.Now()
	jobs := make(chan cameraJob, 2*len(workers))
	outcomes := make(chan cameraOutcome, 2*len(workers))
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				outcomes <- w.run(j, f.conditions, f.seed)
			}
		}()
	}
	go func() { wg.Wait(); close(outcomes) }()
	readErr := make(chan error, 1)
	go func() {
		defer close(jobs)
		readErr <- feedCamera(ctx, src, f, metas, stride, want, jobs)
	}()
	cropCorrect := make([]int, len(f.tasks))
	done := 0
	var firstErr error
	for o := range outcomes {
		if o.err != nil {
			if firstErr == nil {
				firstErr = o.err
			}
			continue
		}
		res.Sampled++
		for t, p := range o.crop {
			if p == o.job.labels[t] {
				cropCorrect[t]++
			}
		}
		for c := range f.conditions {
			cr := &res.Conditions[c]
			cr.N++
			if !o.found[c] {
				continue
			}
			cr.Faces++
			for t, name := range f.tasks {
				if o.preds[c][t] == o.job.labels[t] {
					cr.Tasks[name].Correct++
				}
			}
		}
		done++
		progress(done*len(f.conditions), want*len(f.conditions))
	}
	progress(-1, 0)
	if err := <-readErr; err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if res.Sampled == 0 {
		return nil, fmt.Errorf("eval --camera: %s: no labelled image", f.data)
	}
	res.finish(cropCorrect, time.Since(start))
	return res, nil
}

func (r *cameraResult) finish(cropCorrect []int, d time.Duration) {
	r.Seconds = d.Seconds()
	for t, name := range r.Tasks {
		r.Crop[name] = float64(cropCorrect[t]) / float64(r.Sampled)
	}
	for i := range r.Conditions {
		cr := &r.Conditions[i]
		cr.FaceRate = float64(cr.Faces) / float64(max(cr.N, 1))
		for name, s := range cr.Tasks {
			s.Accuracy = float64(s.Correct) / float64(max(cr.N, 1))
			s.AccuracyOnFaces = float64(s.Correct) / float64(max(cr.Faces, 1))
			s.Drop = 100 * (r.Crop[name] - s.AccuracyOnFaces)
			if cr.Faces > 0 {
				p := s.AccuracyOnFaces
				s.StdErr = 100 * math.Sqrt(p*(1-p)/float64(cr.Faces))
			}
			if w, ok := r.Worst[name]; single(cr.Condition) && (!ok || s.AccuracyOnFaces < w.AccuracyOnFaces) {
				r.Worst[name] = worstCondition{Condition: cr.Condition.Name, AccuracyOnFaces: s.AccuracyOnFaces, Drop: s.Drop, StdErr: s.StdErr}
			}
		}
	}
}

// feedCamera sends every stride-th labelled image, up to want of them.
func feedCamera(ctx context.Context, src camera.Source, f cameraFlags, metas []tflite.Meta, stride, want int, jobs chan<- cameraJob) error {
	sent := 0
	for i := 0; sent < want; i++ {
		fr, err := src.Next(ctx)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, camera.ErrCorrupt):
			continue
		case err != nil:
			return fmt.Errorf("eval --camera: read %s: %w", f.data, err)
		}
		if i%stride != 0 {
			continue
		}
		labels, ok, err := taskLabels(fr.Name, f.tasks, metas, f.relabel)
		if err != nil {
			return fmt.Errorf("eval --camera: %s: %w", f.data, err)
		}
		if !ok {
			continue
		}
		c := fr.Clone()
		face := c.Image
		if face == nil {
			face = &image.Gray{Pix: c.Luma, Stride: c.Width, Rect: image.Rect(0, 0, c.Width, c.Height)}
		}
		select {
		case jobs <- cameraJob{idx: i, face: face, luma: c.Luma, w: c.Width, h: c.Height, labels: labels}:
			sent++
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// taskLabels returns the label index of each task for a data set entry;
// ok is false for entries without a label (or without a FER+ majority).
func taskLabels(name string, tasks []string, metas []tflite.Meta, relabel map[string]string) ([]int, bool, error) {
	t, ok := parseTruth(name)
	if !ok {
		return nil, false, nil
	}
	out := make([]int, len(tasks))
	for i, task := range tasks {
		label, err := t.label(task)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", name, err)
		}
		if relabel != nil {
			if label, ok = relabel[name]; !ok {
				return nil, false, nil
			}
		}
		out[i] = slices.Index(metas[i].Labels, label)
		if out[i] < 0 {
			return nil, false, fmt.Errorf("class %q of %s is not among the %s model's labels %v", label, name, task, metas[i].Labels)
		}
	}
	return out, true, nil
}

func newCameraWorker(f cameraFlags) (*cameraWorker, []tflite.Meta, func(), error) {
	w := &cameraWorker{render: scene.NewRenderer()}
	var loaded []*tflite.Model
	closeAll := func() {
		for _, m := range loaded {
			m.Close()
		}
	}
	d, err := pipeline.NewDetector(f.detector)
	if err != nil {
		return nil, nil, nil, err
	}
	w.detector = d
	var metas []tflite.Meta
	for _, task := range f.tasks {
		m, err := tflite.Load(f.models[task], tflite.WithExpect(task, 0), tflite.WithThreads(1), tfliteLog(nil))
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		loaded = append(loaded, m)
		plain, err := newFaceClassifier(m, false, f.detector)
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		meta := m.Meta()
		metas = append(metas, meta)
		w.tasks = append(w.tasks, &cameraTask{meta: meta, face: pipeline.NewFaceModel(m), crop: pipeline.NewCropper(meta.Input),
			plain: plain, probs: make([]float32, len(meta.Labels))})
	}
	w.levels = levelsAny(metas)
	return w, metas, closeAll, nil
}

// run classifies one image's own crop, then renders it under every
// condition and runs the pipeline path on each frame.
func (w *cameraWorker) run(j cameraJob, conds []scene.Condition, seed uint64) cameraOutcome {
	o := cameraOutcome{job: j, crop: make([]int, len(w.tasks)), found: make([]bool, len(conds)), preds: make([][]int, len(conds))}
	var colour image.Image
	if pipeline.HasColor(j.face) {
		colour = j.face
	}
	for t, task := range w.tasks {
		o.crop[t] = task.plain.classify(j.luma, j.w, j.h, colour)
	}
	// One scene per image, whatever the condition: seed and index decide it.
	sceneSeed := seed*0x9e3779b97f4a7c15 + uint64(j.idx)
	for c, cond := range conds {
		fr, err := w.render.Render(j.face, cond, sceneSeed)
		if err != nil {
			o.err = err
			return o
		}
		o.preds[c] = make([]int, len(w.tasks))
		box, ok := w.match(fr)
		if !ok {
			continue
		}
		o.found[c] = true
		var img image.Image
		if pipeline.HasColor(fr.Image) {
			img = fr.Image
		}
		// As the labeler does before it crops a face.
		if w.levels {
			box = w.detector.Level(fr.Luma, scene.Width, scene.Height, box)
		}
		for t, task := range w.tasks {
			crop := task.crop.Crop(fr.Luma, scene.Width, scene.Height, img, box, framingOf(task.meta))
			if err := task.face.ClassifyFace(crop, task.probs); err != nil {
				o.err = fmt.Errorf("eval --camera: classify: %w", err)
				return o
			}
			o.preds[c][t] = argmax(task.probs)
		}
	}
	return o
}

// match returns the detection of the placed face: the best-scoring box
// whose centre lies within half the face's side of the placed centre and
// whose size is within a factor of two of it. A box elsewhere (a false
// detection in the background) does not count as finding the face.
func (w *cameraWorker) match(fr *scene.Frame) (pipeline.Box, bool) {
	w.boxes = w.detector.Detect(fr.Luma, scene.Width, scene.Height, w.boxes)
	p := fr.Face
	for _, b := range w.boxes { // best score first
		if math.Hypot(b.X-p.X, b.Y-p.Y) <= p.Side/2 && b.S >= p.Side/2 && b.S <= 2*p.Side {
			return b, true
		}
	}
	return pipeline.Box{}, false
}

func argmax(p []float32) int {
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}

func (r *cameraResult) writeText(w io.Writer) error {
	fmt.Fprintf(w, "camera-realistic validation: %s, %d images (labels: %s), seed %d, %d conditions, %.1f s\n",
		r.Data, r.Sampled, r.LabelSource, r.Seed, len(r.Conditions), r.Seconds)
	fmt.Fprintf(w, "detector on the whole 640x480 frame: MinSize %d, ShiftFactor %g, ScaleFactor %g, MinQ %g, level %t, turned %t\n",
		r.Detector.MinSize, r.Detector.ShiftFactor, r.Detector.ScaleFactor, r.Detector.MinQ, r.Detector.Level, r.Detector.Turned)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "condition\tfaces found\t")
	for _, t := range r.Tasks {
		fmt.Fprintf(tw, "%s on found\ts.e. (pts)\t%s overall\tdrop (pts)\t", t, t)
	}
	fmt.Fprintln(tw)
	fmt.Fprint(tw, "own crops (no detector)\t-\t")
	for _, t := range r.Tasks {
		fmt.Fprintf(tw, "%.4f\t-\t%.4f\t-\t", r.Crop[t], r.Crop[t])
	}
	fmt.Fprintln(tw)
	for _, c := range r.Conditions {
		fmt.Fprintf(tw, "%s\t%.3f\t", c.Condition.Name, c.FaceRate)
		for _, t := range r.Tasks {
			s := c.Tasks[t]
			fmt.Fprintf(tw, "%.4f\t%.1f\t%.4f\t%+.1f\t", s.AccuracyOnFaces, s.StdErr, s.Accuracy, -s.Drop)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range r.Tasks {
		if wc, ok := r.Worst[t]; ok {
			fmt.Fprintf(w, "worst single condition for %s: %s, %.4f on faces found (%+.1f points from its own crops; one standard error %.1f)\n",
				t, wc.Condition, wc.AccuracyOnFaces, -wc.Drop, wc.StdErr)
		}
	}
	return nil
}

// conditionsByName picks suite entries by name (a comma list; "" or "all":
// the whole suite).
func conditionsByName(names []string) ([]scene.Condition, error) {
	suite := scene.Suite()
	if len(names) == 0 || len(names) == 1 && names[0] == "all" {
		return suite, nil
	}
	var out []scene.Condition
	for _, n := range names {
		i := slices.IndexFunc(suite, func(c scene.Condition) bool { return c.Name == n })
		if i < 0 {
			var known []string
			for _, c := range suite {
				known = append(known, c.Name)
			}
			return nil, usageError{fmt.Sprintf("--conditions: unknown condition %q (known: %q)", n, known)}
		}
		out = append(out, suite[i])
	}
	return out, nil
}

// cameraOpts are the flags only --camera reads.
type cameraOpts struct {
	modelsDir, labels, conditions, save string
	seed                                uint64
}

// cameraCmd is `edge eval --camera`.
func cameraCmd(ctx context.Context, f evalFlags, o cameraOpts, fs *flag.FlagSet, stdout, stderr io.Writer) error {
	tasks := strings.Split(f.task, ",")
	for i, t := range tasks {
		if !knownTasks[t] || slices.Contains(tasks[:i], t) {
			return usageError{fmt.Sprintf("--task %q: want emotion, age or gender, or a comma list of them sharing --data", f.task)}
		}
	}
	if f.data == "" {
		return usageError{"--data is required"}
	}
	if f.detect {
		return usageError{"--camera always runs the detector (on the whole frame): drop --detect"}
	}
	models := map[string]string{}
	for _, t := range tasks {
		models[t] = filepath.Join(o.modelsDir, t+".tflite")
	}
	if f.model != "" {
		if len(tasks) != 1 {
			return usageError{"--model names one model: give one --task, or leave --model out to use models/<task>.tflite"}
		}
		models[tasks[0]] = f.model
	}
	// edge run's detector, with any detector flag the user set.
	det := cameraDetectorConfig()
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "min-q":
			det.MinQ = f.detector.MinQ
		case "scale-factor":
			det.ScaleFactor = f.detector.ScaleFactor
		case "shift-factor":
			det.ShiftFactor = f.detector.ShiftFactor
		case "min-size":
			det.MinSize = f.detector.MinSize
		case "turned":
			det.Turned = f.detector.Turned
		}
	})
	var names []string
	for _, n := range strings.Split(o.conditions, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	conditions, err := conditionsByName(names)
	if err != nil {
		return err
	}
	res, err := evaluateCamera(ctx, cameraFlags{tasks: tasks, models: models, data: f.data, relabel: f.relabel, labelSrc: o.labels,
		conditions: conditions, limit: f.limit, workers: max(f.workers, 1), seed: o.seed, detector: det}, progressWriter(stderr))
	if err != nil {
		return err
	}
	if f.plot != "" {
		if err := plotCamera(f.plot, res); err != nil {
			return err
		}
	}
	if o.save != "" {
		b, err := json.MarshalIndent(res, "", " ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.save, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("eval --camera: %w", err)
		}
	}
	if f.json {
		return json.NewEncoder(stdout).Encode(res)
	}
	return res.writeText(stdout)
}
