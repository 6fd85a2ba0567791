package mqtt

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// SchemaVersion is the version of the [Stats] and [Diagnostics] payloads,
// carried in their "schema" field. It changes only on incompatible changes;
// subscribers should ignore fields they do not know.
const SchemaVersion = 1

// Task names of the per-task breakdowns in [Stats].
const (
	TaskEmotion = "emotion"
	TaskAge     = "age"
	TaskGender  = "gender"
)

// Kinds of [Stats] windows, carried in their "kind" field.
const (
	// KindWindow is the short window published every interval (the default
	// when the field is absent).
	KindWindow = "window"
	// KindHour is the long window (EDGE_LONG_WINDOW, one hour by default):
	// the same counts over everyone seen in it, with its own window id
	// sequence. Its groups are large enough for breakdowns that the short
	// windows withhold.
	KindHour = "hour"
)

// Tasks lists the known task names in payload order.
func Tasks() []string { return []string{TaskEmotion, TaskAge, TaskGender} }

// Stats is one aggregation window of one device: the message published on
// {prefix}/{department}/{device}/stats. It holds aggregates only.
type Stats struct {
	// Schema is SchemaVersion; Publisher.Publish fills it in.
	Schema int `json:"schema"`
	// Kind is KindWindow or KindHour; Publisher.Publish fills in KindWindow
	// when empty. Subscribers treat an absent kind as KindWindow.
	Kind string `json:"kind,omitempty"`
	// Device and Department identify the sender; Publisher.Publish fills
	// them in from its Config when empty.
	Device     string `json:"device"`
	Department string `json:"department"`
	// Window is the window id, monotonic per device and kind and persisted
	// across restarts. Publisher.Publish assigns the next id when it is 0.
	Window uint64 `json:"window"`
	// Start and End bound the window (RFC 3339 with nanoseconds, UTC).
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`

	// PeopleNow is the number of people in view at the end of the window.
	PeopleNow int `json:"people_now"`
	// PeopleSeen is the number of distinct people seen during the window.
	PeopleSeen int `json:"people_seen"`
	// Unclassified counts people seen whose face could not be classified.
	Unclassified int `json:"unclassified"`
	// DwellSecondsMean is the mean time a person seen in the window stayed in view.
	DwellSecondsMean float64 `json:"dwell_seconds_mean"`

	// Per-task breakdowns; nil (omitted) when the task is disabled or
	// withheld for privacy (see Withheld).
	Emotion *Breakdown `json:"emotion,omitempty"`
	Age     *Breakdown `json:"age,omitempty"`
	Gender  *Breakdown `json:"gender,omitempty"`
	// Withheld lists the tasks whose breakdown was withheld because the group
	// was too small to report without identifying someone. Always present.
	Withheld []string `json:"withheld"`

	Frames            Frames    `json:"frames"`
	SourceDownSeconds float64   `json:"source_down_seconds"`
	LatencyMS         Latencies `json:"latency_ms"`

	// WindowsLost is the number of this device's windows of the same Kind
	// lost since the previous one that reported a loss: dropped from a full
	// or stale queue, unreadable, or never stored because the state
	// directory failed and the memory queue was full. Their ids are missing from the
	// sequence: a gap in window ids that WindowsLost accounts for is a loss,
	// one it does not account for is a window still on its way.
	// Publisher.Publish fills it in.
	WindowsLost uint64 `json:"windows_lost"`
}

// Breakdown is the distribution of one task's labels over the people
// classified in a window.
type Breakdown struct {
	// Counts is the number of people whose most likely label is the key.
	Counts map[string]int `json:"counts"`
	// Mass is the mean probability of each label over those people: the
	// expected share, summing to 1 over the labels.
	Mass map[string]float64 `json:"mass"`
}

// Frames counts the frames of a window (or, in Diagnostics, since start).
type Frames struct {
	Processed uint64 `json:"processed"`
	Dropped   uint64 `json:"dropped"`
	Corrupt   uint64 `json:"corrupt"`
}

// Latencies are processing latencies in milliseconds.
type Latencies struct {
	Detect          Latency `json:"detect"`
	ClassifyPerFace Latency `json:"classify_per_face"`
}

// Latency summarises a latency distribution in milliseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P95  float64 `json:"p95"`
}

// Breakdown returns the breakdown of the named task, or nil when it is absent
// or the task is unknown.
func (s *Stats) Breakdown(task string) *Breakdown {
	switch task {
	case TaskEmotion:
		return s.Emotion
	case TaskAge:
		return s.Age
	case TaskGender:
		return s.Gender
	}
	return nil
}

// IsHour reports whether s is a long window ([KindHour]).
func (s *Stats) IsHour() bool { return s.Kind == KindHour }

// IsWithheld reports whether the task is listed in s.Withheld.
func (s *Stats) IsWithheld(task string) bool { return slices.Contains(s.Withheld, task) }

// Validate checks the message for values that must never be published: a
// breakdown for a withheld task, unknown task names, negative counts,
// non-finite numbers, an end before the start or invalid names.
func (s *Stats) Validate() error {
	var errs []error
	switch s.Kind {
	case "", KindWindow, KindHour:
	default:
		errs = append(errs, fmt.Errorf("kind %q: want %q or %q", s.Kind, KindWindow, KindHour))
	}
	if s.Device != "" {
		if err := ValidateName("device", s.Device); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Department != "" {
		if err := ValidateName("department", s.Department); err != nil {
			errs = append(errs, err)
		}
	}
	if !s.Start.IsZero() && !s.End.IsZero() && s.End.Before(s.Start) {
		errs = append(errs, fmt.Errorf("end %s is before start %s", s.End.Format(time.RFC3339Nano), s.Start.Format(time.RFC3339Nano)))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"people_now", s.PeopleNow}, {"people_seen", s.PeopleSeen}, {"unclassified", s.Unclassified}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s is negative (%d)", f.name, f.v))
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"dwell_seconds_mean", s.DwellSecondsMean}, {"source_down_seconds", s.SourceDownSeconds},
		{"latency_ms.detect.mean", s.LatencyMS.Detect.Mean}, {"latency_ms.detect.p95", s.LatencyMS.Detect.P95},
		{"latency_ms.classify_per_face.mean", s.LatencyMS.ClassifyPerFace.Mean}, {"latency_ms.classify_per_face.p95", s.LatencyMS.ClassifyPerFace.P95},
	} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			errs = append(errs, fmt.Errorf("%s must be a finite non-negative number, got %v", f.name, f.v))
		}
	}
	for _, t := range s.Withheld {
		if !slices.Contains(Tasks(), t) {
			errs = append(errs, fmt.Errorf("withheld: unknown task %q (want one of %v)", t, Tasks()))
		}
	}
	for _, t := range Tasks() {
		b := s.Breakdown(t)
		if b == nil {
			continue
		}
		if s.IsWithheld(t) {
			errs = append(errs, fmt.Errorf("%s: breakdown present although the task is withheld", t))
		}
		for _, l := range slices.Sorted(maps.Keys(b.Counts)) {
			if c := b.Counts[l]; c < 0 {
				errs = append(errs, fmt.Errorf("%s: count of %q is negative (%d)", t, l, c))
			}
		}
		for _, l := range slices.Sorted(maps.Keys(b.Mass)) {
			if m := b.Mass[l]; math.IsNaN(m) || m < 0 || m > 1 {
				errs = append(errs, fmt.Errorf("%s: mass of %q must be within [0,1], got %v", t, l, m))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mqtt: invalid stats: %w", err)
	}
	return nil
}

// normalize fills in the fields the schema always carries.
func (s *Stats) normalize() {
	s.Schema = SchemaVersion
	if s.Kind == "" {
		s.Kind = KindWindow
	}
	s.Start = s.Start.UTC()
	s.End = s.End.UTC()
	if s.Withheld == nil {
		s.Withheld = []string{}
	}
}

// Diagnostics is the periodic health message published with QoS 0 on
// {prefix}/{department}/{device}/diagnostics.
type Diagnostics struct {
	Schema     int       `json:"schema"`
	Device     string    `json:"device"`
	Department string    `json:"department"`
	Time       time.Time `json:"time"`
	// UptimeSeconds is the time since edge started.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// FPS is the recent processing rate in frames per second.
	FPS float64 `json:"fps"`
	// Frames counts frames since start.
	Frames Frames `json:"frames"`
	// SourceUp tells whether the camera source currently delivers frames.
	SourceUp          bool    `json:"source_up"`
	SourceReconnects  uint64  `json:"source_reconnects"`
	SourceDownSeconds float64 `json:"source_down_seconds"`
	// LatencyMS are recent latencies.
	LatencyMS Latencies `json:"latency_ms"`
	// Broker is the publisher's view of the broker; Publisher fills it in.
	Broker BrokerState `json:"broker"`
}

// BrokerState is the publisher's connection and queue state.
type BrokerState struct {
	Connected bool `json:"connected"`
	// Queue is the number of windows waiting for delivery.
	Queue int `json:"queue"`
	// QueueMemory is how many of them are held in memory only, because the
	// state directory could not store them.
	QueueMemory int `json:"queue_memory"`
	// QueueDropped counts windows dropped because the queue exceeded its
	// length or age bound (or a queued file was unreadable), since the
	// publisher started.
	QueueDropped uint64 `json:"queue_dropped"`
	// WindowsLost counts windows that will never be delivered, since start:
	// QueueDropped's, and those that found no room in memory while the
	// state directory failed.
	WindowsLost uint64 `json:"windows_lost"`
	// LostUnreported is how many lost windows no delivered stats message
	// has reported yet (see Stats.WindowsLost).
	LostUnreported uint64 `json:"lost_unreported"`
	// StateError is the state directory's last write error while it keeps
	// failing; empty once a write succeeds.
	StateError string `json:"state_error,omitempty"`
	// StateWriteFailures counts failed writes to the state directory since start.
	StateWriteFailures uint64 `json:"state_write_failures"`
	// ConnectionsLost counts lost broker connections since start.
	ConnectionsLost uint64 `json:"connections_lost"`
	// Cause names why the connection attempts fail while disconnected
	// (CauseBadCredentials, CauseNotAuthorized, CauseTLS…); empty while
	// connected or before the first failure.
	Cause string `json:"cause,omitempty"`
	// ConnectFailures counts failed connection attempts by cause since start.
	ConnectFailures map[string]uint64 `json:"connect_failures,omitempty"`
	// LastError is the most recent connection error, if any.
	LastError string `json:"last_error,omitempty"`
}

// Problems lists, in words, what keeps the publisher from its promise that
// every window reaches the broker or is accounted for: an empty list means
// healthy. edge reports them in /healthz and the systemd status.
func (s BrokerState) Problems() []string {
	var out []string
	if !s.Connected {
		p := "broker not connected"
		if s.Cause != "" {
			p += " (" + s.Cause + ": " + s.LastError + ")"
		}
		out = append(out, p)
	}
	if s.StateError != "" {
		out = append(out, fmt.Sprintf("state directory failing (%d windows held in memory): %s", s.QueueMemory, s.StateError))
	}
	if s.LostUnreported > 0 {
		out = append(out, fmt.Sprintf("%d windows lost, not yet reported to the broker", s.LostUnreported))
	}
	return out
}

// Status is the retained payload of the status topic.
type Status string

// Status payloads.
const (
	StatusOnline  Status = "online"
	StatusOffline Status = "offline"
)
