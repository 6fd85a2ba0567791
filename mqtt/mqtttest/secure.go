package mqtttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/edge-sensor/edge/internal/proctest"
)

// PKI is a test CA with a server certificate for 127.0.0.1 and a client
// certificate (common name "cam-1"), plus a client certificate from a CA
// the broker does not know. Every field is a PEM file path.
type PKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey, ForeignCert, ForeignKey string
}

// NewPKI writes a PKI into dir, valid for a day. The files are readable by
// everyone: a broker started as root may read them as another user, and the
// keys are throwaway test keys.
func NewPKI(t testing.TB, dir string) PKI {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, key, der
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(ca *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64, cn string, usage x509.ExtKeyUsage, name string) (string, string) {
		key := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
			tmpl.DNSNames = []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kder)
	}
	ca, caKey, caDER := newCA("edge test CA")
	other, otherKey, _ := newCA("someone else's CA")
	var p PKI
	p.CA = write("ca.pem", "CERTIFICATE", caDER)
	p.ServerCert, p.ServerKey = issue(ca, caKey, 2, "127.0.0.1", x509.ExtKeyUsageServerAuth, "server")
	p.ClientCert, p.ClientKey = issue(ca, caKey, 3, "cam-1", x509.ExtKeyUsageClientAuth, "client")
	p.ForeignCert, p.ForeignKey = issue(other, otherKey, 4, "cam-1", x509.ExtKeyUsageClientAuth, "foreign")
	return p
}

// WritePasswordFile writes a mosquitto password_file at path holding each
// {user, password} pair, with Debian's mosquitto_passwd.
func WritePasswordFile(t testing.TB, path string, users ...[2]string) {
	t.Helper()
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto_passwd is not installed but CI is set (apt-get install -y mosquitto)")
		}
		t.Skip("mosquitto_passwd is not installed (apt-get install -y mosquitto)")
	}
	for i, up := range users {
		args := []string{"-b", path, up[0], up[1]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(passwd, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
}

// Secure is a mosquitto that wants a password (password_file, no
// anonymous clients, an ACL limiting user to edge/# and homeassistant/#) on
// its plain port, and on TLSPort a client certificate from pki.CA (the
// certificate's name, cam-1, is the user there, with the same ACL).
type Secure struct {
	*Mosquitto
	TLSPort int
}

// StartSecureMosquitto starts a Secure broker for user and password.
func StartSecureMosquitto(t testing.TB, user, password string, pki PKI) *Secure {
	t.Helper()
	MosquittoPath(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "passwd")
	WritePasswordFile(t, pwFile, [2]string{user, password})
	acl := filepath.Join(dir, "acl")
	// The TLS port names clients by their certificate (cam-1).
	rules := "topic readwrite edge/#\ntopic readwrite homeassistant/#\n"
	if err := os.WriteFile(acl, []byte("user "+user+"\n"+rules+"user cam-1\n"+rules), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsPort := proctest.FreePort(t)
	m := StartMosquitto(t, "allow_anonymous false", "password_file "+pwFile, "acl_file "+acl,
		"listener "+strconv.Itoa(tlsPort)+" 127.0.0.1", "cafile "+pki.CA, "certfile "+pki.ServerCert, "keyfile "+pki.ServerKey,
		"require_certificate true", "use_identity_as_username true")
	proctest.WaitListening(t, "127.0.0.1:"+strconv.Itoa(tlsPort), 5*time.Second)
	return &Secure{Mosquitto: m, TLSPort: tlsPort}
}
