package collect

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	const topic = "edge/assembly/cam-1/stats"
	good := `{"schema":1,"device":"cam-1","department":"assembly","window":42,
"start":"2025-03-01T10:00:00Z","end":"2025-03-01T10:01:00Z","people_now":3,"people_seen":5,"unclassified":1,
"dwell_seconds_mean":12.5,"gender":{"counts":{"female":2,"male":3},"mass":{"female":0.4,"male":0.6}},
"withheld":["age"],"frames":{"processed":900,"dropped":3,"corrupt":1},"source_down_seconds":2,"windows_lost":4,
"future_field":true}`
	for _, tc := range []struct {
		name, topic, payload string
		reason               string // "" = decodes
		check                func(t *testing.T, w Window)
	}{
		{name: "schema 1 window", topic: topic, payload: good, check: func(t *testing.T, w Window) {
			if w.Kind != KindWindow || w.WindowID != 42 || w.PeopleSeen != 5 || w.WindowsLost != 4 || w.FramesCorrupt != 1 ||
				w.Counts["gender"]["male"] != 3 || w.Mass["gender"]["female"] != 0.4 || len(w.Counts) != 1 ||
				strings.Join(w.Withheld, ",") != "age" || w.PayloadSchema != 1 || w.SourceDownSeconds != 2 {
				t.Errorf("decoded %+v", w)
			}
		}},
		{name: "hour kind", topic: topic, payload: strings.Replace(good, `"schema":1,`, `"schema":1,"kind":"hour",`, 1),
			check: func(t *testing.T, w Window) {
				if w.Kind != KindHour {
					t.Errorf("kind %q, want hour", w.Kind)
				}
			}},
		{name: "withheld absent", topic: topic, payload: strings.Replace(good, `"withheld":["age"],`, ``, 1),
			check: func(t *testing.T, w Window) {
				if w.Withheld == nil {
					t.Error("withheld is nil, want empty")
				}
			}},
		{name: "unknown kind", topic: topic, payload: strings.Replace(good, `"schema":1,`, `"schema":1,"kind":"year",`, 1), reason: ReasonInvalid},
		{name: "future schema", topic: topic, payload: strings.Replace(good, `"schema":1`, `"schema":2`, 1), reason: ReasonUnknownSchema},
		{name: "future schema with other types", topic: topic, payload: `{"schema":3,"window":"x"}`, reason: ReasonUnknownSchema},
		{name: "no schema", topic: topic, payload: `{"window":1}`, reason: ReasonUnknownSchema},
		{name: "not JSON", topic: topic, payload: `people: 3`, reason: ReasonUndecodable},
		{name: "JSON array", topic: topic, payload: `[1,2]`, reason: ReasonUndecodable},
		{name: "wrong types", topic: topic, payload: `{"schema":1,"window":"42"}`, reason: ReasonUndecodable},
		{name: "topic mismatch", topic: "edge/assembly/cam-2/stats", payload: good, reason: ReasonInvalid},
		{name: "not a stats topic", topic: "edge/assembly/cam-1", payload: good, reason: ReasonInvalid},
		{name: "window 0", topic: topic, payload: strings.Replace(good, `"window":42`, `"window":0`, 1), reason: ReasonInvalid},
		{name: "window beyond bigint", topic: topic, payload: strings.Replace(good, `"window":42`, `"window":18446744073709551615`, 1), reason: ReasonInvalid},
		{name: "breakdown of a withheld task", topic: topic, payload: strings.Replace(good, `["age"]`, `["gender"]`, 1), reason: ReasonInvalid},
		{name: "negative count", topic: topic, payload: strings.Replace(good, `"people_seen":5`, `"people_seen":-5`, 1), reason: ReasonInvalid},
		{name: "no start", topic: topic, payload: strings.Replace(good, `"start":"2025-03-01T10:00:00Z",`, ``, 1), reason: ReasonInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Decode(tc.topic, []byte(tc.payload))
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				tc.check(t, w)
				return
			}
			var re *RejectError
			if !errors.As(err, &re) || re.Reason != tc.reason {
				t.Fatalf("Decode error %v, want reason %q", err, tc.reason)
			}
			raw := rawFor(tc.topic, []byte(tc.payload), err)
			if raw.Reason != tc.reason || string(raw.Payload) != tc.payload {
				t.Errorf("raw row %+v", raw)
			}
		})
	}
}

func TestRawForTruncates(t *testing.T) {
	big := make([]byte, maxRawPayload+10)
	_, err := Decode("edge/a/b/stats", big)
	r := rawFor("edge/a/b/stats", big, err)
	if len(r.Payload) != maxRawPayload || r.Reason != ReasonUndecodable+"_truncated" {
		t.Fatalf("raw of an oversize payload: %d bytes, reason %q", len(r.Payload), r.Reason)
	}
}
