package main

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/mqtt"
)

func TestSourceURLConfig(t *testing.T) {
	tests := []struct {
		source  string
		wantErr string // "" for valid
	}{
		{"http://cam.local/video", ""},
		{"rtsp://user:pw@10.0.0.5:554/stream", ""},
		{"http://user:hunter2@/video", "no host"},
		{"http://user:hunter2@[::1/video", "malformed"},
		{"ftp://cam/video", "unsupported URL scheme"},
		{"../camera/testdata/people.tar", ""},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			t.Setenv("EDGE_SOURCE", tt.source)
			_, err := loadConfig()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("loadConfig: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "EDGE_SOURCE") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("loadConfig = %v, want an EDGE_SOURCE error saying %q", err, tt.wantErr)
			}
			if exitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", exitCode(err))
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the password is in the error: %v", err)
			}
		})
	}
}

func TestHealthSaysCameraDown(t *testing.T) {
	tests := []struct {
		name string
		st   camera.SourceStats
		code int
		want string
	}{
		{"up", camera.SourceStats{Up: true}, 200, "ok frames=7"},
		{"a file that ended", camera.SourceStats{}, 200, "ok frames=7"},
		{"waited for", camera.SourceStats{Down: 12 * time.Second, Err: "cam: dial tcp 10.0.0.5:80: connection refused"}, 503,
			"degraded frames=7: camera down for 12s: cam: dial tcp 10.0.0.5:80: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			writeHealth(rec, 7, mqtt.BrokerState{Connected: true}, sourceProblems(tt.st)...)
			if rec.Code != tt.code || !strings.HasPrefix(rec.Body.String(), tt.want) {
				t.Errorf("healthz = %d %q, want %d %q", rec.Code, rec.Body.String(), tt.code, tt.want)
			}
		})
	}
}

func TestWatchdogProgress(t *testing.T) {
	// A camera being reconnected is progress; nothing at all is not.
	a := progress(mqtt.Frames{Processed: 5}, camera.SourceStats{Attempts: 1})
	b := progress(mqtt.Frames{Processed: 5}, camera.SourceStats{Attempts: 2})
	c := progress(mqtt.Frames{Processed: 5, Corrupt: 1}, camera.SourceStats{Attempts: 2})
	if !(a < b && b < c) {
		t.Errorf("progress %d, %d, %d: reconnection attempts and corrupt frames must count", a, b, c)
	}
}
