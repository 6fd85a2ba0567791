package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

// cpuSeconds is the CPU time (user + system) of pid and, with children, of
// its live children and the children it has reaped (a PostgreSQL
// postmaster's backends), from /proc.
func cpuSeconds(pid int, children bool) float64 {
	const hz = 100 // USER_HZ of /proc/*/stat on Linux
	fields := func(p int) []string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			return nil
		}
		s := string(b)
		return strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
	}
	ticks := func(f []string, idx ...int) float64 {
		var n float64
		for _, i := range idx {
			v, _ := strconv.ParseFloat(f[i-3], 64)
			n += v
		}
		return n
	}
	f := fields(pid)
	if f == nil {
		return 0
	}
	total := ticks(f, 14, 15)
	if children {
		total += ticks(f, 16, 17)
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			p, err := strconv.Atoi(e.Name())
			if err != nil || p == pid {
				continue
			}
			if cf := fields(p); cf != nil && cf[1] == strconv.Itoa(pid) {
				total += ticks(cf, 14, 15)
			}
		}
	}
	return total / hz
}

func envInt(t *testing.T, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
		return n
	}
	return def
}

// TestFleetLoad is the fleet load test (make bench-fleet; skipped
// otherwise): 1,000 simulated devices at 60 s windows against Debian's
// mosquitto (the shipped central configuration: TLS, passwords) and a
// durable PostgreSQL, with `edge collect` processes. It measures the ingest
// rate of a queued backlog with one and two collectors (one of the two
// kill -9'ed and restarted mid-load: every window must be stored exactly
// once), the end-to-end latency and CPU at the live rate, the storage per
// device-year, and the share of department-hours that get a breakdown.
func TestFleetLoad(t *testing.T) {
	if os.Getenv("EDGE_FLEET_BENCH") == "" {
		t.Skip("fleet load test: run it with `make bench-fleet` (EDGE_FLEET_BENCH=1)")
	}
	devices := envInt(t, "EDGE_FLEET_DEVICES", 1000)
	backlog := envInt(t, "EDGE_FLEET_BACKLOG_MINUTES", 60)
	live := time.Duration(envInt(t, "EDGE_FLEET_LIVE_SECONDS", 180)) * time.Second
	report := map[string]any{"devices": devices, "backlog_minutes": backlog, "live_seconds": live.Seconds()}

	pg := pgtest.Start(t, pgtest.Options{Durable: true})
	dir := t.TempDir()
	pki := mqtttest.NewPKI(t, dir)
	ca, cert, key := pki.CA, pki.ServerCert, pki.ServerKey
	passwd := filepath.Join(dir, "passwd")
	mqtttest.WritePasswordFile(t, passwd, [2]string{"collector", "collector-secret"}, [2]string{"sim", "sim-secret"})
	port := proctest.FreePort(t)
	set := map[string]string{
		"persistence_location": dir + "/", "password_file": passwd,
		"listener": fmt.Sprintf("%d 127.0.0.1", port), "certfile": cert, "keyfile": key,
	}
	if v := os.Getenv("EDGE_FLEET_MAX_INFLIGHT"); v != "" { // the example's 1000 against e.g. mosquitto's default 20
		set["max_inflight_messages"] = v
		report["max_inflight_messages"] = v
	}
	broker := mqtttest.StartMosquittoConfig(t, exampleConfig(t, "central.conf.example", set), port)
	brokerURL := fmt.Sprintf("ssl://127.0.0.1:%d", port)
	tlsCfg := mqtt.TLSConfig{CAFile: ca}
	ctx := context.Background()
	pub, err := collect.NewSimPublisher(ctx, brokerURL, "sim", "sim-secret", tlsCfg, 10, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	collectorEnv := func(dbURL, prefix, id string) ([]string, string) {
		addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
		return []string{"EDGE_DATABASE_URL=" + dbURL, "EDGE_MQTT_URL=" + brokerURL, "EDGE_MQTT_CA=" + ca,
			"EDGE_MQTT_USERNAME=collector", "EDGE_MQTT_PASSWORD=collector-secret", "EDGE_MQTT_PREFIX=" + prefix,
			"EDGE_COLLECT_CLIENT_ID=" + id, "EDGE_COLLECT_SHARE_GROUP=" + prefix, "EDGE_COLLECT_ADDR=" + addr,
			"EDGE_LOG_LEVEL=warn"}, addr
	}
	logs := &proctest.SyncBuffer{}
	defer func() {
		if t.Failed() {
			t.Logf("collectors:\n%s", logs.String())
		}
	}()

	var liveProcs []*collectProc
	var liveDB *pgxpool.Pool
	runs := []int{1, 2}
	if os.Getenv("EDGE_FLEET_COLLECTORS") == "1" {
		runs = []int{1}
	}
	for _, n := range runs {
		prefix := fmt.Sprintf("bench%d", n)
		dbURL := pg.NewDatabase(t)
		db, err := pgxpool.New(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		type proc struct {
			env  []string
			addr string
		}
		procs := make([]proc, n)
		running := make([]*collectProc, n)
		for i := range n {
			procs[i].env, procs[i].addr = collectorEnv(dbURL, prefix, fmt.Sprintf("%s-%c", prefix, 'a'+i))
			// Register the persistent sessions, then stop: the backlog queues for them.
			p := startCollectProc(t, procs[i].env, procs[i].addr, logs)
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			<-p.done
		}

		sim, err := collect.NewSimulator(collect.SimConfig{Devices: devices, Interval: time.Minute, Prefix: prefix,
			OutageRate: 0.001, SourceDownRate: 0.002, ReplayRate: 0.001, Seed: uint64(n)})
		if err != nil {
			t.Fatal(err)
		}
		var msgs []collect.SimMessage
		start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		for i := range backlog {
			msgs = append(msgs, sim.Step(start.Add(time.Duration(i+1)*time.Minute))...)
		}
		msgs = append(msgs, sim.Flush()...)
		distinct := map[collect.Key]bool{}
		for _, m := range msgs {
			distinct[m.Key] = true
		}
		brokerCPU0 := cpuSeconds(broker.PID(), false)
		t0 := time.Now()
		if err := pub.Publish(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		pubSecs := time.Since(t0).Seconds()
		brokerCPUPub := cpuSeconds(broker.PID(), false) - brokerCPU0

		brokerCPU0, dbCPU0 := cpuSeconds(broker.PID(), false), cpuSeconds(pg.PID(), true)
		t0 = time.Now()
		for i := range n {
			running[i] = startCollectProc(t, procs[i].env, procs[i].addr, logs)
		}
		killed := false
		var collectorCPU float64
		for {
			got := countRows(t, db, "SELECT count(*) FROM edge_windows")
			if got >= len(distinct) {
				break
			}
			if n == 2 && !killed && got > len(distinct)*2/5 {
				collectorCPU += cpuSeconds(running[0].cmd.Process.Pid, false)
				running[0].kill()
				killed = true
				t.Logf("%d collectors: collector a kill -9'ed at %d of %d rows", n, got, len(distinct))
				time.Sleep(time.Second)
				running[0] = startCollectProc(t, procs[0].env, procs[0].addr, logs)
			}
			if time.Since(t0) > 10*time.Minute {
				t.Fatalf("%d collectors: %d of %d rows after 10 minutes", n, got, len(distinct))
			}
			time.Sleep(20 * time.Millisecond)
		}
		secs := time.Since(t0).Seconds()
		brokerCPU, dbCPU := cpuSeconds(broker.PID(), false)-brokerCPU0, cpuSeconds(pg.PID(), true)-dbCPU0
		for _, p := range running {
			collectorCPU += cpuSeconds(p.cmd.Process.Pid, false)
		}
		time.Sleep(2 * time.Second) // a late duplicate would show now
		rows := countRows(t, db, "SELECT count(*) FROM edge_windows")
		missing := 0
		stored := storedWindows(t, db)
		for k := range distinct {
			if !stored[k] {
				missing++
			}
		}
		res := map[string]any{
			"messages_published": len(msgs), "distinct_windows": len(distinct), "rows": rows, "missing": missing,
			"duplicates": rows - len(stored), "publish_per_second": float64(len(msgs)) / pubSecs,
			"ingest_seconds": secs, "ingest_windows_per_second": float64(len(distinct)) / secs,
			"broker_cpu_seconds_publish": brokerCPUPub, "broker_cpu_seconds_ingest": brokerCPU,
			"db_cpu_seconds_ingest": dbCPU, "collector_cpu_seconds_ingest": collectorCPU, "killed_collector": killed,
		}
		t.Logf("%d collector(s): %+v", n, res)
		report[fmt.Sprintf("collectors_%d", n)] = res
		if rows != len(distinct) || missing != 0 {
			t.Errorf("%d collectors: %d rows, %d missing, want %d rows and none missing", n, rows, missing, len(distinct))
		}
		if rate := float64(len(distinct)) / secs; rate < 10*float64(devices)/60 {
			t.Errorf("%d collectors ingest %.0f windows/s, below 10x the fleet's %.1f/s", n, rate, float64(devices)/60)
		}
		if n == 2 {
			var tableBytes, indexBytes int64
			if err := db.QueryRow(ctx, "SELECT pg_table_size('edge_windows'), pg_indexes_size('edge_windows')").Scan(&tableBytes, &indexBytes); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			cells, err := refreshOnce(ctx, dbURL)
			if err != nil {
				t.Fatal(err)
			}
			var rollupBytes int64
			if err := db.QueryRow(ctx, `SELECT pg_total_relation_size('edge_dept_hourly') + pg_total_relation_size('edge_dept_daily') +
pg_total_relation_size('edge_device_hourly') + pg_total_relation_size('edge_devices')`).Scan(&rollupBytes); err != nil {
				t.Fatal(err)
			}
			perRow := float64(tableBytes+indexBytes) / float64(rows)
			rowsPerDeviceYear := 365 * (24*60 + 24)
			st := map[string]any{
				"edge_windows_table_bytes": tableBytes, "edge_windows_index_bytes": indexBytes, "bytes_per_row": perRow,
				"rows_per_day_1000_devices": 1000 * (24*60 + 24), "rows_per_device_year": rowsPerDeviceYear,
				"edge_windows_bytes_per_device_year": perRow * float64(rowsPerDeviceYear),
				"rollup_refresh_cells":               cells, "rollup_refresh_seconds": time.Since(t0).Seconds(), "rollup_bytes": rollupBytes,
			}
			t.Logf("storage: %+v", st)
			report["storage"] = st
			liveProcs, liveDB = running, db
		}
	}

	// Live: the same 1,000 devices publishing in real time, each minute's
	// windows spread over the minute, into the two collectors.
	if live > 0 && liveDB != nil {
		res := liveRun(t, ctx, pub, liveDB, devices, live, broker.PID(), pg.PID(), liveProcs)
		report["live"] = res
	}
	writeReport(t, "EDGE_FLEET_REPORT", "fleet-bench.json", report)
}

// writeReport writes a load test's figures as JSON to $env or build/name.
func writeReport(t *testing.T, env, name string, report any) {
	out := os.Getenv(env)
	if out == "" {
		out = filepath.Join("..", "build", name)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Logf("report not written: %v", err)
		return
	}
	b, _ := json.MarshalIndent(report, "", "  ")
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Logf("report not written: %v", err)
		return
	}
	t.Logf("report written to %s", out)
}

// TestFleetBreakdownShare (make bench-fleet) measures which share of
// department-hours gets each breakdown at typical traffic.
func TestFleetBreakdownShare(t *testing.T) {
	if os.Getenv("EDGE_FLEET_BENCH") == "" {
		t.Skip("fleet load test: run it with `make bench-fleet` (EDGE_FLEET_BENCH=1)")
	}
	pg := pgtest.Start(t, pgtest.Options{})
	writeReport(t, "EDGE_FLEET_BREAKDOWN_REPORT", "fleet-breakdown.json", breakdownShare(t, pg))
}

func refreshOnce(ctx context.Context, dbURL string) (int, error) {
	s, err := collect.Open(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	return s.RefreshRollups(ctx, collect.DefaultMinGroup)
}

func liveRun(t *testing.T, ctx context.Context, pub *collect.SimPublisher, db *pgxpool.Pool, devices int, dur time.Duration,
	brokerPID, pgPID int, procs []*collectProc) map[string]any {
	t.Helper()
	sim, err := collect.NewSimulator(collect.SimConfig{Devices: devices, Interval: time.Minute, Prefix: "bench2",
		DevicePrefix: "live", Seed: 99})
	if err != nil {
		t.Fatal(err)
	}
	sent := map[collect.Key]time.Time{}
	brokerCPU0, dbCPU0 := cpuSeconds(brokerPID, false), cpuSeconds(pgPID, true)
	var collCPU0 float64
	for _, p := range procs {
		collCPU0 += cpuSeconds(p.cmd.Process.Pid, false)
	}
	t0 := time.Now()
	for next := time.Now(); time.Since(t0) < dur; {
		msgs := sim.Step(next)
		chunks := min(60, len(msgs))
		per := (len(msgs) + chunks - 1) / chunks
		for i := 0; i < len(msgs); i += per {
			chunk := msgs[i:min(i+per, len(msgs))]
			now := time.Now()
			for _, m := range chunk {
				if _, dup := sent[m.Key]; !dup {
					sent[m.Key] = now
				}
			}
			if err := pub.Publish(ctx, chunk); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Until(now.Add(time.Minute / time.Duration(chunks))))
		}
		next = next.Add(time.Minute)
	}
	elapsed := time.Since(t0).Seconds()
	brokerCPU, dbCPU := cpuSeconds(brokerPID, false)-brokerCPU0, cpuSeconds(pgPID, true)-dbCPU0
	var collCPU float64
	for _, p := range procs {
		collCPU += cpuSeconds(p.cmd.Process.Pid, false)
	}
	collCPU -= collCPU0
	waitFor(t, time.Minute, "live windows stored", func() bool {
		return countRows(t, db, "SELECT count(*) FROM edge_windows WHERE device LIKE 'live-%'") >= len(sent)
	}, nil)
	rows, err := db.Query(ctx, "SELECT device, kind, window_id, received_at FROM edge_windows WHERE device LIKE 'live-%'")
	if err != nil {
		t.Fatal(err)
	}
	var lat []float64
	for rows.Next() {
		var k collect.Key
		var id int64
		var at time.Time
		if err := rows.Scan(&k.Device, &k.Kind, &id, &at); err != nil {
			t.Fatal(err)
		}
		k.Window = uint64(id)
		if s, ok := sent[k]; ok {
			lat = append(lat, at.Sub(s).Seconds()*1000)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	res := map[string]any{
		"windows": len(sent), "seconds": elapsed, "windows_per_second": float64(len(sent)) / elapsed,
		"latency_ms_p50": pct(0.5), "latency_ms_p95": pct(0.95), "latency_ms_p99": pct(0.99), "latency_ms_max": lat[len(lat)-1],
		"broker_cpu_percent": 100 * brokerCPU / elapsed, "db_cpu_percent": 100 * dbCPU / elapsed,
		"collectors_cpu_percent": 100 * collCPU / elapsed,
	}
	t.Logf("live: %+v", res)
	if len(lat) != len(sent) {
		t.Errorf("live: %d of %d windows stored", len(lat), len(sent))
	}
	return res
}

// breakdownShare writes a simulated day of 100 devices in 10 departments
// at the default traffic straight into the store and reports which share
// of department-hours (and of devices' short windows) carries each
// breakdown under k = 5, and whom the department-hours' breakdowns cover.
func breakdownShare(t *testing.T, pg *pgtest.Server) map[string]any {
	t.Helper()
	ctx := context.Background()
	s, err := collect.Open(ctx, pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sim, err := collect.NewSimulator(collect.SimConfig{Devices: 100, Departments: 10, Interval: time.Minute, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var batch []collect.Window
	flush := func() {
		if _, err := s.Write(ctx, batch, nil); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range 24 * 60 {
		for _, m := range sim.Step(day.Add(time.Duration(i+1) * time.Minute)) {
			w, err := collect.Decode(m.Topic, m.Payload)
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, w)
		}
		if len(batch) >= 2000 {
			flush()
		}
	}
	flush()
	if _, err := s.RefreshRollups(ctx, collect.DefaultMinGroup); err != nil {
		t.Fatal(err)
	}
	res := map[string]any{}
	share := func(name, q string) {
		var n, of int
		if err := s.Pool().QueryRow(ctx, q).Scan(&n, &of); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		res[name] = float64(n) / float64(max(of, 1))
	}
	const workHours = `extract(hour FROM hour AT TIME ZONE 'UTC') BETWEEN 8 AND 16`
	for _, task := range []string{"age", "gender", "emotion"} {
		share("department_hours_"+task, "SELECT count("+task+"), count(*) FROM edge_dept_hourly")
		share("department_hours_08_17_"+task, "SELECT count("+task+"), count(*) FROM edge_dept_hourly WHERE "+workHours)
		share("device_hours_"+task, "SELECT count(*) FILTER (WHERE counts ? '"+task+"'), count(*) FROM edge_windows WHERE kind = 'hour'")
		share("device_hours_08_17_"+task, "SELECT count(*) FILTER (WHERE counts ? '"+task+"'), count(*) FROM edge_windows WHERE kind = 'hour' AND extract(hour FROM start_at AT TIME ZONE 'UTC') BETWEEN 8 AND 16")
		// Whom the department-hours' breakdowns cover: people in the summed
		// breakdowns (the devices that published the task) of all the people
		// the department's long windows saw.
		share("department_people_covered_08_17_"+task, "SELECT COALESCE(sum((coverage->'"+task+"'->>'people')::bigint), 0), COALESCE(sum(hour_people), 0) FROM edge_dept_hourly WHERE "+workHours)
		share("department_device_hours_published_08_17_"+task, "SELECT COALESCE(sum((coverage->'"+task+"'->>'published')::bigint), 0), COALESCE(sum((coverage->'"+task+"'->>'published')::bigint + (coverage->'"+task+"'->>'withheld')::bigint), 0) FROM edge_dept_hourly WHERE "+workHours)
		share("short_windows_08_17_"+task, "SELECT count(*) FILTER (WHERE counts ? '"+task+"'), count(*) FROM edge_windows WHERE kind = 'window' AND people_seen > 0 AND extract(hour FROM start_at AT TIME ZONE 'UTC') BETWEEN 8 AND 16")
	}
	t.Logf("breakdown share of department-hours (100 devices, 10 departments, one day, k=5): %+v", res)
	return res
}
