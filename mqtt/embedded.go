package mqtt

import (
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// DefaultEmbeddedAddr is where the embedded broker listens by default.
const DefaultEmbeddedAddr = "127.0.0.1:1883"

// The embedded broker's limits. edge's stats and diagnostics messages are
// under a kilobyte (583 and 574 bytes in mqtt/README.md's examples) and
// its subscribers are a handful of local programs; mochi-mqtt's defaults
// (no packet size limit, no client limit, no deadline before CONNECT) would
// let one misbehaving local client allocate up to 256 MiB with a single
// fixed header, keep a silent socket open forever, or connect clients
// without end, on a device with little memory.
const (
	DefaultEmbeddedMaxClients     = 64
	DefaultEmbeddedMaxPacketBytes = 256 << 10
	DefaultEmbeddedConnectTimeout = 10 * time.Second
)

// Embedded is an in-process MQTT broker (mochi-mqtt) for installations
// without a broker of their own.
type Embedded struct {
	srv     *mochi.Server
	addr    string
	once    sync.Once
	closing chan struct{} // closed when Close starts
	stopped chan struct{} // closed when the broker has stopped
}

// EmbeddedOption configures StartEmbedded.
type EmbeddedOption func(*embeddedConfig)

type embeddedConfig struct {
	log            *slog.Logger
	user, password string
	maxClients     int
	connectTimeout time.Duration
}

// WithEmbeddedLogger sets the broker's logger (default: slog.Default()).
func WithEmbeddedLogger(l *slog.Logger) EmbeddedOption {
	return func(c *embeddedConfig) { c.log = l }
}

// WithRemoteCredentials allows the broker to listen on a non-loopback
// address. Clients connecting from loopback are still accepted without
// credentials; every other client must present this username and password.
func WithRemoteCredentials(username, password string) EmbeddedOption {
	return func(c *embeddedConfig) { c.user, c.password = username, password }
}

// WithEmbeddedLimits sets how many clients may be connected at once
// (DefaultEmbeddedMaxClients) and how long a new connection may take to send
// its CONNECT packet before it is closed (DefaultEmbeddedConnectTimeout).
// A client over the limit gets CONNACK "server unavailable" (MQTT 5: "server
// busy").
func WithEmbeddedLimits(maxClients int, connectTimeout time.Duration) EmbeddedOption {
	return func(c *embeddedConfig) { c.maxClients, c.connectTimeout = maxClients, connectTimeout }
}

// StartEmbedded starts a broker listening on addr ("" means
// DefaultEmbeddedAddr; port 0 picks a free port, see Addr). The address must
// be a loopback one unless WithRemoteCredentials is given. The broker stops
// on Close or when ctx is done.
func StartEmbedded(ctx context.Context, addr string, opts ...EmbeddedOption) (*Embedded, error) {
	if addr == "" {
		addr = DefaultEmbeddedAddr
	}
	cfg := embeddedConfig{log: slog.Default(), maxClients: DefaultEmbeddedMaxClients, connectTimeout: DefaultEmbeddedConnectTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxClients < 1 || cfg.connectTimeout <= 0 {
		return nil, fmt.Errorf("mqtt: embedded broker limits: %d clients, connect timeout %v: both must be positive", cfg.maxClients, cfg.connectTimeout)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("mqtt: embedded broker address %q: %w", addr, err)
	}
	if !isLoopbackHost(host) {
		if cfg.user == "" || cfg.password == "" {
			return nil, fmt.Errorf("mqtt: embedded broker address %q is not a loopback address; listening beyond this machine needs WithRemoteCredentials (non-empty username and password)", addr)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	log := cfg.log.With("component", "mqtt-broker")
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumClients = int64(cfg.maxClients)
	caps.MaximumPacketSize = DefaultEmbeddedMaxPacketBytes
	srv := mochi.New(&mochi.Options{Logger: log, Capabilities: caps})
	if err := srv.AddHook(&loopbackAuth{user: cfg.user, password: cfg.password}, nil); err != nil {
		return nil, fmt.Errorf("mqtt: embedded broker auth hook: %w", err)
	}
	nl, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mqtt: embedded broker listen on %s: %w", addr, err)
	}
	l := listeners.NewNet("edge", connectDeadline{Listener: nl, timeout: cfg.connectTimeout})
	if err := srv.AddListener(l); err != nil {
		_ = nl.Close()
		return nil, fmt.Errorf("mqtt: embedded broker listen on %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("mqtt: start embedded broker: %w", err)
	}
	e := &Embedded{srv: srv, addr: l.Address(), closing: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		select {
		case <-ctx.Done():
			_ = e.Close()
		case <-e.closing:
		}
	}()
	log.Info("mqtt: embedded broker listening", "addr", e.addr)
	return e, nil
}

// Addr is the address the broker listens on (host:port).
func (e *Embedded) Addr() string { return e.addr }

// URL is the broker URL for Config.BrokerURL, e.g. tcp://127.0.0.1:1883.
func (e *Embedded) URL() string { return "tcp://" + e.addr }

// Done returns a channel closed once the broker has stopped (after Close or
// the cancellation of StartEmbedded's context).
func (e *Embedded) Done() <-chan struct{} { return e.stopped }

// Close stops the broker and disconnects its clients. It is safe to call
// more than once.
func (e *Embedded) Close() error {
	var err error
	e.once.Do(func() {
		close(e.closing)
		err = e.srv.Close()
		close(e.stopped)
	})
	return err
}

// connectDeadline gives every accepted connection a deadline for its CONNECT
// packet. mochi-mqtt sets none until CONNECT has been read, and then replaces
// it with the client's keepalive.
type connectDeadline struct {
	net.Listener
	timeout time.Duration
}

// Accept returns the next connection that took its deadline. An error ends
// mochi-mqtt's accept loop, so a connection that cannot take one is closed and
// skipped rather than reported.
func (l connectDeadline) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := c.SetDeadline(time.Now().Add(l.timeout)); err == nil {
			return c, nil
		}
		_ = c.Close()
	}
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// loopbackAuth admits every client connecting from a loopback address and,
// when credentials are configured, remote clients presenting them. Admitted
// clients may publish and subscribe to every topic.
type loopbackAuth struct {
	mochi.HookBase
	user, password string
}

func (h *loopbackAuth) ID() string { return "edge-loopback-auth" }

func (h *loopbackAuth) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}

func (h *loopbackAuth) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	return h.allow(cl.Net.Remote, pk.Connect.Username, pk.Connect.Password)
}

func (h *loopbackAuth) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// allow decides whether a client at remote ("ip:port") may connect.
func (h *loopbackAuth) allow(remote string, user, password []byte) bool {
	if ap, err := netip.ParseAddrPort(remote); err == nil && ap.Addr().Unmap().IsLoopback() {
		return true
	}
	if h.user == "" || h.password == "" {
		return false
	}
	okUser := subtle.ConstantTimeCompare(user, []byte(h.user)) == 1
	okPass := subtle.ConstantTimeCompare(password, []byte(h.password)) == 1
	return okUser && okPass
}
