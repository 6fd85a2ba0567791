package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// canvas is a white picture with the helpers the plots share.
type canvas struct{ *image.RGBA }

func newCanvas(w, h int) canvas {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	return canvas{img}
}

// text draws s with its baseline starting at (x, y).
func (c canvas) text(x, y int, s string, col color.Color) {
	d := font.Drawer{Dst: c.RGBA, Src: image.NewUniform(col), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int { return font.MeasureString(basicfont.Face7x13, s).Round() }

func (c canvas) fill(r image.Rectangle, col color.Color) {
	draw.Draw(c.RGBA, r, image.NewUniform(col), image.Point{}, draw.Src)
}

func (c canvas) save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := png.Encode(f, c.RGBA); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return f.Close()
}

// plotConfusion writes the confusion matrix as a PNG: each cell shaded by the
// row's recall and labelled with its count.
func plotConfusion(path, title string, labels []string, cm [][]int) error {
	const cell, left, top = 56, 90, 50
	k := len(labels)
	c := newCanvas(left+k*cell+20, top+k*cell+60)
	c.text(10, 20, title, color.Black)
	c.text(left, top+k*cell+40, "columns: predicted class, rows: true class", color.Gray{90})
	for i := range k {
		row := 0
		for j := range k {
			row += cm[i][j]
		}
		for j := range k {
			recall := float64(cm[i][j]) / float64(max(row, 1))
			shade := uint8(255 - 200*recall)
			r := image.Rect(left+j*cell, top+i*cell, left+(j+1)*cell-1, top+(i+1)*cell-1)
			c.fill(r, color.RGBA{shade, shade, 255, 255})
			var fg color.Color = color.Black
			if recall > 0.55 {
				fg = color.White
			}
			s := fmt.Sprint(cm[i][j])
			c.text(r.Min.X+(cell-textWidth(s))/2, r.Min.Y+cell/2+4, s, fg)
		}
		c.text(left-textWidth(labels[i])-6, top+i*cell+cell/2+4, labels[i], color.Black)
		l := labels[i]
		if len(l) > 7 {
			l = l[:7]
		}
		c.text(left+i*cell+(cell-textWidth(l))/2, top+k*cell+16, l, color.Black)
	}
	return c.save(path)
}

// taskColors tells the tasks apart in plotCamera.
var taskColors = map[string]color.RGBA{
	"emotion": {214, 96, 77, 255},
	"age":     {67, 147, 195, 255},
	"gender":  {90, 174, 97, 255},
}

// plotCamera writes the camera validation as a PNG: per condition, one
// horizontal bar per task for the accuracy on the faces found (a black
// tick marks the task's accuracy on its own crops), and the share of
// faces found.
func plotCamera(path string, r *cameraResult) error {
	const left, top, barH, scale = 120, 60, 12, 500 // scale: pixels for accuracy 1
	k := len(r.Tasks)
	rowH := k*barH + 10
	const found = left + scale + 70 // the faces-found column, clear of the bars' labels
	c := newCanvas(found+70, top+len(r.Conditions)*rowH+50)
	c.text(10, 20, fmt.Sprintf("camera-realistic validation: %d images per condition, seed %d", r.Sampled, r.Seed), color.Black)
	x := left
	for _, t := range r.Tasks {
		c.fill(image.Rect(x, 32, x+12, 44), taskColors[t])
		c.text(x+16, 43, t+" (accuracy on faces found)", color.Black)
		x += 16 + textWidth(t+" (accuracy on faces found)") + 20
	}
	for _, v := range []float64{0, 0.25, 0.5, 0.75, 1} {
		gx := left + int(v*scale)
		c.fill(image.Rect(gx, top-4, gx+1, top+len(r.Conditions)*rowH), color.Gray{215})
		c.text(gx-10, top+len(r.Conditions)*rowH+15, fmt.Sprintf("%.2f", v), color.Gray{90})
	}
	c.text(found, top-8, "found", color.Gray{90})
	for i, cr := range r.Conditions {
		y := top + i*rowH
		c.text(left-textWidth(cr.Condition.Name)-8, y+rowH/2+3, cr.Condition.Name, color.Black)
		for j, t := range r.Tasks {
			s := cr.Tasks[t]
			by := y + j*barH
			c.fill(image.Rect(left, by, left+int(s.AccuracyOnFaces*scale), by+barH-2), taskColors[t])
			tick := left + int(r.Crop[t]*scale)
			c.fill(image.Rect(tick, by-1, tick+2, by+barH-1), color.Black)
			// the label goes past the bar and past the tick, whichever ends later
			lx := max(left+int(s.AccuracyOnFaces*scale), tick+2) + 4
			c.text(lx, by+barH-3, fmt.Sprintf("%.3f", s.AccuracyOnFaces), color.Gray{60})
		}
		c.text(found, y+rowH/2+3, fmt.Sprintf("%.3f", cr.FaceRate), color.Black)
	}
	c.text(10, top+len(r.Conditions)*rowH+35, "black tick: accuracy on the same images' own crops (no detector)", color.Gray{90})
	return c.save(path)
}
