package collect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is the PostgreSQL side: windows, raw messages and roll-ups. It is
// safe for concurrent use, also by several processes on one database.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects to the database at url (a PostgreSQL URL or key=value
// string, e.g. postgres://edge@localhost/edge) and migrates its schema to
// the current version.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's error quotes the URL, password included.
		return nil, errors.New("collect: invalid database URL (want postgres://user@host/db or key=value pairs)")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("collect: connect to database: %w", err)
	}
	s := &Store{pool: pool}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("collect: connect to database %s@%s:%d/%s: %w", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	if _, err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Pool is the connection pool, for readers such as the dashboard.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping checks the database connection.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// insertWindows inserts a batch idempotently in one statement: rows already
// stored (a redelivery, a replay, another collector) are skipped; for the
// rows actually inserted it marks their department-hours for the roll-up
// refresh and updates the devices' health. Rows are inserted in key order
// so concurrent batches lock in the same order and cannot deadlock.
const insertWindows = `
WITH input AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
    device text, kind text, window_id bigint, department text, start_at timestamptz, end_at timestamptz,
    people_now int, people_seen int, unclassified int, dwell_seconds_mean double precision,
    counts jsonb, mass jsonb, withheld text[], frames_processed bigint, frames_dropped bigint, frames_corrupt bigint,
    source_down_seconds double precision, windows_lost bigint, payload_schema int)
), ins AS (
  INSERT INTO edge_windows (device, kind, window_id, department, start_at, end_at, people_now, people_seen,
    unclassified, dwell_seconds_mean, counts, mass, withheld, frames_processed, frames_dropped, frames_corrupt,
    source_down_seconds, windows_lost, payload_schema)
  SELECT device, kind, window_id, department, start_at, end_at, people_now, people_seen,
    unclassified, dwell_seconds_mean, counts, mass, withheld, frames_processed, frames_dropped, frames_corrupt,
    source_down_seconds, windows_lost, payload_schema
  FROM input ORDER BY device, kind, window_id
  ON CONFLICT DO NOTHING
  RETURNING device, kind, department, start_at, end_at, windows_lost
), dirty AS (
  INSERT INTO edge_rollup_dirty (department, hour)
  SELECT DISTINCT department, date_trunc('hour', start_at, 'UTC') FROM ins
), dev AS (
  INSERT INTO edge_devices AS d (device, department, last_window_at, last_received_at, windows_lost_total)
  SELECT device, max(department), max(end_at) FILTER (WHERE kind = 'window'), now(),
    COALESCE(sum(windows_lost) FILTER (WHERE kind = 'window'), 0)
  FROM ins GROUP BY device ORDER BY device
  ON CONFLICT (device) DO UPDATE SET
    department = EXCLUDED.department,
    last_window_at = GREATEST(d.last_window_at, EXCLUDED.last_window_at),
    last_received_at = EXCLUDED.last_received_at,
    windows_lost_total = d.windows_lost_total + EXCLUDED.windows_lost_total
)
SELECT kind, count(*) FROM ins GROUP BY kind`

// Result counts what one Write stored.
type Result struct {
	// Inserted counts new rows per kind; the other windows were already stored.
	Inserted map[string]int
	// Duplicates is the number of windows already stored.
	Duplicates int
	// Raw is the number of messages stored in edge_raw_messages.
	Raw int
}

// InsertedTotal is the number of new window rows.
func (r Result) InsertedTotal() int {
	n := 0
	for _, v := range r.Inserted {
		n += v
	}
	return n
}

// Write stores windows and raw messages in one transaction: when it returns
// nil, all of them are committed (or were already stored), so the messages
// they came from may be acknowledged.
func (s *Store) Write(ctx context.Context, windows []Window, raw []Raw) (Result, error) {
	res := Result{Inserted: map[string]int{}}
	if len(windows) == 0 && len(raw) == 0 {
		return res, nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("collect: write: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if len(windows) > 0 {
		doc, err := json.Marshal(windows)
		if err != nil {
			return res, fmt.Errorf("collect: write: encode windows: %w", err)
		}
		rows, err := tx.Query(ctx, insertWindows, string(doc))
		if err != nil {
			return res, fmt.Errorf("collect: write windows: %w", err)
		}
		var kind string
		var n int
		_, err = pgx.ForEachRow(rows, []any{&kind, &n}, func() error { res.Inserted[kind] = n; return nil })
		if err != nil {
			return res, fmt.Errorf("collect: write windows: %w", err)
		}
		res.Duplicates = len(windows) - res.InsertedTotal()
	}
	if len(raw) > 0 {
		topics, payloads, reasons := make([]string, len(raw)), make([][]byte, len(raw)), make([]string, len(raw))
		for i, r := range raw {
			topics[i], payloads[i], reasons[i] = r.Topic, r.Payload, r.Reason
		}
		if _, err := tx.Exec(ctx, `INSERT INTO edge_raw_messages (topic, payload, reason)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[])`, topics, payloads, reasons); err != nil {
			return res, fmt.Errorf("collect: write raw messages: %w", err)
		}
		res.Raw = len(raw)
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{Inserted: map[string]int{}}, fmt.Errorf("collect: write: commit: %w", err)
	}
	return res, nil
}

// rollupLock is the advisory lock key held by the one refresh running at a
// time across all collectors on a database.
const rollupLock = 0x65646765_0002

// refreshSQL recomputes the roll-ups of the department-hours (and their
// days) marked dirty, in one transaction. Each cell is recomputed from the
// base rows, never incremented, so a cell refreshed twice is still right.
// Markers are taken in the first statement; rows committed later keep their
// own markers for the next refresh.
var refreshSQL = []string{
	`CREATE TEMP TABLE edge_refresh_cells (department text, hour timestamptz, PRIMARY KEY (department, hour)) ON COMMIT DROP`,
	`WITH d AS (DELETE FROM edge_rollup_dirty RETURNING department, hour)
INSERT INTO edge_refresh_cells SELECT DISTINCT department, hour FROM d`,
	// Device-hours of every device seen in a dirty department-hour.
	`INSERT INTO edge_device_hourly AS h (device, hour, department, windows, people_seen, source_down_seconds, windows_lost)
SELECT w.device, c.hour, c.department, count(*), sum(w.people_seen), sum(w.source_down_seconds), sum(w.windows_lost)
FROM edge_refresh_cells c JOIN edge_windows w
  ON w.department = c.department AND w.start_at >= c.hour AND w.start_at < c.hour + interval '1 hour'
WHERE w.kind = 'window'
GROUP BY w.device, c.hour, c.department
ON CONFLICT (device, hour, department) DO UPDATE SET windows = EXCLUDED.windows, people_seen = EXCLUDED.people_seen,
  source_down_seconds = EXCLUDED.source_down_seconds, windows_lost = EXCLUDED.windows_lost`,
	// Department-hours. $1 is the minimum group size k. Label counts sum the
	// long windows of the devices that published the task (a device that
	// withheld it adds nothing, and coverage says so); each published cell
	// is 0 or >= k on its device, so the sums are too, and the k check on
	// them is a defence against devices running a smaller k.
	`WITH w AS (
  SELECT c.department AS cdept, c.hour AS chour, w.*
  FROM edge_refresh_cells c JOIN edge_windows w
    ON w.department = c.department AND w.start_at >= c.hour AND w.start_at < c.hour + interval '1 hour'
), base AS (
  SELECT cdept, chour, count(DISTINCT device) AS devices, count(*) AS windows, sum(people_seen) AS people_seen,
    sum(source_down_seconds) AS source_down_seconds, sum(windows_lost) AS windows_lost
  FROM w WHERE kind = 'window' GROUP BY cdept, chour
), peak AS (
  SELECT cdept, chour, max(total) AS people_now_peak FROM (
    SELECT cdept, chour, minute, sum(pn) AS total FROM (
      SELECT cdept, chour, device, date_trunc('minute', end_at) AS minute, max(people_now) AS pn
      FROM w WHERE kind = 'window' GROUP BY cdept, chour, device, minute) per_device
    GROUP BY cdept, chour, minute) per_minute
  GROUP BY cdept, chour
), hw AS (
  SELECT cdept, chour, device, people_seen, counts, withheld FROM w WHERE kind = 'hour'
), pub AS (
  SELECT cdept, chour, t.task,
    count(*) FILTER (WHERE hw.counts -> t.task IS NOT NULL AND NOT t.task = ANY(hw.withheld)) AS published,
    count(*) FILTER (WHERE t.task = ANY(hw.withheld)) AS withheld
  FROM hw CROSS JOIN LATERAL unnest(ARRAY['age', 'gender', 'emotion']) AS t(task)
  GROUP BY cdept, chour, t.task
), cells AS (
  SELECT cdept, chour, t.task, e.key AS label, sum(e.value::bigint) AS n
  FROM hw CROSS JOIN LATERAL unnest(ARRAY['age', 'gender', 'emotion']) AS t(task)
    CROSS JOIN LATERAL jsonb_each_text(hw.counts -> t.task) AS e
  WHERE NOT t.task = ANY(hw.withheld)
  GROUP BY cdept, chour, t.task, e.key
), tasks AS (
  SELECT cdept, chour, task, jsonb_object_agg(label, n) AS counts, sum(n) AS people,
    bool_or(n BETWEEN 1 AND $1::int - 1) AS small
  FROM cells GROUP BY cdept, chour, task
), cov AS (
  -- A summed breakdown that fails k (only possible with devices on a
  -- smaller k) is withheld as a whole: it then covers nobody.
  SELECT p.cdept, p.chour,
    COALESCE(jsonb_object_agg(p.task, jsonb_build_object(
      'people', CASE WHEN t.small THEN 0 ELSE COALESCE(t.people, 0) END,
      'published', CASE WHEN t.small THEN 0 ELSE p.published END,
      'withheld', CASE WHEN t.small THEN p.published + p.withheld ELSE p.withheld END))
      FILTER (WHERE p.published + p.withheld > 0), '{}') AS coverage
  FROM pub p LEFT JOIN tasks t USING (cdept, chour, task)
  GROUP BY p.cdept, p.chour
), hp AS (
  SELECT cdept, chour, sum(people_seen) AS hour_people FROM hw GROUP BY cdept, chour
), labels AS (
  SELECT cdept, chour,
    max(CASE WHEN task = 'age' AND NOT small THEN counts::text END)::jsonb AS age,
    max(CASE WHEN task = 'gender' AND NOT small THEN counts::text END)::jsonb AS gender,
    max(CASE WHEN task = 'emotion' AND NOT small THEN counts::text END)::jsonb AS emotion
  FROM tasks GROUP BY cdept, chour
)
INSERT INTO edge_dept_hourly AS d (department, hour, devices, windows, people_seen, people_now_peak,
  source_down_seconds, windows_lost, age, gender, emotion, hour_people, coverage)
SELECT c.department, c.hour, COALESCE(b.devices, 0), COALESCE(b.windows, 0), COALESCE(b.people_seen, 0),
  COALESCE(p.people_now_peak, 0), COALESCE(b.source_down_seconds, 0), COALESCE(b.windows_lost, 0),
  l.age, l.gender, l.emotion, COALESCE(hp.hour_people, 0), COALESCE(v.coverage, '{}')
FROM edge_refresh_cells c
  LEFT JOIN base b ON b.cdept = c.department AND b.chour = c.hour
  LEFT JOIN peak p ON p.cdept = c.department AND p.chour = c.hour
  LEFT JOIN labels l ON l.cdept = c.department AND l.chour = c.hour
  LEFT JOIN hp ON hp.cdept = c.department AND hp.chour = c.hour
  LEFT JOIN cov v ON v.cdept = c.department AND v.chour = c.hour
ON CONFLICT (department, hour) DO UPDATE SET devices = EXCLUDED.devices, windows = EXCLUDED.windows,
  people_seen = EXCLUDED.people_seen, people_now_peak = EXCLUDED.people_now_peak,
  source_down_seconds = EXCLUDED.source_down_seconds, windows_lost = EXCLUDED.windows_lost,
  age = EXCLUDED.age, gender = EXCLUDED.gender, emotion = EXCLUDED.emotion,
  hour_people = EXCLUDED.hour_people, coverage = EXCLUDED.coverage`,
	// Department-days from the department-hours: label counts sum the hours
	// that have a breakdown (a withheld hour adds nothing, so the day is the
	// mix over its reported hours), again withheld when a cell is under k;
	// coverage sums the hours' (published and withheld count device-hours).
	`WITH days AS (
  SELECT DISTINCT department, date_trunc('day', hour, 'UTC') AS day FROM edge_refresh_cells
), h AS (
  SELECT d.day, h.* FROM days d JOIN edge_dept_hourly h
    ON h.department = d.department AND h.hour >= d.day AND h.hour < d.day + interval '24 hours'
), base AS (
  SELECT department, day, sum(windows) AS windows, sum(people_seen) AS people_seen, max(people_now_peak) AS people_now_peak,
    sum(source_down_seconds) AS source_down_seconds, sum(windows_lost) AS windows_lost, sum(hour_people) AS hour_people
  FROM h GROUP BY department, day
), devs AS (
  SELECT d.department, d.day, count(DISTINCT dh.device) AS devices
  FROM days d JOIN edge_device_hourly dh
    ON dh.department = d.department AND dh.hour >= d.day AND dh.hour < d.day + interval '24 hours'
  GROUP BY d.department, d.day
), cells AS (
  SELECT department, day, t.task, e.key AS label, sum(e.value::bigint) AS n
  FROM h CROSS JOIN LATERAL (VALUES ('age', h.age), ('gender', h.gender), ('emotion', h.emotion)) AS t(task, c)
    CROSS JOIN LATERAL jsonb_each_text(t.c) AS e
  GROUP BY department, day, t.task, e.key
), tasks AS (
  SELECT department, day, task, jsonb_object_agg(label, n) AS counts, bool_or(n BETWEEN 1 AND $1::int - 1) AS small
  FROM cells GROUP BY department, day, task
), pub AS (
  SELECT department, day, t.task, sum((t.v ->> 'people')::bigint) AS people,
    sum((t.v ->> 'published')::bigint) AS published, sum((t.v ->> 'withheld')::bigint) AS withheld
  FROM h CROSS JOIN LATERAL jsonb_each(h.coverage) AS t(task, v)
  GROUP BY department, day, t.task
), cov AS (
  SELECT p.department, p.day, jsonb_object_agg(p.task, jsonb_build_object(
      'people', CASE WHEN t.small THEN 0 ELSE p.people END,
      'published', CASE WHEN t.small THEN 0 ELSE p.published END,
      'withheld', CASE WHEN t.small THEN p.published + p.withheld ELSE p.withheld END)) AS coverage
  FROM pub p LEFT JOIN tasks t USING (department, day, task)
  GROUP BY p.department, p.day
), labels AS (
  SELECT department, day,
    max(CASE WHEN task = 'age' AND NOT small THEN counts::text END)::jsonb AS age,
    max(CASE WHEN task = 'gender' AND NOT small THEN counts::text END)::jsonb AS gender,
    max(CASE WHEN task = 'emotion' AND NOT small THEN counts::text END)::jsonb AS emotion
  FROM tasks GROUP BY department, day
)
INSERT INTO edge_dept_daily (department, day, devices, windows, people_seen, people_now_peak,
  source_down_seconds, windows_lost, age, gender, emotion, hour_people, coverage)
SELECT b.department, b.day, COALESCE(v.devices, 0), b.windows, b.people_seen, b.people_now_peak,
  b.source_down_seconds, b.windows_lost, l.age, l.gender, l.emotion, b.hour_people, COALESCE(cv.coverage, '{}')
FROM base b
  LEFT JOIN devs v USING (department, day)
  LEFT JOIN labels l USING (department, day)
  LEFT JOIN cov cv USING (department, day)
ON CONFLICT (department, day) DO UPDATE SET devices = EXCLUDED.devices, windows = EXCLUDED.windows,
  people_seen = EXCLUDED.people_seen, people_now_peak = EXCLUDED.people_now_peak,
  source_down_seconds = EXCLUDED.source_down_seconds, windows_lost = EXCLUDED.windows_lost,
  age = EXCLUDED.age, gender = EXCLUDED.gender, emotion = EXCLUDED.emotion,
  hour_people = EXCLUDED.hour_people, coverage = EXCLUDED.coverage`,
}

// RefreshRollups recomputes the roll-ups of every department-hour that got
// new windows since the last refresh, with minGroup as the minimum group
// size k: a label count of 1 to k-1 withholds the task's breakdown of that
// cell. When k differs from the one the roll-ups were computed with, all of
// them are recomputed. It returns the number of department-hours refreshed,
// or -1 when another collector was refreshing (it will pick up the work).
func (s *Store) RefreshRollups(ctx context.Context, minGroup int) (int, error) {
	if minGroup < 1 {
		return 0, fmt.Errorf("collect: refresh: minimum group %d, want 1 or more", minGroup)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("collect: refresh: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var locked bool
	if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", int64(rollupLock)).Scan(&locked); err != nil {
		return 0, fmt.Errorf("collect: refresh: lock: %w", err)
	}
	if !locked {
		return -1, nil
	}
	var stored string
	err = tx.QueryRow(ctx, "SELECT value FROM edge_settings WHERE key = 'rollup_min_group'").Scan(&stored)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("collect: refresh: read min group: %w", err)
	}
	if k := strconv.Itoa(minGroup); stored != k {
		if _, err := tx.Exec(ctx, `INSERT INTO edge_rollup_dirty (department, hour)
SELECT DISTINCT department, date_trunc('hour', start_at, 'UTC') FROM edge_windows`); err != nil {
			return 0, fmt.Errorf("collect: refresh: mark all for min group %s: %w", k, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO edge_settings (key, value) VALUES ('rollup_min_group', $1)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, k); err != nil {
			return 0, fmt.Errorf("collect: refresh: store min group: %w", err)
		}
	}
	var cells int
	for i, q := range refreshSQL {
		var args []any
		if i >= 3 {
			args = []any{minGroup}
		}
		tag, err := tx.Exec(ctx, q, args...)
		if err != nil {
			return 0, fmt.Errorf("collect: refresh roll-ups (step %d): %w", i, err)
		}
		if i == 1 {
			cells = int(tag.RowsAffected())
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("collect: refresh: commit: %w", err)
	}
	return cells, nil
}
