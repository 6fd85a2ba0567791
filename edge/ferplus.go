package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// FER+ (Microsoft's relabelling of FER2013, ten annotators per image) names
// its classes differently; contempt, unknown and NF (not a face) have no
// counterpart among our emotion labels.
var ferPlusClasses = map[string]string{
	"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
	"anger": "angry", "disgust": "disgust", "fear": "fear",
	"contempt": "", "unknown": "", "NF": "",
}

// ferPlusPath is where the FER+ votes for a FER2013 archive lie:
// ferplus_<split>.csv beside <split>.tar.gz (../shared/data/fer2013).
func ferPlusPath(data string) string {
	base := filepath.Base(data)
	for _, ext := range []string{".tar.gz", ".tgz", ".tar"} {
		base = strings.TrimSuffix(base, ext)
	}
	return filepath.Join(filepath.Dir(data), "ferplus_"+base+".csv")
}

// ferPlusMajority reads a FER+ votes file and returns each image's majority
// label, keyed by its path inside the archive. Images are left out when the
// top vote is tied or goes to contempt, unknown or not-a-face: a majority
// label must be one our model can predict and one the annotators agree on.
// dropped counts them.
func ferPlusMajority(path string) (labels map[string]string, dropped int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("FER+ labels: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	head, err := r.Read()
	if err != nil {
		return nil, 0, fmt.Errorf("FER+ labels %s: header: %w", path, err)
	}
	file := slices.Index(head, "file")
	cols := map[int]string{}
	for i, h := range head {
		if _, ok := ferPlusClasses[h]; ok {
			cols[i] = h
		}
	}
	if file < 0 || len(cols) != len(ferPlusClasses) {
		return nil, 0, fmt.Errorf("FER+ labels %s: header %v: want a file column and the ten vote columns", path, head)
	}
	labels = map[string]string{}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("FER+ labels %s: %w", path, err)
		}
		best, top, ties := "", -1, 0
		for i, class := range cols {
			if rec[i] == "" {
				continue // an image FER+ did not label
			}
			n, err := strconv.Atoi(rec[i])
			if err != nil {
				return nil, 0, fmt.Errorf("FER+ labels %s line %d: %s votes %q: %w", path, line, class, rec[i], err)
			}
			switch {
			case n > top:
				best, top, ties = class, n, 1
			case n == top:
				ties++
			}
		}
		if top <= 0 || ties > 1 || ferPlusClasses[best] == "" {
			dropped++
			continue
		}
		labels[rec[file]] = ferPlusClasses[best]
	}
	return labels, dropped, nil
}
