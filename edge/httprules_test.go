package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPreviewRulesHosts(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	tests := []struct {
		name  string
		addr  string
		hosts []string
		host  string // Host header
		ok    bool
	}{
		{"loopback IP", "127.0.0.1:8080", nil, "127.0.0.1:8080", true},
		{"IPv6 loopback", "127.0.0.1:8080", nil, "[::1]:8080", true},
		{"localhost", "127.0.0.1:8080", nil, "localhost:8080", true},
		{"a rebinding name", "127.0.0.1:8080", nil, "attacker.example.com:8080", false},
		{"a rebinding name without port", "127.0.0.1:8080", nil, "attacker.example.com", false},
		{"no Host", "127.0.0.1:8080", nil, "", false},
		{"the configured address's name", "edge-cam.local:8080", nil, "edge-cam.local:8080", true},
		{"a name the operator listed", "0.0.0.0:8080", []string{"pi-lobby"}, "PI-LOBBY:8080", true},
		{"another name", "0.0.0.0:8080", []string{"pi-lobby"}, "pi-lobby.attacker.example:8080", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := previewRules(Config{PreviewAddr: tt.addr, PreviewHosts: tt.hosts}, quiet)
			if got := r.AllowedHost(tt.host); got != tt.ok {
				t.Errorf("Host %q allowed = %v, want %v (hosts %v)", tt.host, got, tt.ok, r.Hosts)
			}
		})
	}
}

// TestPreviewServerRefusesForeignHost: the server that edge run builds
// answers a DNS-rebinding request for /snapshot.jpg (or anything else) with
// 421 and never reaches the handler.
func TestPreviewServerRefusesForeignHost(t *testing.T) {
	reached := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++; io.WriteString(w, "frame") })
	srv := previewRules(Config{PreviewAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler)).Server(h)
	for _, tt := range []struct {
		host string
		code int
	}{{"attacker.example.com", http.StatusMisdirectedRequest}, {"127.0.0.1:8080", http.StatusOK}} {
		req := httptest.NewRequest("GET", "/snapshot.jpg", nil)
		req.Host = tt.host
		w := httptest.NewRecorder()
		srv.Handler.ServeHTTP(w, req)
		if w.Code != tt.code {
			t.Errorf("Host %s: status %d, want %d", tt.host, w.Code, tt.code)
		}
		if tt.code != http.StatusOK && strings.Contains(w.Body.String(), "frame") {
			t.Errorf("Host %s got the frame", tt.host)
		}
	}
	if reached != 1 {
		t.Errorf("handler reached %d times, want once (the loopback request)", reached)
	}
	if srv.IdleTimeout != previewIdleTimeout || srv.ReadHeaderTimeout <= 0 {
		t.Errorf("timeouts: idle %v, read header %v", srv.IdleTimeout, srv.ReadHeaderTimeout)
	}
}

func TestHTTPConnCap(t *testing.T) {
	tests := []struct {
		limit uint64
		known bool
		want  int
	}{
		{0, false, 32},
		{20000, true, 32},
		{1024, true, 32},
		{256 + 64, true, 32},
		{256 + 40, true, 20},
		{256 + 8, true, 4},
		{100, true, 4},
	}
	for _, tt := range tests {
		if got := httpConnCap(tt.limit, tt.known); got != tt.want {
			t.Errorf("httpConnCap(%d, %v) = %d, want %d", tt.limit, tt.known, got, tt.want)
		}
	}
}

func TestPreviewHostsConfig(t *testing.T) {
	t.Setenv("EDGE_PREVIEW_HOSTS", "pi-lobby,bad:host")
	_, err := loadConfig()
	if err == nil || !strings.Contains(err.Error(), "EDGE_PREVIEW_HOSTS") {
		t.Fatalf("loadConfig = %v, want an error naming EDGE_PREVIEW_HOSTS", err)
	}
	t.Setenv("EDGE_PREVIEW_HOSTS", "pi-lobby,edge.example.org")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.PreviewHosts, ","); got != "pi-lobby,edge.example.org" {
		t.Errorf("PreviewHosts = %q", got)
	}
}
