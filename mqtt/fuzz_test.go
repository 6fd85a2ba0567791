package mqtt

import (
	"encoding/json"
	"io"
	"testing"
)

// FuzzStatsPayload: what `edge subscribe` does with a message from the
// network: decode it as stats, deduplicate, put it on the board and render
// the board. Anything a broker relays must give an error or a board, never
// a panic.
func FuzzStatsPayload(f *testing.F) {
	f.Add([]byte(`{"schema":1,"kind":"window","device":"cam-1","department":"assembly","window":42,` +
		`"start":"2025-03-01T10:00:00Z","end":"2025-03-01T10:01:00Z","people_now":3,"people_seen":5,` +
		`"unclassified":1,"dwell_seconds_mean":12.5,"emotion":{"counts":{"happy":2,"neutral":2},` +
		`"mass":{"happy":0.41,"neutral":0.39,"sad":0.2}},"withheld":["age"],` +
		`"frames":{"processed":900,"dropped":3,"corrupt":0},"source_down_seconds":0,"windows_lost":0}`))
	f.Add([]byte(`{"schema":1,"kind":"hour","device":"d","department":"x","window":1,"people_seen":-4,` +
		`"gender":{"counts":{"female":1e308},"mass":null}}`))
	f.Add([]byte(`{"schema":99,"window":18446744073709551615,"end":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var s Stats
		if json.Unmarshal(payload, &s) != nil {
			return
		}
		_ = s.Validate()
		d := newDeduper(4)
		if !d.first(s.Department, s.Device, kindOf(s), s.Window) {
			t.Fatal("first sight of a window reported as a duplicate")
		}
		if d.first(s.Department, s.Device, kindOf(s), s.Window) {
			t.Fatal("second sight of a window not reported as a duplicate")
		}
		var b Board
		b.Update(s)
		b.Summaries()
		if err := b.Render(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}
