package main

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// prepCmd runs on the build machine: it turns the sample tar of JPEG frames
// into what the VM would otherwise spend minutes of emulated CPU on:
//
//	NAME.yuyv   every frame as raw YUYV 4:2:2, concatenated (for the YUYV writer)
//	NAME.crc    "WIDTHxHEIGHT" then the CRC-32 of each distinct non-blank frame's luma
//	blank.jpg   a mid-grey JPEG of the same size (for the MJPEG writer)
func prepCmd(args []string) error {
	fl := flagSet("prep")
	src := fl.String("src", "people.tar", "tar of JPEG frames")
	out := fl.String("out", ".", "output folder")
	if err := fl.Parse(args); err != nil {
		return err
	}
	samples, err := loadTar(*src)
	if err != nil {
		return fmt.Errorf("prep: %w", err)
	}
	base := strings.TrimSuffix(filepath.Base(*src), filepath.Ext(*src))
	raw, err := os.Create(filepath.Join(*out, base+".yuyv"))
	if err != nil {
		return fmt.Errorf("prep: %w", err)
	}
	defer raw.Close()
	rw := bufio.NewWriter(raw)
	var (
		w, h int
		crcs []uint32
		seen = map[uint32]bool{}
	)
	for _, s := range samples {
		img, err := decodeYCbCr(s.jpeg)
		if err != nil {
			return fmt.Errorf("prep: %s: %w", s.name, err)
		}
		if w == 0 {
			w, h = img.Rect.Dx(), img.Rect.Dy()
		}
		if img.Rect.Dx() != w || img.Rect.Dy() != h {
			return fmt.Errorf("prep: %s is %dx%d, the first frame %dx%d", s.name, img.Rect.Dx(), img.Rect.Dy(), w, h)
		}
		if _, err := rw.Write(yuyv(img)); err != nil {
			return fmt.Errorf("prep: %w", err)
		}
		l := luma(img)
		if c := crc32.ChecksumIEEE(l); !flat(l) && !seen[c] {
			seen[c] = true
			crcs = append(crcs, c)
		}
	}
	if err := rw.Flush(); err != nil {
		return fmt.Errorf("prep: %w", err)
	}
	if err := raw.Close(); err != nil {
		return fmt.Errorf("prep: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%dx%d\n", w, h)
	for _, c := range crcs {
		fmt.Fprintf(&b, "%08x\n", c)
	}
	if err := os.WriteFile(filepath.Join(*out, base+".crc"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("prep: %w", err)
	}
	blank, err := blankJPEG(w, h)
	if err != nil {
		return fmt.Errorf("prep: %w", err)
	}
	if err := os.WriteFile(filepath.Join(*out, "blank.jpg"), blank, 0o644); err != nil {
		return fmt.Errorf("prep: %w", err)
	}
	return nil
}

// readCRCs reads a .crc file that prep wrote: the frame size and the set of
// luma CRCs.
func readCRCs(file string) (w, h int, set map[uint32]bool, err error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, 0, nil, err
	}
	lines := strings.Fields(string(data))
	if len(lines) == 0 {
		return 0, 0, nil, fmt.Errorf("%s: empty", file)
	}
	if w, h, err = parseSize(lines[0]); err != nil {
		return 0, 0, nil, fmt.Errorf("%s: %w", file, err)
	}
	set = make(map[uint32]bool, len(lines)-1)
	for _, l := range lines[1:] {
		c, err := strconv.ParseUint(l, 16, 32)
		if err != nil {
			return 0, 0, nil, fmt.Errorf("%s: %w", file, err)
		}
		set[uint32(c)] = true
	}
	return w, h, set, nil
}
