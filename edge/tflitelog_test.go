package main

import (
	"image"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTFLiteLogFollowsLevel: the TFLite library's "Created TensorFlow Lite
// XNNPACK delegate" line is not printed at the default level, and is an
// edge debug line at EDGE_LOG_LEVEL=debug (in a fresh process each: the
// library prints it once per process).
func TestTFLiteLogFollowsLevel(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the edge binary")
	}
	data := t.TempDir()
	for _, name := range []string{"25_0_0_1.jpg", "70_1_2_2.jpg"} {
		img := image.NewGray(image.Rect(0, 0, 64, 64))
		for i := range img.Pix {
			img.Pix[i] = uint8(i * 7)
		}
		f, err := os.Create(filepath.Join(data, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := jpeg.Encode(f, img, nil); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	for _, tc := range []struct {
		level string
		want  bool
	}{{"", false}, {"info", false}, {"debug", true}} {
		t.Run("level="+tc.level, func(t *testing.T) {
			cmd := exec.Command(edgeBinary(t), "eval", "--task", "age", "--data", data, "--model", filepath.Join("..", "models", "age.tflite"))
			cmd.Env = append(os.Environ(), "EDGE_LOG_LEVEL="+tc.level)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("edge eval: %v\n%s%s", err, stdout.String(), stderr.String())
			}
			if strings.Contains(stderr.String(), "INFO: Created TensorFlow Lite") {
				t.Errorf("the library's own line reached stderr:\n%s", stderr.String())
			}
			got := strings.Contains(stderr.String(), `level=DEBUG msg="tflite: Created TensorFlow Lite XNNPACK delegate for CPU."`)
			if got != tc.want {
				t.Errorf("debug line present %v, want %v:\n%s", got, tc.want, stderr.String())
			}
		})
	}
}
