package preview

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-sensor/edge/internal/browsertest"
)

// TestBrowserPage loads the page in headless Chromium against a server fed
// with synthetic frames and with stats that change on every poll, and
// watches the live DOM until the stream image has decoded and the stats
// panel has shown two different windows.
//
// It drives Chromium over the DevTools protocol (internal/browsertest): the
// MJPEG stream never finishes loading, so --dump-dom would wait forever.
//
// Set EDGE_PREVIEW_SCREENSHOT=file.png to keep a screenshot of the page.
func TestBrowserPage(t *testing.T) {
	bin := browsertest.Require(t)

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
	b, err := browsertest.Start(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			t.Logf("closing chromium: %v\n%s", err, b.Stderr())
		}
	}()

	session, err := b.OpenPage(ts.URL + "/")
	if err != nil {
		t.Fatalf("open page: %v\n%s", err, b.Stderr())
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
		raw, err := b.Eval(session, probe)
		if err != nil {
			t.Fatalf("evaluate: %v\n%s", err, b.Stderr())
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
		if err := b.Screenshot(session, path); err != nil {
			t.Errorf("screenshot: %v", err)
		}
	}
}
