package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/pipeline"
	"github.com/edge-sensor/edge/tflite"
)

const tinyYCbCr = "../tflite/testdata/tiny_ycbcr.tflite"

// colourFace is a 40x40 picture whose colour depends on seed.
func colourFace(seed int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, 40, 40))
	for y := range 40 {
		for x := range 40 {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x*6 + seed*50), uint8(y * 5), uint8(200 - seed*60), 255})
		}
	}
	return img
}

// TestEvalColorModel: `edge eval` feeds a "ycbcr" model colour crops of the
// data set's JPEG (YCbCr) and PNG (RGB) images, crop-fed and with --detect.
func TestEvalColorModel(t *testing.T) {
	dir := t.TempDir()
	for i, class := range []string{"a", "b", "c"} {
		if err := os.Mkdir(filepath.Join(dir, class), 0o755); err != nil {
			t.Fatal(err)
		}
		var j, p bytes.Buffer
		if err := jpeg.Encode(&j, colourFace(i), nil); err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(&p, colourFace(i)); err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"1.jpg": j.Bytes(), "2.png": p.Bytes()} {
			if err := os.WriteFile(filepath.Join(dir, class, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, detect := range []bool{false, true} {
		res, err := evaluate(context.Background(), evalFlags{task: "test", model: tinyYCbCr, data: dir, workers: 1, detect: detect, detector: evalDetectorConfig()}, func(int, int) {})
		if err != nil {
			t.Fatalf("detect %t: %v", detect, err)
		}
		if res.N != 6 || res.Unreadable != 0 || res.Unlabelled != 0 {
			t.Fatalf("detect %t: evaluated %d images (%d unreadable, %d unlabelled), want 6", detect, res.N, res.Unreadable, res.Unlabelled)
		}
	}

	// The colour reaches the model: the same image without its chroma
	// gives other probabilities.
	m, err := tflite.Load(tinyYCbCr)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	src, err := camera.Open(context.Background(), filepath.Join(dir, "a", "2.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fr, err := src.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	warned := false
	img := keepColor(fr, &warned)
	if img == nil || warned {
		t.Fatalf("keepColor(%T) = %v, warned %t; want the colour picture", fr.Image, img, warned)
	}
	c, err := newFaceClassifier(m, false, evalDetectorConfig())
	if err != nil {
		t.Fatal(err)
	}
	c.classify(fr.Luma, fr.Width, fr.Height, img)
	withColour := slices.Clone(c.probs)
	c.classify(fr.Luma, fr.Width, fr.Height, nil)
	if slices.Equal(withColour, c.probs) {
		t.Errorf("probabilities %v with and without chroma: the colour does not reach the model", withColour)
	}

	// A grey picture has no colour to keep: warned once.
	grey := &camera.Frame{Width: 2, Height: 1, Luma: []byte{1, 2}, Image: image.NewGray(image.Rect(0, 0, 2, 1))}
	if img := keepColor(grey, &warned); img != nil || !warned || pipeline.HasColor(grey.Image) {
		t.Errorf("keepColor(grey) = %v, warned %t; want nil and a warning", img, warned)
	}
}
