package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/mqtt"
	"github.com/edge-sensor/edge/pipeline"
	"github.com/edge-sensor/edge/tflite"
)

// benchReport is what `edge bench --json` prints.
type benchReport struct {
	Source   string                `json:"source"`
	Machine  string                `json:"machine"`
	Frames   int                   `json:"frames"`
	Size     string                `json:"size"`
	Faces    int                   `json:"faces"`
	Stages   map[string]stageStats `json:"stages_ms"`
	EndToEnd struct {
		Frames int     `json:"frames"`
		FPS    float64 `json:"fps"`
	} `json:"end_to_end"`
}

type stageStats struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
}

func newStageStats(d []time.Duration) stageStats {
	if len(d) == 0 {
		return stageStats{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	ms := func(v time.Duration) float64 { return float64(v.Microseconds()) / 1000 }
	return stageStats{N: len(d), Mean: ms(sum / time.Duration(len(d))), P50: ms(d[len(d)/2]), P95: ms(d[min(len(d)*95/100, len(d)-1)])}
}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	source := fs.String("source", "camera/testdata/people.tar", "frames to run on (any EDGE_SOURCE)")
	modelsDir := fs.String("models", defaultModelsDir(), "directory of the .tflite models")
	tasks := fs.String("tasks", "emotion,age,gender", "classifiers to run")
	threads := fs.Int("threads", 1, "TFLite threads per model")
	dcfg := pipeline.DefaultDetectorConfig()
	fs.IntVar(&dcfg.MinSize, "min-face", dcfg.MinSize, "detector's smallest face side")
	fs.BoolVar(&dcfg.Level, "level", dcfg.Level, "level tilted faces for the models that ask for it (EDGE_LEVEL_FACES)")
	fs.BoolVar(&dcfg.Turned, "turned", dcfg.Turned, "also scan for heads tilted by 15-35° (EDGE_DETECT_TURNED)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	taskList := strings.Split(*tasks, ",")
	models, closeModels, err := loadModels(*modelsDir, taskList, *threads, tfliteLog(nil))
	if err != nil {
		return err
	}
	defer closeModels()
	rep, err := bench(ctx, *source, models, dcfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "edge bench on %s: %d frames %s, %d faces, %s\n\n", rep.Source, rep.Frames, rep.Size, rep.Faces, rep.Machine)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tn\tmean ms\tp50 ms\tp95 ms\t")
	keys := make([]string, 0, len(rep.Stages))
	for k := range rep.Stages {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return stageOrder(a) - stageOrder(b) })
	for _, k := range keys {
		s := rep.Stages[k]
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t\n", k, s.N, s.Mean, s.P50, s.P95)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nend to end (decode, detect, track, classify, aggregate): %.1f frames/s over %d frames\n", rep.EndToEnd.FPS, rep.EndToEnd.Frames)
	return nil
}

func stageOrder(s string) int {
	switch {
	case s == "decode":
		return 0
	case s == "detect":
		return 1
	case s == "level":
		return 2
	case s == "crop":
		return 3
	case strings.HasPrefix(s, "classify/"):
		return 4
	}
	return 5
}

func defaultModelsDir() string {
	var c Config
	c.fillDefaults()
	return c.ModelsDir
}

// bench times each stage on its own, then the whole pipeline.
func bench(ctx context.Context, source string, models []pipeline.Classifier, dcfg pipeline.DetectorConfig) (*benchReport, error) {
	rep := &benchReport{Source: source, Stages: map[string]stageStats{},
		Machine: fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())}
	src, err := camera.Open(ctx, source, camera.WithFPS(0))
	if err != nil {
		return nil, err
	}
	type frame struct {
		luma []byte
		w, h int
		img  image.Image // kept for colour models only
	}
	color := false
	for _, m := range models {
		color = color || m.Meta().Input.Color == tflite.ColorYCbCr
	}
	var frames []frame
	var decode []time.Duration
	warned := false
	for {
		t0 := time.Now()
		f, err := src.Next(ctx)
		d := time.Since(t0)
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, camera.ErrCorrupt) {
			continue
		}
		if err != nil {
			src.Close()
			return nil, err
		}
		decode = append(decode, d)
		fr := frame{luma: slices.Clone(f.Luma[:f.Width*f.Height]), w: f.Width, h: f.Height}
		if color {
			fr.img = keepColor(f, &warned)
		}
		frames = append(frames, fr)
	}
	src.Close()
	if len(frames) == 0 {
		return nil, fmt.Errorf("bench: %s has no frames", source)
	}
	rep.Frames = len(frames)
	rep.Size = fmt.Sprintf("%dx%d", frames[0].w, frames[0].h)
	rep.Stages["decode"] = newStageStats(decode)

	det, err := pipeline.NewDetector(dcfg)
	if err != nil {
		return nil, err
	}
	var detect, level, crop []time.Duration
	classify := make([][]time.Duration, len(models))
	var boxes []pipeline.Box
	probs := make([][]float32, len(models))
	metas := make([]tflite.Meta, len(models))
	faces := make([]*pipeline.FaceModel, len(models))
	crops := make([]*pipeline.Cropper, len(models))
	for i, m := range models {
		metas[i] = m.Meta()
		probs[i] = make([]float32, len(metas[i].Labels))
		faces[i] = pipeline.NewFaceModel(m)
		crops[i] = pipeline.NewCropper(metas[i].Input)
	}
	levels := dcfg.Level && levelsAny(metas)
	for _, f := range frames {
		t0 := time.Now()
		boxes = det.Detect(f.luma, f.w, f.h, boxes)
		detect = append(detect, time.Since(t0))
		for _, b := range boxes {
			rep.Faces++
			// Per face, as the labeler does before it crops when a model
			// asks for level crops (a no-op with levelling off).
			if levels {
				t0 := time.Now()
				b = det.Level(f.luma, f.w, f.h, b)
				level = append(level, time.Since(t0))
			}
			for i, meta := range metas {
				t0 := time.Now()
				buf := crops[i].Crop(f.luma, f.w, f.h, f.img, b, framingOf(meta))
				crop = append(crop, time.Since(t0))
				// Per face, as the labeler does it (a flip-averaging model
				// also classifies the mirror image).
				t0 = time.Now()
				if err := faces[i].ClassifyFace(buf, probs[i]); err != nil {
					return nil, err
				}
				classify[i] = append(classify[i], time.Since(t0))
			}
		}
	}
	rep.Stages["detect"] = newStageStats(detect)
	if levels {
		rep.Stages["level"] = newStageStats(level)
	}
	rep.Stages["crop"] = newStageStats(crop)
	for i, meta := range metas {
		rep.Stages["classify/"+meta.Task] = newStageStats(classify[i])
	}

	// End to end: the real pipeline, unpaced, publishing to nowhere.
	src, err = camera.Open(ctx, source, camera.WithFPS(0))
	if err != nil {
		return nil, err
	}
	defer src.Close()
	cfg := pipeline.DefaultConfig()
	cfg.Detector = dcfg
	// Lossless: capture waits for processing instead of dropping frames, so
	// an unpaced file measures processing speed.
	cfg.Lossless = true
	counter := &countingSink{}
	pl, err := pipeline.New(cfg, src, models, counter)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := pl.Run(ctx); err != nil {
		return nil, err
	}
	rep.EndToEnd.Frames = int(counter.processed)
	rep.EndToEnd.FPS = float64(counter.processed) / time.Since(t0).Seconds()
	return rep, nil
}

// countingSink counts the frames the pipeline reports as processed.
type countingSink struct{ processed uint64 }

func (c *countingSink) Publish(_ context.Context, s mqtt.Stats) error {
	c.processed += s.Frames.Processed
	return nil
}
