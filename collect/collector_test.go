package collect

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edge-sensor/edge/collect/pgtest"
	"github.com/edge-sensor/edge/internal/proctest"
	"github.com/edge-sensor/edge/mqtt"
	"github.com/edge-sensor/edge/mqtt/mqtttest"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{BrokerURL: "tcp://127.0.0.1:1883", ClientID: "c1"}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"share group", func(c *Config) { c.ShareGroup = "collectors" }, ""},
		{"no client id", func(c *Config) { c.ClientID = "" }, "client id"},
		{"bad URL", func(c *Config) { c.BrokerURL = "http://x" }, "scheme"},
		{"TLS on tcp", func(c *Config) { c.TLS.CAFile = "ca.pem" }, "not a TLS URL"},
		{"bad share group", func(c *Config) { c.ShareGroup = "a/b" }, "share group"},
		{"bad prefix", func(c *Config) { c.Prefix = "#" }, "prefix"},
		{"bad k", func(c *Config) { c.MinGroup = -1 }, "min group"},
		{"bad batch", func(c *Config) { c.MaxBatch = -1 }, "max batch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
	if f := (Config{ShareGroup: "g"}).Filter(); f != "$share/g/edge/+/+/stats" {
		t.Errorf("filter %q", f)
	}
}

// waitRows waits until edge_windows holds want rows (or fails after timeout).
func waitRows(t *testing.T, s *Store, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := count(t, s.Pool(), "SELECT count(*) FROM edge_windows")
		if n == want {
			return
		}
		if n > want {
			t.Fatalf("%d rows, more than the %d distinct windows published", n, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows after %v, want %d", n, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startCollector(t *testing.T, cfg Config, s *Store) (stop func(), c *Collector) {
	t.Helper()
	c, err := New(cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("collector %s: %v", cfg.ClientID, err)
		}
	}, c
}

// TestCollectorSharedSubscription runs two collectors in one shared
// subscription against Debian's mosquitto and PostgreSQL: every distinct
// window is stored once across replays, redeliveries and one collector
// stopped and restarted while windows arrive; bad messages end in
// edge_raw_messages.
func TestCollectorSharedSubscription(t *testing.T) {
	broker := mqtttest.StartMosquitto(t, "max_queued_messages 100000", "max_inflight_messages 100")
	pg := pgtest.Start(t, pgtest.Options{})
	s, _ := openStore(t, pg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := func(id string) Config {
		return Config{BrokerURL: broker.URL(), ClientID: id, ShareGroup: "collectors", Logger: log, RollupInterval: 50 * time.Millisecond}
	}
	reg := prometheus.NewRegistry()
	ca := cfg("collector-a")
	ca.Registerer = reg
	stopA, a := startCollector(t, ca, s)
	stopB, b1 := startCollector(t, cfg("collector-b"), s)
	var b2 *Collector
	waitSubscribed(t, a)
	waitSubscribed(t, b1)

	sim, err := NewSimulator(SimConfig{Devices: 30, Departments: 3, Interval: 10 * time.Minute, ReplayRate: 0.05, OutageRate: 0.02, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pub, err := NewSimPublisher(ctx, broker.URL(), "", "", mqtt.TLSConfig{}, 3, 200)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	distinct := map[Key]bool{}
	replays := 0
	publish := func(msgs []SimMessage) {
		t.Helper()
		for _, m := range msgs {
			distinct[m.Key] = true
			if m.Replay {
				replays++
			}
		}
		if err := pub.Publish(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
	end := time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)
	for i := range 36 { // six hours of 10-minute windows
		end = end.Add(10 * time.Minute)
		publish(sim.Step(end))
		if i == 12 {
			stopB() // B's share queues in its session meanwhile
		}
		if i == 24 {
			stopB, b2 = startCollector(t, cfg("collector-b"), s)
		}
	}
	publish(sim.Flush())
	// Garbage, a future schema and a payload for another device's topic.
	bad := []SimMessage{
		{Topic: "edge/dept-01/cam-0001/stats", Payload: []byte("not json")},
		{Topic: "edge/dept-01/cam-0001/stats", Payload: []byte(`{"schema":2,"window":1}`)},
		{Topic: "edge/dept-02/cam-0001/stats", Payload: sim.Step(end.Add(10 * time.Minute))[0].Payload},
	}
	if err := pub.Publish(ctx, bad); err != nil {
		t.Fatal(err)
	}
	waitRows(t, s, len(distinct), 60*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for count(t, s.Pool(), "SELECT count(*) FROM edge_raw_messages") < len(bad) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	reasons := map[string]int{}
	rows, err := s.Pool().Query(ctx, "SELECT reason FROM edge_raw_messages")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r string
		_ = rows.Scan(&r)
		reasons[r]++
	}
	if reasons[ReasonUndecodable] != 1 || reasons[ReasonUnknownSchema] != 1 || reasons[ReasonInvalid] != 1 {
		t.Errorf("raw messages by reason %v, want one of each", reasons)
	}
	ac, bc1, bc2 := a.Counts(), b1.Counts(), b2.Counts()
	t.Logf("distinct windows %d, replays %d; collector A %+v, B %+v then %+v", len(distinct), replays, ac, bc1, bc2)
	if replays == 0 || ac.Duplicates+bc1.Duplicates+bc2.Duplicates == 0 {
		t.Error("no replay or duplicate: the test did not exercise idempotency")
	}
	if ac.Inserted == 0 || bc1.Inserted == 0 || bc2.Inserted == 0 {
		t.Error("a collector inserted nothing: the shared subscription did not share")
	}
	if got := ac.Inserted + bc1.Inserted + bc2.Inserted; got != uint64(len(distinct)) {
		t.Errorf("collectors inserted %d rows in all, want %d", got, len(distinct))
	}
	hourRows := count(t, s.Pool(), "SELECT count(*) FROM edge_windows WHERE kind = 'hour'")
	if hourRows != 30*6 {
		t.Errorf("%d hour rows, want %d", hourRows, 30*6)
	}

	// Roll-ups catch up within a few refreshes; the health view lists every device.
	deadline = time.Now().Add(30 * time.Second)
	for count(t, s.Pool(), "SELECT count(*) FROM edge_rollup_dirty") > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := count(t, s.Pool(), "SELECT COALESCE(sum(windows), 0) FROM edge_dept_hourly"); n != 30*36 {
		t.Errorf("hourly roll-ups count %d windows, want %d", n, 30*36)
	}
	if n := count(t, s.Pool(), "SELECT count(*) FROM edge_device_health"); n != 30 {
		t.Errorf("health view lists %d devices, want 30", n)
	}

	srv := httptest.NewServer(NewMux(a, reg))
	defer srv.Close()
	body := get(t, srv.URL+"/metrics")
	for _, m := range []string{"edge_collect_messages_received_total", "edge_collect_rows_inserted_total{kind=\"window\"}",
		"edge_collect_duplicates_total", "edge_collect_batch_seconds_bucket", "edge_collect_broker_connected 1"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if h := get(t, srv.URL+"/healthz"); strings.TrimSpace(h) != "ok" {
		t.Errorf("/healthz = %q", h)
	}
	stopA()
	stopB()
	if h := get(t, srv.URL+"/healthz"); !strings.Contains(h, "not connected") {
		t.Errorf("/healthz after stop = %q, want degraded", h)
	}
}

func waitSubscribed(t *testing.T, c *Collector) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for c.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("collector not subscribed: %v", c.Healthy())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A broker that refuses the collector is visible: /healthz and the metric
// name the cause, and the log says it once, not on every retry.
func TestCollectorBrokerRefusalVisible(t *testing.T) {
	broker := mqtttest.StartSecureMosquitto(t, "collector", "right", mqtttest.NewPKI(t, t.TempDir()))
	var logs proctest.SyncBuffer
	c, err := New(Config{BrokerURL: broker.URL(), ClientID: "c1", Username: "collector", Password: "wrong",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nopWriter{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h := c.Healthy()
		failures := testutil.ToFloat64(c.m.connectFailures.WithLabelValues(mqtt.CauseNotAuthorized))
		if h != nil && strings.Contains(h.Error(), mqtt.CauseNotAuthorized) && failures >= 2 {
			if n := strings.Count(logs.String(), "broker connection failed"); n != 1 {
				t.Fatalf("%v refusals logged %d times, want once:\n%s", failures, n, logs.String())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz %v, %v refusals counted; logs:\n%s", h, failures, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type nopWriter struct{}

func (nopWriter) Write(context.Context, []Window, []Raw) (Result, error) { return Result{}, nil }
func (nopWriter) RefreshRollups(context.Context, int) (int, error)       { return 0, nil }
