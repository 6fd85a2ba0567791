package collect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edge-sensor/edge/mqtt"
)

// Defaults applied by [Config] for zero values.
const (
	DefaultMinGroup       = 5
	DefaultMaxBatch       = 1000
	DefaultRollupInterval = time.Minute
	DefaultStopTimeout    = 10 * time.Second
)

// Config configures a [Collector].
type Config struct {
	// BrokerURL, Username, Password and TLS reach the broker, as for edge run.
	BrokerURL string
	Username  string
	Password  string
	TLS       mqtt.TLSConfig
	// ClientID must stay the same across restarts of one collector: the
	// broker keeps its persistent session (its subscription and the
	// messages it has not acknowledged) under this id. Collectors sharing
	// a subscription need different ids.
	ClientID string
	// Prefix is the devices' topic prefix (default "edge").
	Prefix string
	// ShareGroup, when set, subscribes through the shared subscription
	// $share/{ShareGroup}/{prefix}/+/+/stats: the broker hands each message
	// to one of the group's collectors.
	ShareGroup string
	// MinGroup is the minimum group size k of the roll-ups (default 5).
	MinGroup int
	// MaxBatch bounds the windows written in one transaction (default 1000).
	MaxBatch int
	// RollupInterval is how often the roll-ups are refreshed (default 1m).
	RollupInterval time.Duration
	// StopTimeout bounds the commit of the last batch when Run stops.
	StopTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the collector's Prometheus metrics (nil: none).
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = mqtt.DefaultPrefix
	}
	if c.MinGroup == 0 {
		c.MinGroup = DefaultMinGroup
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.RollupInterval == 0 {
		c.RollupInterval = DefaultRollupInterval
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
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
	if _, err := mqtt.ClientOptions(c.BrokerURL, c.Username, c.Password, c.TLS); err != nil {
		errs = append(errs, err)
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("collect: client id must be set (and stay the same across restarts)"))
	}
	if err := mqtt.ValidateName("prefix", c.Prefix); err != nil {
		errs = append(errs, err)
	}
	if c.ShareGroup != "" {
		if err := mqtt.ValidateName("share group", c.ShareGroup); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MinGroup < 1 {
		errs = append(errs, fmt.Errorf("collect: min group %d, want 1 or more", c.MinGroup))
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("collect: max batch %d, want 1 or more", c.MaxBatch))
	}
	if c.RollupInterval < 0 || c.StopTimeout < 0 {
		errs = append(errs, errors.New("collect: intervals must be positive"))
	}
	return errors.Join(errs...)
}

// Filter is the subscription filter of the configuration.
func (c Config) Filter() string {
	c = c.withDefaults()
	f := mqtt.StatsFilter(c.Prefix)
	if c.ShareGroup != "" {
		f = "$share/" + c.ShareGroup + "/" + f
	}
	return f
}

// writer is what the collector needs of a [Store].
type writer interface {
	Write(ctx context.Context, windows []Window, raw []Raw) (Result, error)
	RefreshRollups(ctx context.Context, minGroup int) (int, error)
}

// Collector subscribes to the stats of a fleet and stores them.
type Collector struct {
	cfg       Config
	store     writer
	log       *slog.Logger
	m         *metrics
	connected atomic.Bool
	dbErr     atomic.Pointer[string] // last write error, nil after a successful write
	brokerErr atomic.Pointer[string] // last connection failure, nil once connected
	warnMu    sync.Mutex
	warned    map[string]bool // connection failure causes logged since the last connect
	counts    Counts
	countsMu  sync.Mutex
}

// Counts are the collector's totals since start.
type Counts struct {
	Received, Inserted, Duplicates, Raw, DBErrors uint64
}

// New checks the configuration and returns a collector writing into store.
func New(cfg Config, store writer) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("collect: nil store")
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Collector{cfg: cfg, store: store, log: cfg.Logger.With("component", "collect"), m: m, warned: map[string]bool{}}, nil
}

// Counts returns the totals since start.
func (c *Collector) Counts() Counts {
	c.countsMu.Lock()
	defer c.countsMu.Unlock()
	return c.counts
}

// Healthy reports why the collector cannot store windows now, or nil.
func (c *Collector) Healthy() error {
	var errs []error
	if !c.connected.Load() {
		if e := c.brokerErr.Load(); e != nil {
			errs = append(errs, fmt.Errorf("not connected to the broker: %s", *e))
		} else {
			errs = append(errs, errors.New("not connected to the broker"))
		}
	}
	if e := c.dbErr.Load(); e != nil {
		errs = append(errs, fmt.Errorf("database: %s", *e))
	}
	return errors.Join(errs...)
}

// inbound is a message waiting for its batch to commit; ack tells the
// broker it may forget it.
type inbound struct {
	topic   string
	payload []byte
	ack     func()
}

// Run connects, subscribes and stores windows until ctx is done. It returns
// an error only when it cannot start; afterwards broker and database
// failures are retried (a batch is retried until it commits, with its
// messages unacknowledged meanwhile, so the broker holds back the rest).
func (c *Collector) Run(ctx context.Context) error {
	opt, err := mqtt.ClientOptions(c.cfg.BrokerURL, c.cfg.Username, c.cfg.Password, c.cfg.TLS)
	if err != nil {
		return err
	}
	in := make(chan inbound, c.cfg.MaxBatch)
	onMessage := func(_ paho.Client, m paho.Message) {
		c.m.received.Inc()
		select {
		case in <- inbound{topic: m.Topic(), payload: m.Payload(), ack: m.Ack}:
		case <-ctx.Done():
			// Not acknowledged: the broker redelivers it to the next session.
		}
	}
	filter := c.cfg.Filter()
	opt.SetClientID(c.cfg.ClientID).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		SetKeepAlive(mqtt.DefaultKeepAlive).
		SetConnectTimeout(mqtt.DefaultConnectTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(2 * time.Second).
		SetMaxReconnectInterval(30 * time.Second).
		// A persistent session delivers what was queued for it before the
		// subscription below is registered again: same handler.
		SetDefaultPublishHandler(onMessage).
		SetOnConnectHandler(func(cl paho.Client) {
			tok := cl.Subscribe(filter, 1, onMessage)
			if !tok.WaitTimeout(mqtt.DefaultConnectTimeout) || tok.Error() != nil {
				c.log.Error("collect: subscribe failed; reconnecting", "filter", filter, "err", tok.Error())
				cl.Disconnect(0)
				return
			}
			c.connected.Store(true)
			c.m.connected.Set(1)
			c.brokerErr.Store(nil)
			c.warnMu.Lock()
			clear(c.warned)
			c.warnMu.Unlock()
			c.log.Info("collect: subscribed", "filter", filter, "client_id", c.cfg.ClientID)
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			c.connected.Store(false)
			c.m.connected.Set(0)
			c.log.Warn("collect: broker connection lost; reconnecting", "err", err)
		}).
		SetConnectionNotificationHandler(func(_ paho.Client, n paho.ConnectionNotification) {
			if f, ok := n.(paho.ConnectionNotificationFailed); ok && f.Reason != nil {
				c.connectFailed(f.Reason)
			}
		})
	client := paho.NewClient(opt)
	// With ConnectRetry, paho keeps trying in the background: a broker
	// that is down at start only delays the collector.
	client.Connect()

	var wg sync.WaitGroup
	wg.Go(func() { c.writeLoop(ctx, in) })
	wg.Go(func() { c.rollupLoop(ctx) })
	<-ctx.Done()
	wg.Wait()
	client.Disconnect(250)
	c.connected.Store(false)
	c.m.connected.Set(0)
	return nil
}

// connectFailed counts a failed connection attempt by cause and logs each
// cause once until the next successful connect: a refused password or an
// untrusted certificate is retried every few seconds for as long as it lasts.
func (c *Collector) connectFailed(err error) {
	cause, reason := mqtt.ConnectFailure(err, mqtt.IsTLSURL(c.cfg.BrokerURL))
	c.m.connectFailures.WithLabelValues(cause).Inc()
	msg := cause + ": " + reason
	c.brokerErr.Store(&msg)
	c.warnMu.Lock()
	first := !c.warned[cause]
	c.warned[cause] = true
	c.warnMu.Unlock()
	if first {
		c.log.Warn("collect: broker connection failed; retrying", "cause", cause, "reason", reason, "err", err)
		return
	}
	c.log.Debug("collect: connection attempt failed", "cause", cause, "err", err)
}

// writeLoop takes what has arrived (up to MaxBatch) as one batch, commits
// it, then acknowledges its messages: batches grow by themselves when the
// database is the bottleneck, and stay single messages when it is not.
func (c *Collector) writeLoop(ctx context.Context, in <-chan inbound) {
	batch := make([]inbound, 0, c.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case m := <-in:
			batch = append(batch, m)
		}
	fill:
		for len(batch) < c.cfg.MaxBatch {
			select {
			case m := <-in:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		if !c.commit(ctx, batch) {
			return
		}
		for _, m := range batch {
			m.ack()
		}
	}
}

// commit decodes and writes one batch, retrying with backoff until it
// commits or ctx is done (then the batch is left unacknowledged).
func (c *Collector) commit(ctx context.Context, batch []inbound) bool {
	windows := make([]Window, 0, len(batch))
	var raw []Raw
	for _, m := range batch {
		w, err := Decode(m.topic, m.payload)
		if err != nil {
			r := rawFor(m.topic, m.payload, err)
			c.log.Warn("collect: keeping a message that is not a valid window in edge_raw_messages", "topic", m.topic, "reason", r.Reason, "err", r.Detail)
			raw = append(raw, r)
			continue
		}
		windows = append(windows, w)
	}
	backoff := 100 * time.Millisecond
	for {
		// A stop lets the batch in progress commit, within StopTimeout.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.StopTimeout)
		start := time.Now()
		res, err := c.store.Write(wctx, windows, raw)
		cancel()
		if err == nil {
			now := time.Now()
			c.m.batchSeconds.Observe(now.Sub(start).Seconds())
			c.m.batchSize.Observe(float64(len(batch)))
			for k, n := range res.Inserted {
				c.m.inserted.WithLabelValues(k).Add(float64(n))
			}
			c.m.duplicates.Add(float64(res.Duplicates))
			for _, r := range raw {
				c.m.raw.WithLabelValues(r.Reason).Inc()
			}
			for _, w := range windows {
				c.m.lag.Observe(now.Sub(w.EndAt).Seconds())
			}
			c.countsMu.Lock()
			c.counts.Received += uint64(len(batch))
			c.counts.Inserted += uint64(res.InsertedTotal())
			c.counts.Duplicates += uint64(res.Duplicates)
			c.counts.Raw += uint64(res.Raw)
			c.countsMu.Unlock()
			c.dbErr.Store(nil)
			return true
		}
		c.m.dbErrors.Inc()
		c.countsMu.Lock()
		c.counts.DBErrors++
		c.countsMu.Unlock()
		msg := err.Error()
		c.dbErr.Store(&msg)
		c.log.Error("collect: storing a batch failed; retrying (its messages stay unacknowledged)", "windows", len(windows), "raw", len(raw), "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (c *Collector) rollupLoop(ctx context.Context) {
	if c.cfg.RollupInterval <= 0 {
		return
	}
	t := time.NewTicker(c.cfg.RollupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		n, err := c.store.RefreshRollups(ctx, c.cfg.MinGroup)
		switch {
		case err != nil && ctx.Err() == nil:
			c.m.rollupErrors.Inc()
			c.log.Error("collect: refreshing roll-ups failed; next try at the next interval", "err", err)
		case err == nil && n >= 0:
			c.m.rollupSeconds.Observe(time.Since(start).Seconds())
			c.m.rollupCells.Add(float64(n))
			c.log.Debug("collect: roll-ups refreshed", "cells", n, "took", time.Since(start))
		}
	}
}
