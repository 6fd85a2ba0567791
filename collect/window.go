package collect

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/edge-sensor/edge/mqtt"
)

// Kinds of windows (the payload's "kind"; absent means KindWindow).
const (
	KindWindow = mqtt.KindWindow
	KindHour   = mqtt.KindHour
)

// Reasons a message is kept in edge_raw_messages instead of edge_windows.
const (
	ReasonUndecodable   = "undecodable"
	ReasonUnknownSchema = "unknown_schema"
	ReasonInvalid       = "invalid"
)

// maxRawPayload bounds what edge_raw_messages keeps of one message; the
// broker's message_size_limit should bound it long before.
const maxRawPayload = 1 << 20

// Window is one row of edge_windows.
type Window struct {
	Device            string                        `json:"device"`
	Kind              string                        `json:"kind"`
	WindowID          int64                         `json:"window_id"`
	Department        string                        `json:"department"`
	StartAt           time.Time                     `json:"start_at"`
	EndAt             time.Time                     `json:"end_at"`
	PeopleNow         int                           `json:"people_now"`
	PeopleSeen        int                           `json:"people_seen"`
	Unclassified      int                           `json:"unclassified"`
	DwellSecondsMean  float64                       `json:"dwell_seconds_mean"`
	Counts            map[string]map[string]int     `json:"counts"`
	Mass              map[string]map[string]float64 `json:"mass"`
	Withheld          []string                      `json:"withheld"`
	FramesProcessed   int64                         `json:"frames_processed"`
	FramesDropped     int64                         `json:"frames_dropped"`
	FramesCorrupt     int64                         `json:"frames_corrupt"`
	SourceDownSeconds float64                       `json:"source_down_seconds"`
	WindowsLost       int64                         `json:"windows_lost"`
	PayloadSchema     int                           `json:"payload_schema"`
}

// Raw is a message kept in edge_raw_messages, with why it was not stored as a window.
type Raw struct {
	Topic   string
	Payload []byte
	Reason  string
	// Detail is logged, not stored: it may be long.
	Detail string
}

// RejectError says why a message cannot become a window; Reason is one of
// the Reason constants.
type RejectError struct {
	Reason string
	Err    error
}

func (e *RejectError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *RejectError) Unwrap() error { return e.Err }

func reject(reason string, format string, a ...any) error {
	return &RejectError{Reason: reason, Err: fmt.Errorf(format, a...)}
}

// Decode turns a message received on topic ({prefix}/{department}/{device}/stats)
// into a window row. It checks the payload's schema number before anything
// else, so a future schema is reported as such rather than as garbage, and
// refuses a payload whose device or department differs from its topic.
func Decode(topic string, payload []byte) (Window, error) {
	var probe struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(payload, &probe); err != nil {
		return Window{}, reject(ReasonUndecodable, "not a JSON object: %v", err)
	}
	if probe.Schema == nil {
		return Window{}, reject(ReasonUnknownSchema, "no schema number")
	}
	if *probe.Schema != mqtt.SchemaVersion {
		return Window{}, reject(ReasonUnknownSchema, "schema %d (this collector knows %d)", *probe.Schema, mqtt.SchemaVersion)
	}
	var st mqtt.Stats
	if err := json.Unmarshal(payload, &st); err != nil {
		return Window{}, reject(ReasonUndecodable, "schema %d payload: %v", mqtt.SchemaVersion, err)
	}
	return fromStats(topic, &st)
}

func fromStats(topic string, s *mqtt.Stats) (Window, error) {
	var errs []error
	if err := s.Validate(); err != nil {
		errs = append(errs, err)
	}
	kind := s.Kind // Validate checked it
	if kind == "" {
		kind = KindWindow
	}
	if s.Device == "" || s.Department == "" {
		errs = append(errs, errors.New("device and department must be set"))
	}
	if parts := strings.Split(topic, "/"); len(parts) != 4 || parts[3] != "stats" {
		errs = append(errs, fmt.Errorf("topic %q is not {prefix}/{department}/{device}/stats", topic))
	} else if parts[1] != s.Department || parts[2] != s.Device {
		errs = append(errs, fmt.Errorf("payload department/device %q/%q differ from the topic's %q/%q", s.Department, s.Device, parts[1], parts[2]))
	}
	if s.Window == 0 || s.Window > math.MaxInt64 {
		errs = append(errs, fmt.Errorf("window id %d out of range 1..%d", s.Window, int64(math.MaxInt64)))
	}
	if s.Start.IsZero() || s.End.IsZero() {
		errs = append(errs, errors.New("start and end must be set"))
	}
	for _, v := range []uint64{s.Frames.Processed, s.Frames.Dropped, s.Frames.Corrupt, s.WindowsLost} {
		if v > math.MaxInt64 {
			errs = append(errs, fmt.Errorf("counter %d out of range", v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Window{}, &RejectError{Reason: ReasonInvalid, Err: err}
	}
	w := Window{
		Device: s.Device, Kind: kind, WindowID: int64(s.Window), Department: s.Department,
		StartAt: s.Start.UTC(), EndAt: s.End.UTC(),
		PeopleNow: s.PeopleNow, PeopleSeen: s.PeopleSeen, Unclassified: s.Unclassified, DwellSecondsMean: s.DwellSecondsMean,
		Counts: map[string]map[string]int{}, Mass: map[string]map[string]float64{}, Withheld: s.Withheld,
		FramesProcessed: int64(s.Frames.Processed), FramesDropped: int64(s.Frames.Dropped), FramesCorrupt: int64(s.Frames.Corrupt),
		SourceDownSeconds: s.SourceDownSeconds, WindowsLost: int64(s.WindowsLost), PayloadSchema: s.Schema,
	}
	if w.Withheld == nil {
		w.Withheld = []string{}
	}
	for _, t := range mqtt.Tasks() {
		if b := s.Breakdown(t); b != nil {
			w.Counts[t] = nonNil(b.Counts)
			w.Mass[t] = nonNil(b.Mass)
		}
	}
	return w, nil
}

func nonNil[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

// rawFor builds the raw row of a rejected message.
func rawFor(topic string, payload []byte, err error) Raw {
	reason := ReasonUndecodable
	var re *RejectError
	if errors.As(err, &re) {
		reason = re.Reason
	}
	if len(payload) > maxRawPayload {
		payload = payload[:maxRawPayload]
		reason += "_truncated"
	}
	return Raw{Topic: topic, Payload: payload, Reason: reason, Detail: err.Error()}
}
