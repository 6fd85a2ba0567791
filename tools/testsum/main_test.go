package main

import (
	"strings"
	"testing"
	"time"
)

// Lines as go1.26's `go test -json` writes them.
const (
	skipRun = `{"Action":"start","Package":"github.com/edge-sensor/edge/pipeline"}
{"Action":"run","Package":"github.com/edge-sensor/edge/pipeline","Test":"TestDetectorSamples"}
{"Action":"output","Package":"github.com/edge-sensor/edge/pipeline","Test":"TestDetectorSamples","Output":"=== RUN   TestDetectorSamples\n"}
{"Action":"output","Package":"github.com/edge-sensor/edge/pipeline","Test":"TestDetectorSamples","Output":"    detect_test.go:26: sample photos not found at ../../shared/samples/faces\n"}
{"Action":"output","Package":"github.com/edge-sensor/edge/pipeline","Test":"TestDetectorSamples","Output":"--- SKIP: TestDetectorSamples (0.00s)\n"}
{"Action":"skip","Package":"github.com/edge-sensor/edge/pipeline","Test":"TestDetectorSamples","Elapsed":0}
{"Action":"run","Package":"github.com/edge-sensor/edge/pipeline","Test":"TestSlow"}
{"Action":"output","Package":"github.com/edge-sensor/edge/pipeline","Test":"TestSlow","Output":"--- PASS: TestSlow (31.00s)\n"}
{"Action":"pass","Package":"github.com/edge-sensor/edge/pipeline","Test":"TestSlow","Elapsed":31}
{"Action":"output","Package":"github.com/edge-sensor/edge/pipeline","Output":"PASS\n"}
{"Action":"pass","Package":"github.com/edge-sensor/edge/pipeline","Elapsed":31.2}
`
	failRun = `{"Action":"run","Package":"github.com/edge-sensor/edge/mqtt","Test":"TestX"}
{"Action":"output","Package":"github.com/edge-sensor/edge/mqtt","Test":"TestX","Output":"=== RUN   TestX\n"}
{"Action":"output","Package":"github.com/edge-sensor/edge/mqtt","Test":"TestX","Output":"    x_test.go:9: got 1, want 2\n"}
{"Action":"output","Package":"github.com/edge-sensor/edge/mqtt","Test":"TestX","Output":"--- FAIL: TestX (0.01s)\n"}
{"Action":"fail","Package":"github.com/edge-sensor/edge/mqtt","Test":"TestX","Elapsed":0.01}
{"Action":"output","Package":"github.com/edge-sensor/edge/mqtt","Output":"FAIL\n"}
{"Action":"fail","Package":"github.com/edge-sensor/edge/mqtt","Elapsed":0.5}
`
	buildFail = `{"ImportPath":"github.com/edge-sensor/edge/camera","Action":"build-output","Output":"camera/x.go:3:1: syntax error\n"}
{"ImportPath":"github.com/edge-sensor/edge/camera","Action":"build-fail"}
{"Action":"start","Package":"github.com/edge-sensor/edge/camera"}
{"Action":"output","Package":"github.com/edge-sensor/edge/camera","Output":"FAIL\tgithub.com/edge-sensor/edge/camera [build failed]\n"}
{"Action":"fail","Package":"github.com/edge-sensor/edge/camera","Elapsed":0,"FailedBuild":"github.com/edge-sensor/edge/camera"}
`
	panicRun = `{"Action":"run","Package":"github.com/edge-sensor/edge/tflite","Test":"TestY"}
{"Action":"output","Package":"github.com/edge-sensor/edge/tflite","Test":"TestY","Output":"=== RUN   TestY\n"}
{"Action":"output","Package":"github.com/edge-sensor/edge/tflite","Output":"panic: test timed out after 1s\n"}
{"Action":"output","Package":"github.com/edge-sensor/edge/tflite","Output":"FAIL\tgithub.com/edge-sensor/edge/tflite\t1.0s\n"}
{"Action":"fail","Package":"github.com/edge-sensor/edge/tflite","Elapsed":1}
`
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		slow    time.Duration
		ok      bool
		want    []string
		notWant []string
	}{
		{"skip is one line with its reason", skipRun, 0, true,
			[]string{"SKIP pipeline TestDetectorSamples: detect_test.go:26: sample photos not found at ../../shared/samples/faces\n",
				"ok   github.com/edge-sensor/edge/pipeline 31.2s\n"},
			[]string{"=== RUN", "tests that took"}},
		{"slow tests listed", skipRun, 30 * time.Second, true,
			[]string{"tests that took 30s or longer:\n  31.0s pipeline TestSlow\n"}, nil},
		{"failure prints the test's output", failRun, 0, false,
			[]string{"--- FAIL: mqtt TestX (0.0s)\n", "x_test.go:9: got 1, want 2\n", "FAIL github.com/edge-sensor/edge/mqtt 0.5s\n"}, nil},
		{"build failure prints the compiler's output", buildFail, 0, false,
			[]string{"FAIL build github.com/edge-sensor/edge/camera\ncamera/x.go:3:1: syntax error\n", "[build failed: "}, nil},
		{"package-level panic is printed", panicRun, 0, false,
			[]string{"panic: test timed out after 1s\n", "FAIL github.com/edge-sensor/edge/tflite 1.0s\n"}, nil},
		{"no results is a failure", "", 0, false, []string{"no test results"}, nil},
		{"non-JSON lines pass through", "go: warning: \"./nothing/...\" matched no packages\n", 0, false,
			[]string{"matched no packages"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			if ok := run(strings.NewReader(tc.in), &out, tc.slow); ok != tc.ok {
				t.Errorf("run() = %v, want %v; output:\n%s", ok, tc.ok, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
		})
	}
}
