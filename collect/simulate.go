package collect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edge-sensor/edge/mqtt"
)

// SimConfig describes a simulated fleet.
type SimConfig struct {
	// Devices is the number of devices (required), spread round-robin over
	// Departments departments (default: one per ten devices).
	Devices     int
	Departments int
	// Interval is the length of a short window (default 1m); HourWindow the
	// length of the long window published with kind "hour" (default 1h, a
	// multiple of Interval; negative disables).
	Interval   time.Duration
	HourWindow time.Duration
	// PeakPerHour is the number of people a device sees per hour at the
	// busiest time of day (default 120); the rest of the day follows a
	// shift-shaped curve.
	PeakPerHour float64
	// MinGroup is the devices' k: a task whose window has a label count of
	// 1 to k-1 is withheld, as on a device (default 5).
	MinGroup int
	// OutageRate is the chance per device and window that the device loses
	// its broker for a while (its windows then arrive late, in a burst, as
	// from a device's disk queue); SourceDownRate that its camera is down
	// for the window; ReplayRate that it sends an already sent window again.
	OutageRate, SourceDownRate, ReplayRate float64
	// Prefix is the topic prefix (default "edge").
	Prefix string
	// DevicePrefix starts the device names, "cam" by default (cam-0001, …).
	DevicePrefix string
	// Seed makes a run reproducible.
	Seed uint64
}

func (c SimConfig) withDefaults() SimConfig {
	if c.Departments == 0 {
		c.Departments = max(1, c.Devices/10)
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.HourWindow == 0 {
		c.HourWindow = time.Hour
	}
	if c.PeakPerHour == 0 {
		c.PeakPerHour = 120
	}
	if c.MinGroup == 0 {
		c.MinGroup = DefaultMinGroup
	}
	if c.Prefix == "" {
		c.Prefix = mqtt.DefaultPrefix
	}
	if c.DevicePrefix == "" {
		c.DevicePrefix = "cam"
	}
	return c
}

// Key identifies a stored window.
type Key struct {
	Device, Kind string
	Window       uint64
}

// SimMessage is one message to publish.
type SimMessage struct {
	Topic   string
	Payload []byte
	Key     Key
	// Replay is set on a window sent again.
	Replay bool
}

// Simulator produces the windows of a fleet. It is not safe for concurrent use.
type Simulator struct {
	cfg     SimConfig
	rng     *rand.Rand
	devices []*simDevice
}

type simDevice struct {
	name, dept string
	topic      string
	window     uint64 // last short window id
	hourID     uint64
	hourStart  time.Time
	hourOpen   bool
	hour       mqtt.Stats // long window being summed
	hourDown   float64
	hourCounts map[string]map[string]int
	recent     [][]byte // last payloads, for replays
	offline    int      // windows left in a broker outage
	held       []SimMessage
	profile    labelProfile
}

// labelProfile is a department's label distribution.
type labelProfile map[string][]weighted

type weighted struct {
	label string
	w     float64
}

var simLabels = map[string][]string{
	mqtt.TaskAge:     {"0-19", "20-39", "40-59", "60-79", "80+"},
	mqtt.TaskGender:  {"female", "male"},
	mqtt.TaskEmotion: {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"},
}

// workplaceMix is the typical share of each label (in simLabels order) of
// the people at a workplace as a classifier sees them: almost no minors or
// people over 80, a neutral face most of the time.
var workplaceMix = map[string][]float64{
	mqtt.TaskAge:     {0.02, 0.48, 0.40, 0.095, 0.005},
	mqtt.TaskGender:  {0.45, 0.55},
	mqtt.TaskEmotion: {0.04, 0.02, 0.03, 0.25, 0.55, 0.07, 0.04},
}

// NewSimulator checks the configuration and sets up the devices.
func NewSimulator(cfg SimConfig) (*Simulator, error) {
	cfg = cfg.withDefaults()
	var errs []error
	if cfg.Devices < 1 {
		errs = append(errs, fmt.Errorf("simulate: devices %d, want 1 or more", cfg.Devices))
	}
	if cfg.Departments < 1 {
		errs = append(errs, fmt.Errorf("simulate: departments %d, want 1 or more", cfg.Departments))
	}
	if cfg.Interval < time.Second {
		errs = append(errs, fmt.Errorf("simulate: interval %v, want at least 1s", cfg.Interval))
	}
	if cfg.HourWindow > 0 && cfg.HourWindow%cfg.Interval != 0 {
		errs = append(errs, fmt.Errorf("simulate: long window %v is not a multiple of the interval %v", cfg.HourWindow, cfg.Interval))
	}
	for _, r := range []float64{cfg.OutageRate, cfg.SourceDownRate, cfg.ReplayRate} {
		if r < 0 || r > 1 || math.IsNaN(r) {
			errs = append(errs, fmt.Errorf("simulate: rate %v, want 0..1", r))
		}
	}
	if cfg.PeakPerHour < 0 || cfg.MinGroup < 1 {
		errs = append(errs, errors.New("simulate: peak per hour must be positive and min group at least 1"))
	}
	if err := mqtt.ValidateName("prefix", cfg.Prefix); err != nil {
		errs = append(errs, err)
	}
	if err := mqtt.ValidateName("device prefix", cfg.DevicePrefix); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Simulator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	profiles := make([]labelProfile, cfg.Departments)
	for i := range profiles {
		p := labelProfile{}
		for task, labels := range simLabels {
			ws := make([]weighted, len(labels))
			for j, l := range labels {
				// A workplace: each department's mix varies by up to ±50%
				// around a typical staff.
				ws[j] = weighted{l, workplaceMix[task][j] * (0.5 + s.rng.Float64())}
			}
			p[task] = ws
		}
		profiles[i] = p
	}
	for i := range cfg.Devices {
		d := &simDevice{name: fmt.Sprintf("%s-%04d", cfg.DevicePrefix, i+1), dept: fmt.Sprintf("dept-%02d", i%cfg.Departments+1), profile: profiles[i%cfg.Departments]}
		d.topic = cfg.Prefix + "/" + d.dept + "/" + d.name + "/stats"
		s.devices = append(s.devices, d)
	}
	return s, nil
}

// DayShape is the share of the peak traffic at a time of day: a day shift
// with a lunch peak, an evening shift, and a quiet night.
func DayShape(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60
	switch {
	case h < 5.5:
		return 0.03
	case h < 8:
		return 0.03 + 0.6*(h-5.5)/2.5
	case h < 12:
		return 0.8
	case h < 13.5:
		return 1
	case h < 17:
		return 0.7
	case h < 22:
		return 0.35
	default:
		return 0.08
	}
}

// Step returns the messages of the windows that end at end, one per device
// online (plus the long windows that close, replays, and the backlog of
// devices whose broker outage ends). Windows of devices in an outage are
// held back and appear in a later Step or in Flush.
func (s *Simulator) Step(end time.Time) []SimMessage {
	end = end.UTC()
	start := end.Add(-s.cfg.Interval)
	var out []SimMessage
	for _, d := range s.devices {
		msgs := s.deviceStep(d, start, end)
		switch {
		case d.offline > 0:
			d.offline--
			d.held = append(d.held, msgs...)
			if d.offline == 0 {
				out = append(out, d.held...)
				d.held = nil
			}
		case s.cfg.OutageRate > 0 && s.rng.Float64() < s.cfg.OutageRate:
			d.offline = 1 + s.rng.IntN(30)
			d.held = append(d.held, msgs...)
		default:
			out = append(out, msgs...)
		}
		if len(d.recent) > 0 && s.cfg.ReplayRate > 0 && s.rng.Float64() < s.cfg.ReplayRate {
			p := d.recent[s.rng.IntN(len(d.recent))]
			var k mqtt.Stats
			_ = json.Unmarshal(p, &k) // our own encoding
			out = append(out, SimMessage{Topic: d.topic, Payload: p, Key: Key{d.name, k.Kind, k.Window}, Replay: true})
		}
	}
	return out
}

// Flush returns the windows still held by devices in an outage.
func (s *Simulator) Flush() []SimMessage {
	var out []SimMessage
	for _, d := range s.devices {
		out = append(out, d.held...)
		d.held, d.offline = nil, 0
	}
	return out
}

func (s *Simulator) deviceStep(d *simDevice, start, end time.Time) []SimMessage {
	secs := s.cfg.Interval.Seconds()
	st := mqtt.Stats{Schema: mqtt.SchemaVersion, Kind: KindWindow, Device: d.name, Department: d.dept, Start: start, End: end, Withheld: []string{}}
	st.Frames = mqtt.Frames{Processed: uint64(secs * 15)}
	down := s.cfg.SourceDownRate > 0 && s.rng.Float64() < s.cfg.SourceDownRate
	if down {
		st.SourceDownSeconds = secs
		st.Frames.Processed = 0
	} else {
		lambda := s.cfg.PeakPerHour * DayShape(start) * secs / 3600
		st.PeopleSeen = poisson(s.rng, lambda)
		st.PeopleNow = min(st.PeopleSeen, poisson(s.rng, lambda/3))
		st.Unclassified = binomial(s.rng, st.PeopleSeen, 0.1)
		if st.PeopleSeen > 0 {
			st.DwellSecondsMean = 5 + 40*s.rng.Float64()
		}
		st.Frames.Dropped = uint64(s.rng.IntN(3))
	}
	classified := st.PeopleSeen - st.Unclassified
	short := map[string]map[string]int{}
	for _, task := range mqtt.Tasks() {
		short[task] = s.draw(d.profile[task], classified)
	}
	applyBreakdowns(&st, short, s.cfg.MinGroup)
	d.window++
	st.Window = d.window
	var out []SimMessage
	out = append(out, s.message(d, st))

	if s.cfg.HourWindow > 0 {
		hs := end.Add(-s.cfg.Interval).Truncate(s.cfg.HourWindow)
		if !d.hourOpen {
			d.hourOpen, d.hourStart = true, hs
			d.hour = mqtt.Stats{Schema: mqtt.SchemaVersion, Kind: KindHour, Device: d.name, Department: d.dept, Start: hs, Withheld: []string{}}
			d.hourDown = 0
			d.hourCounts = map[string]map[string]int{}
		}
		d.hour.PeopleSeen += st.PeopleSeen
		d.hour.Unclassified += st.Unclassified
		d.hour.PeopleNow = st.PeopleNow
		d.hour.Frames.Processed += st.Frames.Processed
		d.hour.Frames.Dropped += st.Frames.Dropped
		d.hourDown += st.SourceDownSeconds
		for task, c := range short {
			if d.hourCounts[task] == nil {
				d.hourCounts[task] = map[string]int{}
			}
			for l, n := range c {
				d.hourCounts[task][l] += n
			}
		}
		if !end.Before(d.hourStart.Add(s.cfg.HourWindow)) {
			h := d.hour
			h.End = d.hourStart.Add(s.cfg.HourWindow)
			h.SourceDownSeconds = d.hourDown
			applyBreakdowns(&h, d.hourCounts, s.cfg.MinGroup)
			d.hourID++
			h.Window = d.hourID
			out = append(out, s.message(d, h))
			d.hourOpen = false
		}
	}
	return out
}

func (s *Simulator) message(d *simDevice, p mqtt.Stats) SimMessage {
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("simulate: encode a window: %v", err)) // plain structs: cannot fail
	}
	if len(d.recent) < 16 {
		d.recent = append(d.recent, b)
	} else {
		d.recent[s.rng.IntN(len(d.recent))] = b
	}
	return SimMessage{Topic: d.topic, Payload: b, Key: Key{d.name, p.Kind, p.Window}}
}

// applyBreakdowns sets the tasks' breakdowns, withholding a task as a
// device does when any of its label counts is 1 to k-1.
func applyBreakdowns(st *mqtt.Stats, counts map[string]map[string]int, k int) {
	st.Withheld = []string{}
	for _, task := range mqtt.Tasks() {
		c := counts[task]
		total, small := 0, false
		for _, n := range c {
			total += n
			small = small || (n > 0 && n < k)
		}
		if small {
			st.Withheld = append(st.Withheld, task)
			continue
		}
		b := &mqtt.Breakdown{Counts: map[string]int{}, Mass: map[string]float64{}}
		for l, n := range c {
			b.Counts[l] = n
			if total > 0 {
				b.Mass[l] = float64(n) / float64(total)
			}
		}
		switch task {
		case mqtt.TaskAge:
			st.Age = b
		case mqtt.TaskGender:
			st.Gender = b
		case mqtt.TaskEmotion:
			st.Emotion = b
		}
	}
}

func (s *Simulator) draw(ws []weighted, n int) map[string]int {
	out := make(map[string]int, len(ws))
	total := 0.0
	for _, w := range ws {
		total += w.w
		out[w.label] = 0
	}
	for range n {
		x := s.rng.Float64() * total
		for _, w := range ws {
			if x -= w.w; x < 0 {
				out[w.label]++
				break
			}
		}
	}
	return out
}

func poisson(rng *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda > 30 { // normal approximation
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

func binomial(rng *rand.Rand, n int, p float64) int {
	k := 0
	for range n {
		if rng.Float64() < p {
			k++
		}
	}
	return k
}

// SimPublisher publishes simulated windows over a few MQTT connections with
// QoS 1, as devices do.
type SimPublisher struct {
	clients []paho.Client
	window  int
}

// NewSimPublisher connects conns clients (ids "edge-sim-{n}") to the broker.
// opt is a template from [mqtt.ClientOptions]; window bounds the messages in
// flight per connection.
func NewSimPublisher(ctx context.Context, brokerURL, username, password string, tls mqtt.TLSConfig, conns, window int) (*SimPublisher, error) {
	if conns < 1 || window < 1 {
		return nil, fmt.Errorf("simulate: connections %d and window %d must be at least 1", conns, window)
	}
	p := &SimPublisher{window: window}
	suffix := rand.Uint32()
	for i := range conns {
		opt, err := mqtt.ClientOptions(brokerURL, username, password, tls)
		if err != nil {
			return nil, err
		}
		opt.SetClientID(fmt.Sprintf("edge-sim-%08x-%d", suffix, i)).SetCleanSession(true).
			SetAutoReconnect(true).SetConnectRetry(false).SetMaxReconnectInterval(2 * time.Second).
			SetConnectTimeout(10 * time.Second).SetWriteTimeout(30 * time.Second)
		c := paho.NewClient(opt)
		tok := c.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			p.Close()
			return nil, ctx.Err()
		}
		if err := tok.Error(); err != nil {
			p.Close()
			return nil, fmt.Errorf("simulate: connect %d: %w", i, err)
		}
		p.clients = append(p.clients, c)
	}
	return p, nil
}

// Publish sends the messages with QoS 1, spread over the connections (one
// device always on the same one, so its windows stay in order), and returns
// once the broker acknowledged all of them. A message the broker did not
// acknowledge (connection lost) is sent again.
func (p *SimPublisher) Publish(ctx context.Context, msgs []SimMessage) error {
	per := make([][]SimMessage, len(p.clients))
	for _, m := range msgs {
		i := int(hash(m.Key.Device) % uint32(len(p.clients)))
		per[i] = append(per[i], m)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(p.clients))
	for i, c := range p.clients {
		wg.Go(func() { errs[i] = p.publishOn(ctx, c, per[i]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (p *SimPublisher) publishOn(ctx context.Context, c paho.Client, msgs []SimMessage) error {
	type sent struct {
		m   SimMessage
		tok paho.Token
	}
	queue := make(chan sent, p.window)
	done := make(chan error, 1)
	go func() {
		var err error
		for s := range queue {
			for {
				if err != nil {
					break
				}
				select {
				case <-s.tok.Done():
				case <-ctx.Done():
					err = ctx.Err()
					continue
				}
				if s.tok.Error() == nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
				s.tok = c.Publish(s.m.Topic, 1, false, s.m.Payload)
			}
		}
		done <- err
	}()
	for _, m := range msgs {
		if ctx.Err() != nil {
			break
		}
		queue <- sent{m, c.Publish(m.Topic, 1, false, m.Payload)}
	}
	close(queue)
	return <-done
}

// Close disconnects the clients.
func (p *SimPublisher) Close() {
	for _, c := range p.clients {
		c.Disconnect(250)
	}
}

func hash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}
