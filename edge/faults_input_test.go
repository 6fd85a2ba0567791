//go:build faults

package main

// Fault tests for hostile input (issue 16, findings 5-8): the real edge
// binary against mosquitto, fed huge pictures, corrupt-only sources, a
// stalled HTTP camera and hostile HTTP clients. Run with `make test-faults`.

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edge-sensor/edge/internal/proctest"
	"github.com/edge-sensor/edge/mqtt"
	"github.com/edge-sensor/edge/mqtt/mqtttest"
)

// faultRSSLimit is the most memory (VmHWM) edge may take on any input.
const faultRSSLimit = 200 << 20

// faultStopLimit bounds the time from SIGINT to exit: the flush timeout.
const faultStopLimit = stopTimeout

// procWatch samples a process's peak RSS (VmHWM) and CPU time until it exits.
type procWatch struct {
	pid  int
	mu   sync.Mutex
	hwm  int64 // bytes
	cpu  time.Duration
	stop chan struct{}
	done chan struct{}
}

func watchProc(pid int) *procWatch {
	w := &procWatch{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *procWatch) sample() {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.pid))
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			w.mu.Lock()
			w.hwm = max(w.hwm, kb<<10)
			w.mu.Unlock()
		}
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.pid)); err == nil {
		// Fields after the command name (which may hold spaces): utime is
		// the 14th field overall, stime the 15th, in clock ticks (100/s).
		if i := bytes.LastIndexByte(st, ')'); i > 0 {
			f := strings.Fields(string(st[i+1:]))
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				s, _ := strconv.ParseInt(f[12], 10, 64)
				w.mu.Lock()
				w.cpu = time.Duration(u+s) * 10 * time.Millisecond
				w.mu.Unlock()
			}
		}
	}
}

func (w *procWatch) peak() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hwm
}

func (w *procWatch) cpuTime() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cpu
}

func (w *procWatch) close() { close(w.stop); <-w.done }

// interruptAndTime sends SIGINT and returns how long edge took to exit
// (killing it after limit+10s).
func interruptAndTime(t *testing.T, cmd *exec.Cmd, w *procWatch) time.Duration {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	w.sample()
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		d := time.Since(start)
		if err != nil {
			t.Errorf("edge run after SIGINT: %v", err)
		}
		return d
	case <-time.After(faultStopLimit + 10*time.Second):
		cmd.Process.Kill()
		<-done
		return time.Since(start)
	}
}

var hugeFiles struct {
	sync.Once
	dir string
	err error
}

// hugeInputs writes, once per run, the pictures of finding 5: an 8000x8000
// JPEG, a 16000x16000 PNG of a few hundred KB, and a 2 GiB sparse .jpg.
func hugeInputs(t *testing.T) string {
	t.Helper()
	hugeFiles.Do(func() {
		dir, err := os.MkdirTemp("", "edge-faults")
		if err != nil {
			hugeFiles.err = err
			return
		}
		hugeFiles.dir = dir
		for _, mk := range []func(string) error{writeHugeJPEG, writeHugePNG, writeSparseJPEG, writeLimitPictures} {
			if err := mk(dir); err != nil {
				hugeFiles.err = err
				return
			}
		}
	})
	if hugeFiles.err != nil {
		t.Fatal(hugeFiles.err)
	}
	return hugeFiles.dir
}

func writeHugeJPEG(dir string) error {
	img := image.NewGray(image.Rect(0, 0, 8000, 8000))
	for i := range img.Pix {
		img.Pix[i] = byte(i / 8000)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 50}); err != nil {
		return err
	}
	return writeInFolder(dir, "jpeg", "huge.jpg", b.Bytes())
}

// writeHugePNG streams a 16000x16000 RGB PNG of zeros: 768 MB of pixels in
// a file of some 300 KB, written without holding the picture in memory.
func writeHugePNG(dir string) error {
	const w, h = 16000, 16000
	var idat bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&idat, zlib.BestCompression)
	row := make([]byte, 1+3*w) // filter byte 0, then zeros
	for range h {
		zw.Write(row)
	}
	zw.Close()
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&out, binary.BigEndian, uint32(len(data)))
		crc := crc32.NewIEEE()
		io.WriteString(crc, typ)
		crc.Write(data)
		out.WriteString(typ)
		out.Write(data)
		binary.Write(&out, binary.BigEndian, crc.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk("IHDR", ihdr)
	chunk("IDAT", idat.Bytes())
	chunk("IEND", nil)
	return writeInFolder(dir, "png", "huge.png", out.Bytes())
}

func writeSparseJPEG(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "sparse"), 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "sparse", "huge.jpg"))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write([]byte{0xFF, 0xD8, 0xFF}); err != nil {
		return err
	}
	return f.Truncate(2 << 30)
}

// writeLimitPictures writes pictures just within the default pixel limit
// (4 MiP), in colour, with detail that does not compress away: a 2560x1600
// JPEG and a 2048x2048 8-bit RGBA PNG.
func writeLimitPictures(dir string) error {
	noisy := func(w, h int) *image.NRGBA {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		x := uint32(1)
		for i := range img.Pix {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			img.Pix[i] = byte(x>>24) | 0x0f
		}
		return img
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, noisy(2560, 1600), &jpeg.Options{Quality: 90}); err != nil {
		return err
	}
	if err := writeInFolder(dir, "limit-jpeg", "a.jpg", b.Bytes()); err != nil {
		return err
	}
	b.Reset()
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&b, noisy(2048, 2048)); err != nil {
		return err
	}
	return writeInFolder(dir, "limit-png", "a.png", b.Bytes())
}

func writeInFolder(dir, sub, name string, data []byte) error {
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, sub, name), data, 0o644)
}

// mjpegOf serves one picture over and over as an MJPEG stream, as a
// hostile or broken network camera could.
func mjpegOf(t *testing.T, pic []byte) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		bw := bufio.NewWriter(w)
		for r.Context().Err() == nil {
			fmt.Fprintf(bw, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(pic))
			bw.Write(pic)
			bw.WriteString("\r\n")
			if bw.Flush() != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/stream.mjpeg"
}

// TestFaultHugeImages (finding 5): whatever the picture, edge stays under
// 200 MB, counts the picture as corrupt with a log line, and SIGINT ends it
// within its flush timeout.
func TestFaultHugeImages(t *testing.T) {
	dir := hugeInputs(t)
	hugePNG, err := os.ReadFile(filepath.Join(dir, "png", "huge.png"))
	if err != nil {
		t.Fatal(err)
	}
	jpg, err := os.ReadFile(filepath.Join(dir, "jpeg", "huge.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		source func(t *testing.T) string
		within bool // within the limit: decoded, not refused
	}{
		{"jpeg 8000x8000 in a folder", func(*testing.T) string { return filepath.Join(dir, "jpeg") }, false},
		{"png 16000x16000 in a folder", func(*testing.T) string { return filepath.Join(dir, "png") }, false},
		{"2 GiB .jpg", func(*testing.T) string { return filepath.Join(dir, "sparse") }, false},
		{"png 16000x16000 as an MJPEG part", func(t *testing.T) string { return mjpegOf(t, hugePNG) }, false},
		{"jpeg 8000x8000 as an MJPEG part", func(t *testing.T) string { return mjpegOf(t, jpg) }, false},
		// At the limit, with the preview watched: what the default allows
		// must fit too.
		{"jpeg 2560x1600 with the preview", func(*testing.T) string { return filepath.Join(dir, "limit-jpeg") }, true},
		{"png 2048x2048 RGBA with the preview", func(*testing.T) string { return filepath.Join(dir, "limit-png") }, true},
	}
	broker := mqtttest.StartMosquitto(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			col := collectStatsAs(t, broker.URL(), fmt.Sprintf("faults-huge-%d", i))
			env := edgeEnv(t, broker.URL(), "EDGE_SOURCE="+tc.source(t),
				"EDGE_LOOP=true", "EDGE_FPS=2", "EDGE_PUBLISH_INTERVAL=2s", "EDGE_LOG_LEVEL=info")
			var preview string
			if tc.within {
				preview = fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
				env = append(env, "EDGE_PREVIEW_ADDR="+preview, "EDGE_FPS=0")
			}
			cmd, logs := startEdge(t, env)
			w := watchProc(cmd.Process.Pid)
			defer w.close()
			if tc.within {
				stop := watchSnapshots(t, preview)
				defer stop()
			}
			// Give it time for several pictures and a window or two.
			waitStats(col, 12*time.Second, func(s []mqtt.Stats) bool { return len(s) >= 2 })
			exit := interruptAndTime(t, cmd, w)
			peak := w.peak()
			t.Logf("peak RSS %.0f MB, exit %.2f s after SIGINT", float64(peak)/(1<<20), exit.Seconds())
			if peak >= faultRSSLimit {
				t.Errorf("peak RSS %.0f MB, want under %d MB", float64(peak)/(1<<20), faultRSSLimit>>20)
			}
			if exit > faultStopLimit {
				t.Errorf("exit %.1f s after SIGINT, want within %v", exit.Seconds(), faultStopLimit)
			}
			var corrupt, processed uint64
			for _, s := range col.snapshot() {
				corrupt += s.Frames.Corrupt
				processed += s.Frames.Processed
			}
			if tc.within {
				if corrupt != 0 || processed == 0 {
					t.Errorf("%d frames processed, %d corrupt: a picture within the limit must be decoded", processed, corrupt)
				}
				return
			}
			if corrupt == 0 {
				t.Errorf("no window counts a corrupt frame (windows: %d)", len(col.snapshot()))
			}
			if !strings.Contains(logs.String(), "corrupt frames skipped") || !strings.Contains(logs.String(), "too large") {
				t.Errorf("no log line says a picture was too large:\n%s", tail(logs.String(), 2000))
			}
		})
	}
}

// watchSnapshots fetches the preview's snapshot in a loop, so that the
// preview encodes frames as it does while someone watches.
func watchSnapshots(t *testing.T, addr string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
			resp, err := http.Get("http://" + addr + "/snapshot.jpg")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// TestFaultCorruptOnlySource (finding 6): a looped zero-byte JPEG read as
// fast as possible neither spins nor withholds windows.
func TestFaultCorruptOnlySource(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "empty.jpg"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	broker := mqtttest.StartMosquitto(t)
	col := collectStatsAs(t, broker.URL(), "faults-corrupt")
	cmd, logs := startEdge(t, edgeEnv(t, broker.URL(), "EDGE_SOURCE="+dir, "EDGE_LOOP=true", "EDGE_FPS=0",
		"EDGE_PUBLISH_INTERVAL=2s", "EDGE_LOG_LEVEL=info"))
	w := watchProc(cmd.Process.Pid)
	defer w.close()
	start := time.Now()
	got := waitStats(col, 10*time.Second, func(s []mqtt.Stats) bool { return len(s) >= 3 })
	elapsed := time.Since(start)
	w.sample()
	cpu := w.cpuTime()
	exit := interruptAndTime(t, cmd, w)
	var corrupt uint64
	for _, s := range col.snapshot() {
		corrupt += s.Frames.Corrupt
	}
	t.Logf("%d windows, %d corrupt frames, %.0f%% of a core over %.1f s; exit %.2f s after SIGINT",
		len(got), corrupt, 100*cpu.Seconds()/elapsed.Seconds(), elapsed.Seconds(), exit.Seconds())
	if len(got) < 3 {
		t.Errorf("%d windows of 2 s in %.1f s, want 3: windows must close on time", len(got), elapsed.Seconds())
	}
	if rate := float64(corrupt) / elapsed.Seconds(); rate > 100 {
		t.Errorf("%.0f corrupt frames a second: the source is read in a busy loop", rate)
	}
	if share := cpu.Seconds() / elapsed.Seconds(); share > 0.2 {
		t.Errorf("%.0f%% of a core for a source of corrupt frames", 100*share)
	}
	if n := strings.Count(logs.String(), "corrupt frames skipped"); n == 0 || n > 3 {
		t.Errorf("%d log lines about corrupt frames in %.0f s, want 1 to 3 (rate-limited)", n, elapsed.Seconds())
	}
	if exit > faultStopLimit {
		t.Errorf("exit %.1f s after SIGINT, want within %v", exit.Seconds(), faultStopLimit)
	}
}

// collectStatsAs is collectStats with its own client id, so that subtests
// do not take over each other's session.
func collectStatsAs(t *testing.T, url, id string) *statsCollector {
	t.Helper()
	c := &statsCollector{}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond)
	opts.SetOnConnectHandler(func(cl paho.Client) {
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
	})
	c.cli = paho.NewClient(opts)
	if tok := c.cli.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("collector connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.cli.Disconnect(100) })
	time.Sleep(200 * time.Millisecond) // let the subscription settle
	return c
}

// waitStats waits up to timeout for cond, returning what arrived either way.
func waitStats(c *statsCollector, timeout time.Duration, cond func([]mqtt.Stats) bool) []mqtt.Stats {
	deadline := time.Now().Add(timeout)
	for {
		s := c.snapshot()
		if cond(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// TestFaultPreviewPort (finding 8): a DNS-rebinding request cannot read a
// frame, and thousands of idle connections to the preview port neither
// exhaust edge's file descriptors nor stop its windows. edge runs with an
// open-file limit of 1024, so that the flood needs only a few thousand
// connections.
func TestFaultPreviewPort(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	col := collectStatsAs(t, broker.URL(), "faults-preview")
	addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	cmd := exec.Command("bash", "-c", `ulimit -n 1024 && exec "$0" run`, edgeBinary(t))
	cmd.Env = edgeEnv(t, broker.URL(), "EDGE_SOURCE=../camera/testdata/people.tar", "EDGE_LOOP=true",
		"EDGE_FPS=10", "EDGE_PUBLISH_INTERVAL=2s", "EDGE_PREVIEW_ADDR="+addr, "EDGE_LOG_LEVEL=info")
	var logs proctest.SyncBuffer
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
			t.Logf("edge run output:\n%s", tail(logs.String(), 4000))
		}
	})
	proctest.WaitListening(t, addr, 30*time.Second)
	waitStats(col, 20*time.Second, func(s []mqtt.Stats) bool { return len(s) >= 1 })

	// DNS rebinding: the browser sends the attacker's name as Host.
	for _, path := range []string{"/snapshot.jpg", "/stats.json", "/metrics"} {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Host = "attacker.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("GET %s with Host attacker.example.com: %d (%d bytes), want 421", path, resp.StatusCode, len(body))
		}
	}
	resp, err := http.Get("http://" + addr + "/snapshot.jpg")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /snapshot.jpg on 127.0.0.1: %v %v", err, resp)
	}
	resp.Body.Close()

	// The flood: connections that send nothing, and keep-alive ones left
	// idle after a request.
	before := len(col.snapshot())
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	floodStart := time.Now()
	for i := range 3000 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			continue // the backlog is full: the kernel holds the rest
		}
		if i%2 == 0 {
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		}
		conns = append(conns, c)
	}
	time.Sleep(max(0, 8*time.Second-time.Since(floodStart)))
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
	during := len(col.snapshot()) - before
	t.Logf("%d connections open to the preview port; edge holds %d file descriptors; %d windows arrived in %.1f s of flood",
		len(conns), len(fds), during, time.Since(floodStart).Seconds())
	if during < 3 {
		t.Errorf("%d windows of 2 s during %.0f s of idle connections, want 3 or more", during, time.Since(floodStart).Seconds())
	}
	if len(fds) > 512 {
		t.Errorf("edge holds %d file descriptors under the flood: HTTP clients are not capped", len(fds))
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// Once the clients are gone the server answers again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz after the flood: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Contains(logs.String(), "too many open files") {
		t.Errorf("edge ran out of file descriptors:\n%s", tail(logs.String(), 3000))
	}
	w := watchProc(cmd.Process.Pid)
	defer w.close()
	if exit := interruptAndTime(t, cmd, w); exit > faultStopLimit {
		t.Errorf("exit %.1f s after SIGINT", exit.Seconds())
	}
}

// samplePicture is one frame of the shipped sample, for fake cameras.
func samplePicture(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := extractFrames("../camera/testdata/people.tar", dir, 30, 30); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "frame_0030.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFaultStalledCamera (finding 7): an MJPEG camera that sends one frame
// and then nothing, answering each reconnection with headers and silence,
// is down, and the windows say so.
func TestFaultStalledCamera(t *testing.T) {
	pic := samplePicture(t)
	var requests sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		if _, again := requests.LoadOrStore("first", true); !again {
			fmt.Fprintf(w, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(pic))
			w.Write(pic)
			io.WriteString(w, "\r\n")
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	broker := mqtttest.StartMosquitto(t)
	col := collectStatsAs(t, broker.URL(), "faults-stall")
	cmd, logs := startEdge(t, edgeEnv(t, broker.URL(), "EDGE_SOURCE="+srv.URL+"/video", "EDGE_FPS=10",
		"EDGE_PUBLISH_INTERVAL=2s", "EDGE_LOG_LEVEL=info"))
	w := watchProc(cmd.Process.Pid)
	defer w.close()
	// The stall is noticed after 10 s; run through two of them.
	time.Sleep(24 * time.Second)
	exit := interruptAndTime(t, cmd, w)
	var down float64
	got := col.snapshot()
	for _, s := range got {
		down += s.SourceDownSeconds
	}
	t.Logf("%d windows over %.0f s report %.1f s of source down time; exit %.2f s after SIGINT", len(got), 24.0, down, exit.Seconds())
	if down < 10 {
		t.Errorf("windows report %.1f s down for a camera silent for more than 20 s", down)
	}
	if !strings.Contains(logs.String(), "camera lost") {
		t.Errorf("the stall is not logged:\n%s", tail(logs.String(), 2000))
	}
}

// TestFaultCameraAtStart (finding 7): a network camera that is not up when
// edge starts is waited for (clear log line, /healthz saying why, windows
// reporting it down) and used once it comes; a malformed URL exits 2.
func TestFaultCameraAtStart(t *testing.T) {
	pic := samplePicture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	camAddr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	broker := mqtttest.StartMosquitto(t)
	col := collectStatsAs(t, broker.URL(), "faults-atstart")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	cmd, logs := startEdge(t, edgeEnv(t, broker.URL(), "EDGE_SOURCE=http://"+camAddr+"/video", "EDGE_FPS=10",
		"EDGE_PUBLISH_INTERVAL=2s", "EDGE_LOG_LEVEL=info", "EDGE_PREVIEW_ADDR="+httpAddr))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("edge exited (%v) with the camera not up yet:\n%s", err, tail(logs.String(), 2000))
	case <-time.After(6 * time.Second):
	}
	resp, err := http.Get("http://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	health, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(health), "camera down") || !strings.Contains(string(health), "refused") {
		t.Errorf("/healthz while the camera is away: %d %q, want 503 saying why", resp.StatusCode, health)
	}
	if !strings.Contains(logs.String(), "camera not reachable; waiting for it") {
		t.Errorf("no log line says the camera is waited for:\n%s", tail(logs.String(), 2000))
	}

	// The camera boots.
	cam, err := net.Listen("tcp", camAddr)
	if err != nil {
		t.Skipf("camera address taken meanwhile: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		for r.Context().Err() == nil {
			fmt.Fprintf(w, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(pic))
			w.Write(pic)
			io.WriteString(w, "\r\n")
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})}
	go srv.Serve(cam)
	defer srv.Close()
	got := waitStats(col, 20*time.Second, func(s []mqtt.Stats) bool {
		return len(s) > 0 && s[len(s)-1].Frames.Processed > 0
	})
	var down float64
	for _, s := range got {
		down += s.SourceDownSeconds
	}
	t.Logf("%d windows, %.1f s down reported before the camera came", len(got), down)
	if len(got) == 0 || got[len(got)-1].Frames.Processed == 0 {
		t.Errorf("no frame processed after the camera came up")
	}
	if down < 4 {
		t.Errorf("windows report %.1f s down for a camera away for 6 s or more", down)
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(faultStopLimit):
		t.Errorf("edge did not stop within %v", faultStopLimit)
	}

	// A malformed URL is a configuration error, not a camera to wait for.
	bad := exec.Command(edgeBinary(t), "run")
	bad.Env = edgeEnv(t, broker.URL(), "EDGE_SOURCE=http://user:hunter2@[::1/video")
	out, err := bad.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("malformed camera URL: %v, want exit status 2\n%s", err, out)
	}
	if !strings.Contains(string(out), "EDGE_SOURCE") || strings.Contains(string(out), "hunter2") {
		t.Errorf("the error should name EDGE_SOURCE without the password:\n%s", out)
	}
}
