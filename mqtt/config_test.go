package mqtt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	valid := Config{BrokerURL: "tcp://127.0.0.1:1883", Department: "assembly", Device: "cam-1", StateDir: "/tmp/x"}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // error substrings; none = valid
	}{
		{"valid", func(*Config) {}, nil},
		{"valid tls", func(c *Config) { c.BrokerURL = "mqtts://broker.lan"; c.TLS.CAFile = "/etc/ca.pem" }, nil},
		{"valid tasks", func(c *Config) {
			c.Tasks = []TaskLabels{{TaskAge, []string{"0-19", "20-39", "80+"}}, {TaskGender, []string{"female", "male"}}}
		}, nil},
		{"no url", func(c *Config) { c.BrokerURL = "" }, []string{"broker URL must be set"}},
		{"bad scheme", func(c *Config) { c.BrokerURL = "http://x:1883" }, []string{"scheme must be tcp, mqtt, ssl, tls or mqtts"}},
		{"no host", func(c *Config) { c.BrokerURL = "tcp://:1883" }, []string{"missing host"}},
		{"path", func(c *Config) { c.BrokerURL = "tcp://h:1883/x" }, []string{"unexpected path"}},
		{"tls on tcp", func(c *Config) { c.TLS.CAFile = "ca.pem" }, []string{"not a TLS URL"}},
		{"cert without key", func(c *Config) { c.BrokerURL = "ssl://h"; c.TLS.CertFile = "c.pem" }, []string{"certificate and key must be given together"}},
		{"prefix slash", func(c *Config) { c.Prefix = "a/b" }, []string{`invalid prefix "a/b"`}},
		{"prefix plus", func(c *Config) { c.Prefix = "+" }, []string{`invalid prefix "+"`}},
		{"device hash", func(c *Config) { c.Device = "cam#1" }, []string{`invalid device "cam#1"`}},
		{"no department", func(c *Config) { c.Department = "" }, []string{"department must not be empty"}},
		{"no device", func(c *Config) { c.Device = "" }, []string{"device must not be empty"}},
		{"no state dir", func(c *Config) { c.StateDir = "" }, []string{"state directory must be set"}},
		{"negative ack", func(c *Config) { c.AckTimeout = -time.Second }, []string{"ack timeout must be positive"}},
		{"tiny keepalive", func(c *Config) { c.KeepAlive = time.Millisecond }, []string{"keepalive must be at least 1s"}},
		{"negative queue", func(c *Config) { c.MaxQueue = -1 }, []string{"max queue must be positive"}},
		{"unknown task", func(c *Config) { c.Tasks = []TaskLabels{{"mood", nil}} }, []string{`unknown task "mood"`}},
		{"bad label", func(c *Config) { c.Tasks = []TaskLabels{{TaskEmotion, []string{"it's"}}} }, []string{`invalid label "it's"`}},
		{"several at once", func(c *Config) { c.Device = ""; c.StateDir = "" }, []string{"device must not be empty", "state directory must be set"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, err := NewPublisher(c); err == nil {
				t.Errorf("NewPublisher accepted an invalid config")
			}
		})
	}
}

func TestParseBrokerURLDefaultPorts(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://h":            "tcp://h:1883",
		"mqtt://h":           "mqtt://h:1883",
		"ssl://h":            "ssl://h:8883",
		"tls://h":            "tls://h:8883",
		"mqtts://h":          "mqtts://h:8883",
		"tcp://[::1]":        "tcp://[::1]:1883",
		"tcp://u:p@h:1884/":  "tcp://u:p@h:1884",
		"mqtts://h:9000":     "mqtts://h:9000",
		"tcp://127.0.0.1:99": "tcp://127.0.0.1:99",
	} {
		u, err := parseBrokerURL(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if u.String() != want {
			t.Errorf("%s → %s, want %s", in, u, want)
		}
	}
}

// Neither RedactURL nor any error about a broker URL prints its user
// information, whether or not the URL parses.
func TestRedactURL(t *testing.T) {
	if got := RedactURL("ssl://user:secret@h:8883"); got != "ssl://REDACTED@h:8883" {
		t.Errorf("RedactURL = %q", got)
	}
	for _, bad := range []string{
		"http://u:secret@h",          // wrong scheme
		"tcp://u:secret@h:1883/path", // path
		"tcp://u:secret@:1883",       // no host
		"tcp://u:secret@h:",          // empty port
		"tcp://u:sec ret@h:99999x",   // does not parse
		"tcp://u:secret%zz@h",        // bad escape
		"u:secret@h:1883",            // no scheme
	} {
		_, err := parseBrokerURL(bad)
		if err == nil {
			t.Errorf("%s: no error", bad)
			continue
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "sec ret") {
			t.Errorf("%s: error leaks the password: %v", bad, err)
		}
		cfg := Config{BrokerURL: bad, Department: "d", Device: "c", StateDir: "x", TLS: TLSConfig{CAFile: "ca"}}
		if err := cfg.Validate(); strings.Contains(fmt.Sprint(err), "secret") {
			t.Errorf("%s: Validate leaks the password: %v", bad, err)
		}
	}
	cfg := Config{BrokerURL: "tcp://u:secret@h", Department: "d", Device: "c", StateDir: "x", TLS: TLSConfig{CAFile: "ca"}}
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("TLS options with a tcp:// URL: %v", err)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing-ca.pem")

	cfg := testConfig(t, "ssl://127.0.0.1:8883")
	cfg.TLS.CAFile = missing
	_, err := NewPublisher(cfg)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "CA file") || !strings.Contains(err.Error(), "missing-ca.pem") {
		t.Fatalf("missing CA file: err = %v, want a not-exist error naming the CA file", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, queueDirName)); err == nil {
		t.Errorf("a failed NewPublisher must not leave a state directory behind")
	}

	for _, tc := range []struct {
		name string
		tls  TLSConfig
		want string
	}{
		{"junk CA", TLSConfig{CAFile: junk}, "holds no PEM certificate"},
		{"missing cert", TLSConfig{CertFile: missing, KeyFile: missing}, "load client certificate"},
		{"cert without key", TLSConfig{CertFile: junk}, "must be given together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.tls.Build(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if c, err := (TLSConfig{}).Build(); err != nil || c.InsecureSkipVerify || c.RootCAs != nil {
		t.Fatalf("default TLS config: %+v, %v; want verification on with system roots", c, err)
	}
}
