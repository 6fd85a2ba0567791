//go:build faults

package main

// Fault tests for the publisher (issue 16, findings 1, 2, 3 and 9): the real
// edge binary against mosquitto with a full state directory, a broker that
// goes away and refuses, and repeated clean stops. Run with `make
// test-faults` (go test -tags faults). The full disk is a size-limited tmpfs
// and needs root; the mqtt package's unit tests inject the same failures
// without privileges.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edge-sensor/edge/internal/proctest"
	"github.com/edge-sensor/edge/mqtt"
	"github.com/edge-sensor/edge/mqtt/mqtttest"
)

// smallTmpfs mounts a tmpfs of size bytes on a temporary directory.
func smallTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a size-limited tmpfs needs root; mqtt's unit tests inject the same failures unprivileged")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes into dir until the file system is full and returns a
// function that frees the space again.
func fillDisk(t *testing.T, dir string) (free func()) {
	t.Helper()
	f, err := os.CreateTemp(dir, "filler")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	f.Close()
	return func() {
		if err := os.Remove(f.Name()); err != nil {
			t.Fatal(err)
		}
	}
}

// get fetches a page of the local HTTP server.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric reads one sample (name with its labels, as printed) from /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	_, body := get(t, addr, "/metrics")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// loopFrames is a few frames of the sample, played in a loop.
func loopFrames(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := extractFrames("../camera/testdata/people.tar", dir, 30, 34); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The state directory fills up (a 256 KiB tmpfs) while windows wait on it
// for a broker that is down, stays full when the broker returns, and is
// freed again. Windows published while the broker is up are all delivered;
// the ones lost while it is down are counted in the next delivered windows
// and in /metrics; nothing is republished in a storm; /healthz says why it
// is degraded. Before: windows vanished with contiguous ids and /healthz
// said ok, and the window queued on disk was published thousands of times
// a second.
func TestFaultStateDirFull(t *testing.T) {
	broker := mqtttest.StartMosquitto(t, "persistence true", "persistence_location "+t.TempDir()+"/", "autosave_interval 1")
	col := collectStats(t, broker.URL()) // persistent session: it keeps its subscription across the broker's restart
	state := smallTmpfs(t, 256<<10)
	addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	cmd, logs := startEdge(t, edgeEnv(t, broker.URL(), "EDGE_SOURCE="+loopFrames(t), "EDGE_LOOP=true", "EDGE_FPS=5",
		"EDGE_PUBLISH_INTERVAL=1s", "EDGE_STATE_DIR="+state, "EDGE_QUEUE_MEMORY_MAX=2",
		"EDGE_PREVIEW_ADDR="+addr, "EDGE_PREVIEW=false"))
	const interval = time.Second

	col.waitFor(t, 90*time.Second, func(s []mqtt.Stats) bool { return len(s) >= 2 })
	broker.Stop()
	time.Sleep(2500 * time.Millisecond) // two windows queue on disk
	free := fillDisk(t, state)
	time.Sleep(5 * time.Second) // five windows: two fit in memory, three are lost
	lostWhileDown := metric(t, addr, "edge_mqtt_windows_lost_total")
	code, health := get(t, addr, "/healthz")
	t.Logf("broker down, disk full: /healthz %d %q; windows lost %v", code, health, lostWhileDown)
	if code != http.StatusServiceUnavailable || !strings.Contains(health, "state directory failing") || !strings.Contains(health, "windows lost") {
		t.Errorf("/healthz with the broker down and the disk full: %d %q", code, health)
	}
	if lostWhileDown < 1 {
		t.Errorf("edge_mqtt_windows_lost_total = %v with 2 windows of memory for 5", lostWhileDown)
	}

	broker.Start()
	waitUntil(t, 90*time.Second, "the reconnect and the backlog", func() bool {
		return metric(t, addr, "edge_mqtt_connected") == 1 && metric(t, addr, "edge_mqtt_queue_windows") == 0
	})
	// Delivering the backlog deleted its files: fill the space they freed.
	freeMore := fillDisk(t, state)
	lostAtReconnect := metric(t, addr, "edge_mqtt_windows_lost_total")
	before := len(col.snapshot())
	time.Sleep(5 * time.Second) // broker up, disk full
	code, health = get(t, addr, "/healthz")
	if lost := metric(t, addr, "edge_mqtt_windows_lost_total"); lost != lostAtReconnect {
		t.Errorf("%v windows lost with the broker up and the disk full, want 0", lost-lostAtReconnect)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(health, "state directory failing") {
		t.Errorf("/healthz with the disk full: %d %q", code, health)
	}
	if got := len(col.snapshot()) - before; got < 3 || got > 40 {
		t.Errorf("%d messages in 5 s with the broker up and the disk full: want about 5 windows plus the backlog, no storm", got)
	}

	free()
	freeMore()
	lostTotal := metric(t, addr, "edge_mqtt_windows_lost_total")
	waitUntil(t, 30*time.Second, "/healthz ok once the disk is free and the losses reported", func() bool {
		code, _ := get(t, addr, "/healthz")
		return code == http.StatusOK
	})
	cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, cmd, stopTimeout+5*time.Second)

	// Every window id is delivered or accounted for, and every gap in time
	// is a gap in ids.
	msgs := col.snapshot()
	copies := map[uint64]int{}
	var uniq []mqtt.Stats
	for _, s := range msgs {
		if copies[s.Window]++; copies[s.Window] == 1 {
			uniq = append(uniq, s)
		}
	}
	slices.SortFunc(uniq, func(a, b mqtt.Stats) int { return int(a.Window) - int(b.Window) })
	maxCopies, missing, reported, unexplained := 0, uint64(0), uint64(0), 0
	for _, n := range copies {
		maxCopies = max(maxCopies, n)
	}
	for i, s := range uniq {
		reported += s.WindowsLost
		prevID, prevEnd := uint64(0), uniq[0].Start
		if i > 0 {
			prevID, prevEnd = uniq[i-1].Window, uniq[i-1].End
		}
		gapIDs := s.Window - prevID - 1
		missing += gapIDs
		if gap := s.Start.Sub(prevEnd); (gap > interval/2) != (gapIDs > 0) {
			unexplained++
			t.Errorf("windows %d..%d: %v of time and %d missing ids between them", prevID, s.Window, gap, gapIDs)
		}
	}
	t.Logf("%d messages, %d windows (ids %d..%d), %d missing ids, %d reported lost, metric %v, most copies of one window %d",
		len(msgs), len(uniq), uniq[0].Window, uniq[len(uniq)-1].Window, missing, reported, lostTotal, maxCopies)
	if missing == 0 || reported != missing || float64(reported) != lostTotal || unexplained > 0 {
		t.Errorf("missing ids %d, reported lost %d, edge_mqtt_windows_lost_total %v: want all equal and > 0", missing, reported, lostTotal)
	}
	if maxCopies > 2 {
		t.Errorf("a window was published %d times (republish storm)", maxCopies)
	}
	if t.Failed() {
		t.Logf("edge output (tail):\n%s", tail(logs.String(), 6000))
	}
}

// The state directory becomes unwritable for 10 s with the broker up (its
// queue directory swapped for a file and the window counter's temporary
// file for a directory: every write fails, even as root, where a read-only
// remount is refused while edge holds files open): every window is still
// delivered, once, with no gap in ids or time, and /healthz says why it is
// degraded meanwhile. Before, the windows of those 10 s were lost with
// contiguous ids.
func TestFaultStateDirUnwritable(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	col := collectStats(t, broker.URL())
	state := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	cmd, logs := startEdge(t, edgeEnv(t, broker.URL(), "EDGE_SOURCE="+loopFrames(t), "EDGE_LOOP=true", "EDGE_FPS=5",
		"EDGE_PUBLISH_INTERVAL=1s", "EDGE_STATE_DIR="+state, "EDGE_PREVIEW_ADDR="+addr, "EDGE_PREVIEW=false"))
	queue, counterTmp := filepath.Join(state, "queue"), filepath.Join(state, "window.tmp")
	breakDir := func() {
		t.Helper()
		if err := os.Rename(queue, queue+".aside"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(queue, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		// The counter's temporary file exists for a moment while edge writes it.
		for tries := 0; ; tries++ {
			err := os.Mkdir(counterTmp, 0o700)
			if err == nil {
				break
			}
			if !errors.Is(err, os.ErrExist) || tries == 100 {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	restoreDir := func() {
		t.Helper()
		for _, err := range []error{os.Remove(queue), os.Rename(queue+".aside", queue), os.Remove(counterTmp)} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	col.waitFor(t, 90*time.Second, func(s []mqtt.Stats) bool { return len(s) >= 2 })
	breakDir()
	time.Sleep(5 * time.Second)
	code, health := get(t, addr, "/healthz")
	time.Sleep(5 * time.Second)
	restoreDir()
	n := len(col.snapshot())
	col.waitFor(t, 30*time.Second, func(s []mqtt.Stats) bool { return len(s) >= n+2 })
	cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, cmd, stopTimeout+5*time.Second)

	msgs := col.snapshot()
	var ids []uint64
	gaps := 0
	for i, s := range msgs {
		ids = append(ids, s.Window)
		if i > 0 && s.Start.Sub(msgs[i-1].End) > 500*time.Millisecond {
			gaps++
		}
	}
	t.Logf("unwritable for 10 s: /healthz %d %q; %d windows, ids %v, %d gaps in time", code, health, len(msgs), ids, gaps)
	if code != http.StatusServiceUnavailable || !strings.Contains(health, "state directory failing") {
		t.Errorf("/healthz while unwritable: %d %q", code, health)
	}
	for i, id := range ids {
		if id != uint64(i+1) {
			t.Errorf("window ids %v: want 1..%d, each once", ids, len(ids))
			break
		}
	}
	if gaps > 0 || len(msgs) < 12 {
		t.Errorf("%d windows over about 14 s with %d gaps in time: windows were lost", len(msgs), gaps)
	}
	if t.Failed() {
		t.Logf("edge output (tail):\n%s", tail(logs.String(), 4000))
	}
}

// A wrong password: the refusal is logged once with the broker's reason,
// shown by /healthz, /metrics and the systemd status line. Before, nothing
// showed it anywhere.
func TestFaultBrokerRefusal(t *testing.T) {
	pki := mqtttest.NewPKI(t, t.TempDir())
	broker := mqtttest.StartSecureMosquitto(t, "cam-1", "right", pki)
	// systemd's notification socket, read here.
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var mu sync.Mutex
	var notes []string
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			notes = append(notes, string(buf[:n]))
			mu.Unlock()
		}
	}()
	addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	cmd, logs := startEdge(t, edgeEnv(t, broker.URL(), "EDGE_SOURCE="+loopFrames(t), "EDGE_LOOP=true", "EDGE_FPS=5",
		"EDGE_PUBLISH_INTERVAL=1s", "EDGE_MQTT_USERNAME=cam-1", "EDGE_MQTT_PASSWORD=wrong",
		"EDGE_PREVIEW_ADDR="+addr, "EDGE_PREVIEW=false", "NOTIFY_SOCKET="+sock))
	status := func() string {
		mu.Lock()
		defer mu.Unlock()
		for i := len(notes) - 1; i >= 0; i-- {
			if s, ok := strings.CutPrefix(notes[i], "STATUS="); ok {
				return s
			}
		}
		return ""
	}
	waitUntil(t, 90*time.Second, "a status line naming the refusal", func() bool { return strings.Contains(status(), "not_authorized") })
	waitUntil(t, 30*time.Second, "3 refused attempts", func() bool {
		return metric(t, addr, `edge_mqtt_connect_failures_total{reason="not_authorized"}`) >= 3
	})
	code, health := get(t, addr, "/healthz")
	connected := metric(t, addr, "edge_mqtt_connected")
	failures := metric(t, addr, `edge_mqtt_connect_failures_total{reason="not_authorized"}`)
	cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, cmd, stopTimeout+5*time.Second)

	warnings := strings.Count(logs.String(), "broker connection failed")
	t.Logf("status %q; /healthz %d %q; connected %v; %v refused attempts, %d log warnings", status(), code, health, connected, failures, warnings)
	if code != http.StatusServiceUnavailable || !strings.Contains(health, "not_authorized") || connected != 0 {
		t.Errorf("/healthz %d %q, edge_mqtt_connected %v", code, health, connected)
	}
	if warnings != 1 || !strings.Contains(logs.String(), "CONNACK 5") {
		t.Errorf("%d warnings for %v refusals, want one with the broker's reason (CONNACK 5):\n%s", warnings, failures, tail(logs.String(), 4000))
	}
}

// 20 clean stops (SIGTERM) and starts on one state directory deliver each
// window exactly once to a QoS 1 subscriber. Before, the last window of
// almost every run was sent again by the next one.
func TestFaultStopStartCycles(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	col := collectStats(t, broker.URL())
	frames := loopFrames(t)
	env := edgeEnv(t, broker.URL(), "EDGE_SOURCE="+frames, "EDGE_LOOP=true", "EDGE_FPS=5", "EDGE_PUBLISH_INTERVAL=1s")
	const cycles = 20
	for range cycles {
		cmd, _ := startEdge(t, env)
		n := len(col.snapshot())
		col.waitFor(t, 60*time.Second, func(s []mqtt.Stats) bool { return len(s) > n })
		cmd.Process.Signal(syscall.SIGTERM)
		waitExit(t, cmd, stopTimeout+5*time.Second)
	}
	time.Sleep(time.Second)
	seen := map[uint64]int{}
	var dups []uint64
	var last uint64
	for _, s := range col.snapshot() {
		if seen[s.Window]++; seen[s.Window] > 1 {
			dups = append(dups, s.Window)
		}
		last = max(last, s.Window)
	}
	var missing []uint64
	for w := uint64(1); w <= last; w++ {
		if seen[w] == 0 {
			missing = append(missing, w)
		}
	}
	t.Logf("%d cycles: windows 1..%d, %d messages, duplicates %v, missing %v", cycles, last, len(col.snapshot()), dups, missing)
	if len(dups) > 0 || len(missing) > 0 {
		t.Errorf("duplicates %v, missing %v: want each window exactly once", dups, missing)
	}
}
