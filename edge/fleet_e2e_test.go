package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edge-sensor/edge/collect"
	"github.com/edge-sensor/edge/collect/pgtest"
	"github.com/edge-sensor/edge/internal/proctest"
	"github.com/edge-sensor/edge/mqtt"
	"github.com/edge-sensor/edge/mqtt/mqtttest"
)

// exampleConfig reads a shipped mosquitto example and replaces the values
// of the given directives (addresses, files, secrets) with the test's; every
// other setting (bridge topics, sessions, queueing, TLS version) is the
// example's own. A directive missing from the example fails the test, so
// the test and the example cannot drift apart.
func exampleConfig(t *testing.T, name string, set map[string]string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "collect", "mosquitto", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out strings.Builder
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) > 0 && !strings.HasPrefix(fields[0], "#") {
			if v, ok := set[fields[0]]; ok {
				line = fields[0] + " " + v
				seen[fields[0]] = true
			}
		}
		out.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for k := range set {
		if !seen[k] {
			t.Fatalf("%s has no %q directive", name, k)
		}
	}
	return out.String()
}

// linkProxy forwards TCP connections to target until cut: a network link
// between a site and the central broker that can fail.
type linkProxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func startLinkProxy(t *testing.T, target string) *linkProxy {
	p := &linkProxy{t: t, addr: fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t)), target: target, conns: map[net.Conn]bool{}}
	p.restore()
	t.Cleanup(p.cut)
	return p
}

func (p *linkProxy) restore() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("link proxy: %v", err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[u] = true, true
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close(); c.Close() }()
			go func() { _, _ = io.Copy(c, u); u.Close(); c.Close() }()
		}
	}()
}

// cut closes the listener and every connection through it.
func (p *linkProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// collectProc is an `edge collect` process.
type collectProc struct {
	t    *testing.T
	env  []string
	addr string
	cmd  *exec.Cmd
	out  *proctest.SyncBuffer
	done chan struct{}
}

func startCollectProc(t *testing.T, env []string, addr string, out *proctest.SyncBuffer) *collectProc {
	t.Helper()
	p := &collectProc{t: t, env: env, addr: addr, out: out, done: make(chan struct{})}
	p.cmd = exec.Command(edgeBinary(t), "collect")
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
			err = fmt.Errorf("%s", b)
		}
		select {
		case <-p.done:
			t.Fatalf("edge collect exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge collect not healthy after 30s: %v\n%s", err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill sends SIGKILL: no clean shutdown, no last commit, no disconnect.
func (p *collectProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func countRows(t *testing.T, db *pgxpool.Pool, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// storedWindows reads the key of every stored window.
func storedWindows(t *testing.T, db *pgxpool.Pool) map[collect.Key]bool {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT device, kind, window_id FROM edge_windows")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stored := map[collect.Key]bool{}
	for rows.Next() {
		var k collect.Key
		var id int64
		if err := rows.Scan(&k.Device, &k.Kind, &id); err != nil {
			t.Fatal(err)
		}
		k.Window = uint64(id)
		stored[k] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return stored
}

// TestFleetEndToEnd: simulated devices → site mosquitto → bridge (the
// shipped example, TLS + password) → central mosquitto (the shipped example)
// → two `edge collect` processes in one shared subscription → PostgreSQL,
// with the bridge link cut for a while and one collector kill -9'ed and
// restarted: every window published is stored exactly once.
func TestFleetEndToEnd(t *testing.T) {
	pg := pgtest.Start(t, pgtest.Options{})
	dbURL := pg.NewDatabase(t)
	mqtttest.MosquittoPath(t)
	dir := t.TempDir()
	pki := mqtttest.NewPKI(t, dir)
	ca, cert, key := pki.CA, pki.ServerCert, pki.ServerKey
	passwd := filepath.Join(dir, "passwd")
	mqtttest.WritePasswordFile(t, passwd, [2]string{"site1", "site-secret"}, [2]string{"collector", "collector-secret"})
	for _, d := range []string{"central", "site"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	centralPort := proctest.FreePort(t)
	mqtttest.StartMosquittoConfig(t, exampleConfig(t, "central.conf.example", map[string]string{
		"persistence_location": filepath.Join(dir, "central") + "/", "password_file": passwd,
		"listener": fmt.Sprintf("%d 127.0.0.1", centralPort), "certfile": cert, "keyfile": key,
	}), centralPort)
	link := startLinkProxy(t, fmt.Sprintf("127.0.0.1:%d", centralPort))
	sitePort := proctest.FreePort(t)
	mqtttest.StartMosquittoConfig(t, exampleConfig(t, "site.conf.example", map[string]string{
		"persistence_location": filepath.Join(dir, "site") + "/", "listener": fmt.Sprintf("%d 127.0.0.1", sitePort),
		"address": link.addr, "bridge_cafile": ca, "remote_password": "site-secret",
	}), sitePort)

	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logs := map[string]*proctest.SyncBuffer{"a": {}, "b": {}}
	env := func(id string) ([]string, string) {
		addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
		return []string{
			"EDGE_DATABASE_URL=" + dbURL, fmt.Sprintf("EDGE_MQTT_URL=ssl://127.0.0.1:%d", centralPort), "EDGE_MQTT_CA=" + ca,
			"EDGE_MQTT_USERNAME=collector", "EDGE_MQTT_PASSWORD=collector-secret", "EDGE_COLLECT_CLIENT_ID=collector-" + id,
			"EDGE_COLLECT_SHARE_GROUP=fleet", "EDGE_COLLECT_ADDR=" + addr, "EDGE_COLLECT_ROLLUP_INTERVAL=1s",
		}, addr
	}
	envA, addrA := env("a")
	envB, addrB := env("b")
	a := startCollectProc(t, envA, addrA, logs["a"])
	startCollectProc(t, envB, addrB, logs["b"])
	defer func() {
		if t.Failed() {
			t.Logf("collector a:\n%s\ncollector b:\n%s", logs["a"].String(), logs["b"].String())
		}
	}()

	ctx := context.Background()
	pub, err := collect.NewSimPublisher(ctx, fmt.Sprintf("tcp://127.0.0.1:%d", sitePort), "", "", mqtt.TLSConfig{}, 4, 500)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const devices = 20
	sim, err := collect.NewSimulator(collect.SimConfig{Devices: devices, Departments: 4, Interval: time.Minute,
		ReplayRate: 0.01, OutageRate: 0.005, SourceDownRate: 0.01, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[collect.Key]bool{}
	publish := func(msgs []collect.SimMessage) {
		t.Helper()
		for _, m := range msgs {
			distinct[m.Key] = true
		}
		if err := pub.Publish(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
	// The bridge must be up before the first window: a bridge that never
	// connected has no session on the central broker yet.
	waitFor(t, 60*time.Second, "first window through the bridge", func() bool {
		return countRows(t, db, "SELECT count(*) FROM edge_windows") > 0
	}, func() { publish(sim.Step(time.Date(2026, 3, 2, 7, 59, 0, 0, time.UTC))) })

	start := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	var cutAt time.Time
	for i := range 60 {
		end := start.Add(time.Duration(i+1) * time.Minute)
		publish(sim.Step(end))
		switch i {
		case 10:
			a.kill() // mid-stream: whatever A had not committed is redelivered to it later
			t.Logf("collector a killed after %d distinct windows published", len(distinct))
		case 19:
			link.cut()
			cutAt = end
			t.Logf("bridge link cut")
		case 30:
			a = startCollectProc(t, envA, addrA, logs["a"])
		case 39:
			// Nothing published since the cut has reached the database.
			time.Sleep(time.Second)
			if n := countRows(t, db, "SELECT count(*) FROM edge_windows WHERE kind = 'window' AND start_at >= $1", cutAt); n != 0 {
				t.Fatalf("%d windows published during the outage reached the database: the link was not cut", n)
			}
			link.restore()
			t.Logf("bridge link restored")
		}
	}
	publish(sim.Flush())
	waitFor(t, 120*time.Second, "every window stored", func() bool {
		return countRows(t, db, "SELECT count(*) FROM edge_windows") >= len(distinct)
	}, nil)
	time.Sleep(2 * time.Second) // a straggler would be a duplicate: give it time to show
	if n := countRows(t, db, "SELECT count(*) FROM edge_windows"); n != len(distinct) {
		t.Fatalf("%d rows, want %d", n, len(distinct))
	}
	stored := storedWindows(t, db)
	for k := range distinct {
		if !stored[k] {
			t.Errorf("window %+v published but not stored", k)
		}
	}
	if n := countRows(t, db, "SELECT count(*) FROM edge_raw_messages"); n != 0 {
		t.Errorf("%d raw messages, want 0", n)
	}
	for name, addr := range map[string]string{"a (restarted)": addrA, "b": addrB} {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "edge_collect_messages_received_total") || strings.HasPrefix(l, "edge_collect_rows_inserted_total") ||
				strings.HasPrefix(l, "edge_collect_duplicates_total") {
				lines = append(lines, l)
			}
		}
		t.Logf("collector %s: %s", name, strings.Join(lines, "; "))
	}
	hours := countRows(t, db, "SELECT count(*) FROM edge_windows WHERE kind = 'hour'")
	t.Logf("%d distinct windows (%d hour windows) stored exactly once", len(distinct), hours)
	if hours < devices {
		t.Errorf("%d hour windows, want at least %d", hours, devices)
	}
	waitFor(t, 30*time.Second, "roll-ups refreshed", func() bool {
		return countRows(t, db, "SELECT count(*) FROM edge_rollup_dirty") == 0 &&
			countRows(t, db, "SELECT COALESCE(sum(windows), 0) FROM edge_dept_hourly") ==
				countRows(t, db, "SELECT count(*) FROM edge_windows WHERE kind = 'window'")
	}, nil)
}

// waitFor polls cond until it holds, calling step (when set) between polls.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, step func()) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, timeout)
		}
		if step != nil {
			step()
		}
		time.Sleep(200 * time.Millisecond)
	}
}
