package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Errors returned by Publisher methods.
var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("mqtt: publisher closed")
	// ErrNotConnected is returned by PublishDiagnostics while the broker is
	// unreachable (diagnostics are not queued).
	ErrNotConnected = errors.New("mqtt: not connected to broker")
	// ErrWindowOrder is returned when a caller-chosen window id does not
	// follow the last one.
	ErrWindowOrder = errors.New("mqtt: window id not increasing")

	errAckTimeout = errors.New("mqtt: no acknowledgement within ack timeout")
)

// Publisher publishes a device's stats, status and diagnostics. Stats are
// durable: Publish stores each window on disk and a background sender
// delivers the queue in order with QoS 1, removing a window only after the
// broker acknowledged it. A Publisher is safe for concurrent use.
type Publisher struct {
	cfg     Config
	log     *slog.Logger
	topics  Topics
	client  paho.Client
	lock    *os.File
	started time.Time
	// streams are the window sequences by kind: short windows first, then
	// the long ones. Each has its own queue and id sequence, so a long
	// window never waits behind an hour of short ones, nor they behind it.
	streams []*stream

	mu     sync.Mutex // guards the streams' last ids and closed; held while persisting a window
	closed bool

	connEvt chan struct{} // the connection came up
	haEvt   chan struct{} // Home Assistant announced itself online
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	connMu sync.Mutex
	connCh chan struct{} // closed and replaced on every connect

	lost    atomic.Uint64
	lastErr atomic.Pointer[string]

	overTLS  bool
	failMu   sync.Mutex
	cause    string            // cause of the last failed connection attempt; "" while connected
	failures map[string]uint64 // failed connection attempts by cause
	warned   map[string]bool   // causes logged since the last successful connect
}

// NewPublisher validates cfg, opens the state directory (queue and window
// counter) and starts connecting in the background. It does not wait for the
// broker: windows are queued on disk until it is reachable.
func NewPublisher(cfg Config) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	u, err := parseBrokerURL(cfg.BrokerURL)
	if err != nil {
		return nil, err
	}
	topics, err := NewTopics(cfg.Prefix, cfg.Department, cfg.Device)
	if err != nil {
		return nil, err
	}
	opts := paho.NewClientOptions().
		AddBroker(u.String()).
		SetClientID(cfg.ClientID).
		// MQTT 3.1.1 only: paho's fallback to 3.1 would retry every refusal
		// and report the second attempt's answer instead of the first.
		SetProtocolVersion(4).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(true).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(min(cfg.KeepAlive, 10*time.Second)).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.ConnectTimeout).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(cfg.MaxReconnectInterval).
		SetConnectRetry(true).
		SetConnectRetryInterval(cfg.ConnectRetryInterval).
		SetBinaryWill(topics.Status, []byte(StatusOffline), 1, true)
	if isTLSScheme(u.Scheme) {
		tc, err := cfg.TLS.Build()
		if err != nil {
			return nil, err
		}
		opts.SetTLSConfig(tc)
	}

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("mqtt: create state directory: %w", err)
	}
	lock, err := lockDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "mqtt", "device", cfg.Device)
	var streams []*stream
	for _, k := range []struct{ kind, dir string }{
		{KindWindow, cfg.StateDir},
		// The long windows keep their queue and counter one level down,
		// so a state directory from before they existed is read as is.
		{KindHour, filepath.Join(cfg.StateDir, hourDirName)},
	} {
		st, err := openStream(k.kind, k.dir, cfg, log)
		if err != nil {
			lock.Close()
			return nil, err
		}
		streams = append(streams, st)
	}
	p := &Publisher{
		cfg:     cfg,
		log:     log,
		topics:  topics,
		streams: streams,
		lock:    lock,
		started: time.Now(),
		connEvt: make(chan struct{}, 1),
		haEvt:   make(chan struct{}, 1),
		stop:    make(chan struct{}),
		connCh:  make(chan struct{}),

		overTLS:  isTLSScheme(u.Scheme),
		failures: map[string]uint64{},
		warned:   map[string]bool{},
	}
	opts.SetOnConnectHandler(func(paho.Client) { p.onConnect() }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { p.onConnectionLost(err) }).
		SetConnectionNotificationHandler(func(_ paho.Client, n paho.ConnectionNotification) {
			// Failed covers every failed attempt: dial, TLS handshake and
			// CONNACK refusals (BrokerFailed only the first two).
			if f, ok := n.(paho.ConnectionNotificationFailed); ok {
				p.onConnectFailed(f.Reason)
			}
		})
	p.client = paho.NewClient(opts)

	p.wg.Add(1 + len(streams))
	for _, st := range streams {
		go p.sendLoop(st)
	}
	go p.controlLoop()
	p.client.Connect() // retries in the background until Close
	log.Info("mqtt: publisher started", "broker", RedactURL(u.String()), "stats_topic", topics.Stats,
		"queued", p.QueueLen(), "last_window", streams[0].last, "last_hour_window", streams[1].last)
	return p, nil
}

// hourDirName is the subdirectory of the state directory that holds the
// long windows' queue and counter.
const hourDirName = "hour"

// stream is the window sequence of one kind: its durable queue and the last
// id assigned (guarded by Publisher.mu).
type stream struct {
	kind string
	q    *queue
	last uint64
	wake chan struct{} // a window was queued
}

func openStream(kind, dir string, cfg Config, log *slog.Logger) (*stream, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mqtt: create state directory for %s windows: %w", kind, err)
	}
	q, err := openQueue(dir, cfg.MaxQueue, cfg.MaxMemQueue, cfg.MaxQueueAge, log.With("kind", kind))
	if err != nil {
		return nil, err
	}
	return &stream{kind: kind, q: q, last: q.maxID(), wake: make(chan struct{}, 1)}, nil
}

// stream returns the sequence of a kind ("" is KindWindow); nil when unknown.
func (p *Publisher) stream(kind string) *stream {
	if kind == "" {
		kind = KindWindow
	}
	for _, st := range p.streams {
		if st.kind == kind {
			return st
		}
	}
	return nil
}

// Topics returns the device's topics.
func (p *Publisher) Topics() Topics { return p.topics }

// Connected reports whether the connection to the broker is up right now.
func (p *Publisher) Connected() bool { return p.client.IsConnectionOpen() }

// QueueLen is the number of windows (of every kind) waiting for
// acknowledgement, on disk or (while the state directory fails) in memory.
func (p *Publisher) QueueLen() int {
	n := 0
	for _, st := range p.streams {
		n += st.q.len()
	}
	return n
}

// Dropped counts windows (of every kind) dropped since start because a
// queue exceeded Config.MaxQueue or Config.MaxQueueAge (or a queued file
// was unreadable). The bounds apply to each kind's queue on its own.
func (p *Publisher) Dropped() uint64 {
	var n uint64
	for _, st := range p.streams {
		n += st.q.dropped.Load()
	}
	return n
}

// WindowsLost counts windows (of every kind) that will never be delivered,
// since start: those Dropped counts, those that found neither disk nor
// memory room while the state directory failed, and those still held in
// memory at Close.
func (p *Publisher) WindowsLost() uint64 {
	var n uint64
	for _, st := range p.streams {
		n += st.q.lost.Load()
	}
	return n
}

// LastWindow is the id of the last short window ([KindWindow]) accepted by
// Publish (or found in the state directory at start).
func (p *Publisher) LastWindow() uint64 { return p.LastWindowOf(KindWindow) }

// LastWindowOf is LastWindow for the sequence of the given kind; 0 for an
// unknown kind.
func (p *Publisher) LastWindowOf(kind string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.stream(kind); st != nil {
		return st.last
	}
	return 0
}

// BrokerState returns the connection and queue state reported in diagnostics.
func (p *Publisher) BrokerState() BrokerState {
	st := BrokerState{
		Connected:       p.Connected(),
		QueueDropped:    p.Dropped(),
		WindowsLost:     p.WindowsLost(),
		ConnectionsLost: p.lost.Load(),
	}
	for _, s := range p.streams {
		h := s.q.health()
		st.Queue += h.queued
		st.QueueMemory += h.inMemory
		st.LostUnreported += h.lostUnreported
		st.StateWriteFailures += s.q.storeFailures.Load()
		if st.StateError == "" {
			st.StateError = h.storeErr
		}
	}
	if e := p.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	p.failMu.Lock()
	if !st.Connected {
		st.Cause = p.cause
	}
	if len(p.failures) > 0 {
		st.ConnectFailures = maps.Clone(p.failures)
	}
	p.failMu.Unlock()
	return st
}

// Publish queues one window for delivery and returns once it is durably on
// disk; delivery happens in the background, in window order, surviving
// broker outages and restarts. While the state directory cannot store it
// (disk full, read-only, out of file descriptors) the window is held in
// memory (at most Config.MaxMemQueue per kind) and still delivered; Publish
// does not fail for that. The window's WindowsLost is set to the windows of
// its kind lost since the last window that reported a loss. Device and Department default to the
// Config's and must match it when set. Each kind has its own persisted id
// sequence: a zero Window gets the next id of its kind's sequence; a
// non-zero one must exceed LastWindowOf(s.Kind).
func (p *Publisher) Publish(ctx context.Context, s Stats) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.Device == "" {
		s.Device = p.cfg.Device
	} else if s.Device != p.cfg.Device {
		return fmt.Errorf("mqtt: stats for device %q given to the publisher of device %q", s.Device, p.cfg.Device)
	}
	if s.Department == "" {
		s.Department = p.cfg.Department
	} else if s.Department != p.cfg.Department {
		return fmt.Errorf("mqtt: stats for department %q given to the publisher of department %q", s.Department, p.cfg.Department)
	}
	if err := s.Validate(); err != nil {
		return err
	}
	s.normalize()

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	st := p.stream(s.Kind) // Validate rejected unknown kinds
	switch {
	case s.Window == 0:
		s.Window = st.last + 1
	case s.Window <= st.last:
		return fmt.Errorf("%w: %s window %d is not after the last one %d", ErrWindowOrder, s.Kind, s.Window, st.last)
	}
	s.WindowsLost = st.q.takeLost()
	data, err := json.Marshal(s)
	if err != nil {
		st.q.putBackLost(s.WindowsLost)
		return fmt.Errorf("mqtt: encode stats: %w", err)
	}
	st.q.put(s.Window, data, s.WindowsLost)
	st.last = s.Window
	signal(st.wake)
	return nil
}

// PublishDiagnostics publishes d with QoS 0 on the diagnostics topic, filling
// in the schema, device, department, time (when zero), uptime (when zero,
// the publisher's) and broker state. Diagnostics are not queued: while the
// broker is unreachable it returns ErrNotConnected.
func (p *Publisher) PublishDiagnostics(ctx context.Context, d Diagnostics) error {
	if p.isClosed() {
		return ErrClosed
	}
	d.Schema = SchemaVersion
	d.Device, d.Department = p.cfg.Device, p.cfg.Department
	if d.Time.IsZero() {
		d.Time = time.Now()
	}
	d.Time = d.Time.UTC()
	if d.UptimeSeconds == 0 {
		d.UptimeSeconds = time.Since(p.started).Seconds()
	}
	d.Broker = p.BrokerState()
	if !d.Broker.Connected {
		return ErrNotConnected
	}
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("mqtt: encode diagnostics: %w", err)
	}
	tok := p.client.Publish(p.topics.Diagnostics, 0, false, data)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("mqtt: publish diagnostics: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush waits until every queued window has been acknowledged by the broker
// or ctx is done.
func (p *Publisher) Flush(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for p.QueueLen() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("mqtt: flush with %d windows queued: %w", p.QueueLen(), ctx.Err())
		case <-p.stop:
			return ErrClosed
		case <-t.C:
		}
	}
	return nil
}

// Close stops accepting windows, waits while connected until the broker
// acknowledged every queued window (so that none is sent again by the next
// start), publishes the retained "offline" status and disconnects, all
// within ctx's deadline (without one, within the ack timeout). Windows not
// yet acknowledged stay on disk and are sent by the next Publisher using the
// same state directory; windows held in memory because the state directory
// failed are stored if it works again, else counted lost.
func (p *Publisher) Close(ctx context.Context) error {
	err := ErrClosed
	p.once.Do(func() { err = p.close(ctx) })
	return err
}

func (p *Publisher) close(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.AckTimeout)
		defer cancel()
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.drain(ctx)
	close(p.stop)
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}

	var errs []error
	if p.client.IsConnectionOpen() {
		tok := p.client.Publish(p.topics.Status, 1, true, []byte(StatusOffline))
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				errs = append(errs, fmt.Errorf("mqtt: publish offline status: %w", err))
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("mqtt: publish offline status: %w", ctx.Err()))
		}
	}
	quiesce := 250 * time.Millisecond
	if dl, ok := ctx.Deadline(); ok {
		quiesce = max(0, min(quiesce, time.Until(dl)))
	}
	p.client.Disconnect(uint(quiesce.Milliseconds()))
	for _, st := range p.streams {
		st.q.close()
	}
	if err := p.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("mqtt: unlock state directory: %w", err))
	}
	p.log.Info("mqtt: publisher closed", "queued", p.QueueLen(), "last_window", p.LastWindow(), "last_hour_window", p.LastWindowOf(KindHour))
	return errors.Join(errs...)
}

// drain waits until the queues are delivered, the connection is down or
// ctx is done. Stopping the sender while a window awaits its PUBACK would
// leave the window queued although the broker has it: the next start would
// send it a second time.
func (p *Publisher) drain(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for p.QueueLen() > 0 && p.client.IsConnectionOpen() {
		select {
		case <-ctx.Done():
			p.log.Warn("mqtt: stop timeout reached with windows unacknowledged; they are sent again at the next start", "queued", p.QueueLen())
			return
		case <-t.C:
		}
	}
}

func (p *Publisher) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// --- connection callbacks (called by paho on its goroutines; must not block) ---

func (p *Publisher) onConnect() {
	p.failMu.Lock()
	p.cause = ""
	clear(p.warned)
	p.failMu.Unlock()
	p.log.Info("mqtt: connected to broker")
	p.connMu.Lock()
	close(p.connCh)
	p.connCh = make(chan struct{})
	p.connMu.Unlock()
	signal(p.connEvt)
}

func (p *Publisher) onConnectionLost(err error) {
	p.lost.Add(1)
	p.setLastErr(err)
	p.log.Warn("mqtt: connection to broker lost; windows stay queued on disk", "err", err)
}

// onConnectFailed counts a failed attempt by cause and logs each cause once
// until the next successful connect: a refusal repeats every few seconds
// for as long as it lasts, and one broker may fail in two ways by turns.
func (p *Publisher) onConnectFailed(err error) {
	if err == nil {
		return
	}
	p.setLastErr(err)
	cause, reason := classifyConnectError(err, p.overTLS)
	p.failMu.Lock()
	p.failures[cause]++
	p.cause = cause
	first := !p.warned[cause]
	p.warned[cause] = true
	p.failMu.Unlock()
	if first {
		p.log.Warn("mqtt: broker connection failed; retrying in the background, windows stay queued",
			"cause", cause, "reason", reason, "err", err)
		return
	}
	p.log.Debug("mqtt: connection attempt failed", "cause", cause, "err", err)
}

func (p *Publisher) setLastErr(err error) {
	if err != nil {
		s := err.Error()
		p.lastErr.Store(&s)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// connSignal returns a channel closed at the next successful connect.
func (p *Publisher) connSignal() <-chan struct{} {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	return p.connCh
}

// --- background goroutines ---

// sendLoop delivers one kind's queue oldest first, one window in flight at
// a time. Whatever fails (the broker, the state directory), it never sends
// the same window, nor reads the queue, faster than an exponential backoff
// allows.
func (p *Publisher) sendLoop(st *stream) {
	defer p.wg.Done()
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	var lastID uint64
	for {
		id, data, ok, err := st.q.next()
		if err != nil {
			p.log.Warn("mqtt: cannot read the queue; retrying", "kind", st.kind, "err", err, "retry_in", backoff)
			if !p.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if !ok {
			select {
			case <-p.stop:
				return
			case <-st.wake:
				continue
			}
		}
		if !p.waitConnected() {
			return
		}
		if !st.q.pin(id) {
			continue // dropped by the queue bounds while waiting for the broker
		}
		if id == lastID {
			// Sending a window again: back off, however the last attempt
			// ended, so that no failure can turn into a republish storm.
			if !p.sleep(backoff) {
				st.q.unpin()
				return
			}
			backoff = min(2*backoff, maxBackoff)
		} else {
			backoff = minBackoff
		}
		lastID = id
		err = p.awaitAck(p.client.Publish(p.topics.Stats, 1, false, data))
		if err != nil {
			st.q.unpin()
		}
		switch {
		case errors.Is(err, ErrClosed):
			return
		case err != nil:
			p.log.Warn("mqtt: window not acknowledged; will send it again", "kind", st.kind, "window", id, "err", err, "retry_in", backoff)
			continue
		}
		st.q.done(id)
		p.log.Debug("mqtt: window delivered", "kind", st.kind, "window", id, "queued", st.q.len())
	}
}

// waitConnected blocks until the connection is open; false when stopping.
func (p *Publisher) waitConnected() bool {
	for !p.client.IsConnectionOpen() {
		ch := p.connSignal()
		if p.client.IsConnectionOpen() {
			break
		}
		t := time.NewTimer(time.Second)
		select {
		case <-p.stop:
			t.Stop()
			return false
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
	return true
}

// awaitAck waits for a QoS 1 publish to be acknowledged. While the
// connection is down it keeps waiting: paho resends the in-flight message
// itself after reconnecting, and sending it again would duplicate it. Only
// when the connection is open and no PUBACK came within AckTimeout does it
// give up (errAckTimeout) so that the caller sends the window again.
func (p *Publisher) awaitAck(tok paho.Token) error {
	t := time.NewTimer(p.cfg.AckTimeout)
	defer t.Stop()
	for {
		select {
		case <-tok.Done():
			return tok.Error()
		case <-p.stop:
			return ErrClosed
		case <-t.C:
			select {
			case <-tok.Done():
				return tok.Error()
			default:
			}
			if p.client.IsConnectionOpen() {
				return errAckTimeout
			}
			t.Reset(p.cfg.AckTimeout)
		}
	}
}

func (p *Publisher) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.stop:
		return false
	case <-t.C:
		return true
	}
}

// controlLoop announces the device on every connect (retained "online",
// Home Assistant discovery) and re-sends discovery when Home Assistant
// restarts.
func (p *Publisher) controlLoop() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.connEvt:
			p.announce()
		case <-p.haEvt:
			p.log.Info("mqtt: Home Assistant is online; re-sending discovery")
			if err := p.publishDiscovery(); err != nil && !errors.Is(err, ErrClosed) {
				p.log.Warn("mqtt: publish Home Assistant discovery", "err", err)
			}
		}
	}
}

func (p *Publisher) announce() {
	if err := p.wait(p.client.Publish(p.topics.Status, 1, true, []byte(StatusOnline))); err != nil {
		if !errors.Is(err, ErrClosed) {
			p.log.Warn("mqtt: publish online status", "err", err)
		}
		return
	}
	if p.cfg.DisableDiscovery {
		return
	}
	if err := p.publishDiscovery(); err != nil {
		if !errors.Is(err, ErrClosed) {
			p.log.Warn("mqtt: publish Home Assistant discovery", "err", err)
		}
		return
	}
	haStatus := p.cfg.DiscoveryPrefix + "/status"
	if err := p.wait(p.client.Subscribe(haStatus, 1, p.onHAStatus)); err != nil && !errors.Is(err, ErrClosed) {
		p.log.Warn("mqtt: subscribe to Home Assistant status", "topic", haStatus, "err", err)
	}
}

func (p *Publisher) onHAStatus(_ paho.Client, m paho.Message) {
	if string(m.Payload()) == "online" {
		signal(p.haEvt)
	}
}

// wait waits for a token for at most AckTimeout.
func (p *Publisher) wait(tok paho.Token) error {
	t := time.NewTimer(p.cfg.AckTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-p.stop:
		return ErrClosed
	case <-t.C:
		return errAckTimeout
	}
}
