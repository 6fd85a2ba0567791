package pipeline

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"slices"

	pigo "github.com/esimov/pigo/core"
)

// facefinder is pigo's frontal face cascade (pigo v1.4.6, cascade/facefinder),
// embedded so a binary needs no data files. See cascade/README.md for its origin
// and licence.
//
//go:embed cascade/facefinder
var facefinder []byte

// Box is a square face detection in frame pixels.
//
// X, Y is the centre in continuous pixel coordinates (pixel column i covers
// [i, i+1)), so the square covers [X-S/2, X+S/2) x [Y-S/2, Y+S/2): this is
// how pigo's Row/Col/Scale are laid out. Q is the detector's score (pigo's
// summed cluster score; 0 for boxes that did not come from a detector). Roll
// is the face's in-plane rotation in radians, positive clockwise as seen in
// the image (y grows downwards): the box itself stays upright, and the crops
// of models whose framing asks for it ([Framing].Level) are cut turned by
// Roll so the face comes out level ([Detector.Level]).
type Box struct {
	X, Y, S float64
	Q       float64
	Roll    float64
}

// IoU returns the intersection over union of two boxes (0 when either is empty).
func (b Box) IoU(o Box) float64 {
	if b.S <= 0 || o.S <= 0 {
		return 0
	}
	ix := math.Min(b.X+b.S/2, o.X+o.S/2) - math.Max(b.X-b.S/2, o.X-o.S/2)
	iy := math.Min(b.Y+b.S/2, o.Y+o.S/2) - math.Max(b.Y-b.S/2, o.Y-o.S/2)
	if ix <= 0 || iy <= 0 {
		return 0
	}
	inter := ix * iy
	return inter / (b.S*b.S + o.S*o.S - inter)
}

// DetectorConfig holds pigo's scan parameters. The zero value is not valid;
// start from [DefaultDetectorConfig].
type DetectorConfig struct {
	// MinSize and MaxSize bound the face side in pixels that is searched.
	// MaxSize 0 means the shorter image side.
	MinSize, MaxSize int
	// ShiftFactor is the scan step as a fraction of the window side.
	ShiftFactor float64
	// ScaleFactor is the growth of the window side from one scale to the next (> 1).
	ScaleFactor float64
	// IoU is the overlap above which raw detections are merged into one face
	// by pigo's ClusterDetections.
	IoU float64
	// MinQ is the score a merged detection needs to be reported. pigo's
	// cluster score is the sum of its members' scores, so it grows with
	// smaller ShiftFactor/ScaleFactor (more windows per face): re-measure it
	// when changing those.
	MinQ float64
	// Level estimates a face's roll from its eyes ([Detector.Level]) so
	// the crops of models trained on aligned faces can be cut level.
	Level bool
	// Turned also scans with the cascade's windows turned by ±22.5°
	// (pigo's rotated cascade), which finds heads tilted by 15-35° that
	// the upright scan misses: on the camera validation, heads turned by
	// 20° were found 86 % of the time instead of 57 %. It costs three scans
	// instead of one (BenchmarkDetect/turned).
	Turned bool
}

// DefaultDetectorConfig returns parameters tuned for 640x480 live video on a
// small CPU: MinSize 48, ShiftFactor 0.1, ScaleFactor 1.15, IoU 0.2, MinQ 5,
// Level on, Turned off (it triples the detection time).
//
// Cost. pigo-facts.md measured a 640x480 frame at 68-86 ms with MinSize 20 /
// shift 0.10 / scale 1.1, 14-16 ms with MinSize 40 and 1.8-2.3 ms with
// MinSize 60 / shift 0.15 / scale 1.2: cost grows with 1/MinSize² and with
// the number of scale steps. BenchmarkDetect puts these defaults at about
// half the cost of MinSize 40 / 0.10 / 1.1 (so ~7-8 ms on an idle core) and
// about 4x the cost of MinSize 60 / 0.15 / 1.2.
//
// Recall. On the 20 sample photos (single faces of 90-340 px, and the same
// photos shrunk to half and to 0.3 on a 640x480 frame, i.e. faces down to
// ~45 px), these defaults found 18/18, 17/18 and 13/18 of the single faces
// with no second box scoring 5 or more; MinSize 60 / 0.15 / 1.2 found 17/18,
// 15/18 and 3/18. Faces below ~60 px are too small to classify (see
// [ClassifyConfig.MinFaceSize]) but are still worth counting, hence 48 here.
// Real faces scored 10-280 and false positives at most 4.6, so MinQ 5; the
// tracker's MinHits filters the rest. For a camera that only sees people
// close up, MinSize 60 / 0.15 / 1.2 is the cheap alternative.
func DefaultDetectorConfig() DetectorConfig {
	return DetectorConfig{
		MinSize:     48,
		MaxSize:     0,
		ShiftFactor: 0.1,
		ScaleFactor: 1.15,
		IoU:         0.2,
		MinQ:        5,
		Level:       true,
	}
}

// Validate reports the first invalid parameter.
func (c DetectorConfig) Validate() error {
	switch {
	case c.MinSize < 8:
		return fmt.Errorf("detector: MinSize %d: must be at least 8 pixels", c.MinSize)
	case c.MaxSize != 0 && c.MaxSize < c.MinSize:
		return fmt.Errorf("detector: MaxSize %d is below MinSize %d (0 means the shorter image side)", c.MaxSize, c.MinSize)
	case !(c.ShiftFactor > 0 && c.ShiftFactor <= 1):
		return fmt.Errorf("detector: ShiftFactor %v: must be in (0, 1]", c.ShiftFactor)
	case !(c.ScaleFactor > 1 && c.ScaleFactor <= 2):
		return fmt.Errorf("detector: ScaleFactor %v: must be in (1, 2]", c.ScaleFactor)
	case !(c.IoU > 0 && c.IoU < 1):
		return fmt.Errorf("detector: IoU %v: must be in (0, 1)", c.IoU)
	case !(c.MinQ >= 0) || math.IsInf(c.MinQ, 0):
		return fmt.Errorf("detector: MinQ %v: must be a finite number >= 0", c.MinQ)
	}
	return nil
}

// Detector finds frontal faces in a grey image with pigo. It is not safe for
// concurrent use: it keeps a scratch buffer for [Detector.DetectPadded].
type Detector struct {
	cfg     DetectorConfig
	cascade *pigo.Pigo
	leveler *Leveler // nil unless cfg.Level
	padded  []byte   // DetectPadded's canvas, reused across calls
	// The latest DetectPadded canvas: its border and size (LevelPadded).
	pad, padW, padH int
}

// NewDetector validates cfg and parses the embedded cascade.
func NewDetector(cfg DetectorConfig) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(facefinder) < 8 {
		return nil, errors.New("detector: embedded facefinder cascade is empty")
	}
	c, err := pigo.NewPigo().Unpack(facefinder)
	if err != nil {
		return nil, fmt.Errorf("detector: unpack facefinder cascade: %w", err)
	}
	d := &Detector{cfg: cfg, cascade: c}
	if cfg.Level {
		if d.leveler, err = NewLeveler(); err != nil {
			return nil, fmt.Errorf("detector: %w", err)
		}
	}
	return d, nil
}

// Config returns the detector's parameters.
func (d *Detector) Config() DetectorConfig { return d.cfg }

// Detect appends the faces found in the w x h grey image luma (stride w) to
// dst[:0] and returns it, best score first. It takes the luma plane as is
// because converting to grey costs more than detecting (pigo-facts.md).
// Besides pigo's own per-call slices it allocates nothing once dst has
// capacity. An image too small for luma yields no boxes.
func (d *Detector) Detect(luma []byte, w, h int, dst []Box) []Box {
	return d.detect(luma, w, h, 0, dst[:0])
}

// DetectPadded is Detect for images the face fills (dataset crops, as used
// by `edge eval --detect`): pigo finds faces near the image edge poorly, so
// the image is centred on a mid-grey canvas with a border of a quarter of its
// width on every side. Boxes are returned in the original image's coordinates
// and may extend beyond it. Padded crops score lower than faces in a scene
// (pigo-facts.md accepted q > 2 on UTKFace): measure MinQ for this use.
// Its boxes are upright; [Detector.LevelPadded] levels the one a caller
// crops, on the same canvas.
func (d *Detector) DetectPadded(luma []byte, w, h int, dst []Box) []Box {
	dst = dst[:0]
	if w <= 0 || h <= 0 || len(luma) < w*h {
		return dst
	}
	pad := max(w/4, 1)
	pw, ph := w+2*pad, h+2*pad
	n := pw * ph
	if cap(d.padded) < n {
		d.padded = make([]byte, n)
	}
	buf := d.padded[:n]
	for i := range buf[:pad*pw] {
		buf[i] = 128
	}
	for y := range h {
		row := buf[(pad+y)*pw : (pad+y+1)*pw]
		for i := range row[:pad] {
			row[i] = 128
		}
		copy(row[pad:pad+w], luma[y*w:(y+1)*w])
		for i := range row[pad+w:] {
			row[pad+w+i] = 128
		}
	}
	for i := range buf[(pad+h)*pw:] {
		buf[(pad+h)*pw+i] = 128
	}
	d.pad, d.padW, d.padH = pad, pw, ph
	return d.detect(buf, pw, ph, float64(pad), dst)
}

// LevelPadded is [Detector.Level] for b, a box the latest DetectPadded
// returned, read on that call's padded canvas: the eyes and the face
// cascade's check see the face as DetectPadded's scan did, border included.
// Before any DetectPadded call it returns b upright.
func (d *Detector) LevelPadded(b Box) Box {
	p := float64(d.pad)
	b.Roll = d.Level(d.padded[:d.padW*d.padH], d.padW, d.padH, Box{X: b.X + p, Y: b.Y + p, S: b.S}).Roll
	return b
}

func (d *Detector) detect(luma []byte, w, h int, offset float64, dst []Box) []Box {
	if w <= 0 || h <= 0 || len(luma) < w*h {
		return dst
	}
	maxSize := d.cfg.MaxSize
	if maxSize == 0 || maxSize > min(w, h) {
		maxSize = min(w, h)
	}
	if maxSize < d.cfg.MinSize {
		return dst
	}
	p := pigo.CascadeParams{
		MinSize:     d.cfg.MinSize,
		MaxSize:     maxSize,
		ShiftFactor: d.cfg.ShiftFactor,
		ScaleFactor: d.cfg.ScaleFactor,
		ImageParams: pigo.ImageParams{Pixels: luma[:w*h], Rows: h, Cols: w, Dim: w},
	}
	start := len(dst)
	raw := d.cascade.RunCascade(p, 0)
	if d.cfg.Turned {
		// Two 32nds of a turn either way; pigo takes angles in [0, 1).
		raw = append(raw, d.cascade.RunCascade(p, 2.0/32)...)
		raw = append(raw, d.cascade.RunCascade(p, 30.0/32)...)
	}
	if len(raw) == 0 {
		return dst
	}
	for _, c := range d.cascade.ClusterDetections(raw, d.cfg.IoU) {
		if float64(c.Q) < d.cfg.MinQ {
			continue
		}
		dst = append(dst, Box{
			X: float64(c.Col) - offset,
			Y: float64(c.Row) - offset,
			S: float64(c.Scale),
			Q: float64(c.Q),
		})
	}
	slices.SortStableFunc(dst[start:], func(a, b Box) int {
		switch {
		case a.Q > b.Q:
			return -1
		case a.Q < b.Q:
			return 1
		}
		return 0
	})
	return suppress(dst, start, d.cfg.IoU)
}

// turnStep is the angle by which pigo's rotated face cascade can be turned:
// a 32nd of a turn (it reads sines and cosines from a 32-entry table).
const turnStep = 2 * math.Pi / 32

// Level returns box, a face detected in the w x h grey frame luma, with its
// Roll set so that crops of it come out level: the [Leveler]'s roll from
// the eyes, kept only where the face cascade agrees with it (turned to the
// nearest 32nd of a turn, the cascade must score the face at least as well
// as upright). Eyes are lost to glasses, squints and boxes that sit low on
// the face, and a crop levelled by a wrong roll is worse than one left
// upright (under the camera validation's glasses, levelling without this
// check, and from 4° up, cost age 2.8 points); the cascade looks at the
// whole face. A face whose roll is not found or not confirmed, and every
// face when the config's Level is off, stays upright (Roll 0).
//
// Detect does not level its boxes: it runs on every frame, while only the
// faces being classified need it (the pipeline levels a face when it crops
// it, a few times a second per person). It costs more than the detection of
// one face: see BenchmarkLevel.
func (d *Detector) Level(luma []byte, w, h int, box Box) Box {
	box.Roll = 0
	if d.leveler == nil {
		return box
	}
	roll, ok := d.leveler.Roll(luma, w, h, box)
	if !ok || roll == 0 {
		return box
	}
	// pigo turns its windows the other way round from Box.Roll. k is not 0:
	// the Leveler's least roll (6°) exceeds half a turnStep.
	k := math.Round(-roll / turnStep)
	if d.faceScore(luma, w, h, box, k) >= d.faceScore(luma, w, h, box, 0) {
		box.Roll = roll
	}
	return box
}

// faceScore is the summed score of the face cascade's raw detections around
// box (centres within 0.3 box sides, sides 0.8-1.25 of it) with its windows
// turned by k/32 of a turn.
func (d *Detector) faceScore(luma []byte, w, h int, box Box, k float64) float64 {
	x0, y0 := max(int(box.X-0.9*box.S), 0), max(int(box.Y-0.9*box.S), 0)
	x1, y1 := min(int(box.X+0.9*box.S), w), min(int(box.Y+0.9*box.S), h)
	if x1 <= x0 || y1 <= y0 {
		return 0
	}
	p := pigo.CascadeParams{
		MinSize:     max(int(0.8*box.S), 1),
		MaxSize:     max(int(1.25*box.S), 1),
		ShiftFactor: 0.1,
		ScaleFactor: 1.1,
		ImageParams: pigo.ImageParams{Pixels: luma[y0*w+x0:], Rows: y1 - y0, Cols: x1 - x0, Dim: w},
	}
	a := k / 32
	if a < 0 {
		a++
	}
	var q float64
	for _, r := range d.cascade.RunCascade(p, a) {
		if math.Hypot(float64(r.Col+x0)-box.X, float64(r.Row+y0)-box.Y) < 0.3*box.S {
			q += float64(r.Q)
		}
	}
	return q
}

// suppress drops, in place, every box in dst[start:] (sorted best first) that
// overlaps a better one by more than iou. pigo's ClusterDetections lets a
// detection join several clusters, so one face can come out as two
// concentric boxes of different sizes (seen on the sample photos); two boxes
// would make two people.
func suppress(dst []Box, start int, iou float64) []Box {
	kept := start
	for i := start; i < len(dst); i++ {
		dup := false
		for _, k := range dst[start:kept] {
			if k.IoU(dst[i]) > iou {
				dup = true
				break
			}
		}
		if !dup {
			dst[kept] = dst[i]
			kept++
		}
	}
	return dst[:kept]
}
