package collect

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrations are applied in order, each once, recorded in
// edge_schema_migrations. Never edit a released migration: append a new one.
var migrations = []string{
	// 1: windows, raw messages, roll-ups and device health.
	`
CREATE TABLE edge_windows (
  device              text        NOT NULL,
  kind                text        NOT NULL DEFAULT 'window',
  window_id           bigint      NOT NULL,
  department          text        NOT NULL,
  start_at            timestamptz NOT NULL,
  end_at              timestamptz NOT NULL,
  people_now          int         NOT NULL,
  people_seen         int         NOT NULL,
  unclassified        int         NOT NULL,
  dwell_seconds_mean  double precision NOT NULL,
  counts              jsonb       NOT NULL DEFAULT '{}',
  mass                jsonb       NOT NULL DEFAULT '{}',
  withheld            text[]      NOT NULL DEFAULT '{}',
  frames_processed    bigint      NOT NULL,
  frames_dropped      bigint      NOT NULL,
  frames_corrupt      bigint      NOT NULL,
  source_down_seconds double precision NOT NULL,
  windows_lost        bigint      NOT NULL DEFAULT 0,
  payload_schema      int         NOT NULL,
  received_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (device, kind, window_id)
);
CREATE INDEX edge_windows_department_start ON edge_windows (department, start_at);

CREATE TABLE edge_raw_messages (
  id          bigserial   PRIMARY KEY,
  topic       text        NOT NULL,
  payload     bytea       NOT NULL,
  reason      text        NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);

-- Department-hours whose roll-ups are stale: one row per inserting batch
-- and department-hour, written in the batch's transaction and deleted by the
-- refresh that recomputes them (append-only, so concurrent collectors never
-- wait on each other here).
CREATE TABLE edge_rollup_dirty (
  department text        NOT NULL,
  hour       timestamptz NOT NULL
);

CREATE TABLE edge_settings (
  key   text PRIMARY KEY,
  value text NOT NULL
);

CREATE TABLE edge_dept_hourly (
  department          text        NOT NULL,
  hour                timestamptz NOT NULL,
  devices             int         NOT NULL,
  windows             int         NOT NULL,
  people_seen         bigint      NOT NULL,
  people_now_peak     int         NOT NULL,
  source_down_seconds double precision NOT NULL,
  windows_lost        bigint      NOT NULL,
  age                 jsonb,
  gender              jsonb,
  emotion             jsonb,
  PRIMARY KEY (department, hour)
);

CREATE TABLE edge_dept_daily (
  department          text        NOT NULL,
  day                 timestamptz NOT NULL,
  devices             int         NOT NULL,
  windows             int         NOT NULL,
  people_seen         bigint      NOT NULL,
  people_now_peak     int         NOT NULL,
  source_down_seconds double precision NOT NULL,
  windows_lost        bigint      NOT NULL,
  age                 jsonb,
  gender              jsonb,
  emotion             jsonb,
  PRIMARY KEY (department, day)
);

CREATE TABLE edge_device_hourly (
  device              text        NOT NULL,
  hour                timestamptz NOT NULL,
  department          text        NOT NULL,
  windows             int         NOT NULL,
  people_seen         bigint      NOT NULL,
  source_down_seconds double precision NOT NULL,
  windows_lost        bigint      NOT NULL,
  PRIMARY KEY (device, hour, department)
);
CREATE INDEX edge_device_hourly_department_hour ON edge_device_hourly (department, hour);

-- Kept current by the inserting transaction from the rows it inserted (a
-- duplicate changes nothing), so the health view never scans edge_windows.
CREATE TABLE edge_devices (
  device             text        PRIMARY KEY,
  department         text        NOT NULL,
  last_window_at     timestamptz,
  last_received_at   timestamptz NOT NULL,
  windows_lost_total bigint      NOT NULL
);

CREATE VIEW edge_device_health AS
SELECT d.device, d.department, d.last_window_at, d.last_received_at, d.windows_lost_total,
  COALESCE((SELECT sum(h.source_down_seconds) FROM edge_device_hourly h
    WHERE h.device = d.device AND h.hour > now() - interval '24 hours'), 0)::double precision AS source_down_seconds_24h
FROM edge_devices d;
`,
	// 2: breakdown coverage. The roll-ups now sum the long windows of the
	// devices that published a task (each published cell is 0 or >= k on its
	// device, so every sum is too) instead of withholding the department-hour
	// when any device withheld it; coverage says how much of the department
	// that sum covers: per task {"people": n, "published": d, "withheld": w},
	// n the people in the summed breakdown, d and w the device long windows
	// (device-hours) that published and withheld the task. hour_people is the
	// people the department's long windows saw, classified or not, published
	// or not. Existing cells are recomputed on the next refresh.
	`
ALTER TABLE edge_dept_hourly ADD COLUMN hour_people bigint NOT NULL DEFAULT 0,
  ADD COLUMN coverage jsonb NOT NULL DEFAULT '{}';
ALTER TABLE edge_dept_daily ADD COLUMN hour_people bigint NOT NULL DEFAULT 0,
  ADD COLUMN coverage jsonb NOT NULL DEFAULT '{}';
INSERT INTO edge_rollup_dirty (department, hour)
SELECT DISTINCT department, date_trunc('hour', start_at, 'UTC') FROM edge_windows;
`,
}

// SchemaVersion is the database schema version this package migrates to.
func SchemaVersion() int { return len(migrations) }

// migrateLock is the advisory lock key that serialises migrations of
// collectors starting together.
const migrateLock = 0x65646765_0001 // "edge" 1

// migrate applies the pending migrations in one transaction and returns the
// versions it applied. A database at a newer version than this binary knows
// is an error: an old collector must not write into a schema it does not know.
func migrate(ctx context.Context, db beginner) ([]int, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("collect: migrate: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLock)); err != nil {
		return nil, fmt.Errorf("collect: migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS edge_schema_migrations (
  version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("collect: migrate: create edge_schema_migrations: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM edge_schema_migrations").Scan(&current); err != nil {
		return nil, fmt.Errorf("collect: migrate: read version: %w", err)
	}
	if current > len(migrations) {
		return nil, fmt.Errorf("collect: database schema is at version %d, newer than this collector's %d: upgrade the collector", current, len(migrations))
	}
	var applied []int
	for v := current + 1; v <= len(migrations); v++ {
		if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
			return nil, fmt.Errorf("collect: migrate to version %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO edge_schema_migrations (version) VALUES ($1)", v); err != nil {
			return nil, fmt.Errorf("collect: migrate: record version %d: %w", v, err)
		}
		applied = append(applied, v)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("collect: migrate: commit: %w", err)
	}
	return applied, nil
}

type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}
