package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/pipeline"
)

// framingReport is what `edge models framing` measures: where the
// pipeline's detector puts its box on a data set's own face crops. A model
// trained on those crops (or their central Crop fraction) sees the same
// framing in edge run when its crop is Framing applied to the detector's box.
type framingReport struct {
	Data    string  `json:"data"`
	Crop    float64 `json:"crop"`
	N       int     `json:"n"`
	Found   int     `json:"found"`
	Scale   float64 `json:"scale"`
	OffsetX float64 `json:"offset_x"`
	OffsetY float64 `json:"offset_y"`
	// Spread is the interquartile range of the per-image scale, a measure
	// of how much the detector's box jitters relative to the face.
	ScaleIQR [2]float64 `json:"scale_iqr"`
	// OffsetXIQR and OffsetYIQR are the interquartile ranges of the
	// per-image offsets: with ScaleIQR, the spread training's framing
	// jitter draws from (models/robust.py).
	OffsetXIQR [2]float64 `json:"offset_x_iqr"`
	OffsetYIQR [2]float64 `json:"offset_y_iqr"`
}

func framingCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge models framing", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "data set of face crops (directory, .tar or .tar.gz)")
	crop := fs.Float64("crop", 1, "central fraction of each image the model is trained on")
	limit := fs.Int("limit", 0, "measure at most this many images (0: all)")
	det := detectorFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	if *data == "" || !(*crop > 0 && *crop <= 1) {
		return usageError{"edge models framing: want --data PATH and 0 < --crop <= 1"}
	}
	rep, err := measureFraming(ctx, *det, *data, *crop, *limit)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func measureFraming(ctx context.Context, cfg pipeline.DetectorConfig, data string, crop float64, limit int) (*framingReport, error) {
	det, err := pipeline.NewDetector(cfg)
	if err != nil {
		return nil, err
	}
	src, err := camera.Open(ctx, data, camera.WithFPS(0))
	if err != nil {
		return nil, err
	}
	defer src.Close()
	rep := &framingReport{Data: data, Crop: crop}
	var scales, dxs, dys []float64
	var boxes []pipeline.Box
	for limit == 0 || rep.N < limit {
		f, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, camera.ErrCorrupt) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("framing: %s: %w", data, err)
		}
		rep.N++
		boxes = det.DetectPadded(f.Luma, f.Width, f.Height, boxes)
		if len(boxes) == 0 {
			continue
		}
		rep.Found++
		b := boxes[0]
		side := crop * float64(min(f.Width, f.Height))
		scales = append(scales, side/b.S)
		dxs = append(dxs, (float64(f.Width)/2-b.X)/b.S)
		dys = append(dys, (float64(f.Height)/2-b.Y)/b.S)
	}
	if rep.Found == 0 {
		return nil, fmt.Errorf("framing: %s: the detector found no face in %d images", data, rep.N)
	}
	rep.Scale, rep.OffsetX, rep.OffsetY = median(scales), median(dxs), median(dys)
	rep.ScaleIQR = [2]float64{quantile(scales, 0.25), quantile(scales, 0.75)}
	rep.OffsetXIQR = [2]float64{quantile(dxs, 0.25), quantile(dxs, 0.75)}
	rep.OffsetYIQR = [2]float64{quantile(dys, 0.25), quantile(dys, 0.75)}
	return rep, nil
}

func median(v []float64) float64 { return quantile(v, 0.5) }

// quantile sorts v in place and returns its q-quantile (nearest rank).
func quantile(v []float64, q float64) float64 {
	slices.Sort(v)
	return v[min(int(q*float64(len(v))), len(v)-1)]
}
