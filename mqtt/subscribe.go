package mqtt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// SubscribeOption configures Subscribe.
type SubscribeOption func(*subscribeConfig)

type subscribeConfig struct {
	clientID             string
	user, password       string
	tls                  TLSConfig
	log                  *slog.Logger
	connectTimeout       time.Duration
	maxReconnectInterval time.Duration
	onSubscribed         func()
}

// WithCredentials sets the username and password for the broker.
func WithCredentials(username, password string) SubscribeOption {
	return func(c *subscribeConfig) { c.user, c.password = username, password }
}

// WithTLS sets the TLS settings for ssl://, tls:// and mqtts:// URLs.
func WithTLS(t TLSConfig) SubscribeOption { return func(c *subscribeConfig) { c.tls = t } }

// WithClientID sets a fixed client id and asks the broker for a persistent
// session, so QoS 1 stats published while the subscriber is away are
// delivered when it comes back. Without it a random id and a clean session
// are used.
func WithClientID(id string) SubscribeOption { return func(c *subscribeConfig) { c.clientID = id } }

// WithSubscribeLogger sets the logger (default slog.Default()).
func WithSubscribeLogger(l *slog.Logger) SubscribeOption {
	return func(c *subscribeConfig) { c.log = l }
}

// WithMaxReconnectInterval caps the backoff between reconnects (default 10s).
func WithMaxReconnectInterval(d time.Duration) SubscribeOption {
	return func(c *subscribeConfig) { c.maxReconnectInterval = d }
}

// WithOnSubscribed registers f to be called each time the subscription is
// (re-)established after a connect.
func WithOnSubscribed(f func()) SubscribeOption {
	return func(c *subscribeConfig) { c.onSubscribed = f }
}

// Subscribe connects to the broker at url, subscribes with QoS 1 to the
// stats of every department and device under prefix and calls handler once
// per (department, device, window): redelivered duplicates are dropped.
// Messages that are not valid stats are logged and skipped. handler is
// called from one goroutine at a time. Subscribe fails when the first
// connection cannot be made; afterwards it reconnects on its own and returns
// nil once ctx is done.
func Subscribe(ctx context.Context, url, prefix string, handler func(topic string, s Stats), opts ...SubscribeOption) error {
	cfg := subscribeConfig{log: slog.Default(), connectTimeout: DefaultConnectTimeout, maxReconnectInterval: 10 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if handler == nil {
		return fmt.Errorf("mqtt: subscribe: nil handler")
	}
	if err := ValidateName("prefix", prefix); err != nil {
		return err
	}
	u, err := parseBrokerURL(url)
	if err != nil {
		return err
	}
	if !isTLSScheme(u.Scheme) && !cfg.tls.isZero() {
		return fmt.Errorf("mqtt: TLS options are set but broker URL %q is not a TLS URL", RedactURL(url))
	}
	if cfg.maxReconnectInterval <= 0 {
		return fmt.Errorf("mqtt: max reconnect interval must be positive, got %v", cfg.maxReconnectInterval)
	}
	clean := cfg.clientID == ""
	if clean {
		var b [6]byte
		_, _ = rand.Read(b[:])
		cfg.clientID = "edge-subscribe-" + hex.EncodeToString(b[:])
	}
	log := cfg.log.With("component", "mqtt-subscribe")
	filter := StatsFilter(prefix)
	d := newDeduper(4096)
	var mu sync.Mutex // serialises handler calls
	onMessage := func(_ paho.Client, m paho.Message) {
		var s Stats
		if err := json.Unmarshal(m.Payload(), &s); err != nil {
			log.Warn("mqtt: skipping message that is not valid stats JSON", "topic", m.Topic(), "err", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !d.first(s.Department, s.Device, kindOf(s), s.Window) {
			log.Debug("mqtt: dropping duplicate window", "topic", m.Topic(), "window", s.Window)
			return
		}
		handler(m.Topic(), s)
	}
	opt := paho.NewClientOptions().
		AddBroker(u.String()).
		SetClientID(cfg.clientID).
		SetUsername(cfg.user).
		SetPassword(cfg.password).
		SetCleanSession(clean).
		SetConnectTimeout(cfg.connectTimeout).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(cfg.maxReconnectInterval).
		SetKeepAlive(DefaultKeepAlive).
		SetDefaultPublishHandler(onMessage) // persistent-session messages arriving before the subscribe call
	if isTLSScheme(u.Scheme) {
		tc, err := cfg.tls.Build()
		if err != nil {
			return err
		}
		opt.SetTLSConfig(tc)
	}
	opt.SetOnConnectHandler(func(c paho.Client) {
		tok := c.Subscribe(filter, 1, onMessage)
		if !tok.WaitTimeout(cfg.connectTimeout) || tok.Error() != nil {
			log.Error("mqtt: subscribe failed", "filter", filter, "err", tok.Error())
			return
		}
		log.Info("mqtt: subscribed", "filter", filter)
		if cfg.onSubscribed != nil {
			cfg.onSubscribed()
		}
	}).SetConnectionLostHandler(func(_ paho.Client, err error) {
		log.Warn("mqtt: connection lost; reconnecting", "err", err)
	})
	client := paho.NewClient(opt)
	tok := client.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("mqtt: connect to %s: %w", u.Redacted(), err)
		}
	case <-ctx.Done():
		client.Disconnect(0)
		return nil
	}
	<-ctx.Done()
	client.Disconnect(250)
	return nil
}

// deduper remembers the last n windows of each (department, device, kind):
// each kind has its own window id sequence.
type deduper struct {
	n    int
	seen map[[3]string]*windowSet
}

type windowSet struct {
	set  map[uint64]struct{}
	ring []uint64
	next int
}

func newDeduper(n int) *deduper { return &deduper{n: n, seen: map[[3]string]*windowSet{}} }

// first reports whether window of the device's sequence of that kind was not
// seen among its last n windows, and records it.
func (d *deduper) first(department, device, kind string, window uint64) bool {
	k := [3]string{department, device, kind}
	ws := d.seen[k]
	if ws == nil {
		ws = &windowSet{set: make(map[uint64]struct{}, d.n), ring: make([]uint64, 0, d.n)}
		d.seen[k] = ws
	}
	if _, dup := ws.set[window]; dup {
		return false
	}
	if len(ws.ring) < d.n {
		ws.ring = append(ws.ring, window)
	} else {
		delete(ws.set, ws.ring[ws.next])
		ws.ring[ws.next] = window
		ws.next = (ws.next + 1) % d.n
	}
	ws.set[window] = struct{}{}
	return true
}
