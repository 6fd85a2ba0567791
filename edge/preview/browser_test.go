package preview

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// chromiumPath finds a headless-capable Chromium. Debian's
// chromium-headless-shell starts several times faster than its chromium,
// which also works. The shell's /usr/bin entry is a script that doesn't exec,
// so the binary behind it is preferred: killing the script would leave the
// browser running.
// EDGE_CHROMIUM names another browser binary.
func chromiumPath() string {
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

// TestBrowserPage loads the page in headless Chromium against a server fed
// with synthetic frames and with stats that change on every poll, and
// watches the live DOM until the stream image has decoded and the stats
// panel has shown two different windows.
//
// It drives Chromium over the DevTools protocol on a pipe
// (--remote-debugging-pipe) rather than with --dump-dom: the MJPEG stream
// never finishes loading, so --dump-dom (and --virtual-time-budget, which
// pauses while fetches are pending) would wait forever.
//
// Set EDGE_PREVIEW_SCREENSHOT=file.png to keep a screenshot of the page.
func TestBrowserPage(t *testing.T) {
	bin := chromiumPath()
	if bin == "" {
		if os.Getenv("CI") == "" {
			t.Skip("chromium not found: install Debian's chromium-headless-shell (or chromium) package to run the browser test; with CI set it is required")
		}
		t.Fatal("CI is set but no chromium is installed (Debian package chromium-headless-shell or chromium)")
	}

	s := New(WithMaxFPS(20))
	h := s.Handler()
	var window atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Each poll sees a new window, so the DOM shows whether the page keeps polling.
		if r.URL.Path == "/stats.json" {
			if err := s.SetStats(sampleStats(window.Add(1))); err != nil {
				t.Error(err)
			}
		}
		h.ServeHTTP(w, r)
	}))
	defer ts.Close()
	defer s.Close() // first: ts.Close waits for open streams

	// A few seconds when idle; the cap leaves room for a loaded CI machine.
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	go feed(ctx, s, 20*time.Millisecond)

	start := time.Now()
	b, err := startBrowser(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.close(); err != nil {
			t.Logf("closing chromium: %v\n%s", err, b.stderr.tail())
		}
	}()

	session, err := b.openPage(ts.URL + "/")
	if err != nil {
		t.Fatalf("open page: %v\n%s", err, b.stderr.tail())
	}
	t.Logf("chromium up and page opening after %v", time.Since(start).Round(time.Millisecond))
	type domState struct {
		Stream string `json:"stream"`
		Width  int    `json:"width"`
		Window string `json:"window"`
		Polls  string `json:"polls"`
		Text   string `json:"text"`
		Note   string `json:"note"`
	}
	// Optional chaining: the probe may run before the page has loaded.
	const probe = `JSON.stringify({
		stream: document.body?.dataset.stream ?? "",
		width: document.getElementById("stream")?.naturalWidth ?? 0,
		window: document.getElementById("stats")?.dataset.window ?? "",
		polls: document.getElementById("stats")?.dataset.polls ?? "",
		text: document.getElementById("window")?.textContent ?? "",
		note: document.querySelector(".note")?.textContent ?? ""})`

	var st domState
	windows := map[string]bool{}
	for {
		raw, err := b.eval(session, probe)
		if err != nil {
			t.Fatalf("evaluate: %v\n%s", err, b.stderr.tail())
		}
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			t.Fatalf("probe result %q: %v", raw, err)
		}
		if _, err := strconv.Atoi(st.Window); err == nil && !windows[st.Window] {
			windows[st.Window] = true
			t.Logf("window %s shown after %v (stream %q)", st.Window, time.Since(start).Round(time.Millisecond), st.Stream)
		}
		if st.Stream == "loaded" && st.Width == 160 && len(windows) >= 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("page never got there: last state %+v, windows seen %v", st, windows)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("page live after %v: %+v, windows seen %v", time.Since(start).Round(time.Millisecond), st, windows)
	if st.Note != "Local preview — frames never leave this device" {
		t.Errorf("privacy note = %q", st.Note)
	}
	if want := "window " + st.Window; len(st.Text) < len(want) || st.Text[:len(want)] != want {
		t.Errorf("stats panel text %q does not start with %q", st.Text, want)
	}

	if path := os.Getenv("EDGE_PREVIEW_SCREENSHOT"); path != "" {
		if err := b.screenshot(session, path); err != nil {
			t.Errorf("screenshot: %v", err)
		}
	}
}

// browser is a headless Chromium driven over the DevTools protocol on a
// pipe: requests go to its fd 3 and answers come from its fd 4, each JSON
// message ending in a NUL byte.
type browser struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	outF   *os.File
	stderr *tailBuffer
	nextID int
}

func startBrowser(ctx context.Context, bin, profile string) (*browser, error) {
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
	b := &browser{cmd: cmd, in: inW, out: bufio.NewReader(outR), outF: outR, stderr: &tailBuffer{}}
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
func (b *browser) call(session, method string, params any) (json.RawMessage, error) {
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

// openPage opens url in a new tab and returns the session to talk to it.
func (b *browser) openPage(url string) (string, error) {
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

// eval evaluates a JS expression yielding a string.
func (b *browser) eval(session, expr string) (string, error) {
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

func (b *browser) screenshot(session, path string) error {
	res, err := b.call(session, "Page.captureScreenshot", map[string]any{"format": "png"})
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

// close asks Chromium to quit, killing it if it doesn't within 5 s.
func (b *browser) close() error {
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
