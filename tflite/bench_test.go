package tflite

import (
	"fmt"
	"os"
	"testing"
)

// BenchmarkClassify times one Classify per model file: the tiny fixture
// always, edge's trained models when they have been exported.
//
//	go test -run '^$' -bench Classify -benchmem ./tflite/
func BenchmarkClassify(b *testing.B) {
	for _, c := range []struct{ name, path string }{
		{"tiny", tinyPath},
		{"emotion", "../models/emotion.tflite"},
		{"age", "../models/age.tflite"},
		{"gender", "../models/gender.tflite"},
	} {
		b.Run(c.name, func(b *testing.B) {
			if _, err := os.Stat(c.path); err != nil {
				b.Skipf("no model: %v", err)
			}
			for _, xnnpack := range []bool{true, false} {
				for _, threads := range []int{1, 2} {
					b.Run(fmt.Sprintf("xnnpack=%t/threads=%d", xnnpack, threads), func(b *testing.B) {
						m := mustLoad(b, c.path, WithXNNPACK(xnnpack), WithThreads(threads))
						meta := m.Meta()
						pixels := make([]byte, meta.Input.Width*meta.Input.Height*meta.Input.Channels)
						for i := range pixels {
							pixels[i] = byte(i * 7)
						}
						probs := make([]float32, len(meta.Labels))
						b.ReportAllocs()
						for b.Loop() {
							if err := m.Classify(pixels, probs); err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			}
		})
	}
}
