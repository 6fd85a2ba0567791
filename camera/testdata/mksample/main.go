// Command mksample builds edge's sample input: a short sequence of 640x480
// JPEG frames in which six real people (public-domain portraits from
// ../shared/samples/faces, see camera/testdata/NOTICE) come into view, sway
// a little and leave, at most four at a time. The demo, `edge bench` and the
// end-to-end tests run on it.
//
//	go run ./camera/testdata/mksample -faces ../shared/samples/faces -out camera/testdata/people.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	_ "image/png"
	"log"
	"math"
	"os"
	"path/filepath"

	"github.com/edge-sensor/edge/pipeline"
	"golang.org/x/image/draw"
)

// person is one visitor: which photo, which of the four slots, when in view.
type person struct {
	file        string
	slot        int
	first, last int // frames
}

// The timeline leaves at least 20 frames between two people in one slot,
// more than the tracker's 15-frame miss tolerance, so each is a new person.
var people = []person{
	{"wh_obama_2012_portrait.jpg", 0, 0, 44},
	{"nasa_christina_koch_2023.jpg", 1, 10, 54},
	{"nasa_buzz_aldrin_1969.jpg", 2, 20, 64},
	{"nasa_sally_ride.jpg", 3, 30, 74},
	{"nasa_victor_glover_2023.jpg", 0, 70, 114},
	{"usn_grace_hopper_1984.jpg", 1, 75, 119},
}

const (
	width, height = 640, 480
	frames        = 120
	tile          = 160 // side of each person's square tile
	faceSide      = 84  // detected face side inside a tile
)

func main() {
	faces := flag.String("faces", "../shared/samples/faces", "folder of the sample photos")
	out := flag.String("out", "camera/testdata/people.tar", "tar of frames to write")
	flag.Parse()
	det, err := pipeline.NewDetector(pipeline.DefaultDetectorConfig())
	if err != nil {
		log.Fatal(err)
	}
	tiles := make([]*image.RGBA, len(people))
	for i, p := range people {
		if tiles[i], err = headTile(det, filepath.Join(*faces, p.file)); err != nil {
			log.Fatal(err)
		}
	}
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	tw := tar.NewWriter(f)
	bg := background()
	for n := range frames {
		frame := image.NewRGBA(bg.Bounds())
		draw.Draw(frame, frame.Bounds(), bg, image.Point{}, draw.Src)
		for i, p := range people {
			if n < p.first || n > p.last {
				continue
			}
			t := float64(n - p.first)
			x := p.slot*tile + int(6*math.Sin(t/7+float64(i)))
			y := 150 + int(10*math.Sin(t/5+float64(i)))
			draw.Draw(frame, image.Rect(x, y, x+tile, y+tile), tiles[i], image.Point{}, draw.Src)
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, frame, &jpeg.Options{Quality: 80}); err != nil {
			log.Fatal(err)
		}
		hdr := &tar.Header{Name: fmt.Sprintf("frame_%04d.jpg", n), Mode: 0o644, Size: int64(buf.Len()), Format: tar.FormatGNU}
		if err := tw.WriteHeader(hdr); err != nil {
			log.Fatal(err)
		}
		if _, err := tw.Write(buf.Bytes()); err != nil {
			log.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

// headTile finds the face in a portrait and cuts a square around it, scaled
// so the face is faceSide pixels wide.
func headTile(det *pipeline.Detector, path string) (*image.RGBA, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	img, _, err := image.Decode(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := img.Bounds()
	luma := make([]byte, b.Dx()*b.Dy())
	for y := range b.Dy() {
		for x := range b.Dx() {
			luma[y*b.Dx()+x] = color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
		}
	}
	boxes := det.Detect(luma, b.Dx(), b.Dy(), nil)
	if len(boxes) == 0 {
		return nil, fmt.Errorf("%s: no face found", path)
	}
	f := boxes[0]
	side := f.S * tile / faceSide
	src := image.Rect(int(f.X-side/2), int(f.Y-side/2+0.1*f.S), int(f.X+side/2), int(f.Y+side/2+0.1*f.S)).Add(b.Min)
	t := image.NewRGBA(image.Rect(0, 0, tile, tile))
	draw.Draw(t, t.Bounds(), image.NewUniform(color.Gray{128}), image.Point{}, draw.Src)
	draw.CatmullRom.Scale(t, t.Bounds(), img, src, draw.Over, nil)
	return t, nil
}

// background is a soft vertical gradient, like a plain wall.
func background() *image.RGBA {
	bg := image.NewRGBA(image.Rect(0, 0, width, height))
	for y := range height {
		c := color.RGBA{uint8(170 - y/8), uint8(175 - y/8), uint8(180 - y/10), 255}
		for x := range width {
			bg.SetRGBA(x, y, c)
		}
	}
	return bg
}
