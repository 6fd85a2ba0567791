package main

import (
	"log/slog"
	"strings"
	"testing"
)

// fuzzVars are the variables FuzzConfig sets; the others keep their defaults.
var fuzzVars = []string{"EDGE_SOURCE", "EDGE_SIZE", "EDGE_TASKS", "EDGE_PUBLISH_INTERVAL", "EDGE_MQTT_URL",
	"EDGE_PREVIEW_HOSTS", "EDGE_PREVIEW_ADDR", "EDGE_MAX_PIXELS", "EDGE_DEPARTMENT", "EDGE_FPS", "EDGE_LOG_LEVEL"}

// FuzzConfig: whatever a variable holds, loadConfig gives a configuration
// or a configuration error (exit status 2), never a panic, and a
// configuration it accepts can be logged and served.
func FuzzConfig(f *testing.F) {
	f.Add(uint8(0), "http://user:pw@cam.local/video")
	f.Add(uint8(1), "640x480")
	f.Add(uint8(1), "0x-1")
	f.Add(uint8(2), "age,age,emotion")
	f.Add(uint8(3), "1h30m")
	f.Add(uint8(4), "ssl://user:secret@host:8883")
	f.Add(uint8(5), "pi-lobby,edge.example.org")
	f.Add(uint8(6), "[::1]:8080")
	f.Add(uint8(7), "99999999999999999999")
	f.Fuzz(func(t *testing.T, which uint8, value string) {
		if strings.ContainsRune(value, 0) {
			return // no environment variable holds a NUL
		}
		t.Setenv(fuzzVars[int(which)%len(fuzzVars)], value)
		c, err := loadConfig()
		if err != nil {
			if exitCode(err) != 2 {
				t.Fatalf("error %v exits %d, want 2", err, exitCode(err))
			}
			return
		}
		if _, _, err := c.size(); err != nil {
			t.Fatalf("accepted EDGE_SIZE %q: %v", c.Size, err)
		}
		c.logAttrs()
		previewRules(c, slog.New(slog.DiscardHandler))
	})
}
