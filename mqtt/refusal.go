package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Causes of a failed connection attempt: the values of BrokerState.Cause,
// the keys of BrokerState.ConnectFailures and the reason label of
// edge_mqtt_connect_failures_total.
const (
	CauseBadCredentials = "bad_credentials" // CONNACK 4: bad user name or password
	CauseNotAuthorized  = "not_authorized"  // CONNACK 5: wrong or missing password, or not allowed
	CauseRejected       = "rejected"        // CONNACK 2 or 3: client id rejected, server unavailable
	CauseProtocol       = "protocol"        // CONNACK 1, a malformed answer, or the broker hung up mid-handshake
	CauseTLS            = "tls"             // TLS handshake or certificate failure
	CauseUnreachable    = "unreachable"     // nothing listens, no route, name not found
	CauseTimeout        = "timeout"         // no answer within the connect timeout
	CauseOther          = "other"
)

// Causes lists every cause a failed connection attempt is classified as.
func Causes() []string {
	return []string{CauseBadCredentials, CauseNotAuthorized, CauseRejected, CauseProtocol, CauseTLS, CauseUnreachable, CauseTimeout, CauseOther}
}

// classifyConnectError names the cause of a failed connection attempt and
// explains it in words an operator can act on. overTLS tells whether the
// URL is a TLS one: a broker that requires a client certificate may abort
// TLS 1.3 after the client's side of the handshake completed, which the
// client sees as a reset or EOF.
func classifyConnectError(err error, overTLS bool) (cause, reason string) {
	var (
		alert    tls.AlertError
		record   tls.RecordHeaderError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		opErr    *net.OpError
		dnsErr   *net.DNSError
	)
	switch {
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		return CauseBadCredentials, "the broker refused the user name or password (CONNACK 4)"
	case errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return CauseNotAuthorized, "the broker refused the connection as not authorised (CONNACK 5): wrong or missing user name or password, or a client the broker does not allow"
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return CauseRejected, "the broker rejected the client id (CONNACK 2)"
	case errors.Is(err, packets.ErrorRefusedServerUnavailable):
		return CauseRejected, "the broker is unavailable (CONNACK 3)"
	case errors.Is(err, packets.ErrorRefusedBadProtocolVersion), errors.Is(err, packets.ErrorProtocolViolation):
		return CauseProtocol, "the broker does not speak MQTT 3.1.1 or answered with a malformed packet"
	case errors.As(err, &record):
		return CauseTLS, "TLS handshake failed: the broker does not speak TLS on this port (use tcp:// for a plain port)"
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid):
		return CauseTLS, "TLS handshake failed: the broker's certificate is not trusted (EDGE_MQTT_CA) or does not name this host"
	case errors.As(err, &alert), strings.Contains(err.Error(), "remote error: tls:"):
		return CauseTLS, "TLS handshake failed: the broker refused the client (a missing or rejected client certificate: EDGE_MQTT_CERT, EDGE_MQTT_KEY)"
	case strings.Contains(err.Error(), "tls:"):
		return CauseTLS, "TLS handshake failed"
	case errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return CauseTimeout, "no answer from the broker within the connect timeout"
	case errors.As(err, &dnsErr), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.As(err, &opErr) && opErr.Op == "dial":
		return CauseUnreachable, "the broker cannot be reached"
	case overTLS && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)):
		return CauseTLS, "the broker closed the TLS connection during the handshake (a missing or rejected client certificate: EDGE_MQTT_CERT, EDGE_MQTT_KEY)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return CauseProtocol, "the broker closed the connection during the MQTT handshake (a tcp:// URL pointed at a TLS port, or a broker that drops this client)"
	}
	return CauseOther, "connection attempt failed"
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
