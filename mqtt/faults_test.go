package mqtt

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The state directory fails in these tests the way a full or broken disk
// does, without privileges (root ignores permission bits): the queue
// directory is swapped for a plain file (every queue write fails with
// ENOTDIR) and the window counter's temporary file for a directory (its
// write fails with EISDIR).

// breakQueueDir makes writes to the queue directory fail until restore.
func breakQueueDir(t *testing.T, stateDir string) (restore func()) {
	t.Helper()
	dir := filepath.Join(stateDir, queueDirName)
	if err := os.Rename(dir, dir+".aside"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dir+".aside", dir); err != nil {
			t.Fatal(err)
		}
	}
}

// breakCounter makes writes of the window counter fail until restore.
func breakCounter(t *testing.T, stateDir string) (restore func()) {
	t.Helper()
	tmp := filepath.Join(stateDir, windowFileName+".tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.Remove(tmp); err != nil {
			t.Fatal(err)
		}
	}
}

// statsOf decodes stats messages.
func statsOf(t *testing.T, msgs []rawMsg) []Stats {
	t.Helper()
	out := make([]Stats, len(msgs))
	for i, m := range msgs {
		if err := json.Unmarshal([]byte(m.Payload), &out[i]); err != nil {
			t.Fatalf("%s: %v", m.Topic, err)
		}
	}
	return out
}

// With the broker connected, a state directory that cannot store windows
// loses none: they are held in memory and delivered, each once.
func TestStateDirFailingBrokerUp(t *testing.T) {
	t.Parallel()
	m := startMosquitto(t)
	c := collect(t, m.url(), "edge/+/+/stats")
	cfg := testConfig(t, m.url())
	p := newPublisher(t, cfg)
	waitConnected(t, p)

	restore := breakQueueDir(t, cfg.StateDir)
	const n = 10
	for i := range n {
		if err := p.Publish(ctxT(t, time.Second), sampleStats(i)); err != nil {
			t.Fatalf("Publish %d with the state directory failing: %v", i+1, err)
		}
	}
	c.wait(t, 10*time.Second, "10 windows", func(m []rawMsg) bool { return len(m) >= n })
	if st := p.BrokerState(); st.StateError == "" || st.StateWriteFailures == 0 || len(st.Problems()) == 0 {
		t.Errorf("state directory failing, yet the broker state does not say so: %+v", st)
	}
	if err := p.Flush(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	restore()
	if err := p.Publish(ctxT(t, time.Second), sampleStats(n)); err != nil {
		t.Fatal(err)
	}
	msgs := c.wait(t, 10*time.Second, "11 windows", func(m []rawMsg) bool { return len(m) >= n+1 })
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive now
	var ids []uint64
	for _, s := range statsOf(t, c.snapshot()) {
		ids = append(ids, s.Window)
		if s.WindowsLost != 0 {
			t.Errorf("window %d reports %d windows lost, want 0", s.Window, s.WindowsLost)
		}
	}
	if want := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}; !slices.Equal(ids, want) {
		t.Fatalf("windows %v (from %d messages), want 1..11 each once", ids, len(msgs))
	}
	if st := p.BrokerState(); st.WindowsLost != 0 || st.StateError != "" || len(st.Problems()) != 0 {
		t.Fatalf("after recovery: %+v, problems %q", st, st.Problems())
	}
	if got := queuedIDs(t, cfg.StateDir); len(got) != 0 {
		t.Fatalf("queue directory holds %v after delivery", got)
	}
}

// With the broker down and the state directory failing, windows beyond the
// memory bound are lost, counted, and reported by the next delivered
// windows: the reported counts add up to the gaps in the window ids.
func TestStateDirFailingBrokerDown(t *testing.T) {
	t.Parallel()
	m := startMosquitto(t)
	c := collect(t, m.url(), "edge/+/+/stats")
	port := freePort(t) // the broker is "down" until a proxy listens here
	cfg := testConfig(t, fmt.Sprintf("tcp://127.0.0.1:%d", port))
	cfg.MaxMemQueue = 3
	p := newPublisher(t, cfg)

	restore := breakQueueDir(t, cfg.StateDir)
	defer restore()
	for i := range 6 {
		if err := p.Publish(ctxT(t, time.Second), sampleStats(i)); err != nil {
			t.Fatalf("Publish %d: %v", i+1, err)
		}
	}
	st := p.BrokerState()
	if st.WindowsLost != 3 || st.LostUnreported != 3 || st.Queue != 3 || st.QueueMemory != 3 {
		t.Fatalf("6 windows, memory for 3, no disk, no broker: %+v; want 3 lost and unreported, 3 in memory", st)
	}
	if probs := strings.Join(st.Problems(), "; "); !strings.Contains(probs, "3 windows lost") || !strings.Contains(probs, "state directory failing") {
		t.Errorf("problems %q", probs)
	}

	startProxy(t, fmt.Sprintf("127.0.0.1:%d", port), m.addr()) // the broker comes back
	if err := p.Flush(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctxT(t, time.Second), sampleStats(6)); err != nil {
		t.Fatal(err)
	}
	c.wait(t, 10*time.Second, "4 windows", func(m []rawMsg) bool { return len(m) >= 4 })
	if err := p.Flush(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	var reported uint64
	for _, s := range statsOf(t, c.snapshot()) {
		ids = append(ids, s.Window)
		reported += s.WindowsLost
	}
	if !slices.Equal(ids, []uint64{4, 5, 6, 7}) || reported != 3 {
		t.Fatalf("delivered windows %v reporting %d lost; want 4..7 reporting the 3 missing ids", ids, reported)
	}
	if st := p.BrokerState(); st.LostUnreported != 0 || st.WindowsLost != 3 {
		t.Fatalf("after reporting: %+v", st)
	}
}

// A delivered window whose removal cannot persist the window counter is not
// sent again: before, the broker got it ~1,900 times a second.
func TestNoRepublishStormWhenCounterFails(t *testing.T) {
	t.Parallel()
	m := startMosquitto(t)
	c := collect(t, m.url(), "edge/+/+/stats")
	port := freePort(t)
	cfg := testConfig(t, fmt.Sprintf("tcp://127.0.0.1:%d", port))
	p := newPublisher(t, cfg)
	if err := p.Publish(ctxT(t, time.Second), sampleStats(0)); err != nil {
		t.Fatal(err)
	}
	restore := breakCounter(t, cfg.StateDir)
	startProxy(t, fmt.Sprintf("127.0.0.1:%d", port), m.addr())
	c.wait(t, 10*time.Second, "window 1", func(m []rawMsg) bool { return len(m) >= 1 })
	time.Sleep(time.Second) // a storm sends thousands now
	if n := len(c.snapshot()); n != 1 {
		t.Fatalf("window 1 published %d times in a second with the counter unwritable, want once", n)
	}
	if err := p.Flush(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("delivered window still counted as queued: %v", err)
	}
	restore()
	if err := p.Publish(ctxT(t, time.Second), sampleStats(1)); err != nil {
		t.Fatal(err)
	}
	c.wait(t, 10*time.Second, "window 2", func(m []rawMsg) bool { return len(m) >= 2 })
	if err := p.Close(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := queuedIDs(t, cfg.StateDir); len(got) != 0 {
		t.Fatalf("queue holds %v once the counter is writable again", got)
	}
	p = reopen(t, cfg)
	t.Cleanup(func() { _ = p.Close(ctxT(t, 2*time.Second)) })
	if p.LastWindow() != 2 || p.QueueLen() != 0 {
		t.Fatalf("after restart: last window %d queue %d, want 2 and 0", p.LastWindow(), p.QueueLen())
	}
	time.Sleep(300 * time.Millisecond)
	if ids := windows(t, c.snapshot()); !slices.Equal(ids, []uint64{1, 2}) {
		t.Fatalf("windows %v, want 1 and 2 once each", ids)
	}
}

// A clean stop waits for the PUBACK of the last window: 20 stop/start
// cycles deliver each window exactly once.
func TestStopStartDeliversOnce(t *testing.T) {
	t.Parallel()
	m := startMosquitto(t)
	c := collect(t, m.url(), "edge/+/+/stats")
	cfg := testConfig(t, m.url())
	const cycles = 20
	for i := range cycles {
		p := reopen(t, cfg)
		waitConnected(t, p)
		if err := p.Publish(ctxT(t, time.Second), sampleStats(i)); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(ctxT(t, 5*time.Second)); err != nil {
			t.Fatalf("cycle %d: Close: %v", i+1, err)
		}
	}
	c.wait(t, 10*time.Second, "20 windows", func(m []rawMsg) bool { return len(m) >= cycles })
	time.Sleep(300 * time.Millisecond)
	want := make([]uint64, cycles)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if got := windows(t, c.snapshot()); !slices.Equal(got, want) {
		t.Fatalf("windows %v over %d stop/start cycles, want 1..%d each once", got, cycles, cycles)
	}
}

// reopen opens a publisher on a state directory just closed. The lock can
// outlive Close for a moment here: a parallel test's fork (starting
// mosquitto) holds a copy of the lock's descriptor until its exec.
func reopen(t *testing.T, cfg Config) *Publisher {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := NewPublisher(cfg)
		if err == nil {
			return p
		}
		if !strings.Contains(err.Error(), "in use by another publisher") || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Windows held in memory go to disk as soon as the state directory takes
// writes again, and so survive a restart.
func TestMemoryWindowsSpillToDisk(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t)))
	p := newPublisher(t, cfg)
	restore := breakQueueDir(t, cfg.StateDir)
	for i := range 2 {
		if err := p.Publish(ctxT(t, time.Second), sampleStats(i)); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.BrokerState(); st.QueueMemory != 2 || st.StateError == "" {
		t.Fatalf("state directory failing: %+v, want 2 windows in memory", st)
	}
	restore()
	if err := p.Publish(ctxT(t, time.Second), sampleStats(2)); err != nil {
		t.Fatal(err)
	}
	if st := p.BrokerState(); st.QueueMemory != 0 || st.Queue != 3 || st.StateError != "" {
		t.Fatalf("state directory back: %+v, want 3 windows on disk", st)
	}
	if got := queuedIDs(t, cfg.StateDir); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("queued files %v, want 1,2,3", got)
	}
}

// Lost windows not yet reported at a clean stop are reported by the first
// window after the restart.
func TestUnreportedLossSurvivesRestart(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t)))
	cfg.MaxQueue = 2
	p := newPublisher(t, cfg)
	for i := range 4 {
		if err := p.Publish(ctxT(t, time.Second), sampleStats(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Windows 1 and 2 were dropped: window 4 reports the first; no queued
	// window reports the second yet.
	if st := p.BrokerState(); st.WindowsLost != 2 || st.LostUnreported != 2 {
		t.Fatalf("%+v, want 2 lost, 2 unreported (one carried by window 4, one pending)", st)
	}
	if err := p.Close(ctxT(t, time.Second)); err != nil {
		t.Fatal(err)
	}
	p = reopen(t, cfg)
	t.Cleanup(func() { _ = p.Close(ctxT(t, 2*time.Second)) })
	if err := p.Publish(ctxT(t, time.Second), sampleStats(4)); err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, id := range queuedIDs(t, cfg.StateDir) {
		b, err := os.ReadFile(filepath.Join(cfg.StateDir, queueDirName, queueName(id)))
		if err != nil {
			t.Fatal(err)
		}
		var s Stats
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		total += s.WindowsLost
	}
	if total != 2 {
		t.Fatalf("queued windows report %d lost after the restart, want the 2 dropped before it", total)
	}
}
