package pipeline

import (
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

func frameTime(i int) time.Time { return t0.Add(time.Duration(i) * 100 * time.Millisecond) }

// ids returns the IDs of the confirmed tracks, matched or not, sorted.
func ids(tracks []*Track) []uint64 {
	var out []uint64
	for _, t := range tracks {
		if t.Confirmed {
			out = append(out, t.ID)
		}
	}
	slices.Sort(out)
	return out
}

// idAt returns the ID of the confirmed, matched track whose box centre is (x, y).
func idAt(tracks []*Track, x, y float64) uint64 {
	for _, t := range tracks {
		if t.Confirmed && t.Matched && t.Box.X == x && t.Box.Y == y {
			return t.ID
		}
	}
	return 0
}

func newTestTracker(t *testing.T, modify func(*TrackerConfig)) *Tracker {
	t.Helper()
	cfg := DefaultTrackerConfig()
	if modify != nil {
		modify(&cfg)
	}
	tr, err := NewTracker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestTrackerConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*TrackerConfig)
		want   string
	}{
		{"iou", func(c *TrackerConfig) { c.IoU = 0 }, "IoU"},
		{"gate", func(c *TrackerConfig) { c.CentroidGate = -1 }, "CentroidGate"},
		{"hits", func(c *TrackerConfig) { c.MinHits = 0 }, "MinHits"},
		{"misses", func(c *TrackerConfig) { c.MaxMisses = -1 }, "MaxMisses"},
	}
	for _, tt := range tests {
		c := DefaultTrackerConfig()
		tt.modify(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an error about %s", tt.name, err, tt.want)
		}
	}
	if err := DefaultTrackerConfig().Validate(); err != nil {
		t.Errorf("default: %v", err)
	}
}

// TestTrackerCrossing has two people walk through each other. A is hidden
// behind B for three frames at the crossing; both keep their IDs because
// each track predicts along its own path.
func TestTrackerCrossing(t *testing.T) {
	tests := []struct {
		name     string
		occluded func(i int) bool // frames where A is not detected
	}{
		{"both visible", func(int) bool { return false }},
		{"A occluded at the crossing", func(i int) bool { return i >= 9 && i <= 11 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestTracker(t, nil)
			var idA, idB uint64
			for i := range 21 {
				ax, bx := 100+20*float64(i), 500-20*float64(i)
				dets := []Box{{X: bx, Y: 210, S: 60, Q: 10}}
				if !tt.occluded(i) {
					// A is listed second on purpose: order must not matter.
					dets = append(dets, Box{X: ax, Y: 200, S: 60, Q: 10})
				}
				active, ended := tr.Update(dets, frameTime(i))
				if len(ended) != 0 {
					t.Fatalf("frame %d: tracks ended: %v", i, ids(ended))
				}
				if i < 2 {
					continue
				}
				a, b := idAt(active, ax, 200), idAt(active, bx, 210)
				if i == 2 {
					idA, idB = a, b
					if idA == 0 || idB == 0 || idA == idB {
						t.Fatalf("frame 2: IDs A=%d B=%d, want two confirmed people", idA, idB)
					}
					continue
				}
				if b != idB {
					t.Fatalf("frame %d: B has ID %d, want %d", i, b, idB)
				}
				if !tt.occluded(i) && a != idA {
					t.Fatalf("frame %d: A has ID %d, want %d", i, a, idA)
				}
				if got := ids(active); !slices.Equal(got, []uint64{1, 2}) {
					t.Fatalf("frame %d: people %v, want [1 2]", i, got)
				}
			}
		})
	}
}

func TestTrackerHysteresis(t *testing.T) {
	face := Box{X: 200, Y: 200, S: 80, Q: 10}
	tests := []struct {
		name string
		// seen(i) says whether the face is detected in frame i.
		seen   func(i int) bool
		frames int
		// wantIDs is the ID of the confirmed track after each listed frame.
		wantIDs map[int]uint64
		// wantEnded lists the frames at which a person's track ends.
		wantEnded []int
	}{
		{
			name:    "confirmed after MinHits",
			seen:    func(int) bool { return true },
			frames:  4,
			wantIDs: map[int]uint64{0: 0, 1: 0, 2: 1, 3: 1},
		},
		{
			name:    "a flicker of a few frames keeps the ID",
			seen:    func(i int) bool { return i < 5 || i > 9 },
			frames:  15,
			wantIDs: map[int]uint64{4: 1, 7: 1, 10: 1, 14: 1},
		},
		{
			name: "gone beyond MaxMisses and back is a new person",
			// Missed in frames 5..20: the 16th miss (frame 20) ends it.
			seen:      func(i int) bool { return i < 5 || i > 20 },
			frames:    26,
			wantIDs:   map[int]uint64{4: 1, 19: 1, 20: 0, 22: 0, 23: 2, 25: 2},
			wantEnded: []int{20},
		},
		{
			name:    "a one-frame false positive is never a person",
			seen:    func(i int) bool { return i == 0 },
			frames:  5,
			wantIDs: map[int]uint64{0: 0, 1: 0, 4: 0},
		},
		{
			name: "a tentative track dropped by a miss uses no ID",
			seen: func(i int) bool { return i != 1 },
			// Frames 0, then 2,3,4: confirmed at frame 4 as person 1.
			frames:  6,
			wantIDs: map[int]uint64{2: 0, 3: 0, 4: 1, 5: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestTracker(t, nil) // MinHits 3, MaxMisses 15
			var endedAt []int
			for i := range tt.frames {
				var dets []Box
				if tt.seen(i) {
					dets = []Box{face}
				}
				active, ended := tr.Update(dets, frameTime(i))
				if len(ended) > 0 {
					endedAt = append(endedAt, i)
					if ended[0].ID != 1 || !ended[0].LastSeen.Equal(frameTime(4)) {
						t.Errorf("frame %d: ended track %+v, want person 1 last seen at frame 4", i, ended[0])
					}
				}
				want, ok := tt.wantIDs[i]
				if !ok {
					continue
				}
				var got uint64
				if p := ids(active); len(p) == 1 {
					got = p[0]
				} else if len(p) > 1 {
					t.Fatalf("frame %d: %d people, want at most 1", i, len(p))
				}
				if got != want {
					t.Errorf("frame %d: person ID %d, want %d", i, got, want)
				}
			}
			if !slices.Equal(endedAt, tt.wantEnded) {
				t.Errorf("tracks ended at frames %v, want %v", endedAt, tt.wantEnded)
			}
		})
	}
}

// TestTrackerCentroidFallback: a small face that jumps 3/4 of its size
// between frames no longer overlaps its previous box enough, but is the same
// person by distance.
func TestTrackerCentroidFallback(t *testing.T) {
	for _, gate := range []float64{0, 1} {
		tr := newTestTracker(t, func(c *TrackerConfig) { c.CentroidGate = gate })
		var active []*Track
		for i := range 5 {
			active, _ = tr.Update([]Box{{X: 100 + 30*float64(i), Y: 100, S: 40}}, frameTime(i))
		}
		got := ids(active)
		switch {
		case gate > 0 && !slices.Equal(got, []uint64{1}):
			t.Errorf("gate %v: people %v, want one person [1]", gate, got)
		case gate == 0 && len(got) != 0:
			// Each frame starts a new tentative track that never confirms.
			t.Errorf("gate %v: people %v, want none (no overlap, no fallback)", gate, got)
		}
	}
}

func TestTrackerFlush(t *testing.T) {
	tr := newTestTracker(t, nil)
	for i := range 3 {
		tr.Update([]Box{{X: 100, Y: 100, S: 60}, {X: 400, Y: 100, S: 60}}, frameTime(i))
	}
	tr.Update([]Box{{X: 100, Y: 100, S: 60}, {X: 400, Y: 100, S: 60}, {X: 250, Y: 300, S: 60}}, frameTime(3))
	ended := tr.Flush()
	if got := ids(ended); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("Flush ended %v, want the two people [1 2] (not the tentative track)", got)
	}
	if active, _ := tr.Update(nil, frameTime(4)); len(active) != 0 {
		t.Fatalf("after Flush: %d tracks, want 0", len(active))
	}
}

// TestTrackerSteadyStateAllocs: following the same people frame after frame
// allocates nothing.
func TestTrackerSteadyStateAllocs(t *testing.T) {
	tr := newTestTracker(t, nil)
	dets := []Box{{X: 100, Y: 100, S: 60}, {X: 400, Y: 100, S: 60}}
	i := 0
	step := func() { tr.Update(dets, frameTime(i)); i++ }
	for range 5 {
		step()
	}
	if n := testing.AllocsPerRun(20, step); n != 0 {
		t.Fatalf("Update: %v allocations per frame, want 0", n)
	}
}
