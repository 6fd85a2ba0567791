package tflite

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCaptureStderr: "INFO: " lines written to file descriptor 2 inside the
// window go to the sink; every other line still reaches stderr.
func TestCaptureStderr(t *testing.T) {
	out, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(out.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	var got []string
	captureStderr(func(l string) { got = append(got, l) }, func() {
		writeAll(2, "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
		// (fd 2 itself: go test -json may point os.Stderr elsewhere)
		writeAll(2, "time=… level=WARN msg=\"another goroutine\"\n")
		writeAll(2, "ERROR: something the library means\n")
	})
	writeAll(2, "after\n")
	if err := syscall.Dup3(saved, 2, 0); err != nil {
		t.Fatal(err)
	}
	syscall.Close(saved)
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Created TensorFlow Lite XNNPACK delegate for CPU."}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sink got %q, want %q", got, want)
	}
	if want := "time=… level=WARN msg=\"another goroutine\"\nERROR: something the library means\nafter\n"; string(b) != want {
		t.Errorf("stderr got %q, want %q", b, want)
	}
}

// TestRuntimeLogFromLibrary loads a model with XNNPACK in a fresh process
// (the library prints its line once per process): with WithRuntimeLog the
// line goes to the sink and not to stderr; without, it is on stderr.
func TestRuntimeLogFromLibrary(t *testing.T) {
	if mode := os.Getenv("EDGE_TFLITE_LOG_CHILD"); mode != "" {
		var opts []Option
		if mode == "sink" {
			opts = append(opts, WithRuntimeLog(func(l string) { fmt.Printf("sink: %s\n", l) }))
		}
		m, err := Load(tinyPath, opts...)
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
		return
	}
	const line = "Created TensorFlow Lite XNNPACK delegate for CPU."
	for _, mode := range []string{"sink", "stderr"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRuntimeLogFromLibrary$", "-test.count=1")
			cmd.Env = append(os.Environ(), "EDGE_TFLITE_LOG_CHILD="+mode)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("child: %v\n%s%s", err, stdout.String(), stderr.String())
			}
			inSink := strings.Contains(stdout.String(), "sink: "+line)
			onStderr := strings.Contains(stderr.String(), line)
			if inSink != (mode == "sink") || onStderr != (mode == "stderr") {
				t.Errorf("mode %s: line in sink %v, on stderr %v\nstdout:\n%s\nstderr:\n%s", mode, inSink, onStderr, stdout.String(), stderr.String())
			}
		})
	}
}
