package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"io"
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

// connectPacket is an MQTT 3.1.1 CONNECT with a clean session, keepalive 60 s
// and client ID id.
func connectPacket(id string) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, byte(len(id))}
	body = append(body, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// dialEmbedded opens a raw TCP connection to e with a read deadline.
func dialEmbedded(t *testing.T, e *Embedded) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return c
}

// connack sends CONNECT as id on c and returns the CONNACK return code.
func connack(t *testing.T, c net.Conn, id string) byte {
	t.Helper()
	if _, err := c.Write(connectPacket(id)); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatalf("%s: reading CONNACK: %v", id, err)
	}
	if ack[0] != 0x20 || ack[1] != 2 {
		t.Fatalf("%s: got % x, want a CONNACK", id, ack)
	}
	return ack[3]
}

// closedByBroker reports whether the broker closed c (EOF or reset) before
// c's read deadline.
func closedByBroker(c net.Conn) (bool, error) {
	_, err := c.Read(make([]byte, 64))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, err
	}
	return err != nil, err
}

func TestEmbeddedLimits(t *testing.T) {
	e, err := StartEmbedded(context.Background(), "127.0.0.1:0", WithEmbeddedLogger(testLogger(t)),
		WithEmbeddedLimits(2, 300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	t.Run("clients beyond the cap are refused", func(t *testing.T) {
		a, b := dialEmbedded(t, e), dialEmbedded(t, e)
		if rc := connack(t, a, "a"); rc != 0 {
			t.Fatalf("first client: return code %d, want 0", rc)
		}
		if rc := connack(t, b, "b"); rc != 0 {
			t.Fatalf("second client: return code %d, want 0", rc)
		}
		if rc := connack(t, dialEmbedded(t, e), "c"); rc != 3 {
			t.Fatalf("third client: return code %d, want 3 (server unavailable)", rc)
		}
		a.Close()
		// The slot frees once the broker has seen a go; poll for it.
		deadline := time.Now().Add(3 * time.Second)
		for rc := byte(3); rc != 0; {
			if time.Now().After(deadline) {
				t.Fatal("a slot did not free after a client left")
			}
			rc = connack(t, dialEmbedded(t, e), "d")
			if rc != 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})

	t.Run("a silent connection is closed", func(t *testing.T) {
		c := dialEmbedded(t, e)
		if closed, err := closedByBroker(c); !closed {
			t.Fatalf("connection that sent nothing still open after 5 s (connect timeout 300 ms): %v", err)
		}
	})

	t.Run("an oversized packet is refused unread", func(t *testing.T) {
		// a connect timeout far beyond the read deadline, so that only the size limit can close it
		e, err := StartEmbedded(context.Background(), "127.0.0.1:0", WithEmbeddedLogger(testLogger(t)),
			WithEmbeddedLimits(2, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() }) // after the client's own Cleanup: Close waits for its reader
		c := dialEmbedded(t, e)
		// a CONNECT announcing 2 MiB (remaining length 0x80 0x80 0x80 0x01)
		if _, err := c.Write([]byte{0x10, 0x80, 0x80, 0x80, 0x01}); err != nil {
			t.Fatal(err)
		}
		if closed, err := closedByBroker(c); !closed {
			t.Fatalf("connection announcing a 2 MiB packet still open: %v", err)
		}
	})
}

func TestEmbeddedLimitsValidated(t *testing.T) {
	for _, opt := range []EmbeddedOption{WithEmbeddedLimits(0, time.Second), WithEmbeddedLimits(1, 0)} {
		e, err := StartEmbedded(context.Background(), "127.0.0.1:0", WithEmbeddedLogger(testLogger(t)), opt)
		if err == nil {
			e.Close()
			t.Fatal("StartEmbedded accepted a non-positive limit")
		}
	}
}
