package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-sensor/edge/camera"
)

// TestConfigErrorMessages pins each configuration error a user sees: the
// variable named once, the bad value, what is accepted, exit code 2.
func TestConfigErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string // the whole message
	}{
		{map[string]string{"EDGE_FPS": "abc"}, `EDGE_FPS="abc": want a whole number (default 15)`},
		{map[string]string{"EDGE_PREVIEW": "perhaps"}, `EDGE_PREVIEW="perhaps": want true or false (default true)`},
		{map[string]string{"EDGE_PUBLISH_INTERVAL": "soon"}, `EDGE_PUBLISH_INTERVAL="soon": want a duration such as 500ms, 60s, 5m or 1h (default 60s)`},
		{map[string]string{"EDGE_LOG_LEVEL": "verbose"}, `EDGE_LOG_LEVEL: "verbose": want debug, info, warn or error`},
		{map[string]string{"EDGE_MQTT_URL": "localhost:1883"}, `EDGE_MQTT_URL: invalid broker URL "localhost:1883": scheme must be tcp, mqtt, ssl, tls or mqtts; want tcp://HOST:1883 or ssl://HOST:8883 (empty: the embedded broker)`},
		{map[string]string{"EDGE_MQTT_URL": "tcp://"}, `EDGE_MQTT_URL: invalid broker URL "tcp://": missing host; want tcp://HOST:1883 or ssl://HOST:8883 (empty: the embedded broker)`},
		{map[string]string{"EDGE_MQTT_CERT": "/etc/hostname"}, `EDGE_MQTT_KEY: empty while EDGE_MQTT_CERT is set: mutual TLS needs the certificate and its key`},
		{map[string]string{"EDGE_MQTT_CA": "/nonexistent/ca.pem"}, `EDGE_MQTT_CA: "/nonexistent/ca.pem": no such file or directory; want a PEM file`},
		{map[string]string{"EDGE_SOURCE": " "}, `EDGE_SOURCE: empty; want ` + sourceKinds},
		{map[string]string{"EDGE_FPS": "300"}, `EDGE_FPS: 300: want 0..240`},
		{map[string]string{"EDGE_LOG_FORMAT": "xml"}, `EDGE_LOG_FORMAT: "xml": want text or json`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := loadConfig()
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tc.want {
				t.Errorf("got  %s\nwant %s", err, tc.want)
			}
			if exitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", exitCode(err))
			}
		})
	}
}

// TestRunPreflight runs `edge run` as a user would with a wrong camera or
// models folder: a configuration error (exit 2) naming the variable, before
// any model loads or camera opens.
func TestRunPreflight(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"missing camera", map[string]string{"EDGE_SOURCE": "/dev/video9", "EDGE_MODELS_DIR": empty},
			[]string{"EDGE_SOURCE=/dev/video9: no such camera; "}},
		{"missing file source", map[string]string{"EDGE_SOURCE": "nothing.tar"},
			[]string{`EDGE_SOURCE="nothing.tar": no such file or directory; want a camera /dev/videoN`, "rtsp://"}},
		{"every missing model, variable named", map[string]string{"EDGE_SOURCE": "../camera/testdata/people.tar", "EDGE_MODELS_DIR": empty},
			[]string{"EDGE_MODELS_DIR=" + empty + ": emotion.tflite, age.tflite, gender.tflite not found; set EDGE_MODELS_DIR"}},
		{"default models folder", map[string]string{"EDGE_SOURCE": "../camera/testdata/people.tar", "EDGE_TASKS": "age"},
			[]string{"EDGE_MODELS_DIR is empty, so edge looked in " + filepath.Join(mustWd(t), "models"), ": age.tflite not found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			err := dispatch(context.Background(), []string{"run"}, &out, &errb)
			if err == nil {
				t.Fatal("edge run succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%s", w, err)
				}
			}
			if exitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", exitCode(err))
			}
			if errb.Len() != 0 {
				t.Errorf("logged before the check (models loaded?):\n%s", errb.String())
			}
		})
	}
}

func mustWd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func TestDescribeCameras(t *testing.T) {
	cams := []camera.V4L2Device{
		{Path: "/dev/video0", Card: "Integrated Camera", Driver: "uvcvideo",
			Formats: []camera.V4L2Format{{FourCC: "MJPG"}, {FourCC: "YUYV"}}},
		{Path: "/dev/video4", Err: errors.New("permission denied")},
	}
	for _, tc := range []struct {
		name string
		devs []camera.V4L2Device
		want string
	}{
		{"none", nil, "no V4L2 cameras found (no /dev/video* capture device); EDGE_SOURCE also takes a folder or .tar/.tar.gz of images, " +
			"an image or video file, an http:// MJPEG or snapshot URL, or an rtsp:// stream"},
		{"two", cams, "the V4L2 cameras here are (edge cameras shows their sizes and frame rates):\n" +
			"  /dev/video0 \"Integrated Camera\" (uvcvideo): MJPG, YUYV\n" +
			"  /dev/video4: permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describeCameras(tc.devs); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestWriteCameras(t *testing.T) {
	devs := []camera.V4L2Device{{Path: "/dev/video0", Card: "vivid", Driver: "vivid", Formats: []camera.V4L2Format{
		{FourCC: "NV12", Description: "Y/UV 4:2:0", Sizes: []camera.V4L2Size{{Size: "320x180", Rates: []string{"30"}}}},
		// vivid lists the longest interval first
		{FourCC: "YUYV", Description: "YUYV 4:2:2", Sizes: []camera.V4L2Size{
			{Size: "640x480", Rates: []string{"7.5", "15", "30"}}, {Size: "1280x720", Rates: nil}}},
		{FourCC: "GREY", Description: "8-bit Greyscale"},
	}}}
	var b bytes.Buffer
	writeCameras(&b, devs)
	want := `/dev/video0 "vivid", driver vivid
  NV12 (Y/UV 4:2:0)
    320x180     30 fps
  YUYV (YUYV 4:2:2)
    640x480     7.5, 15, 30 fps
    1280x720    frame rates not listed
  GREY (8-bit Greyscale)
    any size (the driver lists none)

for example: EDGE_SOURCE=/dev/video0 EDGE_FORMAT=yuyv EDGE_SIZE=640x480 EDGE_FPS=30 edge run
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestCamerasCommand runs the real listing (go4vl ioctls) on a folder with
// no video nodes and on one whose video0 is not a device.
func TestCamerasCommand(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	if err := listCameras(dir, &b); err != nil {
		t.Fatal(err)
	}
	if b.String() != "no V4L2 cameras found (no /dev/video* capture device)\n" {
		t.Errorf("empty folder: %q", b.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "video0"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := listCameras(dir, &b); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), filepath.Join(dir, "video0")+": cannot be queried: ") {
		t.Errorf("a node that is not a device: %q", b.String())
	}
	if err := dispatch(context.Background(), []string{"cameras", "extra"}, &b, &b); exitCode(err) != 2 {
		t.Errorf("edge cameras extra: %v, want a usage error", err)
	}
}

// TestHelpListsEverything: every subcommand dispatch knows is in edge --help,
// and every source kind in edge run --help.
func TestHelpListsEverything(t *testing.T) {
	var help, run bytes.Buffer
	if err := dispatch(context.Background(), []string{"--help"}, &help, &help); err != nil {
		t.Fatal(err)
	}
	if err := dispatch(context.Background(), []string{"run", "--help"}, &run, &run); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"run", "eval", "cameras", "models info", "models framing", "bench", "subscribe", "version"} {
		if !strings.Contains(help.String(), "  edge "+cmd+" ") {
			t.Errorf("edge --help lacks %q", cmd)
		}
	}
	for _, kind := range []string{"/dev/video", ".tar", "video file", "http://", "rtsp://"} {
		if !strings.Contains(run.String(), kind) {
			t.Errorf("edge run --help lacks source kind %q", kind)
		}
	}
}
