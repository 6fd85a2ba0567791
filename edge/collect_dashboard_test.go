package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edge-sensor/edge/collect"
	"github.com/edge-sensor/edge/collect/pgtest"
	"github.com/edge-sensor/edge/internal/localhttp"
)

// TestCollectMountsDashboard: the collector's HTTP server (its mux, under
// the local page rules) serves the dashboard page and its JSON from the
// database beside /healthz and /metrics.
func TestCollectMountsDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	pg := pgtest.Start(t, pgtest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	store, err := collect.Open(ctx, pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	w := collect.Window{Device: "cam-1", Kind: collect.KindWindow, WindowID: 1, Department: "assembly",
		StartAt: time.Now().Add(-time.Minute), EndAt: time.Now(), PeopleSeen: 3, PeopleNow: 2,
		Counts: map[string]map[string]int{}, Mass: map[string]map[string]float64{}, Withheld: []string{"age"}, PayloadSchema: 1}
	if _, err := store.Write(ctx, []collect.Window{w}, nil); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mountDashboard(mux, store, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(localhttp.Rules{}.Guard(mux))
	defer srv.Close()

	for path, want := range map[string]string{
		"/":                         "uPlot.iife.min.js",
		"/static/uPlot.iife.min.js": "uPlot (v1.6.32)",
		"/api/devices":              `"device":"cam-1"`,
		"/healthz":                  "ok",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, body lacks %q: %.200s", path, resp.StatusCode, want, b)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	req.Host = "rebinding.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("dashboard under a foreign Host name: %d, want 421", resp.StatusCode)
	}
}
