package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edge-sensor/edge/internal/proctest"
	"github.com/edge-sensor/edge/mqtt/mqtttest"
)

// The start-up configuration line prints no secret: neither the password
// variable nor the user information of a URL.
func TestLogAttrsRedactSecrets(t *testing.T) {
	c := Config{MQTTURL: "ssl://user-S3CRET1:S3CRET2@broker:8883", MQTTPassword: "S3CRET3", MQTTUser: "edge",
		Source: "http://admin:S3CRET4@camera/video.mjpg"}
	line := fmt.Sprint(c.logAttrs()...)
	if strings.Contains(line, "S3CRET") {
		t.Fatalf("configuration line leaks a secret: %s", line)
	}
	for _, want := range []string{"ssl://REDACTED@broker:8883", "EDGE_MQTT_PASSWORD=REDACTED", "http://REDACTED@camera/video.mjpg"} {
		if !strings.Contains(line, want) {
			t.Errorf("configuration line lacks %q: %s", want, line)
		}
	}
}

// edge run with a secret in every field that can hold one (the URL's user
// name and password, EDGE_MQTT_PASSWORD, the client key's contents, a
// camera URL's password) prints none of them anywhere: stdout, stderr at
// debug level, the MQTT messages (stats, status, diagnostics, discovery),
// /healthz and /metrics — whether it runs, is refused by the broker or
// rejects the URL. Before, the URL's password was in the start-up line and
// in every URL validation error.
func TestRunLeaksNoSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const (
		urlUser = "user-S3CR3T-A" // a broker user name inside the URL may be a token
		urlPass = "S3CR3T-B"
		envPass = "S3CR3T-C"
	)
	pki := mqtttest.NewPKI(t, t.TempDir())
	keyPEM, err := os.ReadFile(pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	// The key's base64 lines are secrets too.
	secrets := []string{urlUser, urlPass, envPass, "S3CR3T"}
	for _, l := range strings.Split(string(keyPEM), "\n") {
		if len(l) > 20 && !strings.HasPrefix(l, "-----") {
			secrets = append(secrets, l)
		}
	}
	broker := mqtttest.StartSecureMosquitto(t, urlUser, urlPass, pki)
	frames := t.TempDir()
	if err := extractFrames("../camera/testdata/people.tar", frames, 30, 34); err != nil {
		t.Fatal(err)
	}

	// Everything the broker sees from the device.
	var mu sync.Mutex
	var seen bytes.Buffer
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(broker.URL()).SetClientID("redact-watcher").
		SetUsername(urlUser).SetPassword(urlPass).SetConnectTimeout(5 * time.Second))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	t.Cleanup(func() { sub.Disconnect(100) })
	var diagnostics int
	if tok := sub.SubscribeMultiple(map[string]byte{"edge/#": 1, "homeassistant/#": 1}, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&seen, "%s %s\n", m.Topic(), m.Payload())
		if strings.HasSuffix(m.Topic(), "/diagnostics") {
			diagnostics++
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher subscribe: %v", tok.Error())
	}

	tlsURL := fmt.Sprintf("ssl://%s:%s@127.0.0.1:%d", urlUser, urlPass, broker.TLSPort)
	wrongURL := fmt.Sprintf("tcp://%s:%s@127.0.0.1:%d", urlUser, envPass, broker.Port)
	for _, tc := range []struct {
		name    string
		env     []string
		running bool   // runs until stopped (else exits by itself)
		wait    string // running: what must show before it is stopped
	}{
		{name: "connected", running: true, wait: "diagnostics", env: []string{
			"EDGE_MQTT_URL=" + tlsURL, "EDGE_MQTT_PASSWORD=" + envPass,
			"EDGE_MQTT_CA=" + pki.CA, "EDGE_MQTT_CERT=" + pki.ClientCert, "EDGE_MQTT_KEY=" + pki.ClientKey}},
		{name: "refused", running: true, wait: "broker connection failed", env: []string{
			"EDGE_MQTT_URL=" + wrongURL, "EDGE_MQTT_PASSWORD=" + envPass}},
		{name: "bad scheme", env: []string{"EDGE_MQTT_URL=http://" + urlUser + ":" + urlPass + "@127.0.0.1:1883"}},
		{name: "path", env: []string{"EDGE_MQTT_URL=tcp://" + urlUser + ":" + urlPass + "@127.0.0.1:1883/x"}},
		{name: "unparsable", env: []string{"EDGE_MQTT_URL=tcp://" + urlUser + ":" + urlPass + " x@127.0.0.1:99999x"}},
		{name: "TLS options on tcp", env: []string{"EDGE_MQTT_URL=" + wrongURL, "EDGE_MQTT_CA=" + pki.CA}},
		{name: "camera URL", env: []string{"EDGE_MQTT_URL=" + tlsURL, "EDGE_SOURCE=ftp://" + urlUser + ":" + urlPass + "@camera/x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
			env := append(edgeEnv(t, "", "EDGE_SOURCE="+frames, "EDGE_LOOP=true", "EDGE_FPS=5",
				"EDGE_PUBLISH_INTERVAL=1s", "EDGE_DIAGNOSTICS_INTERVAL=1s", "EDGE_PREVIEW_ADDR="+addr), tc.env...)
			cmd := exec.Command(edgeBinary(t), "run")
			cmd.Env = env
			var out proctest.SyncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				if cmd.ProcessState == nil {
					cmd.Process.Kill()
					<-done
				}
			})
			var pages strings.Builder
			if tc.running {
				deadline := time.Now().Add(90 * time.Second)
				for {
					mu.Lock()
					n := diagnostics
					mu.Unlock()
					if tc.wait == "diagnostics" && n > 0 || strings.Contains(out.String(), tc.wait) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("no %q within 90 s:\n%s", tc.wait, out.String())
					}
					time.Sleep(100 * time.Millisecond)
				}
				for _, path := range []string{"/healthz", "/metrics"} {
					// The local HTTP server starts after the publisher (it
					// serves the pipeline's state), so a broker failure can be
					// logged before it listens.
					resp, err := http.Get("http://" + addr + path)
					for try := 0; err != nil && try < 100; try++ {
						time.Sleep(100 * time.Millisecond)
						resp, err = http.Get("http://" + addr + path)
					}
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					fmt.Fprintf(&pages, "%s %d\n%s\n", path, resp.StatusCode, b)
				}
				cmd.Process.Signal(syscall.SIGTERM)
			}
			select {
			case err := <-done:
				if !tc.running && err == nil {
					t.Errorf("edge run accepted a bad configuration:\n%s", out.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("edge run did not end:\n%s", out.String())
			}
			mu.Lock()
			everything := out.String() + pages.String() + seen.String()
			mu.Unlock()
			for _, s := range secrets {
				if strings.Contains(everything, s) {
					t.Errorf("secret %q printed:\n%s", s, everything)
				}
			}
			switch tc.name {
			case "bad scheme", "path", "unparsable":
				if !strings.Contains(out.String(), `invalid broker URL "`) || !strings.Contains(out.String(), "REDACTED@") {
					t.Errorf("want the URL error with the URL redacted:\n%s", out.String())
				}
			case "TLS options on tcp":
				if !strings.Contains(out.String(), "TLS options are set") {
					t.Errorf("want the TLS options error:\n%s", out.String())
				}
			case "camera URL":
				if !strings.Contains(out.String(), "unsupported URL scheme") {
					t.Errorf("want the camera URL error:\n%s", out.String())
				}
			case "connected":
				if !strings.Contains(pages.String(), "/healthz 200") || !strings.Contains(everything, "ssl://REDACTED@127.0.0.1") {
					t.Errorf("want a healthy run that names the redacted URL:\n%s", everything)
				}
			case "refused":
				if !strings.Contains(pages.String(), "not_authorized") {
					t.Errorf("/healthz and /metrics do not show the refusal:\n%s", pages.String())
				}
			}
			t.Logf("%s: %d bytes of output, pages and messages checked", tc.name, len(everything))
		})
	}
}
