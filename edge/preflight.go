package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/edge-sensor/edge/camera"
)

// sourceKinds is what EDGE_SOURCE takes, for error messages.
const sourceKinds = "a camera /dev/videoN (edge cameras lists them), a folder or .tar/.tar.gz of images, " +
	"an image or video file, an http:// MJPEG or snapshot URL, or an rtsp:// stream"

// checkSource fails early, before the models load, on a source that is not
// there: a missing camera lists the V4L2 cameras that are (from devDir,
// /dev). URLs, and paths that exist but cannot be opened, are left to
// camera.Open, whose errors say more.
func checkSource(src, devDir string) error {
	if strings.Contains(src, "://") {
		return nil
	}
	if _, err := os.Stat(src); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if !strings.HasPrefix(src, "/dev/") {
		return configError{fmt.Errorf("EDGE_SOURCE=%q: no such file or directory; want %s", src, sourceKinds)}
	}
	devs, err := camera.ListV4L2(devDir)
	if err != nil {
		return configError{fmt.Errorf("EDGE_SOURCE=%s: no such camera (and the cameras could not be listed: %w)", src, err)}
	}
	return configError{fmt.Errorf("EDGE_SOURCE=%s: no such camera; %s", src, describeCameras(devs))}
}

// describeCameras lists cameras for an error message, one per line.
func describeCameras(devs []camera.V4L2Device) string {
	if len(devs) == 0 {
		return "no V4L2 cameras found (no /dev/video* capture device); EDGE_SOURCE also takes " +
			strings.TrimPrefix(sourceKinds, "a camera /dev/videoN (edge cameras lists them), ")
	}
	var b strings.Builder
	b.WriteString("the V4L2 cameras here are (edge cameras shows their sizes and frame rates):")
	for _, d := range devs {
		b.WriteString("\n  ")
		b.WriteString(d.Summary())
	}
	return b.String()
}

// checkModels fails, naming every missing file at once and the variable that
// points at them, when a task's model is not in the models folder.
func checkModels(dir string, tasks []string, dirFromEnv bool) error {
	var missing []string
	for _, t := range tasks {
		if _, err := os.Stat(filepath.Join(dir, t+".tflite")); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, t+".tflite")
		}
	}
	if len(missing) == 0 {
		return nil
	}
	where := fmt.Sprintf("EDGE_MODELS_DIR=%s", dir)
	if !dirFromEnv {
		abs, err := filepath.Abs(dir)
		if err != nil {
			abs = dir
		}
		where = fmt.Sprintf("EDGE_MODELS_DIR is empty, so edge looked in %s (/usr/share/edge/models or share/edge/models beside the binary when installed, else ./models)", abs)
	}
	return configError{fmt.Errorf("%s: %s not found; set EDGE_MODELS_DIR to the folder holding them "+
		"(a checkout's models/), or EDGE_TASKS to the tasks you have models for", where, strings.Join(missing, ", "))}
}
