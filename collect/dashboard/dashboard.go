// Package dashboard serves the collector's web page: headcount per
// department over time, the age and gender mix per department (withheld
// cells shown as withheld, never as zero), device health, and a time-range
// picker. The page and its charting library (uPlot, vendored under static/)
// are embedded in the binary: nothing is fetched from elsewhere.
//
// The page reads JSON from the handler, which reads the collector's roll-ups
// through [Source] (implemented over PostgreSQL by [Postgres]). Serve the
// handler behind internal/localhttp's rules like every local page.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"time"
)

//go:embed static
var static embed.FS

// Step is the length of one roll-up cell.
type Step string

// Steps of the roll-ups.
const (
	Hour Step = "hour"
	Day  Step = "day"
)

// Bounds on what one request may ask for: an hour-by-hour year of a large
// plant would be a response of megabytes and a long query.
const (
	maxHourRange = 31 * 24 * time.Hour
	maxDayRange  = 2 * 366 * 24 * time.Hour
)

// Cell is one department's roll-up over one hour or day
// (edge_dept_hourly / edge_dept_daily).
type Cell struct {
	Department string    `json:"department"`
	Start      time.Time `json:"start"`
	Devices    int       `json:"devices"`
	Windows    int       `json:"windows"`
	// PeopleSeen sums the short windows' people seen (person-windows).
	PeopleSeen        int64   `json:"people_seen"`
	PeopleNowPeak     int     `json:"people_now_peak"`
	SourceDownSeconds float64 `json:"source_down_seconds"`
	WindowsLost       int64   `json:"windows_lost"`
	// Age, Gender and Emotion are label counts; nil (JSON null) when
	// withheld for privacy or not reported: unknown, never zero.
	Age     map[string]int64 `json:"age"`
	Gender  map[string]int64 `json:"gender"`
	Emotion map[string]int64 `json:"emotion"`
	// HourPeople is the people the devices' long windows saw, classified or
	// not: the "of" of a breakdown's coverage.
	HourPeople int64 `json:"hour_people"`
	// Coverage says, per task with a long window that published or withheld
	// it, whom the breakdown covers: a department's breakdown sums only the
	// devices that published the task.
	Coverage map[string]Coverage `json:"coverage"`
}

// Coverage is how much of a department a breakdown covers
// ("age mix of 62 of 80 people, 3 of 4 cameras").
type Coverage struct {
	// People is the number of people in the breakdown (its counts' sum).
	People int64 `json:"people"`
	// Published and Withheld count the devices' long windows (device-hours)
	// that published and withheld the task.
	Published int `json:"published"`
	Withheld  int `json:"withheld"`
}

// Device is one device's health (edge_device_health).
type Device struct {
	Device     string `json:"device"`
	Department string `json:"department"`
	// LastWindowAt is the end of its latest short window; nil before any.
	LastWindowAt         *time.Time `json:"last_window_at"`
	LastReceivedAt       time.Time  `json:"last_received_at"`
	WindowsLostTotal     int64      `json:"windows_lost_total"`
	SourceDownSeconds24h float64    `json:"source_down_seconds_24h"`
}

// Source is what the dashboard reads.
type Source interface {
	// Cells returns the roll-up cells of every department starting in
	// [from, to), ordered by department and start.
	Cells(ctx context.Context, step Step, from, to time.Time) ([]Cell, error)
	// Devices returns every device's health, ordered by department and device.
	Devices(ctx context.Context) ([]Device, error)
}

// Option configures the handler.
type Option func(*handler)

// WithLogger sets the logger for query failures (default: discard).
func WithLogger(l *slog.Logger) Option { return func(h *handler) { h.log = l } }

// WithClock sets the clock the page's "now" comes from (tests).
func WithClock(now func() time.Time) Option { return func(h *handler) { h.now = now } }

type handler struct {
	src Source
	log *slog.Logger
	now func() time.Time
	mux *http.ServeMux
}

// New returns the dashboard's handler: the page at /, its files under
// /static/, and the JSON it reads under /api/. Only GET and HEAD are served.
func New(src Source, opts ...Option) http.Handler {
	h := &handler{src: src, log: slog.New(slog.DiscardHandler), now: time.Now, mux: http.NewServeMux()}
	for _, o := range opts {
		o(h)
	}
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	h.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(files)))
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "index.html")
	})
	h.mux.HandleFunc("GET /api/cells", h.cells)
	h.mux.HandleFunc("GET /api/devices", h.devices)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	// Everything the page needs comes from here; nothing may frame it.
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	h.mux.ServeHTTP(w, r)
}

// cellsResponse is the JSON of /api/cells.
type cellsResponse struct {
	Step  Step      `json:"step"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Now   time.Time `json:"now"`
	Cells []Cell    `json:"cells"`
}

// cells serves /api/cells?step=hour|day&from=RFC3339&to=RFC3339.
func (h *handler) cells(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	step := Step(q.Get("step"))
	if step == "" {
		step = Hour
	}
	from, to, err := parseRange(q.Get("from"), q.Get("to"))
	if err == nil {
		err = checkRange(step, from, to)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cells, err := h.src.Cells(r.Context(), step, from, to)
	if err != nil {
		h.fail(w, r, "cells", err)
		return
	}
	if cells == nil {
		cells = []Cell{}
	}
	writeJSON(w, cellsResponse{Step: step, From: from, To: to, Now: h.now().UTC(), Cells: cells})
}

func parseRange(fromS, toS string) (from, to time.Time, err error) {
	if fromS == "" || toS == "" {
		return from, to, errors.New("from and to are required (RFC 3339 times)")
	}
	if from, err = time.Parse(time.RFC3339, fromS); err != nil {
		return from, to, fmt.Errorf("from: %w", err)
	}
	if to, err = time.Parse(time.RFC3339, toS); err != nil {
		return from, to, fmt.Errorf("to: %w", err)
	}
	return from.UTC(), to.UTC(), nil
}

func checkRange(step Step, from, to time.Time) error {
	if !to.After(from) {
		return fmt.Errorf("to %s is not after from %s", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	limit := maxDayRange
	switch step {
	case Hour:
		limit = maxHourRange
	case Day:
	default:
		return fmt.Errorf("step %q: want hour or day", step)
	}
	if to.Sub(from) > limit {
		return fmt.Errorf("range of %v is longer than the %v allowed for step %s", to.Sub(from), limit, step)
	}
	return nil
}

// devicesResponse is the JSON of /api/devices.
type devicesResponse struct {
	Now     time.Time `json:"now"`
	Devices []Device  `json:"devices"`
}

func (h *handler) devices(w http.ResponseWriter, r *http.Request) {
	devs, err := h.src.Devices(r.Context())
	if err != nil {
		h.fail(w, r, "devices", err)
		return
	}
	if devs == nil {
		devs = []Device{}
	}
	writeJSON(w, devicesResponse{Now: h.now().UTC(), Devices: devs})
}

// fail logs a query failure and answers 503 without its details (they may
// name tables, hosts or users).
func (h *handler) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	h.log.Error("dashboard: query failed", "what", what, "err", err)
	http.Error(w, "the database could not answer; see the collector's log", http.StatusServiceUnavailable)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
