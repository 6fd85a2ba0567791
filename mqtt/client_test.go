package mqtt

import (
	"strings"
	"testing"
)

func TestClientOptions(t *testing.T) {
	for _, tc := range []struct {
		name, url string
		tls       TLSConfig
		broker    string // want, "" = error
		err       string
		tlsSet    bool
	}{
		{name: "tcp default port", url: "tcp://broker", broker: "tcp://broker:1883"},
		{name: "mqtts default port", url: "mqtts://broker", broker: "mqtts://broker:8883", tlsSet: true},
		{name: "ssl with port", url: "ssl://127.0.0.1:9883", broker: "ssl://127.0.0.1:9883", tlsSet: true},
		{name: "TLS options on tcp", url: "tcp://broker", tls: TLSConfig{CAFile: "ca.pem"}, err: "not a TLS URL"},
		{name: "missing CA file", url: "ssl://broker", tls: TLSConfig{CAFile: "/nonexistent/ca.pem"}, err: "read CA file"},
		{name: "bad scheme", url: "http://broker", err: "scheme"},
		{name: "password not echoed", url: "tcp://u:s3cret@broker:1883/x", err: "unexpected path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ClientOptions(tc.url, "user", "pw", tc.tls)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("err = %v, want %q without the password", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(o.Servers) != 1 || o.Servers[0].String() != tc.broker {
				t.Errorf("servers %v, want %s", o.Servers, tc.broker)
			}
			if (o.TLSConfig != nil && o.TLSConfig.MinVersion != 0) != tc.tlsSet {
				t.Errorf("TLS config %+v, want set=%v", o.TLSConfig, tc.tlsSet)
			}
			if o.Username != "user" || o.Password != "pw" {
				t.Errorf("credentials %q/%q", o.Username, o.Password)
			}
		})
	}
}
