package dashboard

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres reads the collector's roll-ups: edge_dept_hourly,
// edge_dept_daily and edge_device_health, nothing else.
type Postgres struct{ pool *pgxpool.Pool }

// NewPostgres returns a Source over pool.
func NewPostgres(pool *pgxpool.Pool) *Postgres { return &Postgres{pool: pool} }

// Both roll-up tables have the same columns but the cell's start; the
// table and column names are constants, never input.
var cellQueries = map[Step]string{
	Hour: `SELECT department, hour, devices, windows, people_seen, people_now_peak, source_down_seconds, windows_lost, age, gender, emotion, hour_people, coverage
FROM edge_dept_hourly WHERE hour >= $1 AND hour < $2 ORDER BY department, hour`,
	Day: `SELECT department, day, devices, windows, people_seen, people_now_peak, source_down_seconds, windows_lost, age, gender, emotion, hour_people, coverage
FROM edge_dept_daily WHERE day >= $1 AND day < $2 ORDER BY department, day`,
}

// Cells implements Source.
func (p *Postgres) Cells(ctx context.Context, step Step, from, to time.Time) ([]Cell, error) {
	q, ok := cellQueries[step]
	if !ok {
		return nil, fmt.Errorf("dashboard: step %q: want hour or day", step)
	}
	rows, err := p.pool.Query(ctx, q, from, to)
	if err != nil {
		return nil, fmt.Errorf("dashboard: query %s roll-ups: %w", step, err)
	}
	var out []Cell
	var c Cell
	_, err = pgx.ForEachRow(rows, []any{&c.Department, &c.Start, &c.Devices, &c.Windows, &c.PeopleSeen, &c.PeopleNowPeak,
		&c.SourceDownSeconds, &c.WindowsLost, &c.Age, &c.Gender, &c.Emotion, &c.HourPeople, &c.Coverage}, func() error {
		c.Start = c.Start.UTC()
		out = append(out, c)
		c = Cell{} // the maps are scanned fresh for each row
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard: read %s roll-ups: %w", step, err)
	}
	return out, nil
}

// Devices implements Source.
func (p *Postgres) Devices(ctx context.Context) ([]Device, error) {
	rows, err := p.pool.Query(ctx, `SELECT device, department, last_window_at, last_received_at, windows_lost_total, source_down_seconds_24h
FROM edge_device_health ORDER BY department, device`)
	if err != nil {
		return nil, fmt.Errorf("dashboard: query device health: %w", err)
	}
	var out []Device
	var d Device
	_, err = pgx.ForEachRow(rows, []any{&d.Device, &d.Department, &d.LastWindowAt, &d.LastReceivedAt, &d.WindowsLostTotal, &d.SourceDownSeconds24h}, func() error {
		if d.LastWindowAt != nil {
			t := d.LastWindowAt.UTC()
			d.LastWindowAt = &t
		}
		d.LastReceivedAt = d.LastReceivedAt.UTC()
		out = append(out, d)
		d = Device{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard: read device health: %w", err)
	}
	return out, nil
}
