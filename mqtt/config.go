package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/edge-sensor/edge/internal/redact"
)

// Defaults applied by [Config] for zero values.
const (
	DefaultPrefix               = "edge"
	DefaultDiscoveryPrefix      = "homeassistant"
	DefaultKeepAlive            = 30 * time.Second
	DefaultConnectTimeout       = 10 * time.Second
	DefaultConnectRetryInterval = 5 * time.Second
	DefaultMaxReconnectInterval = time.Minute
	DefaultAckTimeout           = 30 * time.Second
	DefaultMaxQueue             = 10080 // a week of one-minute windows
	DefaultMaxQueueAge          = 7 * 24 * time.Hour
	DefaultMaxMemQueue          = 1440 // a day of one-minute windows, about 1.5 MB
	DefaultInterval             = time.Minute
)

// Config configures a [Publisher]. Zero values take the defaults above;
// Validate reports every invalid field.
type Config struct {
	// BrokerURL is the broker address: tcp:// (or mqtt://) for plain TCP,
	// ssl://, tls:// or mqtts:// for TLS. The port defaults to 1883 or 8883.
	// Required: with no broker configured edge starts an embedded one and
	// passes its URL (see StartEmbedded).
	BrokerURL string
	// ClientID defaults to "edge-<device>".
	ClientID string
	// Username and Password authenticate to the broker (optional).
	Username string
	Password string
	// TLS configures certificates for TLS URLs; setting it with a plain
	// TCP URL is an error.
	TLS TLSConfig

	// KeepAlive is the MQTT keepalive interval.
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout time.Duration
	// ConnectRetryInterval is the pause between attempts of the initial
	// connection (a broker that is down at start is retried forever in the
	// background; Publish never waits for it).
	ConnectRetryInterval time.Duration
	// MaxReconnectInterval caps the exponential backoff between reconnects.
	MaxReconnectInterval time.Duration
	// AckTimeout is how long the sender waits for a PUBACK on an open
	// connection before sending the window again.
	AckTimeout time.Duration

	// Prefix is the first topic level (default "edge").
	Prefix string
	// Department and Device name this sensor; both are required.
	Department string
	Device     string

	// StateDir holds the delivery queue and the window counter; required.
	// One Publisher at a time may use a state directory.
	StateDir string
	// MaxQueue and MaxQueueAge bound the on-disk queue; beyond them the
	// oldest windows are dropped and counted (BrokerState.QueueDropped).
	MaxQueue    int
	MaxQueueAge time.Duration
	// MaxMemQueue bounds the windows held in memory while the state
	// directory cannot store them (disk full, read-only, out of file
	// descriptors); beyond it the oldest are lost and counted
	// (BrokerState.WindowsLost, Stats.WindowsLost).
	MaxMemQueue int

	// Interval is the length of a stats window; Home Assistant sensors
	// expire after three intervals without a message.
	Interval time.Duration
	// DisableDiscovery turns Home Assistant MQTT discovery off.
	DisableDiscovery bool
	// DiscoveryPrefix is Home Assistant's discovery prefix (default
	// "homeassistant").
	DiscoveryPrefix string
	// Tasks lists the enabled classification tasks and their labels; Home
	// Assistant gets one share sensor per label.
	Tasks []TaskLabels
	// SWVersion is reported to Home Assistant as the device's software version.
	SWVersion string

	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// TaskLabels names one enabled task and its labels in model output order,
// e.g. {"age", ["0-19","20-39","40-59","60-79","80+"]}.
type TaskLabels struct {
	Task   string
	Labels []string
}

// TLSConfig holds the TLS settings for ssl://, tls:// and mqtts:// URLs.
type TLSConfig struct {
	// CAFile is a PEM bundle of CAs to trust instead of the system roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that require client certificates. Set both or neither.
	CertFile string
	KeyFile  string
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string
	// InsecureSkipVerify disables verification of the broker's certificate.
	// Only for testing; off by default.
	InsecureSkipVerify bool
}

func (t TLSConfig) isZero() bool { return t == TLSConfig{} }

// Build loads the files and returns a *tls.Config (TLS 1.2 or newer).
func (t TLSConfig) Build() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: tls: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt: tls: CA file %q holds no PEM certificate", t.CAFile)
		}
		c.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("mqtt: tls: client certificate and key must be given together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: tls: load client certificate %q / key %q: %w", t.CertFile, t.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// withDefaults returns a copy with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.KeepAlive, DefaultKeepAlive)
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.ConnectRetryInterval, DefaultConnectRetryInterval)
	def(&c.MaxReconnectInterval, DefaultMaxReconnectInterval)
	def(&c.AckTimeout, DefaultAckTimeout)
	def(&c.MaxQueueAge, DefaultMaxQueueAge)
	def(&c.Interval, DefaultInterval)
	if c.MaxQueue == 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.MaxMemQueue == 0 {
		c.MaxMemQueue = DefaultMaxMemQueue
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.DiscoveryPrefix == "" {
		c.DiscoveryPrefix = DefaultDiscoveryPrefix
	}
	if c.ClientID == "" && c.Device != "" {
		c.ClientID = "edge-" + c.Device
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports every invalid field, after applying defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	u, err := parseBrokerURL(c.BrokerURL)
	add(err)
	if err == nil && !isTLSScheme(u.Scheme) && !c.TLS.isZero() {
		add(fmt.Errorf("mqtt: TLS options are set but broker URL %q is not a TLS URL (use ssl://, tls:// or mqtts://)", RedactURL(c.BrokerURL)))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add(errors.New("mqtt: tls: client certificate and key must be given together"))
	}
	add(ValidateName("prefix", c.Prefix))
	add(ValidateName("department", c.Department))
	add(ValidateName("device", c.Device))
	add(ValidateName("discovery prefix", c.DiscoveryPrefix))
	if c.StateDir == "" {
		add(errors.New("mqtt: state directory must be set"))
	}
	for _, d := range [...]struct {
		name string
		v    time.Duration
	}{
		{"keepalive", c.KeepAlive}, {"connect timeout", c.ConnectTimeout}, {"connect retry interval", c.ConnectRetryInterval},
		{"max reconnect interval", c.MaxReconnectInterval}, {"ack timeout", c.AckTimeout},
		{"max queue age", c.MaxQueueAge}, {"interval", c.Interval},
	} {
		if d.v < 0 {
			add(fmt.Errorf("mqtt: %s must be positive, got %v", d.name, d.v))
		}
	}
	if c.KeepAlive > 0 && c.KeepAlive < time.Second {
		add(fmt.Errorf("mqtt: keepalive must be at least 1s, got %v", c.KeepAlive))
	}
	if c.MaxQueue < 0 {
		add(fmt.Errorf("mqtt: max queue must be positive, got %d", c.MaxQueue))
	}
	if c.MaxMemQueue < 0 {
		add(fmt.Errorf("mqtt: max memory queue must be positive, got %d", c.MaxMemQueue))
	}
	seen := map[string]bool{}
	for _, t := range c.Tasks {
		switch {
		case t.Task != TaskEmotion && t.Task != TaskAge && t.Task != TaskGender:
			add(fmt.Errorf("mqtt: unknown task %q (want one of %v)", t.Task, Tasks()))
		case seen[t.Task]:
			add(fmt.Errorf("mqtt: task %q listed twice", t.Task))
		}
		seen[t.Task] = true
		for _, l := range t.Labels {
			if l == "" || strings.ContainsAny(l, `'"\{}%`) || strings.ContainsFunc(l, func(r rune) bool { return r < ' ' }) {
				add(fmt.Errorf("mqtt: task %q: invalid label %q (empty, quotes, braces, %% or control characters)", t.Task, l))
			}
		}
	}
	return errors.Join(errs...)
}

func isTLSScheme(s string) bool { return s == "ssl" || s == "tls" || s == "mqtts" }

// RedactURL hides the user information (user name and password) of a URL
// for printing: "ssl://user:secret@host:8883" becomes
// "ssl://REDACTED@host:8883", malformed URLs included.
func RedactURL(s string) string { return redact.URL(s) }

// parseBrokerURL checks a broker URL and adds the default port. Its errors
// print the URL redacted.
func parseBrokerURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("mqtt: broker URL must be set (e.g. tcp://127.0.0.1:1883)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, fmt.Errorf("mqtt: invalid broker URL %q: %w", RedactURL(raw), err)
	}
	redacted := RedactURL(raw)
	var port string
	switch u.Scheme {
	case "tcp", "mqtt":
		port = "1883"
	case "ssl", "tls", "mqtts":
		port = "8883"
	default:
		return nil, fmt.Errorf("mqtt: invalid broker URL %q: scheme must be tcp, mqtt, ssl, tls or mqtts", redacted)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("mqtt: invalid broker URL %q: missing host", redacted)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("mqtt: invalid broker URL %q: unexpected path, query or fragment", redacted)
	}
	if u.Port() == "" {
		if strings.HasSuffix(u.Host, ":") {
			return nil, fmt.Errorf("mqtt: invalid broker URL %q: empty port", redacted)
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	u.Path = ""
	return u, nil
}
