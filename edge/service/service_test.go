package service

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// fakeManager is the receiving end of NOTIFY_SOCKET: a unixgram socket in a
// temporary directory whose datagrams are delivered on msgs.
type fakeManager struct {
	msgs chan string
}

func newFakeManager(t *testing.T) *fakeManager {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	if len(path) >= 100 { // sockaddr_un has room for 107 bytes
		dir, err := os.MkdirTemp("", "sd")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		path = filepath.Join(dir, "notify")
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	m := &fakeManager{msgs: make(chan string, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			m.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	return m
}

// next returns the next message, failing the test if none arrives in a
// generous time.
func (m *fakeManager) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-m.msgs:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no notification received within 5s")
		return ""
	}
}

// count drains the messages that arrive during d and counts those equal to want;
// any other message fails the test.
func (m *fakeManager) count(t *testing.T, d time.Duration, want string) int {
	t.Helper()
	n := 0
	deadline := time.After(d)
	for {
		select {
		case s := <-m.msgs:
			if s != want {
				t.Fatalf("unexpected notification %q while counting %q", s, want)
			}
			n++
		case <-deadline:
			return n
		}
	}
}

func TestNotifications(t *testing.T) {
	tests := []struct {
		name string
		call func(*Notifier) error
		want string
	}{
		{"ready", (*Notifier).Ready, "READY=1"},
		{"status", func(n *Notifier) error { return n.Status(StatusText(12.34, 2, "connected")) }, "STATUS=12.3 fps, 2 faces, broker connected"},
		{"status one line", func(n *Notifier) error { return n.Status("a\nb\rc") }, "STATUS=a b c"},
		{"stopping", (*Notifier).Stopping, "STOPPING=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newFakeManager(t)
			n := New()
			if !n.Enabled() {
				t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
			}
			if err := tt.call(n); err != nil {
				t.Fatal(err)
			}
			if got := m.next(t); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestZeroNotifier(t *testing.T) {
	m := newFakeManager(t)
	var n Notifier
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	if got := m.next(t); got != "READY=1" {
		t.Errorf("got %q", got)
	}
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", "")
	n := New()
	if n.Enabled() {
		t.Error("Enabled() = true without NOTIFY_SOCKET")
	}
	for name, f := range map[string]func() error{
		"Ready":    n.Ready,
		"Status":   func() error { return n.Status("x") },
		"Stopping": n.Stopping,
	} {
		if err := f(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	assertReturnsPromptly(t, context.Background(), n, func() uint64 { return 0 }, false)
}

func TestSendError(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing"))
	err := New().Ready()
	if err == nil {
		t.Fatal("Ready to a missing socket: no error")
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("error %v does not wrap the *net.OpError", err)
	}
}

func TestWatchDisabled(t *testing.T) {
	counter := func() uint64 { return 0 }
	tests := []struct {
		name     string
		usec     string
		pid      string
		progress func() uint64
		wantErr  bool
	}{
		{"no WATCHDOG_USEC", "", "", counter, false},
		{"other WATCHDOG_PID", "200000", strconv.Itoa(os.Getpid() + 1), counter, false},
		{"bad WATCHDOG_USEC", "soon", "", counter, true},
		{"zero WATCHDOG_USEC", "0", "", counter, true},
		{"bad WATCHDOG_PID", "200000", "me", counter, true},
		{"nil progress", "200000", "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newFakeManager(t)
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			assertReturnsPromptly(t, context.Background(), New(), tt.progress, tt.wantErr)
			if got := m.count(t, 300*time.Millisecond, "WATCHDOG=1"); got != 0 {
				t.Errorf("%d pings from a disabled watchdog", got)
			}
		})
	}
}

func assertReturnsPromptly(t *testing.T, ctx context.Context, n *Notifier, progress func() uint64, wantErr bool) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- n.Watch(ctx, progress) }()
	select {
	case err := <-done:
		if (err != nil) != wantErr {
			t.Errorf("Watch error = %v, want error: %v", err, wantErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return")
	}
}

// TestWatchFollowsProgress runs the watchdog with WATCHDOG_USEC=200ms (a ping
// check every 100ms) and counts pings; it asserts on counts only, with wide
// margins, never on exact timing.
func TestWatchFollowsProgress(t *testing.T) {
	for _, pid := range []string{"", "self"} {
		name := "WATCHDOG_PID unset"
		if pid == "self" {
			name = "WATCHDOG_PID is us"
			pid = strconv.Itoa(os.Getpid())
		}
		t.Run(name, func(t *testing.T) {
			m := newFakeManager(t)
			t.Setenv("WATCHDOG_USEC", "200000")
			t.Setenv("WATCHDOG_PID", pid)

			// Each call while running counts one more processed frame.
			var frames atomic.Uint64
			var running atomic.Bool
			running.Store(true)
			progress := func() uint64 {
				if running.Load() {
					return frames.Add(1)
				}
				return frames.Load()
			}

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- New().Watch(ctx, progress) }()

			// Frames advance: about 10 pings a second are due; ask for 3.
			if got := m.count(t, time.Second, "WATCHDOG=1"); got < 3 {
				t.Fatalf("%d pings in 1s while frames advance, want >= 3", got)
			}

			// The source stalls: after a tick to settle, no more pings.
			running.Store(false)
			m.count(t, 300*time.Millisecond, "WATCHDOG=1")
			if got := m.count(t, time.Second, "WATCHDOG=1"); got != 0 {
				t.Fatalf("%d pings in 1s while stalled, want 0", got)
			}

			// Frames resume: pings resume.
			running.Store(true)
			if got := m.next(t); got != "WATCHDOG=1" {
				t.Fatalf("got %q after resuming, want WATCHDOG=1", got)
			}

			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Watch: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Watch did not return after cancel")
			}
		})
	}
}

func TestStatusText(t *testing.T) {
	tests := []struct {
		fps    float64
		faces  int
		broker string
		want   string
	}{
		{0, 0, "connecting", "0.0 fps, 0 faces, broker connecting"},
		{9.96, 1, "connected", "10.0 fps, 1 face, broker connected"},
		{15, 3, "down (42 queued)", "15.0 fps, 3 faces, broker down (42 queued)"},
	}
	for _, tt := range tests {
		if got := StatusText(tt.fps, tt.faces, tt.broker); got != tt.want {
			t.Errorf("StatusText(%v, %d, %q) = %q, want %q", tt.fps, tt.faces, tt.broker, got, tt.want)
		}
	}
}
