package camera

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mjpegHandler serves parts as an MJPEG stream, then ends the response
// (a camera restarting). Header boundary and body delimiter are written as
// the given camera style.
type mjpegHandler struct {
	parts         [][]byte
	headerBound   string // boundary parameter in Content-Type
	bodyBound     string // what follows "\r\n" on delimiter lines
	contentLength bool
	hold          chan struct{} // if set, keep the response open until closed
	requests      atomic.Int32
}

func (h *mjpegHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary="+h.headerBound)
	fl := w.(http.Flusher)
	for _, p := range h.parts {
		fmt.Fprintf(w, "\r\n%s\r\nContent-Type: image/jpeg\r\n", h.bodyBound)
		if h.contentLength {
			fmt.Fprintf(w, "Content-Length: %d\r\n", len(p))
		}
		fmt.Fprintf(w, "\r\n")
		w.Write(p)
		fl.Flush()
	}
	if h.hold == nil {
		// A clean end, as when the camera restarts its stream.
		fmt.Fprintf(w, "\r\n%s--\r\n", h.bodyBound)
		return
	}
	{
		select {
		case <-h.hold:
		case <-r.Context().Done():
		}
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// logBuffer is a concurrency-safe log sink for checking what was logged.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestMJPEGStream(t *testing.T) {
	a := encodeJPEG(t, testPicture(32, 24, 1))
	b := encodeJPEG(t, testPicture(32, 24, 3))
	bad := a[:len(a)/2]
	bare := stripDHT(t, b) // webcams that omit the Huffman tables
	tests := []struct {
		name          string
		header, body  string
		contentLength bool
	}{
		{"rfc boundary with length", "frame", "--frame", true},
		{"rfc boundary without length", "frame", "--frame", false},
		{"camera style double dash", "--myboundary", "--myboundary", true},
		{"quoted-style dash boundary done right", "--myboundary", "----myboundary", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &mjpegHandler{parts: [][]byte{a, bad, b, bare}, headerBound: tt.header, bodyBound: tt.body, contentLength: tt.contentLength}
			srv := httptest.NewServer(h)
			defer srv.Close()
			s, err := Open(context.Background(), srv.URL+"/video", WithLogger(quietLogger()), WithBackoff(5*time.Millisecond, 20*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// After the four parts the server ends the response; the
			// source reconnects and the stream starts over.
			got := readSeq(t, s, 6)
			if want := []int{1, 0, 3, 3, 1, 0}; !equalInts(got, want) {
				t.Fatalf("read %v, want %v", got, want)
			}
			st := s.Stats()
			if st.Frames != 4 || st.Corrupt != 2 || st.Reconnects != 1 || !st.Up {
				t.Fatalf("Stats = %+v", st)
			}
			if n := h.requests.Load(); n != 2 {
				t.Fatalf("%d requests, want 2", n)
			}
		})
	}
}

func TestMJPEGServerGone(t *testing.T) {
	a := encodeJPEG(t, testPicture(32, 24, 1))
	h := &mjpegHandler{parts: [][]byte{a}, headerBound: "b", bodyBound: "--b", contentLength: true, hold: make(chan struct{})}
	srv := httptest.NewServer(h)
	var logs logBuffer
	s, err := Open(context.Background(), srv.URL, WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := readSeq(t, s, 1); got[0] != 1 {
		t.Fatalf("first frame: %v", got)
	}

	// The server goes away for good: Next keeps reconnecting until ctx ends.
	close(h.hold)
	srv.CloseClientConnections()
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next while server gone: %v, want deadline exceeded", err)
	}
	st := s.Stats()
	if st.Up || st.Down < 50*time.Millisecond || st.Reconnects != 0 {
		t.Fatalf("Stats while down = %+v", st)
	}
	log := logs.String()
	for _, want := range []string{"camera lost", "camera reconnect failed"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if d1, d2 := st.Down, s.Stats().Down; d2 < d1 {
		t.Fatalf("Down went back from %v to %v", d1, d2)
	}

	// Close while Next is blocked reconnecting returns promptly.
	done := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		done <- err
	}()
	time.Sleep(30 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, fs.ErrClosed) {
			t.Fatalf("Next after Close: %v, want fs.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Next did not return after Close")
	}
	if st := s.Stats(); st.Up {
		t.Fatalf("Up after Close: %+v", st)
	}
}

func TestMJPEGStall(t *testing.T) {
	a := encodeJPEG(t, testPicture(32, 24, 1))
	h := &mjpegHandler{parts: [][]byte{a}, headerBound: "b", bodyBound: "--b", contentLength: true, hold: make(chan struct{})}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer close(h.hold)
	o, _ := buildOptions([]Option{WithLogger(quietLogger()), WithBackoff(5*time.Millisecond, 10*time.Millisecond)})
	client := srv.Client()
	dial := func(call, life context.Context) (session, error) {
		return dialHTTP(call, life, client, srv.URL, "test", o, 100*time.Millisecond)
	}
	s, err := newLiveSource(context.Background(), "test", dial, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The connection stays open but sends nothing after the first part:
	// the watchdog drops it and the source reconnects, getting the part again.
	if got := readSeq(t, s, 2); !equalInts(got, []int{1, 1}) {
		t.Fatalf("read %v", got)
	}
	if st := s.Stats(); st.Reconnects != 1 {
		t.Fatalf("Stats = %+v, want a reconnect after the stall", st)
	}
}

func TestSnapshotURL(t *testing.T) {
	a := encodeJPEG(t, testPicture(32, 24, 1))
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		if n.Add(1) == 3 {
			w.Write(a[:100]) // a bad snapshot
			return
		}
		w.Write(a)
	}))
	defer srv.Close()
	s, err := Open(context.Background(), srv.URL+"/snapshot.jpg", WithFPS(50), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	if got := readSeq(t, s, 4); !equalInts(got, []int{1, 1, 0, 1}) {
		t.Fatalf("read %v", got)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("4 snapshots at 50 fps in %v", d)
	}
	if got := n.Load(); got != 4 {
		t.Fatalf("%d requests, want 4", got)
	}
}

func TestHTTPOpenErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		case "/html":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html></html>")
		case "/noboundary":
			w.Header().Set("Content-Type", "multipart/x-mixed-replace")
		}
	}))
	defer srv.Close()
	tests := []struct{ path, want string }{
		{"/missing", "404"},
		{"/html", "text/html"},
		{"/noboundary", "boundary"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			s, err := Open(context.Background(), srv.URL+tt.path, WithLogger(quietLogger()))
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	// Nothing listening.
	srv.Close()
	if _, err := Open(context.Background(), srv.URL, WithLogger(quietLogger())); err == nil {
		t.Fatal("no error for a closed server")
	}
	// Credentials stay out of errors and logs.
	if _, err := Open(context.Background(), "http://user:secret@127.0.0.1:1/x", WithLogger(quietLogger())); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %v shows the password", err)
	}
}
