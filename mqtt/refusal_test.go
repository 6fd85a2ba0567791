package mqtt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
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

// pki is a CA with a server certificate for 127.0.0.1 and a client
// certificate, plus a client certificate from a CA the broker does not know.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey, foreignCert, foreignKey string
}

func writeMutualPKI(t *testing.T, dir string) pki {
	t.Helper()
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key, der
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(ca *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64, cn string, usage x509.ExtKeyUsage, name string) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kder)
	}
	ca, caKey, caDER := newCA("edge test CA")
	other, otherKey, _ := newCA("someone else's CA")
	var p pki
	p.ca = write("ca.pem", "CERTIFICATE", caDER)
	p.serverCert, p.serverKey = issue(ca, caKey, 2, "127.0.0.1", x509.ExtKeyUsageServerAuth, "server")
	p.clientCert, p.clientKey = issue(ca, caKey, 3, "cam-1", x509.ExtKeyUsageClientAuth, "client")
	p.foreignCert, p.foreignKey = issue(other, otherKey, 4, "cam-1", x509.ExtKeyUsageClientAuth, "foreign")
	return p
}

// secureMosquitto starts mosquitto with a password file and an ACL on its
// plain port and a TLS port that requires client certificates from the
// test CA. It returns the broker and the TLS port.
func secureMosquitto(t *testing.T, user, password string, ca pki) (*mosquitto, int) {
	t.Helper()
	mosquittoPath(t)
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto_passwd is not installed but CI is set (apt-get install -y mosquitto)")
		}
		t.Skip("mosquitto_passwd is not installed")
	}
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-b", "-c", pwFile, user, password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	acl := filepath.Join(dir, "acl")
	// The device may write only its own topics and read Home Assistant's status.
	if err := os.WriteFile(acl, []byte("user "+user+"\ntopic readwrite edge/#\ntopic readwrite homeassistant/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsPort := freePort(t)
	m := startMosquitto(t, "allow_anonymous false", "password_file "+pwFile, "acl_file "+acl,
		fmt.Sprintf("listener %d 127.0.0.1", tlsPort), "cafile "+ca.ca, "certfile "+ca.serverCert, "keyfile "+ca.serverKey,
		"require_certificate true", "use_identity_as_username true")
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", tlsPort), 5*time.Second)
	return m, tlsPort
}

// Every refusal by the broker is visible: the state names its cause, the
// failures are counted by cause, and the log says why once per cause
// (before, a CONNACK refusal logged nothing, even at debug level).
func TestBrokerRefusalsVisible(t *testing.T) {
	t.Parallel()
	ca := writeMutualPKI(t, t.TempDir())
	m, tlsPort := secureMosquitto(t, "cam-1", "right-password", ca)
	plain := m.url()
	tlsURL := fmt.Sprintf("ssl://127.0.0.1:%d", tlsPort)

	for _, tc := range []struct {
		name      string
		url       string
		user, pw  string
		tls       TLSConfig
		cause     string
		logReason string // what the warning must say
	}{
		{name: "ok password", url: plain, user: "cam-1", pw: "right-password"},
		{name: "ok client certificate", url: tlsURL, tls: TLSConfig{CAFile: ca.ca, CertFile: ca.clientCert, KeyFile: ca.clientKey}},
		{name: "wrong password", url: plain, user: "cam-1", pw: "wrong", cause: CauseNotAuthorized, logReason: "CONNACK 5"},
		{name: "missing password", url: plain, cause: CauseNotAuthorized, logReason: "CONNACK 5"},
		{name: "missing client certificate", url: tlsURL, tls: TLSConfig{CAFile: ca.ca}, cause: CauseTLS, logReason: "client certificate"},
		{name: "rejected client certificate", url: tlsURL, tls: TLSConfig{CAFile: ca.ca, CertFile: ca.foreignCert, KeyFile: ca.foreignKey}, cause: CauseTLS, logReason: "client certificate"},
		{name: "tcp URL at the TLS port", url: fmt.Sprintf("tcp://127.0.0.1:%d", tlsPort), cause: CauseProtocol, logReason: "TLS port"},
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
