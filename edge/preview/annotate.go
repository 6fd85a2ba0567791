package preview

import (
	"image"
	"image/color"
	"image/draw"
	"strconv"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Face is one tracked face in frame pixels, as the preview draws it.
type Face struct {
	// X, Y is the top-left corner and Side the side of the square detection box.
	X, Y, Side int
	TrackID    uint64
	// Labels are drawn in order; a label with an empty Name (unclassified) is skipped.
	Labels []Label
}

// Label is one classifier result for a face, e.g. {"emotion", "happy", 0.82}.
type Label struct {
	Task, Name string
	Confidence float64
}

// palette (read-only) holds bright colours that stay readable on grey and colour frames;
// a track keeps its colour so a person is easy to follow across frames.
var palette = [...]color.RGBA{
	{0x00, 0xe6, 0x76, 0xff}, // green
	{0xff, 0xb3, 0x00, 0xff}, // amber
	{0x29, 0xb6, 0xf6, 0xff}, // light blue
	{0xff, 0x40, 0x81, 0xff}, // pink
	{0xd5, 0x00, 0xf9, 0xff}, // purple
	{0xff, 0xea, 0x00, 0xff}, // yellow
}

// middleDot separates label parts. basicfont only has ASCII glyphs, so the
// dot is drawn by hand (see drawText) rather than shown as a replacement box.
const middleDot = '·'

// annotate returns an RGBA copy of img, with origin (0,0), with every face
// box and its caption drawn on it. The copy keeps the caller's frame
// untouched and lets it reuse its buffers as soon as Update returns.
func annotate(img image.Image, faces []Face) *image.RGBA {
	b := img.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	// image/draw has fast paths for *image.YCbCr and *image.Gray sources.
	draw.Draw(dst, dst.Bounds(), img, b.Min, draw.Src)
	for _, f := range faces {
		drawFace(dst, f)
	}
	return dst
}

// drawFace draws one box and its caption. All drawing goes through
// draw.Draw, which clips to dst, so boxes partly or wholly off the frame are
// safe.
func drawFace(dst *image.RGBA, f Face) {
	if f.Side <= 0 {
		return
	}
	c := palette[f.TrackID%uint64(len(palette))]
	// 2 px keeps small faces visible; big faces in big frames get 3 px.
	t := 2
	if f.Side >= 160 {
		t = 3
	}
	box := image.Rect(f.X, f.Y, f.X+f.Side, f.Y+f.Side)
	fill(dst, image.Rect(box.Min.X, box.Min.Y, box.Max.X, box.Min.Y+t), c) // top
	fill(dst, image.Rect(box.Min.X, box.Max.Y-t, box.Max.X, box.Max.Y), c) // bottom
	fill(dst, image.Rect(box.Min.X, box.Min.Y, box.Min.X+t, box.Max.Y), c) // left
	fill(dst, image.Rect(box.Max.X-t, box.Min.Y, box.Max.X, box.Max.Y), c) // right

	drawCaption(dst, caption(f), box, c)
}

// caption formats "#<id> happy 0.82 · 20-39 · female". Only the first label
// carries its confidence: the pipeline lists emotion, the least certain
// task, first, and a short line stays readable above small faces.
func caption(f Face) string {
	var sb strings.Builder
	sb.WriteByte('#')
	sb.WriteString(strconv.FormatUint(f.TrackID, 10))
	first := true
	for _, l := range f.Labels {
		if l.Name == "" {
			continue
		}
		if first {
			sb.WriteByte(' ')
			sb.WriteString(l.Name)
			sb.WriteByte(' ')
			sb.WriteString(strconv.FormatFloat(l.Confidence, 'f', 2, 64))
			first = false
			continue
		}
		sb.WriteString(" · ")
		sb.WriteString(l.Name)
	}
	return sb.String()
}

// drawCaption draws text on a box-coloured band just above box, or just
// inside its top edge when the box touches the top of the frame, and shifts
// it left so it stays on the frame when the box is at the right edge.
func drawCaption(dst *image.RGBA, text string, box image.Rectangle, c color.RGBA) {
	const pad = 2
	m := basicfont.Face7x13
	w := len([]rune(text))*m.Advance + 2*pad
	h := m.Ascent + m.Descent + 2*pad
	x, y := box.Min.X, box.Min.Y-h
	if y < 0 {
		y = box.Min.Y
	}
	if fr := dst.Bounds(); x+w > fr.Max.X {
		x = fr.Max.X - w
	}
	x = max(x, 0)
	y = max(y, 0)
	fill(dst, image.Rect(x, y, x+w, y+h), c)
	drawText(dst, text, image.Pt(x+pad, y+pad+m.Ascent), color.Black)
}

// drawText draws a single line with basicfont's monospaced 7x13 face, dot at
// the baseline origin.
func drawText(dst *image.RGBA, text string, dot image.Point, c color.Color) {
	m := basicfont.Face7x13
	runes := []rune(text)
	plain := make([]rune, len(runes))
	for i, r := range runes {
		plain[i] = r
		if r == middleDot {
			plain[i] = ' '
			// The face is monospaced, so rune i starts at i*Advance.
			x := dot.X + i*m.Advance + m.Advance/2 - 1
			fill(dst, image.Rect(x, dot.Y-6, x+2, dot.Y-4), c)
		}
	}
	d := font.Drawer{
		Dst:  dst,
		Src:  image.NewUniform(c),
		Face: m,
		Dot:  fixed.P(dot.X, dot.Y),
	}
	d.DrawString(string(plain))
}

func fill(dst draw.Image, r image.Rectangle, c color.Color) {
	draw.Draw(dst, r, image.NewUniform(c), image.Point{}, draw.Src)
}
