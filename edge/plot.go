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

// plotConfusion writes the confusion matrix as a PNG: each cell shaded by the
// row's recall and labelled with its count.
func plotConfusion(path, title string, labels []string, cm [][]int) error {
	const cell, left, top = 56, 90, 50
	k := len(labels)
	img := image.NewRGBA(image.Rect(0, 0, left+k*cell+20, top+k*cell+60))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	text := func(x, y int, s string, c color.Color) {
		d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
		d.DrawString(s)
	}
	width := func(s string) int { return font.MeasureString(basicfont.Face7x13, s).Round() }
	text(10, 20, title, color.Black)
	text(left, top+k*cell+40, "columns: predicted class, rows: true class", color.Gray{90})
	for i := range k {
		row := 0
		for j := range k {
			row += cm[i][j]
		}
		for j := range k {
			recall := float64(cm[i][j]) / float64(max(row, 1))
			shade := uint8(255 - 200*recall)
			r := image.Rect(left+j*cell, top+i*cell, left+(j+1)*cell-1, top+(i+1)*cell-1)
			draw.Draw(img, r, image.NewUniform(color.RGBA{shade, shade, 255, 255}), image.Point{}, draw.Src)
			var fg color.Color = color.Black
			if recall > 0.55 {
				fg = color.White
			}
			s := fmt.Sprint(cm[i][j])
			text(r.Min.X+(cell-width(s))/2, r.Min.Y+cell/2+4, s, fg)
		}
		text(left-width(labels[i])-6, top+i*cell+cell/2+4, labels[i], color.Black)
		l := labels[i]
		if len(l) > 7 {
			l = l[:7]
		}
		text(left+i*cell+(cell-width(l))/2, top+k*cell+16, l, color.Black)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return f.Close()
}
