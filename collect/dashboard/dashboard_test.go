package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeSource records what it was asked and answers canned rows.
type fakeSource struct {
	cells   []Cell
	devices []Device
	err     error

	step     Step
	from, to time.Time
}

func (f *fakeSource) Cells(_ context.Context, step Step, from, to time.Time) ([]Cell, error) {
	f.step, f.from, f.to = step, from, to
	return f.cells, f.err
}

func (f *fakeSource) Devices(context.Context) ([]Device, error) { return f.devices, f.err }

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func get(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

func TestPageAndAssets(t *testing.T) {
	h := New(&fakeSource{})
	tests := []struct {
		target, wantType, wantBody string
	}{
		{"/", "text/html", `src="static/uPlot.iife.min.js"`},
		{"/static/uPlot.iife.min.js", "javascript", "uPlot (v1.6.32)"},
		{"/static/uPlot.min.css", "text/css", ".uplot"},
		{"/static/dashboard.js", "javascript", "api/cells"},
		{"/static/uPlot.LICENSE", "text/plain", "MIT License"},
	}
	for _, tt := range tests {
		rec := get(t, h, http.MethodGet, tt.target)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Content-Type"), tt.wantType) || !strings.Contains(rec.Body.String(), tt.wantBody) {
			t.Errorf("GET %s: %d %q, body has %q: %v", tt.target, rec.Code, rec.Header().Get("Content-Type"), tt.wantBody, strings.Contains(rec.Body.String(), tt.wantBody))
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", tt.target, csp)
		}
	}
	for _, tt := range []struct {
		method, target string
		want           int
	}{
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodPost, "/api/cells", http.StatusMethodNotAllowed},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/static/nope.js", http.StatusNotFound},
		{http.MethodHead, "/", http.StatusOK},
	} {
		if rec := get(t, h, tt.method, tt.target); rec.Code != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.target, rec.Code, tt.want)
		}
	}
}

func TestCells(t *testing.T) {
	src := &fakeSource{cells: []Cell{
		{Department: "assembly", Start: t0, Devices: 2, Windows: 120, PeopleSeen: 410, PeopleNowPeak: 9,
			Age: map[string]int64{"20-39": 12, "40-59": 7}, Gender: map[string]int64{"female": 8, "male": 11}, HourPeople: 25,
			Coverage: map[string]Coverage{"age": {People: 19, Published: 2}, "gender": {People: 19, Published: 1, Withheld: 1}}},
		{Department: "packing", Start: t0, Devices: 1, Windows: 60, PeopleSeen: 14, PeopleNowPeak: 2}, // withheld: nil maps
	}}
	h := New(src, WithClock(func() time.Time { return t0.Add(90 * time.Minute) }))
	rec := get(t, h, http.MethodGet, "/api/cells?step=hour&from=2026-03-02T09:00:00Z&to=2026-03-02T11:00:00%2B01:00")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, headers %v: %s", rec.Code, rec.Header(), rec.Body)
	}
	if src.step != Hour || !src.from.Equal(t0) || !src.to.Equal(t0.Add(time.Hour)) {
		t.Errorf("source asked for %s %v..%v, want hour 09:00..10:00 UTC", src.step, src.from, src.to)
	}
	var got struct {
		Step  string
		Now   time.Time
		Cells []map[string]json.RawMessage
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Step != "hour" || !got.Now.Equal(t0.Add(90*time.Minute)) || len(got.Cells) != 2 {
		t.Fatalf("response %+v", got)
	}
	// A withheld breakdown is null, never an empty object or zeros.
	if string(got.Cells[1]["age"]) != "null" || string(got.Cells[1]["gender"]) != "null" {
		t.Errorf("withheld cell: age %s gender %s, want null", got.Cells[1]["age"], got.Cells[1]["gender"])
	}
	if string(got.Cells[0]["gender"]) != `{"female":8,"male":11}` {
		t.Errorf("gender %s", got.Cells[0]["gender"])
	}
	// Coverage travels with the breakdown: whom it covers, of how many.
	if c := string(got.Cells[0]["coverage"]); c != `{"age":{"people":19,"published":2,"withheld":0},"gender":{"people":19,"published":1,"withheld":1}}` ||
		string(got.Cells[0]["hour_people"]) != "25" {
		t.Errorf("coverage %s of %s people", c, got.Cells[0]["hour_people"])
	}

	src.cells = nil
	rec = get(t, h, http.MethodGet, "/api/cells?step=day&from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"cells":[]`) || src.step != Day {
		t.Errorf("empty day range: %d %s (step %s)", rec.Code, rec.Body, src.step)
	}
}

func TestCellsBadRequests(t *testing.T) {
	src := &fakeSource{}
	h := New(src)
	tests := []struct {
		query, want string
	}{
		{"", "from and to are required"},
		{"from=2026-03-02T09:00:00Z", "from and to are required"},
		{"from=yesterday&to=2026-03-02T09:00:00Z", "from:"},
		{"from=2026-03-02T09:00:00Z&to=2026-03-02", "to:"},
		{"from=2026-03-02T09:00:00Z&to=2026-03-02T09:00:00Z", "is not after"},
		{"step=minute&from=2026-03-02T09:00:00Z&to=2026-03-02T10:00:00Z", `step "minute"`},
		{"step=hour&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "longer than"},
		{"step=day&from=2020-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "longer than"},
	}
	for _, tt := range tests {
		src.step = ""
		rec := get(t, h, http.MethodGet, "/api/cells?"+tt.query)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tt.want) {
			t.Errorf("?%s: %d %q, want 400 mentioning %q", tt.query, rec.Code, rec.Body, tt.want)
		}
		if src.step != "" {
			t.Errorf("?%s: the source was queried", tt.query)
		}
	}
}

func TestDevices(t *testing.T) {
	last := t0.Add(-3 * time.Minute)
	src := &fakeSource{devices: []Device{
		{Device: "cam-1", Department: "assembly", LastWindowAt: &last, LastReceivedAt: t0, WindowsLostTotal: 3, SourceDownSeconds24h: 42},
		{Device: "cam-9", Department: "packing", LastReceivedAt: t0},
	}}
	rec := get(t, New(src, WithClock(func() time.Time { return t0 })), http.MethodGet, "/api/devices")
	var got devicesResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
	}
	if len(got.Devices) != 2 || got.Devices[0].WindowsLostTotal != 3 || !got.Devices[0].LastWindowAt.Equal(last) || got.Devices[1].LastWindowAt != nil || !got.Now.Equal(t0) {
		t.Errorf("devices %+v", got)
	}
}

// A failing database answers 503 without its error's details.
func TestSourceError(t *testing.T) {
	src := &fakeSource{err: errors.New(`connect to postgres://collector:secret@db.internal failed`)}
	h := New(src)
	for _, target := range []string{"/api/devices", "/api/cells?from=2026-03-02T09:00:00Z&to=2026-03-02T10:00:00Z"} {
		rec := get(t, h, http.MethodGet, target)
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != http.StatusServiceUnavailable || strings.Contains(string(body), "secret") {
			t.Errorf("%s: %d %q, want 503 without the error", target, rec.Code, body)
		}
	}
}
