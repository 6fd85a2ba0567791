package mqtt

import (
	"fmt"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// ClientOptions returns paho options for the broker at brokerURL with the
// credentials and TLS settings checked the way [Config] checks them (default
// port, TLS only with a TLS URL, certificate files loaded), so that other MQTT
// clients of the project, such as the fleet collector, connect like edge run.
// The caller sets the client id, session and handlers.
func ClientOptions(brokerURL, username, password string, t TLSConfig) (*paho.ClientOptions, error) {
	u, err := parseBrokerURL(brokerURL)
	if err != nil {
		return nil, err
	}
	tlsURL := isTLSScheme(u.Scheme)
	if !tlsURL && !t.isZero() {
		return nil, fmt.Errorf("mqtt: TLS options are set but broker URL %q is not a TLS URL (use ssl://, tls:// or mqtts://)", RedactURL(brokerURL))
	}
	opt := paho.NewClientOptions().AddBroker(u.String()).SetUsername(username).SetPassword(password)
	if tlsURL {
		tc, err := t.Build()
		if err != nil {
			return nil, err
		}
		opt.SetTLSConfig(tc)
	}
	return opt, nil
}

// ConnectFailure names the cause of a failed connection attempt (one of
// [Causes]) and explains it in words an operator can act on, for clients
// other than the Publisher (which does this itself). overTLS tells whether
// the broker URL is a TLS one.
func ConnectFailure(err error, overTLS bool) (cause, reason string) {
	return classifyConnectError(err, overTLS)
}

// IsTLSURL reports whether brokerURL uses a TLS scheme (ssl, tls, mqtts).
func IsTLSURL(brokerURL string) bool {
	u, err := parseBrokerURL(brokerURL)
	return err == nil && isTLSScheme(u.Scheme)
}
