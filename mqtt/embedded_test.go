package mqtt

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStartEmbeddedAddressPolicy(t *testing.T) {
	tests := []struct {
		addr string
		opts []EmbeddedOption
		want string // error substring, "" = starts
	}{
		{"127.0.0.1:0", nil, ""},
		{"[::1]:0", nil, ""},
		{"localhost:0", nil, ""},
		{"0.0.0.0:0", nil, "not a loopback address"},
		{":0", nil, "not a loopback address"},
		{"0.0.0.0:0", []EmbeddedOption{WithRemoteCredentials("edge", "")}, "not a loopback address"},
		{"0.0.0.0:0", []EmbeddedOption{WithRemoteCredentials("edge", "s3cret")}, ""},
		{"no-port", nil, "missing port"},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			if tc.addr == "[::1]:0" {
				if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
					t.Skip("no IPv6 loopback")
				} else {
					l.Close()
				}
			}
			opts := append([]EmbeddedOption{WithEmbeddedLogger(testLogger(t))}, tc.opts...)
			e, err := StartEmbedded(context.Background(), tc.addr, opts...)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					if e != nil {
						e.Close()
					}
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if strings.HasSuffix(e.Addr(), ":0") || !strings.HasPrefix(e.URL(), "tcp://") {
				t.Fatalf("Addr %q URL %q", e.Addr(), e.URL())
			}
		})
	}
}

func TestLoopbackAuth(t *testing.T) {
	open := &loopbackAuth{}
	creds := &loopbackAuth{user: "edge", password: "s3cret"}
	tests := []struct {
		name       string
		h          *loopbackAuth
		remote     string
		user, pass string
		want       bool
	}{
		{"loopback v4", open, "127.0.0.1:5000", "", "", true},
		{"loopback v6", open, "[::1]:5000", "", "", true},
		{"mapped loopback", open, "[::ffff:127.0.0.1]:5000", "", "", true},
		{"remote without creds configured", open, "192.168.1.20:5000", "edge", "s3cret", false},
		{"remote right creds", creds, "192.168.1.20:5000", "edge", "s3cret", true},
		{"remote wrong password", creds, "192.168.1.20:5000", "edge", "nope", false},
		{"remote anonymous", creds, "192.168.1.20:5000", "", "", false},
		{"unparsable remote", open, "garbage", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.allow(tc.remote, []byte(tc.user), []byte(tc.pass)); got != tc.want {
				t.Fatalf("allow = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEmbeddedStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	e, err := StartEmbedded(ctx, "127.0.0.1:0", WithEmbeddedLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	// No connection before cancelling: mochi-mqtt v2.7.9 races when Close
	// overlaps a connection being set up.
	cancel()
	select {
	case <-e.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("embedded broker not stopped 3s after ctx was cancelled")
	}
	if c, err := net.DialTimeout("tcp", e.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("embedded broker still accepting after ctx was cancelled")
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close after ctx cancel: %v", err)
	}
}

// Subscribe drops redelivered windows, skips junk, and feeds a Board.
func TestSubscribeDedupe(t *testing.T) {
	t.Parallel()
	e, err := StartEmbedded(context.Background(), "127.0.0.1:0", WithEmbeddedLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })

	var (
		mu     sync.Mutex
		topics []string
		board  Board
	)
	got := make(chan uint64, 16)
	subscribed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Subscribe(ctx, e.URL(), "edge", func(topic string, s Stats) {
			mu.Lock()
			topics = append(topics, topic)
			mu.Unlock()
			board.Update(s)
			got <- s.Window
		}, WithSubscribeLogger(testLogger(t)), WithOnSubscribed(func() { subscribed <- struct{}{} }))
	}()
	waitSignal(t, subscribed, "subscription")

	pub := collect(t, e.URL(), "unused/topic")
	send := func(dev string, w uint64) {
		s := sampleStats(int(w))
		s.Schema, s.Department, s.Device, s.Window = SchemaVersion, "assembly", dev, w
		b, _ := json.Marshal(s)
		pub.publish(t, "edge/assembly/"+dev+"/stats", false, string(b))
	}
	send("cam-1", 1)
	send("cam-1", 1) // duplicate
	pub.publish(t, "edge/assembly/cam-1/stats", false, "not json")
	send("cam-2", 1)
	send("cam-1", 2)
	pub.publish(t, "edge/assembly/cam-1/status", false, "online") // not a stats topic

	var windows []uint64
	for len(windows) < 3 {
		select {
		case w := <-got:
			windows = append(windows, w)
		case <-time.After(5 * time.Second):
			t.Fatalf("got windows %v, want 3", windows)
		}
	}
	select {
	case w := <-got:
		t.Fatalf("unexpected extra window %d (duplicate not dropped)", w)
	case <-time.After(200 * time.Millisecond):
	}
	mu.Lock()
	if len(topics) != 3 || topics[0] != "edge/assembly/cam-1/stats" {
		t.Errorf("topics %v", topics)
	}
	mu.Unlock()
	if s := board.Summaries(); len(s) != 1 || len(s[0].Devices) != 2 || s[0].Devices[0].Window != 2 {
		t.Errorf("board: %+v", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Subscribe returned %v after cancel", err)
	}
}

func TestSubscribeErrors(t *testing.T) {
	ctx := ctxT(t, 5*time.Second)
	h := func(string, Stats) {}
	if err := Subscribe(ctx, "tcp://127.0.0.1:1", "edge", h, WithSubscribeLogger(testLogger(t))); err == nil || !strings.Contains(err.Error(), "connect to") {
		t.Errorf("unreachable broker: %v", err)
	}
	if err := Subscribe(ctx, "tcp://127.0.0.1:1", "a/b", h); err == nil || !strings.Contains(err.Error(), "invalid prefix") {
		t.Errorf("bad prefix: %v", err)
	}
	if err := Subscribe(ctx, "http://x", "edge", h); err == nil || !strings.Contains(err.Error(), "scheme") {
		t.Errorf("bad url: %v", err)
	}
	if err := Subscribe(ctx, "tcp://x", "edge", nil); err == nil {
		t.Error("nil handler accepted")
	}
	if err := Subscribe(ctx, "mqtts://127.0.0.1:1", "edge", h, WithTLS(TLSConfig{CAFile: "/nonexistent/ca.pem"})); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Errorf("missing CA: %v", err)
	}
}
