package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // substring naming the variable; "" for success
	}{
		{"defaults", nil, ""},
		{"bad interval", map[string]string{"EDGE_PUBLISH_INTERVAL": "soon"}, "EDGE_PUBLISH_INTERVAL"},
		{"short interval", map[string]string{"EDGE_PUBLISH_INTERVAL": "10ms"}, "EDGE_PUBLISH_INTERVAL"},
		{"long window off", map[string]string{"EDGE_LONG_WINDOW": "0"}, ""},
		{"long window shorter than a window", map[string]string{"EDGE_LONG_WINDOW": "30s"}, "EDGE_LONG_WINDOW"},
		{"negative long window", map[string]string{"EDGE_LONG_WINDOW": "-1h"}, "EDGE_LONG_WINDOW"},
		{"bad min group", map[string]string{"EDGE_MIN_GROUP": "0"}, "EDGE_MIN_GROUP"},
		{"min group not a number", map[string]string{"EDGE_MIN_GROUP": "five"}, "EDGE_MIN_GROUP"},
		{"unknown task", map[string]string{"EDGE_TASKS": "age,mood"}, "EDGE_TASKS"},
		{"task twice", map[string]string{"EDGE_TASKS": "age,age"}, "EDGE_TASKS"},
		{"no emotion", map[string]string{"EDGE_TASKS": "age,gender"}, ""},
		{"bad size", map[string]string{"EDGE_SIZE": "640by480"}, "EDGE_SIZE"},
		{"bad format", map[string]string{"EDGE_FORMAT": "h264"}, "EDGE_FORMAT"},
		{"department with slash", map[string]string{"EDGE_DEPARTMENT": "a/b"}, "EDGE_DEPARTMENT"},
		{"cert without key", map[string]string{"EDGE_MQTT_CERT": "/etc/hostname"}, "EDGE_MQTT_CERT"},
		{"missing CA", map[string]string{"EDGE_MQTT_CA": "/nonexistent/ca.pem"}, "EDGE_MQTT_CA"},
		{"bad log level", map[string]string{"EDGE_LOG_LEVEL": "loud"}, "EDGE_LOG_LEVEL"},
		{"bad bool", map[string]string{"EDGE_PREVIEW": "perhaps"}, "EDGE_PREVIEW"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := loadConfig()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("loadConfig: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("loadConfig succeeded, want an error naming %s", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not name %s", err, tt.wantErr)
			}
			if exitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", exitCode(err))
			}
		})
	}
}

func TestConfigRedactsSecrets(t *testing.T) {
	t.Setenv("EDGE_MQTT_PASSWORD", "hunter2")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, a := range c.logAttrs() {
		buf.WriteString(strings.TrimSpace(strings.ReplaceAll(fmtAttr(a), "\n", " ")) + "\n")
	}
	if strings.Contains(buf.String(), "hunter2") {
		t.Errorf("password logged in clear:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "EDGE_MQTT_PASSWORD=REDACTED") {
		t.Errorf("redacted password missing:\n%s", buf.String())
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	var buf bytes.Buffer
	writeUsage(&buf)
	for _, v := range []string{"EDGE_SOURCE", "EDGE_MQTT_URL", "EDGE_DEPARTMENT", "EDGE_DEVICE_ID", "EDGE_PUBLISH_INTERVAL",
		"EDGE_PREVIEW_ADDR", "EDGE_MIN_GROUP", "EDGE_TASKS"} {
		if !strings.Contains(buf.String(), v) {
			t.Errorf("usage lacks %s", v)
		}
	}
}

func fmtAttr(a any) string {
	at := a.(slog.Attr)
	return at.Key + "=" + at.Value.String()
}
