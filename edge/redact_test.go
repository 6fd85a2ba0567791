package main

import (
	"fmt"
	"strings"
	"testing"
)

// The start-up configuration line prints no secret: neither the password
// variable nor the user information of the broker URL.
func TestLogAttrsRedactSecrets(t *testing.T) {
	c := Config{MQTTURL: "ssl://user-S3CRET1:S3CRET2@broker:8883", MQTTPassword: "S3CRET3", MQTTUser: "edge"}
	line := fmt.Sprint(c.logAttrs()...)
	if strings.Contains(line, "S3CRET") {
		t.Fatalf("configuration line leaks a secret: %s", line)
	}
	if !strings.Contains(line, "ssl://REDACTED@broker:8883") || !strings.Contains(line, "EDGE_MQTT_PASSWORD=REDACTED") {
		t.Fatalf("configuration line lost the redacted values: %s", line)
	}
}
