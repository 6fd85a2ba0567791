package mqtt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTestPKI writes a CA and a server certificate for 127.0.0.1 into dir.
func writeTestPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}

// The publisher connects over TLS when given the broker's CA, and refuses a
// broker it cannot verify.
func TestTLSMosquitto(t *testing.T) {
	t.Parallel()
	mosquittoPath(t)
	ca, cert, key := writeTestPKI(t, t.TempDir())
	tlsPort := freePort(t)
	m := startMosquitto(t, fmt.Sprintf("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s", tlsPort, cert, key))
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", tlsPort), 5*time.Second)
	c := collect(t, m.url(), "edge/+/+/stats")

	cfg := testConfig(t, fmt.Sprintf("mqtts://127.0.0.1:%d", tlsPort))
	cfg.TLS.CAFile = ca
	p := newPublisher(t, cfg)
	waitConnected(t, p)
	if err := p.Publish(ctxT(t, time.Second), sampleStats(0)); err != nil {
		t.Fatal(err)
	}
	c.wait(t, 5*time.Second, "stats over TLS", func(m []rawMsg) bool { return len(m) == 1 })

	untrusted := testConfig(t, fmt.Sprintf("ssl://127.0.0.1:%d", tlsPort))
	untrusted.Device = "cam-2"
	q := newPublisher(t, untrusted)
	deadline := time.Now().Add(15 * time.Second) // generous: TLS handshakes are slow on a loaded machine
	for !strings.Contains(q.BrokerState().LastError, "certificate") {
		if time.Now().After(deadline) {
			t.Fatalf("publisher without the CA: state %+v, want a certificate error", q.BrokerState())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if q.Connected() {
		t.Fatal("connected to a broker whose certificate is not trusted")
	}
}
