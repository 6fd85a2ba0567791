package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestLoadCollectConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // "" = valid
	}{
		{"minimal", map[string]string{"EDGE_DATABASE_URL": "postgres://edge@localhost/edge"}, ""},
		{"no database", map[string]string{}, "EDGE_DATABASE_URL: must be set"},
		{"bad broker", map[string]string{"EDGE_DATABASE_URL": "postgres://x/y", "EDGE_MQTT_URL": "http://broker"}, "scheme"},
		{"TLS file missing", map[string]string{"EDGE_DATABASE_URL": "postgres://x/y", "EDGE_MQTT_URL": "ssl://b:8883", "EDGE_MQTT_CA": "/nonexistent/ca.pem"}, "EDGE_MQTT_CA"},
		{"bad share group", map[string]string{"EDGE_DATABASE_URL": "postgres://x/y", "EDGE_COLLECT_SHARE_GROUP": "a/b"}, "share group"},
		{"bad k", map[string]string{"EDGE_DATABASE_URL": "postgres://x/y", "EDGE_MIN_GROUP": "0"}, "min group"},
		{"short roll-up interval", map[string]string{"EDGE_DATABASE_URL": "postgres://x/y", "EDGE_COLLECT_ROLLUP_INTERVAL": "10ms"}, "COLLECT_ROLLUP_INTERVAL"},
		{"not a duration", map[string]string{"EDGE_DATABASE_URL": "postgres://x/y", "EDGE_COLLECT_ROLLUP_INTERVAL": "often"}, "not a valid"},
		{"bad host", map[string]string{"EDGE_DATABASE_URL": "postgres://x/y", "EDGE_COLLECT_HOSTS": "a:80"}, "COLLECT_HOSTS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"EDGE_DATABASE_URL", "EDGE_MQTT_URL", "EDGE_MQTT_CA", "EDGE_COLLECT_SHARE_GROUP", "EDGE_MIN_GROUP",
				"EDGE_COLLECT_ROLLUP_INTERVAL", "EDGE_COLLECT_HOSTS", "EDGE_COLLECT_CLIENT_ID"} {
				t.Setenv(k, tc.env[k]) // restored after the test
				if tc.env[k] == "" {
					os.Unsetenv(k)
				}
			}
			c, err := loadCollectConfig()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(c.ClientID, "edge-collect-") || c.MinGroup != 5 || c.MQTTURL != "tcp://127.0.0.1:1883" {
					t.Errorf("defaults: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
				t.Fatalf("err = %v (exit %d), want %q and exit 2", err, exitCode(err), tc.want)
			}
		})
	}
}

func TestCollectHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := collectCmd(t.Context(), []string{"--help"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"EDGE_DATABASE_URL", "EDGE_MQTT_URL", "EDGE_COLLECT_SHARE_GROUP", "EDGE_MIN_GROUP", "EDGE_COLLECT_ADDR"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("help lacks %s", v)
		}
	}
	if err := collectCmd(t.Context(), []string{"extra"}, &out, &out); exitCode(err) != 2 {
		t.Errorf("an argument: err %v, want a usage error", err)
	}
}
