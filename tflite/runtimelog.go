package tflite

import (
	"bufio"
	"os"
	"strings"
	"sync"
	"syscall"
)

// WithRuntimeLog hands the TFLite C library's own informational lines to
// sink instead of letting them reach stderr: "INFO: Created TensorFlow Lite
// XNNPACK delegate for CPU.", which the library prints with fprintf when the
// first XNNPACK delegate is made. The 2.9 C API has no call to set its log
// severity, so file descriptor 2 is pointed at a pipe while the delegate is
// created. Lines that do not start with "INFO: " (other goroutines' logs
// written in that moment, a warning from the library) still go to stderr.
// Errors TFLite prints about a model are outside that window and unchanged.
func WithRuntimeLog(sink func(line string)) Option {
	return func(c *config) { c.runtimeLog = sink }
}

// stderrMu serialises the redirection: file descriptor 2 is one per process.
var stderrMu sync.Mutex

// captureStderr runs f with file descriptor 2 redirected as WithRuntimeLog
// describes. If the redirection cannot be set up, f runs with stderr as is.
func captureStderr(sink func(string), f func()) {
	stderrMu.Lock()
	defer stderrMu.Unlock()
	r, w, err := os.Pipe()
	if err != nil {
		f()
		return
	}
	defer r.Close()
	saved, err := syscall.Dup(2)
	if err != nil {
		w.Close()
		f()
		return
	}
	defer syscall.Close(saved)
	if err := syscall.Dup3(int(w.Fd()), 2, 0); err != nil {
		w.Close()
		f()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			if msg, ok := strings.CutPrefix(line, "INFO: "); ok {
				sink(msg)
				continue
			}
			writeAll(saved, line+"\n")
		}
	}()
	f()
	// Restore stderr, then close our end: the reader sees EOF once the
	// library's lines are read.
	_ = syscall.Dup3(saved, 2, 0)
	w.Close()
	<-done
}

func writeAll(fd int, s string) {
	b := []byte(s)
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err != nil {
			return
		}
		b = b[n:]
	}
}
