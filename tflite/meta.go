package tflite

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// MetadataName is the name of the Model.metadata entry whose buffer holds
// edge's JSON description of a model.
const MetadataName = "edge"

// MetaSchema is the metadata schema version this package understands.
const MetaSchema = 1

// Meta is edge's description of a model, stored as JSON in the model file
// (see MetadataName). The JSON keys are the tags below.
type Meta struct {
	Schema int    `json:"schema"`
	Task   string `json:"task"` // "emotion", "age", "gender"
	// Labels name the output classes, in output index order.
	Labels  []string  `json:"labels"`
	Input   InputSpec `json:"input"`
	Framing Framing   `json:"framing"`
	// FlipAverage asks the caller to classify the crop and its mirror image
	// and average the probabilities.
	FlipAverage bool `json:"flip_average"`
	// MACs is the exporter's count of multiply-adds per inference.
	MACs int64 `json:"macs"`
	// DatasetCrop is the fraction of the dataset's own face crop the model
	// was trained on (1 when the file does not say).
	DatasetCrop float64 `json:"dataset_crop"`
	// Training is free-form provenance (data set, accuracy, ...).
	Training map[string]any `json:"training,omitempty"`
	// SHA256 is the digest of the model file (see checkDigest); empty in
	// files exported before digests.
	SHA256 string `json:"sha256,omitempty"`
}

// InputSpec describes the image a model takes.
type InputSpec struct {
	Width    int    `json:"width"`
	Height   int    `json:"height"`
	Channels int    `json:"channels"`
	Color    string `json:"color"` // ColorGray or ColorYCbCr
}

// The input colours a model may take, with their channel counts.
const (
	// ColorGray is one channel: the 8-bit luma plane.
	ColorGray = "gray"
	// ColorYCbCr is three channels interleaved per pixel, Y Cb Cr, each the
	// 8-bit full-range JFIF value of image/color (Y is the luma plane).
	ColorYCbCr = "ycbcr"
)

// Channels returns how many channels a model taking colour c is fed, or 0
// for a colour this package does not know.
func Channels(c string) int {
	switch c {
	case ColorGray:
		return 1
	case ColorYCbCr:
		return 3
	}
	return 0
}

// Framing places the model's square crop relative to a detected face box of
// side s centred at (cx, cy): side Scale*s, centre (cx+OffsetX*s, cy+OffsetY*s).
// Level asks for the crop turned by the face's roll, for models trained on
// faces aligned with their eyes level (UTKFace's); absent means upright.
type Framing struct {
	Scale   float64 `json:"scale"`
	OffsetX float64 `json:"offset_x"`
	OffsetY float64 `json:"offset_y"`
	Level   bool    `json:"level,omitempty"`
}

// clone returns a copy that shares no slice or map with m, so a Model can
// hand out its Meta without letting callers change it.
func (m Meta) clone() Meta {
	m.Labels = slices.Clone(m.Labels)
	m.Training = maps.Clone(m.Training)
	return m
}

// parseMeta decodes and checks the metadata JSON on its own; checkTensors
// cross-checks it against the graph.
func parseMeta(data []byte) (Meta, error) {
	// Absent keys keep these values: json.Unmarshal leaves them alone.
	m := Meta{DatasetCrop: 1}
	if err := json.Unmarshal(data, &m); err != nil {
		return Meta{}, fmt.Errorf("%w: %q metadata: %w", ErrInvalidModel, MetadataName, err)
	}
	if err := m.validate(); err != nil {
		return Meta{}, fmt.Errorf("%w: %q metadata: %w", ErrInvalidModel, MetadataName, err)
	}
	return m, nil
}

func (m *Meta) validate() error {
	finite := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	switch {
	case m.Schema != MetaSchema:
		return fmt.Errorf("schema %d not supported (want %d)", m.Schema, MetaSchema)
	case m.Task == "":
		return errors.New("task is empty")
	case len(m.Labels) == 0:
		return errors.New("no labels")
	case m.Input.Width <= 0 || m.Input.Height <= 0 || m.Input.Channels <= 0:
		return fmt.Errorf("input size %dx%dx%d is not positive", m.Input.Width, m.Input.Height, m.Input.Channels)
	case Channels(m.Input.Color) != m.Input.Channels:
		// Callers feed 8-bit grey or interleaved Y Cb Cr pixels; any other
		// layout would be fed wrong without an error.
		return fmt.Errorf("input color %q with %d channels not supported (want %q with 1 channel or %q with 3)",
			m.Input.Color, m.Input.Channels, ColorGray, ColorYCbCr)
	case !finite(m.Framing.Scale) || m.Framing.Scale <= 0 || !finite(m.Framing.OffsetX) || !finite(m.Framing.OffsetY):
		return fmt.Errorf("framing %+v: scale must be positive and all values finite", m.Framing)
	case m.MACs < 0:
		return fmt.Errorf("macs %d is negative", m.MACs)
	case !finite(m.DatasetCrop) || m.DatasetCrop <= 0:
		return fmt.Errorf("dataset_crop %g must be positive", m.DatasetCrop)
	}
	seen := make(map[string]bool, len(m.Labels))
	for i, l := range m.Labels {
		if l == "" {
			return fmt.Errorf("label %d is empty", i)
		}
		if seen[l] {
			return fmt.Errorf("label %q appears twice", l)
		}
		seen[l] = true
	}
	return nil
}
