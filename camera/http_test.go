package camera

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-sensor/edge/internal/proctest"
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
	var logs proctest.SyncBuffer
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
	// Malformed URLs fail at once, without showing the password.
	for _, u := range []string{"http://user:secret@/x", "http://user:secret@[::1/x", "rtsp:///stream"} {
		if _, err := Open(context.Background(), u, WithLogger(quietLogger())); err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("Open(%q) = %v, want a malformed-URL error without the password", u, err)
		}
	}
}

// TestHTTPWaitsAtStart: a camera that is not reachable yet (it boots after
// this device) is waited for: Open succeeds with the source down, saying
// why, and the first frame comes once the camera is there.
func TestHTTPWaitsAtStart(t *testing.T) {
	a := encodeJPEG(t, testPicture(32, 24, 1))
	h := &mjpegHandler{parts: [][]byte{a}, headerBound: "b", bodyBound: "--b", contentLength: true, hold: make(chan struct{})}
	defer close(h.hold)
	srv := httptest.NewUnstartedServer(h) // bound, not accepting yet: connection refused
	addr := srv.Listener.Addr().String()
	srv.Listener.Close()
	var logs proctest.SyncBuffer
	s, err := Open(context.Background(), "http://user:secret@"+addr+"/video",
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatalf("Open of an unreachable camera: %v, want it waited for", err)
	}
	defer s.Close()
	st := s.Stats()
	if st.Up || !strings.Contains(st.Err, "refused") {
		t.Fatalf("Stats before the camera is up = %+v, want down with the reason", st)
	}
	if !strings.Contains(logs.String(), "camera not reachable; waiting for it") {
		t.Errorf("no log line says the camera is waited for:\n%s", logs.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next while the camera is away: %v", err)
	}
	cancel()

	// The camera comes up on the same address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("address taken meanwhile: %v", err)
	}
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	if got := readSeq(t, s, 1); got[0] != 1 {
		t.Fatalf("first frame %v", got)
	}
	st = s.Stats()
	if !st.Up || st.Err != "" || st.Reconnects != 1 || st.Down < 50*time.Millisecond {
		t.Fatalf("Stats after the camera came = %+v, want up, one reconnect, the wait counted as down", st)
	}
	if strings.Contains(logs.String(), "secret") {
		t.Errorf("the password is logged:\n%s", logs.String())
	}
}

// TestMJPEGStallCountsAsDown: a camera that sends its headers and then
// nothing is down from its last frame, and stays down while it keeps
// answering with headers and nothing more.
func TestMJPEGStallCountsAsDown(t *testing.T) {
	a := encodeJPEG(t, testPicture(32, 24, 1))
	var silent atomic.Bool
	hold := make(chan struct{})
	defer close(hold)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=b")
		if !silent.Load() {
			fmt.Fprintf(w, "--b\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(a))
			w.Write(a)
		}
		w.(http.Flusher).Flush()
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	o, _ := buildOptions([]Option{WithLogger(quietLogger()), WithBackoff(5*time.Millisecond, 10*time.Millisecond)})
	client := srv.Client()
	const stall = 50 * time.Millisecond
	dial := func(call, life context.Context) (session, error) {
		return dialHTTP(call, life, client, srv.URL, "test", o, stall)
	}
	s, err := newLiveSource(context.Background(), "test", dial, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	readSeq(t, s, 1)
	silent.Store(true)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*stall)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on a silent camera: %v", err)
	}
	waited := time.Since(start)
	st := s.Stats()
	// Down from the last frame: at least the whole wait. Before, each
	// reconnection that got headers counted the camera back up.
	if st.Up || st.Down < waited || st.Reconnects != 0 {
		t.Fatalf("Stats after %v of a silent camera = %+v, want down all along, no reconnect", waited, st)
	}
	if !strings.Contains(st.Err, "no frame for") {
		t.Errorf("Err = %q, want the stall", st.Err)
	}
}
