// Package browsertest drives a headless Chromium over the DevTools protocol
// for tests of the project's local web pages (the preview, the dashboard):
// open a page, evaluate JavaScript in it, take screenshots.
//
// It talks to Chromium on a pipe (--remote-debugging-pipe) rather than with
// --dump-dom: a page with a stream or polling never finishes loading, so
// --dump-dom (and --virtual-time-budget, which pauses while fetches are
// pending) would wait forever.
package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Require returns the browser to use, skipping the test when none is
// installed, except under CI (CI set), where that is a failure.
func Require(t testing.TB) string {
	t.Helper()
	bin := Path()
	if bin == "" {
		if os.Getenv("CI") == "" {
			t.Skip("chromium not found: install Debian's chromium-headless-shell (or chromium) package to run the browser test; with CI set it is required")
		}
		t.Fatal("CI is set but no chromium is installed (Debian package chromium-headless-shell or chromium)")
	}
	return bin
}

// Path finds a headless-capable Chromium. Debian's
// chromium-headless-shell starts several times faster than its chromium,
// which also works. The shell's /usr/bin entry is a script that doesn't exec,
// so the binary behind it is preferred: killing the script would leave the
// browser running.
// EDGE_CHROMIUM names another browser binary.
func Path() string {
	if p := os.Getenv("EDGE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{
		"/usr/lib/chromium/chromium-headless-shell", "chromium-headless-shell",
		"chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
	} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Browser is a headless Chromium driven over the DevTools protocol on a
// pipe: requests go to its fd 3 and answers come from its fd 4, each JSON
// message ending in a NUL byte.
type Browser struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	outF   *os.File
	stderr *tailBuffer
	nextID int
}

// Start runs the browser bin with a fresh profile directory; it is killed
// when ctx ends. Close it when done.
func Start(ctx context.Context, bin, profile string) (*Browser, error) {
	toChrome, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	outR, fromChrome, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--remote-debugging-pipe",
		"--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
		// One process: spawning renderer processes costs seconds on a busy machine.
		"--single-process", "--no-zygote",
		"--window-size=1024,700", "--user-data-dir="+profile, "about:blank")
	cmd.ExtraFiles = []*os.File{toChrome, fromChrome} // fds 3 and 4
	b := &Browser{cmd: cmd, in: inW, out: bufio.NewReader(outR), outF: outR, stderr: &tailBuffer{}}
	cmd.Stderr = b.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	// The child has its copies; closing ours lets reads end when it exits.
	toChrome.Close()
	fromChrome.Close()
	return b, nil
}

// call sends one command and returns its result, skipping events.
func (b *Browser) call(session, method string, params any) (json.RawMessage, error) {
	b.nextID++
	id := b.nextID
	req := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		req["sessionId"] = session
	}
	msg, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := b.in.Write(append(msg, 0)); err != nil {
		return nil, fmt.Errorf("%s: write: %w", method, err)
	}
	for {
		raw, err := b.out.ReadBytes(0)
		if err != nil {
			return nil, fmt.Errorf("%s: read: %w", method, err)
		}
		var resp struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(raw[:len(raw)-1], &resp); err != nil {
			return nil, fmt.Errorf("%s: answer: %w", method, err)
		}
		if resp.ID != id {
			continue // an event, or a session's chatter
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, resp.Error.Message)
		}
		return resp.Result, nil
	}
}

// OpenPage opens url in a new tab and returns the session to talk to it.
func (b *Browser) OpenPage(url string) (string, error) {
	res, err := b.call("", "Target.createTarget", map[string]any{"url": url})
	if err != nil {
		return "", err
	}
	var target struct{ TargetID string }
	if err := json.Unmarshal(res, &target); err != nil {
		return "", err
	}
	res, err = b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true})
	if err != nil {
		return "", err
	}
	var att struct{ SessionID string }
	if err := json.Unmarshal(res, &att); err != nil {
		return "", err
	}
	return att.SessionID, nil
}

// Eval evaluates a JS expression yielding a string in the page of session.
func (b *Browser) Eval(session, expr string) (string, error) {
	res, err := b.call(session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if err != nil {
		return "", err
	}
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return "", err
	}
	if r.ExceptionDetails != nil {
		return "", errors.New("script error: " + r.ExceptionDetails.Text)
	}
	s, _ := r.Result.Value.(string)
	return s, nil
}

// Screenshot writes a PNG of the whole page of session (beyond the
// window when it is taller) to path.
func (b *Browser) Screenshot(session, path string) error {
	res, err := b.call(session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
	if err != nil {
		return err
	}
	var shot struct{ Data string }
	if err := json.Unmarshal(res, &shot); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}

// Close asks Chromium to quit, killing it if it doesn't within 5 s.
func (b *Browser) Close() error {
	_, _ = b.call("", "Browser.close", nil)
	b.in.Close()
	done := make(chan error, 1)
	go func() { done <- b.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		err = <-done
	}
	b.outF.Close()
	return err
}

// tailBuffer keeps the last 4 KiB written: Chromium's stderr, for failures.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}

// Stderr is the end of Chromium's stderr, for failure messages.
func (b *Browser) Stderr() string { return b.stderr.tail() }
