package pipeline

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// puploc is pigo's pupil localisation cascade (pigo v1.4.6, cascade/puploc),
// embedded like facefinder; see cascade/README.md.
//
//go:embed cascade/puploc
var puploc []byte

// Roll bounds. A crop is only worth levelling when the head is visibly
// tilted: below levelMin the estimate's own error (95th percentile about 5°
// on upright UTKFace val faces, which dlib aligned) is as large as the tilt,
// the models were trained with turns of up to ±12-20° anyway, and the face
// cascade cannot confirm a roll under half its 11.25° step
// ([Detector.Level]); the crop stays axis-aligned. Beyond levelMax the
// frontal cascade does not find faces, so an estimate that large means an
// eye was lost; so does a third search that moves by more than levelAgree.
const (
	levelMin   = 6 * math.Pi / 180
	levelMax   = 35 * math.Pi / 180
	levelAgree = 3 * math.Pi / 180
)

// Eye search. Start points and search window are those of pigo's own
// examples (0.085 of the box above its centre, 0.185 to either side, a
// window of 0.4 box sides); an inter-pupil distance outside [eyeMin, eyeMax]
// box sides is not a pair of eyes (the sample photos give 0.36-0.48).
const (
	eyeUp, eyeSide, eyeWindow = 0.085, 0.185, 0.4
	eyeMin, eyeMax            = 0.22, 0.55
	perturbs                  = 15
)

// Leveler estimates the in-plane rotation (roll) of a detected face from its
// two pupils, found with pigo's pupil localisation cascade (Markus et al.,
// "Eye pupil localization with an ensemble of randomized trees", 2014), so
// that [Crop] can cut it level. It is a port of pigo's PuplocCascade that
// draws its perturbations once, from a fixed seed, instead of from the
// global math/rand on every call: the same frame always gives the same roll,
// and therefore the same labels. Not safe for concurrent use.
type Leveler struct {
	stages, trees, depth int     // depth is the number of leaves per tree
	shrink               float32 // search window scale after each stage
	codes                []int8  // per tree node: row1, col1, row2, col2
	preds                []float32
	jitter               [perturbs][3]float32 // row, col (window sides), scale factor
	rows, cols           [perturbs]float32    // scratch for the medians
}

// NewLeveler parses the embedded pupil cascade.
func NewLeveler() (*Leveler, error) {
	l, err := parsePuploc(puploc)
	if err != nil {
		return nil, fmt.Errorf("leveler: %w", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range l.jitter {
		l.jitter[i] = [3]float32{0.15 * (0.5 - rng.Float32()), 0.15 * (0.5 - rng.Float32()), 0.925 + 0.15*rng.Float32()}
	}
	return l, nil
}

func parsePuploc(b []byte) (*Leveler, error) {
	if len(b) < 16 {
		return nil, errors.New("pupil cascade: truncated header")
	}
	l := &Leveler{
		stages: int(binary.LittleEndian.Uint32(b)),
		shrink: math.Float32frombits(binary.LittleEndian.Uint32(b[4:])),
		trees:  int(binary.LittleEndian.Uint32(b[8:])),
	}
	depth := int(binary.LittleEndian.Uint32(b[12:]))
	if l.stages < 1 || l.stages > 64 || l.trees < 1 || l.trees > 1024 || depth < 1 || depth > 12 {
		return nil, fmt.Errorf("pupil cascade: implausible shape: %d stages, %d trees, depth %d", l.stages, l.trees, depth)
	}
	l.depth = 1 << depth
	nodes, leaves := 4*(l.depth-1), 2*l.depth
	n := l.stages * l.trees
	if want := 16 + n*(nodes+4*leaves); len(b) != want {
		return nil, fmt.Errorf("pupil cascade: %d bytes, want %d for %d stages of %d trees of depth %d", len(b), want, l.stages, l.trees, depth)
	}
	l.codes = make([]int8, 0, n*nodes)
	l.preds = make([]float32, 0, n*leaves)
	pos := 16
	for range n {
		for _, c := range b[pos : pos+nodes] {
			l.codes = append(l.codes, int8(c))
		}
		pos += nodes
		for range leaves {
			l.preds = append(l.preds, math.Float32frombits(binary.LittleEndian.Uint32(b[pos:])))
			pos += 4
		}
	}
	return l, nil
}

// Roll returns the angle, in radians, by which the face in box is turned in
// the image plane of the w x h grey image luma (stride w): the direction
// from the left pupil to the right one as seen in the image, positive when
// the right one is lower (y grows downwards). ok is false, and roll 0, when
// the eyes are not found convincingly. Tilts below 6° come back as 0 with ok
// true: level enough.
//
// The pupils are searched upright from the box, then twice more in the
// frame turned by the latest estimate, from start points turned with it: the
// second search halves the error on heads tilted by 20°, and the third must
// agree with it within levelAgree, or an eye was lost (to an eyebrow, a
// frame, the edge of the image) and the answer is no answer.
func (l *Leveler) Roll(luma []byte, w, h int, box Box) (roll float64, ok bool) {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if w <= 0 || h <= 0 || len(luma) < w*h || !(box.S > 0) || !finite(box.S) || !finite(box.X) || !finite(box.Y) {
		return 0, false
	}
	var prev float64
	for range 3 {
		prev = roll
		if roll, ok = l.pass(luma, w, h, box, roll); !ok {
			return 0, false
		}
	}
	switch {
	case math.Abs(roll-prev) > levelAgree || math.Abs(roll) > levelMax:
		return 0, false
	case math.Abs(roll) < levelMin:
		return 0, true
	}
	return roll, true
}

// pass locates both pupils in the frame turned by a and returns the roll
// they give.
func (l *Leveler) pass(luma []byte, w, h int, box Box, a float64) (float64, bool) {
	sin, cos := math.Sincos(a)
	at := func(side float64) (y, x float64) {
		u, v := side*eyeSide*box.S, -eyeUp*box.S
		return box.Y + sin*u + cos*v, box.X + cos*u - sin*v
	}
	ly, lx := at(-1)
	ry, rx := at(1)
	s := eyeWindow * box.S
	ly, lx = l.locate(luma, w, h, ly, lx, s, sin, cos)
	ry, rx = l.locate(luma, w, h, ry, rx, s, sin, cos)
	if d := math.Hypot(rx-lx, ry-ly); !(d >= eyeMin*box.S && d <= eyeMax*box.S) {
		return 0, false
	}
	return math.Atan2(ry-ly, rx-lx), true
}

// locate runs the cascade from every perturbed start around (r, c) and
// returns the median row and column, in the image.
func (l *Leveler) locate(luma []byte, w, h int, r, c, s, sin, cos float64) (float64, float64) {
	for i, j := range l.jitter {
		l.rows[i], l.cols[i] = l.run(luma, w, h,
			float32(r+s*float64(j[0])), float32(c+s*float64(j[1])), float32(s)*j[2], float32(sin), float32(cos))
	}
	slices.Sort(l.rows[:])
	slices.Sort(l.cols[:])
	return float64(l.rows[perturbs/2]), float64(l.cols[perturbs/2])
}

// run is one descent of the cascade. Tree node offsets and leaf
// displacements are in the face's own frame (rows down the face, columns
// across it, in 1/256 of the window for offsets and in windows for
// displacements); the frame is turned by the angle whose sine and cosine
// are given, so a tilted face is read as if upright.
func (l *Leveler) run(luma []byte, w, h int, r, c, s, sin, cos float32) (float32, float32) {
	nodes := 4 * (l.depth - 1)
	tree := 0
	for range l.stages {
		// A node offset (dr, dc) lands at (r, c) + (ca*dr + sa*dc, -sa*dr + ca*dc).
		ca, sa := cos*s/256, sin*s/256
		var dr, dc float32
		for range l.trees {
			code := l.codes[tree*nodes : (tree+1)*nodes]
			idx := 0
			for idx < l.depth-1 {
				n := code[4*idx : 4*idx+4 : 4*idx+4]
				r1, c1, r2, c2 := float32(n[0]), float32(n[1]), float32(n[2]), float32(n[3])
				bit := 0
				if pixelAt(luma, w, h, r+ca*r1+sa*c1, c-sa*r1+ca*c1) > pixelAt(luma, w, h, r+ca*r2+sa*c2, c-sa*r2+ca*c2) {
					bit = 1
				}
				idx = 2*idx + 1 + bit
			}
			leaf := 2 * (tree*l.depth + idx - (l.depth - 1))
			dr += l.preds[leaf]
			dc += l.preds[leaf+1]
			tree++
		}
		r += (cos*dr + sin*dc) * s
		c += (-sin*dr + cos*dc) * s
		s *= l.shrink
	}
	return r, c
}

// pixelAt is the pixel at (y, x) of the w x h image luma, the nearest edge
// pixel outside it.
func pixelAt(luma []byte, w, h int, y, x float32) byte {
	return luma[min(max(int(y), 0), h-1)*w+min(max(int(x), 0), w-1)]
}
