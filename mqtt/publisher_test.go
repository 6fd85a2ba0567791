package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// brokerKinds are the real brokers every end-to-end test runs against.
var brokerKinds = []struct {
	name  string
	start func(t *testing.T) string // returns the broker address host:port
}{
	{"mosquitto", func(t *testing.T) string { return startMosquitto(t).addr() }},
	{"embedded", func(t *testing.T) string {
		e, err := StartEmbedded(context.Background(), "127.0.0.1:0", WithEmbeddedLogger(testLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		return e.Addr()
	}},
}

func TestPublishReceiveAndStatus(t *testing.T) {
	for _, bk := range brokerKinds {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			url := "tcp://" + bk.start(t)
			cfg := testConfig(t, url)
			topics, _ := NewTopics("edge", cfg.Department, cfg.Device)
			c := collect(t, url, "edge/#")
			p := newPublisher(t, cfg)
			waitConnected(t, p)

			c.wait(t, 5*time.Second, "online status", func(m []rawMsg) bool {
				s := filterTopic(m, topics.Status)
				return len(s) > 0 && s[len(s)-1].Payload == "online"
			})
			if got := retainedStatus(t, url, topics.Status); got != "online" {
				t.Fatalf("retained status = %q, want online", got)
			}

			in := sampleStats(0)
			if err := p.Publish(ctxT(t, time.Second), in); err != nil {
				t.Fatal(err)
			}
			msgs := c.wait(t, 5*time.Second, "stats", func(m []rawMsg) bool { return len(filterTopic(m, topics.Stats)) > 0 })
			got := filterTopic(msgs, topics.Stats)[0]
			want := in
			want.Schema, want.Kind, want.Device, want.Department, want.Window = SchemaVersion, KindWindow, "cam-1", "assembly", 1
			wantJSON, _ := json.Marshal(want)
			if got.Payload != string(wantJSON) || got.Retained {
				t.Fatalf("received %q (retained %v)\nwant     %s (not retained)", got.Payload, got.Retained, wantJSON)
			}
			if err := p.Flush(ctxT(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			if p.QueueLen() != 0 {
				t.Fatalf("queue length %d after delivery", p.QueueLen())
			}
			if ents, _ := os.ReadDir(filepath.Join(cfg.StateDir, queueDirName)); len(ents) != 0 {
				t.Fatalf("queue directory not empty after acknowledgement: %d files", len(ents))
			}

			if err := p.PublishDiagnostics(ctxT(t, time.Second), Diagnostics{FPS: 15}); err != nil {
				t.Fatal(err)
			}
			msgs = c.wait(t, 5*time.Second, "diagnostics", func(m []rawMsg) bool { return len(filterTopic(m, topics.Diagnostics)) > 0 })
			var d Diagnostics
			if err := json.Unmarshal([]byte(filterTopic(msgs, topics.Diagnostics)[0].Payload), &d); err != nil {
				t.Fatal(err)
			}
			if d.FPS != 15 || !d.Broker.Connected || d.Device != "cam-1" || d.Schema != SchemaVersion || d.UptimeSeconds <= 0 {
				t.Fatalf("diagnostics = %+v", d)
			}

			if err := p.Close(ctxT(t, 3*time.Second)); err != nil {
				t.Fatalf("Close: %v", err)
			}
			c.wait(t, 5*time.Second, "offline status", func(m []rawMsg) bool {
				s := filterTopic(m, topics.Status)
				return len(s) > 0 && s[len(s)-1].Payload == "offline"
			})
			if got := retainedStatus(t, url, topics.Status); got != "offline" {
				t.Fatalf("retained status after Close = %q, want offline", got)
			}
			if err := p.Publish(context.Background(), sampleStats(1)); !errors.Is(err, ErrClosed) {
				t.Fatalf("Publish after Close: %v, want ErrClosed", err)
			}
		})
	}
}

// An abrupt loss of the connection makes the broker publish the retained
// last will "offline"; the reconnect announces "online" again.
func TestLastWillOnAbruptDisconnect(t *testing.T) {
	skipUnderRace(t)
	for _, bk := range brokerKinds {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			addr := bk.start(t)
			px := startProxy(t, "127.0.0.1:0", addr)
			cfg := testConfig(t, px.url())
			topics, _ := NewTopics("edge", cfg.Department, cfg.Device)
			c := collect(t, "tcp://"+addr, topics.Status)
			p := newPublisher(t, cfg)
			waitConnected(t, p)
			c.wait(t, 5*time.Second, "online", func(m []rawMsg) bool { return len(m) > 0 && m[len(m)-1].Payload == "online" })

			px.setDown(true) // cut the TCP connection without DISCONNECT
			c.wait(t, 5*time.Second, "last will offline", func(m []rawMsg) bool { return m[len(m)-1].Payload == "offline" })
			if got := retainedStatus(t, "tcp://"+addr, topics.Status); got != "offline" {
				t.Fatalf("retained status after abrupt disconnect = %q, want offline", got)
			}

			px.setDown(false)
			c.wait(t, 10*time.Second, "online after reconnect", func(m []rawMsg) bool { return m[len(m)-1].Payload == "online" })
			if st := p.BrokerState(); st.ConnectionsLost < 1 || st.LastError == "" {
				t.Fatalf("broker state after a lost connection: %+v", st)
			}
		})
	}
}

// A broker that is down at start delays delivery but does not block Publish;
// once it is reachable every queued window arrives, in order.
func TestBrokerDownAtStart(t *testing.T) {
	for _, bk := range brokerKinds {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			testBrokerDownAtStart(t, bk.start(t))
		})
	}
}

func testBrokerDownAtStart(t *testing.T, brokerAddr string) {
	c := collect(t, "tcp://"+brokerAddr, "edge/+/+/stats")
	port := freePort(t) // nothing listens here yet
	cfg := testConfig(t, fmt.Sprintf("tcp://127.0.0.1:%d", port))
	p := newPublisher(t, cfg)

	start := time.Now()
	for i := range 5 {
		if err := p.Publish(ctxT(t, time.Second), sampleStats(i)); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Publish blocked for %v while the broker was down", d)
	}
	time.Sleep(300 * time.Millisecond) // some failed connection attempts
	if p.Connected() || p.QueueLen() != 5 {
		t.Fatalf("connected=%v queue=%d, want false and 5", p.Connected(), p.QueueLen())
	}
	if st := p.BrokerState(); st.LastError == "" {
		t.Errorf("broker state lacks the connection error: %+v", st)
	}

	startProxy(t, fmt.Sprintf("127.0.0.1:%d", port), brokerAddr) // "the broker comes up"
	msgs := c.wait(t, 10*time.Second, "5 windows", func(m []rawMsg) bool { return len(m) >= 5 })
	if got := windows(t, msgs); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("windows arrived as %v, want 1..5 in order", got)
	}
	if err := p.Flush(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	// With the queue drained the sequence still continues after a restart.
	if err := p.Close(ctxT(t, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	p = newPublisher(t, cfg)
	if p.LastWindow() != 5 || p.QueueLen() != 0 {
		t.Fatalf("after restart with an empty queue: last window %d queue %d, want 5 and 0", p.LastWindow(), p.QueueLen())
	}
}

// The broker is SIGKILLed in the middle of a stream and restarted (without
// persistence): Subscribe delivers every window exactly once and in order.
// On the wire, QoS 1 is at-least-once: the one window in flight when the
// broker died may reach it twice (paho resends it from its store on
// reconnect, and a Publish caught in the teardown also goes out; seen in
// about 1 run in 8), which is why payloads carry a window id to
// deduplicate on (mqtt/README.md). Nothing is skipped or reordered.
func TestBrokerKilledMidStream(t *testing.T) {
	skipUnderRace(t)
	t.Parallel()
	m := startMosquitto(t)
	px := startProxy(t, "127.0.0.1:0", m.addr()) // lets the test hold the publisher back until subscribers are back
	raw := collect(t, m.url(), "edge/+/+/stats")

	var got []uint64
	gotCh := make(chan uint64, 100)
	subscribed := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	subDone := make(chan error, 1)
	go func() {
		subDone <- Subscribe(ctx, m.url(), "edge", func(topic string, s Stats) { gotCh <- s.Window },
			WithSubscribeLogger(testLogger(t)), WithMaxReconnectInterval(200*time.Millisecond),
			WithOnSubscribed(func() { subscribed <- struct{}{} }))
	}()
	t.Cleanup(func() { cancel(); <-subDone })
	waitSignal(t, subscribed, "Subscribe")

	p := newPublisher(t, testConfig(t, px.url()))
	const total = 30
	publish := func(from, to int) {
		for i := from; i <= to; i++ {
			if err := p.Publish(ctxT(t, time.Second), sampleStats(i)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	publish(1, 10)
	raw.wait(t, 10*time.Second, "windows 1-10", func(m []rawMsg) bool { return len(m) >= 10 })

	m.kill()
	publish(11, 20) // queued while the broker is down
	if p.QueueLen() < 10 {
		t.Fatalf("queue length %d during the outage, want >= 10", p.QueueLen())
	}
	px.setDown(true)
	m.start()
	waitSignal(t, raw.subscribed, "raw collector resubscribe")
	waitSignal(t, subscribed, "Subscribe resubscribe")
	px.setDown(false)
	publish(21, total)

	timeout := time.After(15 * time.Second)
	for len(got) < total {
		select {
		case w := <-gotCh:
			got = append(got, w)
		case <-timeout:
			t.Fatalf("Subscribe delivered %d of %d windows: %v", len(got), total, got)
		}
	}
	want := make([]uint64, total)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Subscribe delivered %v, want 1..%d each once in order", got, total)
	}
	rw := windows(t, raw.wait(t, 5*time.Second, "raw", func(m []rawMsg) bool {
		ids := windows(t, m)
		return len(ids) > 0 && ids[len(ids)-1] == total
	}))
	if once := slices.Compact(slices.Clone(rw)); !slices.Equal(once, want) || len(rw)-len(once) > 1 {
		t.Fatalf("raw messages carry windows %v, want 1..%d in order, at most one repeated", rw, total)
	}
	if err := p.Flush(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// A window whose PUBLISH never reached the broker when the connection died
// is resent by paho after reconnecting, and the sender does not send it a
// second time.
func TestInFlightWindowResentOnce(t *testing.T) {
	skipUnderRace(t)
	t.Parallel()
	m := startMosquitto(t)
	px := startProxy(t, "127.0.0.1:0", m.addr())
	raw := collect(t, m.url(), "edge/+/+/stats")
	cfg := testConfig(t, px.url())
	cfg.AckTimeout = 500 * time.Millisecond // fires while disconnected: must not resend
	p := newPublisher(t, cfg)
	waitConnected(t, p)
	if err := p.Publish(ctxT(t, time.Second), sampleStats(1)); err != nil {
		t.Fatal(err)
	}
	raw.wait(t, 5*time.Second, "window 1", func(m []rawMsg) bool { return len(m) == 1 })

	px.setStall(true) // window 2 is written by the client but never reaches the broker
	if err := p.Publish(ctxT(t, time.Second), sampleStats(2)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	px.setDown(true)
	px.setStall(false)
	time.Sleep(cfg.AckTimeout + 300*time.Millisecond)
	px.setDown(false)
	if err := p.Publish(ctxT(t, time.Second), sampleStats(3)); err != nil {
		t.Fatal(err)
	}
	msgs := raw.wait(t, 10*time.Second, "windows 2 and 3", func(m []rawMsg) bool { return len(m) >= 3 })
	if err := p.Flush(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := windows(t, raw.snapshot()); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("windows %v (from %d messages), want 1,2,3 each once", got, len(msgs))
	}
}

// Home Assistant discovery is published retained on connect and again when
// homeassistant/status says online.
func TestHomeAssistantDiscovery(t *testing.T) {
	t.Parallel()
	m := startMosquitto(t)
	c := collect(t, m.url(), "homeassistant/sensor/#")
	cfg := testConfig(t, m.url())
	cfg.SWVersion = "1.2.3"
	cfg.Tasks = []TaskLabels{
		{TaskEmotion, []string{"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}},
		{TaskAge, []string{"0-19", "20-39", "40-59", "60-79", "80+"}},
		{TaskGender, []string{"female", "male"}},
	}
	const n = 2 + 7 + 5 + 2
	p := newPublisher(t, cfg)
	msgs := c.wait(t, 5*time.Second, "discovery configs", func(m []rawMsg) bool { return len(m) >= n })
	time.Sleep(100 * time.Millisecond)
	if got := len(c.snapshot()); got != n {
		t.Fatalf("%d discovery messages on connect, want %d", got, n)
	}
	byTopic := map[string]map[string]any{}
	for _, msg := range msgs {
		var v map[string]any
		if err := json.Unmarshal([]byte(msg.Payload), &v); err != nil {
			t.Fatalf("%s: %v", msg.Topic, err)
		}
		byTopic[msg.Topic] = v
	}
	topics := p.Topics()
	for _, tc := range []struct {
		topic, name, tmpl string
	}{
		{"homeassistant/sensor/edge_cam-1/people_now/config", "Headcount", "{{ value_json.people_now }}"},
		{"homeassistant/sensor/edge_cam-1/people_seen/config", "People seen", "{{ value_json.people_seen }}"},
		{"homeassistant/sensor/edge_cam-1/emotion_happy_share/config", "Emotion happy share", "b['mass']['happy']"},
		{"homeassistant/sensor/edge_cam-1/age_20-39_share/config", "Age 20-39 share", "b['mass']['20-39']"},
		{"homeassistant/sensor/edge_cam-1/age_80plus_share/config", "Age 80+ share", "b['mass']['80+']"},
		{"homeassistant/sensor/edge_cam-1/gender_female_share/config", "Gender female share", "b['mass']['female']"},
	} {
		v, ok := byTopic[tc.topic]
		if !ok {
			t.Errorf("no config on %s", tc.topic)
			continue
		}
		if v["name"] != tc.name || v["state_topic"] != topics.Stats || v["availability_topic"] != topics.Status ||
			v["expire_after"] != float64(180) || !strings.Contains(v["value_template"].(string), tc.tmpl) ||
			!strings.HasPrefix(v["unique_id"].(string), "edge_cam-1_") {
			t.Errorf("%s: %v", tc.topic, v)
		}
		dev := v["device"].(map[string]any)
		if dev["model"] != "edge" || dev["sw_version"] != "1.2.3" || dev["name"] != "cam-1" ||
			fmt.Sprint(dev["identifiers"]) != "[edge_cam-1]" {
			t.Errorf("%s: device block %v", tc.topic, dev)
		}
		if strings.Contains(tc.topic, "_share") {
			tmpl := v["value_template"].(string)
			if !strings.Contains(tmpl, "not in value_json.get('withheld', [])") || !strings.Contains(tmpl, "{% else %}None{% endif %}") {
				t.Errorf("%s: share template must render None (unknown) when withheld: %s", tc.topic, tmpl)
			}
		}
	}
	// A subscriber arriving later (Home Assistant starting) gets them retained.
	late := collect(t, m.url(), "homeassistant/sensor/#")
	for _, msg := range late.wait(t, 5*time.Second, "retained discovery configs", func(m []rawMsg) bool { return len(m) >= n }) {
		if !msg.Retained {
			t.Errorf("%s: discovery config not retained", msg.Topic)
		}
	}

	c.publish(t, "homeassistant/status", false, "online")
	c.wait(t, 5*time.Second, "discovery re-sent after homeassistant/status online", func(m []rawMsg) bool { return len(m) >= 2*n })

	c.publish(t, "homeassistant/status", false, "offline") // must not trigger anything
	time.Sleep(300 * time.Millisecond)
	if got := len(c.snapshot()); got != 2*n {
		t.Fatalf("%d discovery messages, want %d", got, 2*n)
	}
}

func TestDiscoveryDisabled(t *testing.T) {
	t.Parallel()
	e, err := StartEmbedded(context.Background(), "127.0.0.1:0", WithEmbeddedLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	c := collect(t, e.URL(), "homeassistant/#", "edge/#")
	cfg := testConfig(t, e.URL())
	cfg.DisableDiscovery = true
	newPublisher(t, cfg)
	c.wait(t, 5*time.Second, "online", func(m []rawMsg) bool { return len(m) > 0 })
	time.Sleep(200 * time.Millisecond)
	for _, m := range c.snapshot() {
		if strings.HasPrefix(m.Topic, "homeassistant/") {
			t.Fatalf("discovery published although disabled: %s", m.Topic)
		}
	}
}

// The queue keeps at most MaxQueue windows and none older than MaxQueueAge;
// the oldest are dropped and counted.
func TestQueueBounds(t *testing.T) {
	t.Parallel()
	unreachable := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))

	t.Run("count", func(t *testing.T) {
		cfg := testConfig(t, unreachable)
		cfg.MaxQueue = 3
		p := newPublisher(t, cfg)
		for i := range 5 {
			if err := p.Publish(ctxT(t, time.Second), sampleStats(i)); err != nil {
				t.Fatal(err)
			}
		}
		if p.QueueLen() != 3 || p.Dropped() != 2 || p.BrokerState().QueueDropped != 2 {
			t.Fatalf("queue %d dropped %d, want 3 and 2", p.QueueLen(), p.Dropped())
		}
		if got := queuedIDs(t, cfg.StateDir); !slices.Equal(got, []uint64{3, 4, 5}) {
			t.Fatalf("queued windows %v, want the newest 3,4,5", got)
		}
	})

	t.Run("age", func(t *testing.T) {
		cfg := testConfig(t, unreachable)
		cfg.MaxQueueAge = time.Hour
		p := newPublisher(t, cfg)
		for i := range 3 {
			if err := p.Publish(ctxT(t, time.Second), sampleStats(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(ctxT(t, time.Second)); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-2 * time.Hour)
		for _, id := range []uint64{1, 2} {
			if err := os.Chtimes(filepath.Join(cfg.StateDir, queueDirName, queueName(id)), old, old); err != nil {
				t.Fatal(err)
			}
		}
		p = newPublisher(t, cfg)
		if p.QueueLen() != 1 || p.Dropped() != 2 {
			t.Fatalf("queue %d dropped %d after reopening with 2 stale windows, want 1 and 2", p.QueueLen(), p.Dropped())
		}
		if got := queuedIDs(t, cfg.StateDir); !slices.Equal(got, []uint64{3}) {
			t.Fatalf("queued windows %v, want 3", got)
		}
	})
}

// Window ids continue across publisher restarts, and queued windows survive.
func TestWindowIDPersists(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t)))
	p := newPublisher(t, cfg)
	for i := range 2 {
		if err := p.Publish(ctxT(t, time.Second), sampleStats(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewPublisher(cfg); err == nil || !strings.Contains(err.Error(), "in use by another publisher") {
		t.Fatalf("second publisher on the same state dir: err = %v", err)
	}
	if err := p.Close(ctxT(t, time.Second)); err != nil {
		t.Fatal(err)
	}

	p = newPublisher(t, cfg)
	if p.LastWindow() != 2 || p.QueueLen() != 2 {
		t.Fatalf("after restart: last window %d queue %d, want 2 and 2", p.LastWindow(), p.QueueLen())
	}
	if err := p.Publish(ctxT(t, time.Second), sampleStats(2)); err != nil {
		t.Fatal(err)
	}
	if p.LastWindow() != 3 {
		t.Fatalf("next window = %d, want 3", p.LastWindow())
	}
	s := sampleStats(3)
	s.Window = 3
	if err := p.Publish(ctxT(t, time.Second), s); !errors.Is(err, ErrWindowOrder) {
		t.Fatalf("repeated window id: err = %v, want ErrWindowOrder", err)
	}
	s.Window = 10
	if err := p.Publish(ctxT(t, time.Second), s); err != nil || p.LastWindow() != 10 {
		t.Fatalf("explicit window 10: err %v, last %d", err, p.LastWindow())
	}
	s.Device = "cam-2"
	s.Window = 0
	if err := p.Publish(ctxT(t, time.Second), s); err == nil || !strings.Contains(err.Error(), `device "cam-2"`) {
		t.Fatalf("stats of another device: err = %v", err)
	}
	bad := sampleStats(4)
	bad.Withheld = []string{TaskEmotion} // breakdown present: must be refused, not published
	if err := p.Publish(ctxT(t, time.Second), bad); err == nil {
		t.Fatal("Publish accepted a breakdown of a withheld task")
	}
	if err := p.Close(ctxT(t, time.Second)); err != nil {
		t.Fatal(err)
	}

	// The counter file alone (queue delivered) and the queue alone (counter
	// lost) both continue the sequence.
	os.Remove(filepath.Join(cfg.StateDir, windowFileName))
	p = newPublisher(t, cfg)
	if p.LastWindow() != 10 {
		t.Fatalf("without the counter file: last window %d, want 10 from the queue", p.LastWindow())
	}
	if err := p.Close(ctxT(t, time.Second)); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(cfg.StateDir, queueDirName))
	if err := writeWindowCounter(cfg.StateDir, 10); err != nil {
		t.Fatal(err)
	}
	p = newPublisher(t, cfg)
	if p.LastWindow() != 10 || p.QueueLen() != 0 {
		t.Fatalf("with an empty queue: last window %d queue %d, want 10 and 0", p.LastWindow(), p.QueueLen())
	}
}

// Long windows have their own id sequence, queue and counter: they neither
// take ids from the short windows nor reset with them, and both survive a
// restart. Delivery puts both kinds on the stats topic.
func TestHourWindowSequence(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t)))
	p := newPublisher(t, cfg)
	hour := func(i int) Stats {
		s := sampleStats(i)
		s.Kind = KindHour
		return s
	}
	for i, s := range []Stats{sampleStats(0), hour(1), sampleStats(2), sampleStats(3), hour(4)} {
		if err := p.Publish(ctxT(t, time.Second), s); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if p.LastWindow() != 3 || p.LastWindowOf(KindHour) != 2 || p.LastWindowOf(KindWindow) != 3 || p.QueueLen() != 5 {
		t.Fatalf("last window %d, last hour %d, queued %d; want 3, 2 and 5", p.LastWindow(), p.LastWindowOf(KindHour), p.QueueLen())
	}
	s := hour(5)
	s.Window = 2
	if err := p.Publish(ctxT(t, time.Second), s); !errors.Is(err, ErrWindowOrder) {
		t.Fatalf("repeated hour window id: err = %v, want ErrWindowOrder", err)
	}
	if err := p.Close(ctxT(t, time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := queuedIDs(t, filepath.Join(cfg.StateDir, hourDirName)); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("queued hour windows %v, want [1 2]", got)
	}

	p = newPublisher(t, cfg)
	if p.LastWindow() != 3 || p.LastWindowOf(KindHour) != 2 {
		t.Fatalf("after restart: last window %d, last hour %d; want 3 and 2", p.LastWindow(), p.LastWindowOf(KindHour))
	}
	if err := p.Publish(ctxT(t, time.Second), hour(6)); err != nil || p.LastWindowOf(KindHour) != 3 {
		t.Fatalf("hour window after restart: err %v, last %d, want 3", err, p.LastWindowOf(KindHour))
	}
	if err := p.Close(ctxT(t, time.Second)); err != nil {
		t.Fatal(err)
	}

	// Delivered, both kinds arrive on the stats topic with their own ids.
	b := startMosquitto(t)
	cfg.BrokerURL = b.url()
	col := collect(t, b.url(), "edge/+/+/stats")
	p = newPublisher(t, cfg)
	got := col.wait(t, 10*time.Second, "6 stats", func(m []rawMsg) bool { return len(m) >= 6 })
	var kinds []string
	for _, m := range got {
		var s Stats
		if err := json.Unmarshal([]byte(m.Payload), &s); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, fmt.Sprintf("%s:%d", s.Kind, s.Window))
	}
	slices.Sort(kinds)
	if want := []string{"hour:1", "hour:2", "hour:3", "window:1", "window:2", "window:3"}; !slices.Equal(kinds, want) {
		t.Fatalf("delivered %v, want %v", kinds, want)
	}
	if err := p.Flush(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// Close returns within its deadline even when the broker never answered.
func TestCloseWithoutBroker(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t)))
	p, err := NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.PublishDiagnostics(ctxT(t, time.Second), Diagnostics{}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("PublishDiagnostics while disconnected: %v, want ErrNotConnected", err)
	}
	start := time.Now()
	if err := p.Close(ctxT(t, 500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	if err := p.Close(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func windows(t *testing.T, msgs []rawMsg) []uint64 {
	t.Helper()
	var ids []uint64
	for _, m := range msgs {
		var s Stats
		if err := json.Unmarshal([]byte(m.Payload), &s); err != nil {
			t.Fatalf("%s: %v", m.Topic, err)
		}
		ids = append(ids, s.Window)
	}
	return ids
}

func queuedIDs(t *testing.T, stateDir string) []uint64 {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(stateDir, queueDirName))
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, e := range ents {
		if id, ok := parseQueueName(e.Name()); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// skipUnderRace skips tests that make paho resume in-flight messages after a
// reconnect: paho.mqtt.golang v1.5.1 has a known data race there
// (https://github.com/eclipse-paho/paho.mqtt.golang/issues/703) that the race
// detector reports although it is not in this package.
func skipUnderRace(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("skipped under -race: paho.mqtt.golang issue #703 (data race in client.resume on reconnect)")
	}
}

func waitSignal(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}
