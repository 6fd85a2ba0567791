package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edge-sensor/edge/mqtt"
	"github.com/edge-sensor/edge/mqtt/mqtttest"
)

// The end-to-end tests run the real edge binary on the shipped sample
// against Debian's mosquitto: camera source, pigo, the three int8 models
// through go-tflite, tracking, aggregation and MQTT, as a user would.

const samplePeople = 6 // distinct people in camera/testdata/people.tar

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// edgeBinary builds the command once per test run.
func edgeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "edge-e2e")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "edge")
		out, err := exec.Command("go", "build", "-o", buildOnce.path, ".").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// statsCollector is a persistent-session QoS 1 subscriber that keeps every
// stats message it receives, duplicates included.
type statsCollector struct {
	mu   sync.Mutex
	msgs []mqtt.Stats
	cli  paho.Client
}

func collectStats(t *testing.T, url string) *statsCollector {
	t.Helper()
	c := &statsCollector{}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID("e2e-collector").SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(200 * time.Millisecond)
	subscribe := func(cl paho.Client) {
		cl.Subscribe("edge/+/+/stats", 1, func(_ paho.Client, m paho.Message) {
			var s mqtt.Stats
			if err := json.Unmarshal(m.Payload(), &s); err != nil {
				t.Errorf("stats payload is not JSON: %v: %s", err, m.Payload())
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, s)
			c.mu.Unlock()
		})
	}
	opts.SetOnConnectHandler(subscribe)
	c.cli = paho.NewClient(opts)
	if tok := c.cli.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("collector connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.cli.Disconnect(100) })
	time.Sleep(200 * time.Millisecond) // let the subscription settle
	return c
}

func (c *statsCollector) snapshot() []mqtt.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

func (c *statsCollector) waitFor(t *testing.T, timeout time.Duration, cond func([]mqtt.Stats) bool) []mqtt.Stats {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := c.snapshot()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v; got %d stats messages", timeout, len(s))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// edgeEnv is a test configuration: the given broker, no HTTP server, its own state dir.
func edgeEnv(t *testing.T, broker string, extra ...string) []string {
	env := []string{
		"EDGE_MQTT_URL=" + broker,
		"EDGE_MODELS_DIR=" + filepath.Join("..", "models"),
		"EDGE_STATE_DIR=" + t.TempDir(),
		"EDGE_PREVIEW_ADDR=",
		"EDGE_DEPARTMENT=e2e",
		"EDGE_DEVICE_ID=cam-1",
		"EDGE_MIN_GROUP=1",
		"EDGE_LONG_WINDOW=0", // tests that want long windows set it (the last value wins)
		"EDGE_LOG_LEVEL=debug",
		"PATH=" + os.Getenv("PATH"),
	}
	return append(env, extra...)
}

func startEdge(t *testing.T, env []string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(edgeBinary(t), "run")
	cmd.Env = env
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("edge run output:\n%s", logs.String())
		}
	})
	return cmd, &logs
}

func waitExit(t *testing.T, cmd *exec.Cmd, timeout time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("edge run: %v", err)
		}
	case <-time.After(timeout):
		cmd.Process.Kill()
		t.Fatalf("edge run did not end within %v", timeout)
	}
}

func TestRunCountsDistinctPeople(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	broker := mqtttest.StartMosquitto(t)
	col := collectStats(t, broker.URL())
	// Unpaced file source: nothing is dropped, and one window holds the whole
	// sequence (the last partial window is published when the source ends).
	cmd, _ := startEdge(t, edgeEnv(t, broker.URL(), "EDGE_SOURCE=../camera/testdata/people.tar",
		"EDGE_FPS=0", "EDGE_PUBLISH_INTERVAL=1h"))
	waitExit(t, cmd, 3*time.Minute)
	got := col.waitFor(t, 10*time.Second, func(s []mqtt.Stats) bool { return len(s) >= 1 })
	if len(got) != 1 {
		t.Fatalf("got %d windows, want 1: %+v", len(got), got)
	}
	s := got[0]
	if s.PeopleSeen != samplePeople {
		t.Errorf("people_seen = %d, want %d (the distinct people in the sample)", s.PeopleSeen, samplePeople)
	}
	if s.Frames.Processed != 120 || s.Frames.Dropped != 0 || s.Frames.Corrupt != 0 {
		t.Errorf("frames = %+v, want 120 processed, none dropped or corrupt", s.Frames)
	}
	for _, task := range []string{"emotion", "age", "gender"} {
		b := s.Breakdown(task)
		if b == nil {
			t.Errorf("%s breakdown missing (withheld %v)", task, s.Withheld)
			continue
		}
		n := 0
		for _, c := range b.Counts {
			n += c
		}
		if n != s.PeopleSeen-s.Unclassified {
			t.Errorf("%s counts %v sum to %d, want people_seen-unclassified = %d", task, b.Counts, n, s.PeopleSeen-s.Unclassified)
		}
	}
	t.Logf("window: people_seen %d, unclassified %d, gender %v, age %v, emotion %v",
		s.PeopleSeen, s.Unclassified, s.Gender.Counts, s.Age.Counts, s.Emotion.Counts)
}

// TestRunLongWindowPublishesWhatShortWindowsWithhold plays the sample in
// real time with 4 s windows and a long window covering the whole run. The
// sample's six people are 2 women and 4 men (TestRunCountsDistinctPeople):
// with EDGE_MIN_GROUP=2 a 4-second window that classified one woman or one
// man withholds gender (measured: 2 of the 3 do), while the long window of
// everyone publishes 2 and 4. (At the default 5 even the long window of six
// people withholds: no split of 6 into nonzero cells of at least 5 exists.)
func TestRunLongWindowPublishesWhatShortWindowsWithhold(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	broker := mqtttest.StartMosquitto(t)
	col := collectStats(t, broker.URL())
	// 24h: a 12-second run crosses a day boundary with a chance of 1 in
	// 7200, against 1 in 300 for an hour (the window would be split in two).
	cmd, _ := startEdge(t, edgeEnv(t, broker.URL(), "EDGE_SOURCE=../camera/testdata/people.tar",
		"EDGE_FPS=10", "EDGE_PUBLISH_INTERVAL=4s", "EDGE_LONG_WINDOW=24h", "EDGE_MIN_GROUP=2"))
	waitExit(t, cmd, 3*time.Minute)
	// The kinds are delivered by separate queues, in either order: wait
	// until the short windows hold as many frames as the long one.
	got := col.waitFor(t, 10*time.Second, func(ss []mqtt.Stats) bool {
		var short, long uint64
		for _, s := range ss {
			if s.Kind == mqtt.KindHour {
				long += s.Frames.Processed
			} else {
				short += s.Frames.Processed
			}
		}
		return long > 0 && short == long
	})
	var short, long []mqtt.Stats
	for _, s := range got {
		switch s.Kind {
		case mqtt.KindWindow:
			short = append(short, s)
		case mqtt.KindHour:
			long = append(long, s)
		default:
			t.Errorf("window %d: kind %q, want %q or %q", s.Window, s.Kind, mqtt.KindWindow, mqtt.KindHour)
		}
	}
	if len(long) != 1 {
		t.Fatalf("%d long windows, want 1 covering the run: %+v", len(long), long)
	}
	l := long[0]
	if l.Window != 1 || l.PeopleSeen != samplePeople || l.Frames.Processed+l.Frames.Dropped != 120 {
		t.Errorf("long window %d: people_seen %d, frames %+v; want id 1, %d people and the sample's 120 frames",
			l.Window, l.PeopleSeen, l.Frames, samplePeople)
	}
	// The labels themselves are checked by the headcount and stable-label
	// tests; here the point is that the long window publishes a breakdown
	// that obeys the rule. The split (2 women, 4 men on a quiet machine) is
	// not asserted: frames a loaded machine drops change which frames each
	// track is classified on (3/3 seen under -race at load 13).
	if l.Gender == nil {
		t.Errorf("long window: gender withheld (%v), want it published", l.Withheld)
	} else {
		sum := 0
		for label, n := range l.Gender.Counts {
			if n != 0 && n < 2 {
				t.Errorf("long window: gender %q has %d people, under EDGE_MIN_GROUP=2", label, n)
			}
			sum += n
		}
		if sum != l.PeopleSeen-l.Unclassified {
			t.Errorf("long window: gender counts %v sum to %d, want the %d classified people", l.Gender.Counts, sum, l.PeopleSeen-l.Unclassified)
		}
	}
	withheld := 0
	for i, s := range short {
		if s.Window != uint64(i+1) {
			t.Errorf("short window ids %d at position %d: the sequences must not mix", s.Window, i)
		}
		if s.Gender == nil {
			withheld++
		}
		t.Logf("short window %d: people_seen %d, gender %v, withheld %v", s.Window, s.PeopleSeen, s.Gender, s.Withheld)
	}
	if withheld == 0 {
		t.Errorf("every short window published gender: the long window showed nothing new")
	}
	t.Logf("long window: people_seen %d, gender %v, age %v, emotion %v, withheld %v; %d of %d short windows withheld gender",
		l.PeopleSeen, l.Gender, l.Age, l.Emotion, l.Withheld, withheld, len(short))
}

// TestRunLabelsStableAcrossWindows plays the part of the sample where four
// people stand and sway, over and over, across several windows: the same
// people must get the same labels in every window.
func TestRunLabelsStableAcrossWindows(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	if err := extractFrames("../camera/testdata/people.tar", dir, 30, 44); err != nil {
		t.Fatal(err)
	}
	broker := mqtttest.StartMosquitto(t)
	col := collectStats(t, broker.URL())
	cmd, _ := startEdge(t, edgeEnv(t, broker.URL(), "EDGE_SOURCE="+dir, "EDGE_LOOP=true",
		"EDGE_FPS=10", "EDGE_PUBLISH_INTERVAL=3s", "EDGE_CLASSIFY_EVERY=1"))
	// The first windows hold the seconds before the tracks are confirmed and
	// their running means settle (a label needs MinClassifications samples):
	// compare the three after them.
	got := col.waitFor(t, 120*time.Second, func(s []mqtt.Stats) bool { return len(s) >= 5 })
	cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, cmd, 20*time.Second)
	ref := got[2]
	for _, s := range got[2:5] {
		if s.PeopleNow != 4 {
			t.Errorf("window %d: people_now = %d, want 4", s.Window, s.PeopleNow)
		}
		for _, task := range []string{"emotion", "age", "gender"} {
			a, b := s.Breakdown(task), ref.Breakdown(task)
			if a == nil || b == nil {
				t.Errorf("window %d: %s breakdown missing (withheld %v)", s.Window, task, s.Withheld)
				continue
			}
			if fmt.Sprint(a.Counts) != fmt.Sprint(b.Counts) {
				t.Errorf("window %d: %s counts %v differ from window %d's %v: a person's label changed", s.Window, task, a.Counts, ref.Window, b.Counts)
			}
		}
	}
}

// TestRunSurvivesBrokerRestart stops the broker mid-run: every window must
// arrive once it is back, none missing, none duplicated.
func TestRunSurvivesBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	broker := mqtttest.StartMosquitto(t, "persistence true", "persistence_location "+t.TempDir()+"/", "autosave_interval 1")
	col := collectStats(t, broker.URL())
	cmd, logs := startEdge(t, edgeEnv(t, broker.URL(), "EDGE_SOURCE=../camera/testdata/people.tar",
		"EDGE_FPS=15", "EDGE_PUBLISH_INTERVAL=1s"))
	col.waitFor(t, 60*time.Second, func(s []mqtt.Stats) bool { return len(s) >= 2 })
	broker.Stop()
	time.Sleep(3 * time.Second) // windows close while the broker is down
	broker.Start()
	waitExit(t, cmd, 2*time.Minute)
	if !strings.Contains(logs.String(), "connect") {
		t.Logf("edge logs mention no reconnection")
	}
	var got []mqtt.Stats
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		got = col.snapshot()
		if len(got) > 0 && int(got[len(got)-1].Window) == len(got) && len(got) >= 6 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every window must arrive. QoS 1 is at-least-once: a window in flight
	// when the broker stops can reach a subscriber twice, and subscribers
	// dedupe on the window id (mqtt/README.md; mqtt.Subscribe does). So a
	// second copy must be the same window, byte for byte, never a different
	// window under a reused id or the same window under a new id (which would
	// show up as more windows than were closed).
	first := map[uint64]string{}
	copies := 0
	var max uint64
	for _, s := range got {
		b, _ := json.Marshal(s)
		if prev, ok := first[s.Window]; ok {
			copies++
			if prev != string(b) {
				t.Errorf("window %d arrived twice with different content:\n%s\n%s", s.Window, prev, b)
			}
			continue
		}
		first[s.Window] = string(b)
		if s.Window > max {
			max = s.Window
		}
	}
	for w := uint64(1); w <= max; w++ {
		if _, ok := first[w]; !ok {
			t.Errorf("window %d never arrived", w)
		}
	}
	if copies > 0 {
		t.Logf("%d QoS 1 redeliveries (same window, same content), removed by the window id", copies)
	}
	if max < 6 {
		t.Errorf("only %d windows for an 8-second run with 1-second windows", max)
	}
	t.Logf("windows 1..%d all arrived across a broker restart", max)
}

// extractFrames copies frames first..last of the sample tar into dir.
func extractFrames(tarPath, dir string, first, last int) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var n int
		if _, err := fmt.Sscanf(h.Name, "frame_%d.jpg", &n); err != nil || n < first || n > last {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, h.Name), b, 0o644); err != nil {
			return err
		}
	}
}
