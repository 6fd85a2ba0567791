package pipeline

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// TrackerConfig sets how detections are linked across frames.
type TrackerConfig struct {
	// IoU is the overlap between a track's predicted box and a detection
	// above which they are the same face.
	IoU float64
	// CentroidGate is the fallback for small, fast moves that leave no
	// overlap: a detection whose centre is within CentroidGate track sides
	// of the predicted centre, and whose size is within a factor of 1.5,
	// matches when no overlapping detection did. 0 disables the fallback.
	CentroidGate float64
	// MinHits is the number of consecutive matched frames after which a
	// tentative track becomes a confirmed person; a tentative track is
	// dropped on its first miss. It keeps one-frame (and up to MinHits-1
	// frame) false positives out of the counts.
	MinHits int
	// MaxMisses is the number of consecutive frames without a detection a
	// track survives. A confirmed person who is missed for a few frames
	// (blink, head turn, detector flicker) keeps the ID instead of becoming
	// two people.
	MaxMisses int
}

// DefaultTrackerConfig suits 10-15 fps: confirmation after 3 detections
// (0.2-0.3 s), and a confirmed track survives 15 missed frames (1-1.5 s), long
// enough for a head turn but short enough that two people passing the same
// spot a few seconds apart are not merged.
func DefaultTrackerConfig() TrackerConfig {
	return TrackerConfig{IoU: 0.3, CentroidGate: 1.0, MinHits: 3, MaxMisses: 15}
}

// Validate reports the first invalid setting.
func (c TrackerConfig) Validate() error {
	switch {
	case !(c.IoU > 0 && c.IoU < 1):
		return fmt.Errorf("tracker: IoU %v: must be in (0, 1)", c.IoU)
	case !(c.CentroidGate >= 0) || math.IsInf(c.CentroidGate, 0):
		return fmt.Errorf("tracker: CentroidGate %v: must be a finite number >= 0", c.CentroidGate)
	case c.MinHits < 1:
		return fmt.Errorf("tracker: MinHits %d: must be at least 1", c.MinHits)
	case c.MaxMisses < 0:
		return fmt.Errorf("tracker: MaxMisses %d: must be >= 0", c.MaxMisses)
	}
	return nil
}

// Track is one face followed across frames. Fields are read-only for users;
// the Tracker updates them on every call to [Tracker.Update].
type Track struct {
	// ID is the person's number, unique within the Tracker and assigned when
	// the track is confirmed; 0 while tentative, so that false positives use
	// no IDs.
	ID uint64
	// Box is the last detection matched to the track (not the prediction).
	Box Box
	// Matched reports whether the track was matched in the latest update.
	Matched bool
	// Confirmed is set after MinHits matches and never cleared.
	Confirmed bool
	// Hits counts matched frames; Misses counts consecutive missed frames.
	Hits, Misses int
	// FirstSeen and LastSeen are the times of the first and latest match.
	FirstSeen, LastSeen time.Time

	vx, vy float64 // smoothed velocity, pixels per update, for prediction
}

// predicted is where the track's face is expected in the next frame:
// constant-velocity motion keeps two crossing people apart, because each
// track looks ahead along its own path rather than at the other person.
func (t *Track) predicted() Box {
	n := float64(t.Misses + 1)
	return Box{X: t.Box.X + t.vx*n, Y: t.Box.Y + t.vy*n, S: t.Box.S}
}

// Tracker links per-frame detections into tracks with stable IDs by greedy
// matching on overlap with each track's predicted box.
//
// It deliberately does not re-identify people: no appearance model or face
// embedding is kept, so a person who is lost for more than MaxMisses frames
// (for example, leaves and comes back) gets a new ID and is counted again.
// That over-counts returning visitors, and it is the price of not storing
// anything that could recognise a face.
//
// A Tracker is not safe for concurrent use.
type Tracker struct {
	cfg    TrackerConfig
	nextID uint64
	tracks []*Track

	// Scratch reused across updates so a steady state allocates nothing.
	pairs   []pair
	usedDet []bool
	active  []*Track
	ended   []*Track
	free    []*Track
}

type pair struct {
	track, det int
	score      float64
}

// NewTracker validates cfg and returns an empty tracker.
func NewTracker(cfg TrackerConfig) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Tracker{cfg: cfg, nextID: 1}, nil
}

// Update matches dets (the detections of the frame taken at now) to the
// tracks and returns the live tracks (tentative and confirmed, including
// confirmed ones missed this frame; see [Track.Matched]) and the confirmed
// tracks that ended with this update. Both slices, and the ended tracks
// themselves, are only valid until the next call.
func (t *Tracker) Update(dets []Box, now time.Time) (active, ended []*Track) {
	t.recycle()
	// Candidate pairs: overlap with the prediction first, centroid distance
	// as a weaker fallback scored below every overlap.
	t.pairs = t.pairs[:0]
	for ti, tr := range t.tracks {
		p := tr.predicted()
		for di, d := range dets {
			if iou := p.IoU(d); iou >= t.cfg.IoU {
				t.pairs = append(t.pairs, pair{ti, di, 1 + iou})
				continue
			}
			if t.cfg.CentroidGate == 0 || d.S <= 0 {
				continue
			}
			ratio := d.S / p.S
			dist := math.Hypot(d.X-p.X, d.Y-p.Y) / p.S
			if dist <= t.cfg.CentroidGate && ratio >= 1/1.5 && ratio <= 1.5 {
				t.pairs = append(t.pairs, pair{ti, di, 1 - dist/(t.cfg.CentroidGate+1)})
			}
		}
	}
	slices.SortFunc(t.pairs, func(a, b pair) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		// Ties (identical boxes) in a fixed order, oldest track first.
		return (a.track-b.track)*(len(dets)+1) + (a.det - b.det)
	})
	for _, tr := range t.tracks {
		tr.Matched = false
	}
	t.usedDet = slices.Grow(t.usedDet[:0], len(dets))[:len(dets)]
	clear(t.usedDet)
	for _, p := range t.pairs {
		tr := t.tracks[p.track]
		if tr.Matched || t.usedDet[p.det] {
			continue
		}
		t.usedDet[p.det] = true
		t.hit(tr, dets[p.det], now)
	}

	t.active, t.ended = t.active[:0], t.ended[:0]
	kept := t.tracks[:0]
	for _, tr := range t.tracks {
		if !tr.Matched {
			tr.Misses++
			if !tr.Confirmed || tr.Misses > t.cfg.MaxMisses {
				if tr.Confirmed {
					t.ended = append(t.ended, tr)
				} else {
					t.free = append(t.free, tr)
				}
				continue
			}
		}
		kept = append(kept, tr)
	}
	clear(t.tracks[len(kept):])
	t.tracks = kept
	for di, d := range dets {
		if t.usedDet[di] || d.S <= 0 {
			continue
		}
		tr := t.alloc()
		*tr = Track{Box: d, Hits: 0, FirstSeen: now}
		t.hit(tr, d, now)
		t.tracks = append(t.tracks, tr)
	}
	t.active = append(t.active, t.tracks...)
	return t.active, t.ended
}

// Flush ends every confirmed track (at the end of a run) and forgets the
// tentative ones. The returned slice is valid until the next call.
func (t *Tracker) Flush() []*Track {
	t.recycle()
	t.ended = t.ended[:0]
	for _, tr := range t.tracks {
		if tr.Confirmed {
			t.ended = append(t.ended, tr)
		} else {
			t.free = append(t.free, tr)
		}
	}
	clear(t.tracks)
	t.tracks = t.tracks[:0]
	return t.ended
}

// hit records a match of tr with d.
func (t *Tracker) hit(tr *Track, d Box, now time.Time) {
	if tr.Hits > 0 {
		// Velocity per update, smoothed so one jittery detection does not
		// throw the prediction off; spread over the frames it was missed.
		n := float64(tr.Misses + 1)
		vx, vy := (d.X-tr.Box.X)/n, (d.Y-tr.Box.Y)/n
		if tr.Hits == 1 {
			tr.vx, tr.vy = vx, vy
		} else {
			tr.vx, tr.vy = 0.5*tr.vx+0.5*vx, 0.5*tr.vy+0.5*vy
		}
	}
	tr.Box = d
	tr.Matched = true
	tr.Misses = 0
	tr.Hits++
	tr.LastSeen = now
	if !tr.Confirmed && tr.Hits >= t.cfg.MinHits {
		tr.Confirmed = true
		tr.ID = t.nextID
		t.nextID++
	}
}

// recycle makes the tracks handed out as ended by the previous call reusable.
func (t *Tracker) recycle() {
	t.free = append(t.free, t.ended...)
	clear(t.ended)
	t.ended = t.ended[:0]
}

func (t *Tracker) alloc() *Track {
	if n := len(t.free); n > 0 {
		tr := t.free[n-1]
		t.free = t.free[:n-1]
		return tr
	}
	return new(Track)
}
