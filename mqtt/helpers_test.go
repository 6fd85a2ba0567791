package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edge-sensor/edge/internal/proctest"
	"github.com/edge-sensor/edge/mqtt/mqtttest"
)

// --- logging ---

// syncBuffer is a goroutine-safe log sink dumped when a test fails.
type syncBuffer = proctest.SyncBuffer

// testLogger logs into a buffer that is printed only if the test fails
// (logging to t directly would panic in goroutines outliving the test).
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	var buf syncBuffer
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() && os.Getenv("MQTT_TEST_LOGS") != "" {
			t.Logf("logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// --- ports and brokers (mqtttest runs the real mosquitto) ---

func freePort(t *testing.T) int { return proctest.FreePort(t) }

func waitListening(t *testing.T, addr string, timeout time.Duration) {
	proctest.WaitListening(t, addr, timeout)
}

func mosquittoPath(t *testing.T) string { return mqtttest.MosquittoPath(t) }

// mosquitto wraps mqtttest.Mosquitto with the lower-case names the tests use.
type mosquitto struct{ *mqtttest.Mosquitto }

func startMosquitto(t *testing.T, extraConf ...string) *mosquitto {
	t.Helper()
	return &mosquitto{mqtttest.StartMosquitto(t, extraConf...)}
}

func (m *mosquitto) addr() string { return m.Addr() }
func (m *mosquitto) url() string  { return m.URL() }
func (m *mosquitto) start()       { m.Start() }
func (m *mosquitto) kill()        { m.Kill() }

// --- a TCP proxy that can refuse, cut and stall connections ---

type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	stall  bool
	conns  map[net.Conn]struct{}
}

func startProxy(t *testing.T, addr, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.setDown(true) })
	return p
}

func (p *proxy) url() string { return "tcp://" + p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(u, c, true) // client → broker may be stalled
		go p.pipe(c, u, false)
	}
}

func (p *proxy) pipe(dst, src net.Conn, upstream bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			stalled := upstream && p.stall
			p.mu.Unlock()
			if !stalled {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// setDown refuses new connections and cuts the existing ones (true), or
// accepts again (false).
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// setStall makes the proxy silently discard client→broker bytes.
func (p *proxy) setStall(stall bool) {
	p.mu.Lock()
	p.stall = stall
	p.mu.Unlock()
}

// --- a raw subscriber recording every message ---

type rawMsg struct {
	Topic    string
	Payload  string
	Retained bool
}

type collector struct {
	mu         sync.Mutex
	msgs       []rawMsg
	changed    chan struct{}
	subscribed chan struct{} // one value per (re)subscription
	client     paho.Client
}

func collect(t *testing.T, url string, filters ...string) *collector {
	t.Helper()
	c := &collector{changed: make(chan struct{}, 1), subscribed: make(chan struct{}, 16)}
	handler := func(_ paho.Client, m paho.Message) {
		c.mu.Lock()
		c.msgs = append(c.msgs, rawMsg{m.Topic(), string(m.Payload()), m.Retained()})
		c.mu.Unlock()
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
	subs := map[string]byte{}
	for _, f := range filters {
		subs[f] = 1
	}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("collector-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetConnectTimeout(2 * time.Second).SetOrderMatters(true)
	opts.SetOnConnectHandler(func(cl paho.Client) {
		tok := cl.SubscribeMultiple(subs, handler)
		if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			c.subscribed <- struct{}{}
		}
	})
	c.client = paho.NewClient(opts)
	if tok := c.client.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("collector connect to %s: %v", url, tok.Error())
	}
	select {
	case <-c.subscribed:
	case <-time.After(5 * time.Second):
		t.Fatal("collector did not subscribe")
	}
	t.Cleanup(func() { c.client.Disconnect(0) })
	return c
}

func (c *collector) snapshot() []rawMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]rawMsg(nil), c.msgs...)
}

// wait waits until cond holds for the messages on topics for which match is true.
func (c *collector) wait(t *testing.T, timeout time.Duration, what string, cond func([]rawMsg) bool) []rawMsg {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		msgs := c.snapshot()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-c.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; got %d messages: %v", timeout, what, len(msgs), summarize(msgs))
		}
	}
}

func (c *collector) publish(t *testing.T, topic string, retained bool, payload string) {
	t.Helper()
	if tok := c.client.Publish(topic, 1, retained, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func summarize(msgs []rawMsg) string {
	var b bytes.Buffer
	for i, m := range msgs {
		if i == 30 {
			fmt.Fprintf(&b, " …")
			break
		}
		p := m.Payload
		if len(p) > 40 {
			p = p[:40] + "…"
		}
		fmt.Fprintf(&b, "\n  %s retained=%v %q", m.Topic, m.Retained, p)
	}
	return b.String()
}

func filterTopic(msgs []rawMsg, topic string) []rawMsg {
	var out []rawMsg
	for _, m := range msgs {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// retainedStatus connects a fresh client and returns the retained payload of topic.
func retainedStatus(t *testing.T, url, topic string) string {
	t.Helper()
	c := collect(t, url, topic)
	msgs := c.wait(t, 3*time.Second, "retained "+topic, func(m []rawMsg) bool { return len(m) > 0 })
	if !msgs[0].Retained {
		t.Fatalf("%s: first message is not retained: %+v", topic, msgs[0])
	}
	return msgs[0].Payload
}

// --- fixtures ---

func testConfig(t *testing.T, url string) Config {
	t.Helper()
	return Config{
		BrokerURL:            url,
		Department:           "assembly",
		Device:               "cam-1",
		StateDir:             t.TempDir(),
		KeepAlive:            5 * time.Second,
		ConnectTimeout:       2 * time.Second,
		ConnectRetryInterval: 100 * time.Millisecond,
		MaxReconnectInterval: 500 * time.Millisecond,
		AckTimeout:           3 * time.Second,
		Logger:               testLogger(t),
	}
}

func newPublisher(t *testing.T, cfg Config) *Publisher {
	t.Helper()
	p, err := NewPublisher(cfg)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

func waitConnected(t *testing.T, p *Publisher) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !p.Connected() {
		if time.Now().After(deadline) {
			t.Fatalf("publisher not connected after 5s: %+v", p.BrokerState())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sampleStats(i int) Stats {
	start := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	return Stats{
		Start: start, End: start.Add(time.Minute),
		PeopleNow: 3, PeopleSeen: 5, Unclassified: 1, DwellSecondsMean: 12.5,
		Emotion: &Breakdown{
			Counts: map[string]int{"happy": 2, "neutral": 2},
			Mass:   map[string]float64{"happy": 0.41, "neutral": 0.39, "sad": 0.2},
		},
		Withheld:          []string{"age"},
		Frames:            Frames{Processed: 900, Dropped: 3},
		LatencyMS:         Latencies{Detect: Latency{Mean: 2.1, P95: 3}, ClassifyPerFace: Latency{Mean: 0.8, P95: 1.2}},
		SourceDownSeconds: 0,
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
