package mqtt

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/edge-sensor/edge/mqtt/mqtttest"
)

func TestClassifyConnectError(t *testing.T) {
	for _, tc := range []struct {
		err     error
		overTLS bool
		want    string
	}{
		{packets.ErrorRefusedBadUsernameOrPassword, false, CauseBadCredentials},
		{packets.ErrorRefusedNotAuthorised, false, CauseNotAuthorized},
		{packets.ErrorRefusedIDRejected, false, CauseRejected},
		{packets.ErrorRefusedServerUnavailable, false, CauseRejected},
		{packets.ErrorRefusedBadProtocolVersion, false, CauseProtocol},
		{fmt.Errorf("%w : %w", packets.ErrorNetworkError, io.EOF), false, CauseProtocol},
		{fmt.Errorf("%w : %w", packets.ErrorNetworkError, syscall.ECONNRESET), true, CauseTLS},
		{fmt.Errorf("%w : %w", packets.ErrorNetworkError, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), false, CauseUnreachable},
		{fmt.Errorf("%w : %w", packets.ErrorNetworkError, &net.DNSError{Err: "no such host", Name: "broker"}), false, CauseUnreachable},
		{fmt.Errorf("%w : %w", packets.ErrorNetworkError, os.ErrDeadlineExceeded), false, CauseTimeout},
		{fmt.Errorf("%w : %w", packets.ErrorNetworkError, x509.UnknownAuthorityError{}), false, CauseTLS},
		{fmt.Errorf("%w : %w", packets.ErrorNetworkError, errors.New("remote error: tls: certificate required")), false, CauseTLS},
		{errors.New("something else"), false, CauseOther},
	} {
		if got, reason := classifyConnectError(tc.err, tc.overTLS); got != tc.want || reason == "" {
			t.Errorf("%v: cause %q (%q), want %q", tc.err, got, reason, tc.want)
		}
	}
}

// Every refusal by the broker is visible: the state names its cause, the
// failures are counted by cause, and the log says why once per cause
// (before, a CONNACK refusal logged nothing, even at debug level).
func TestBrokerRefusalsVisible(t *testing.T) {
	t.Parallel()
	ca := mqtttest.NewPKI(t, t.TempDir())
	m := mqtttest.StartSecureMosquitto(t, "cam-1", "right-password", ca)
	plain := m.URL()
	tlsURL := fmt.Sprintf("ssl://127.0.0.1:%d", m.TLSPort)

	for _, tc := range []struct {
		name      string
		url       string
		user, pw  string
		tls       TLSConfig
		cause     string
		logReason string // what the warning must say
	}{
		{name: "ok password", url: plain, user: "cam-1", pw: "right-password"},
		{name: "ok client certificate", url: tlsURL, tls: TLSConfig{CAFile: ca.CA, CertFile: ca.ClientCert, KeyFile: ca.ClientKey}},
		{name: "wrong password", url: plain, user: "cam-1", pw: "wrong", cause: CauseNotAuthorized, logReason: "CONNACK 5"},
		{name: "missing password", url: plain, cause: CauseNotAuthorized, logReason: "CONNACK 5"},
		{name: "missing client certificate", url: tlsURL, tls: TLSConfig{CAFile: ca.CA}, cause: CauseTLS, logReason: "client certificate"},
		{name: "rejected client certificate", url: tlsURL, tls: TLSConfig{CAFile: ca.CA, CertFile: ca.ForeignCert, KeyFile: ca.ForeignKey}, cause: CauseTLS, logReason: "client certificate"},
		{name: "tcp URL at the TLS port", url: fmt.Sprintf("tcp://127.0.0.1:%d", m.TLSPort), cause: CauseProtocol, logReason: "TLS port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			cfg := testConfig(t, tc.url)
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("logs:\n%s", logs.String())
				}
			})
			cfg.Username, cfg.Password, cfg.TLS = tc.user, tc.pw, tc.tls
			p := newPublisher(t, cfg)
			if err := p.Publish(ctxT(t, time.Second), sampleStats(0)); err != nil {
				t.Fatal(err)
			}
			if tc.cause == "" {
				if err := p.Flush(ctxT(t, 10*time.Second)); err != nil {
					t.Fatalf("accepted client: %v (state %+v)", err, p.BrokerState())
				}
				if st := p.BrokerState(); !st.Connected || st.Cause != "" || len(st.Problems()) != 0 {
					t.Fatalf("accepted client: %+v", st)
				}
				return
			}
			deadline := time.Now().Add(15 * time.Second)
			for p.BrokerState().ConnectFailures[tc.cause] < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("no 3 failures of cause %s: %+v", tc.cause, p.BrokerState())
				}
				time.Sleep(20 * time.Millisecond)
			}
			st := p.BrokerState()
			if st.Connected || st.Cause != tc.cause || st.LastError == "" || p.QueueLen() != 1 {
				t.Fatalf("state %+v, want disconnected with cause %s and the window queued", st, tc.cause)
			}
			if probs := strings.Join(st.Problems(), "; "); !strings.Contains(probs, tc.cause) {
				t.Errorf("problems %q do not name the cause", probs)
			}
			var warns []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "level=WARN") && strings.Contains(l, "broker connection failed") {
					warns = append(warns, l)
				}
			}
			if len(warns) != 1 || !strings.Contains(warns[0], "cause="+tc.cause) || !strings.Contains(warns[0], tc.logReason) {
				t.Fatalf("after %d failed attempts: %d warnings, want one with cause=%s and %q:\n%s",
					st.ConnectFailures[tc.cause], len(warns), tc.cause, tc.logReason, strings.Join(warns, "\n"))
			}
		})
	}
}
