package tflite

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var committedModels = []string{"../models/emotion.tflite", "../models/age.tflite", "../models/gender.tflite"}

// TestCommittedModelsDigest: the shipped models carry a digest that matches,
// and corrupting 50 bytes of one anywhere is refused with a clear error. On
// models without a digest, 2 of 6 such corruptions loaded and ran.
func TestCommittedModelsDigest(t *testing.T) {
	for _, path := range committedModels {
		t.Run(path, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Load(path, WithRequireDigest(true))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			m.Close()
			info, err := Inspect(path)
			if err != nil || info.Digest != "ok" || len(info.Meta.SHA256) != 64 {
				t.Fatalf("Inspect: digest %q (%v), sha256 %q", info.Digest, err, info.Meta.SHA256)
			}
			rng := rand.New(rand.NewPCG(16, 10))
			for i := range 12 {
				buf := append([]byte(nil), data...)
				for range 50 {
					buf[rng.IntN(len(buf))] ^= byte(1 + rng.IntN(255))
				}
				m, err := fromBytes(buf, config{threads: 1})
				if err == nil {
					m.Close()
					t.Errorf("corruption %d of 50 bytes loaded without error", i)
					continue
				}
				if !errors.Is(err, ErrInvalidModel) {
					t.Errorf("corruption %d: %v, want ErrInvalidModel", i, err)
				}
			}
		})
	}
}

// TestDigestSingleByte: one changed byte anywhere, in the weights, the
// graph or the metadata, is refused with ErrDigest.
func TestDigestSingleByte(t *testing.T) {
	data, err := os.ReadFile(committedModels[1])
	if err != nil {
		t.Fatal(err)
	}
	meta := strings.Index(string(data), `"labels":[`)
	for _, at := range []int{len(data) / 2, 2000, meta + len(`"labels":["`)} {
		buf := append([]byte(nil), data...)
		buf[at] ^= 0x01
		m, err := fromBytes(buf, config{threads: 1})
		if err == nil {
			m.Close()
			t.Errorf("byte %d changed: loaded", at)
			continue
		}
		if !errors.Is(err, ErrDigest) && !errors.Is(err, ErrInvalidModel) {
			t.Errorf("byte %d changed: %v", at, err)
		}
		if errors.Is(err, ErrDigest) && !strings.Contains(err.Error(), "changed or damaged after export") {
			t.Errorf("byte %d: unclear error %v", at, err)
		}
	}
}

// TestDigestOptional: a model exported before digests loads (edge run warns)
// unless a digest is required; the exporter's fixtures carry one.
func TestDigestOptional(t *testing.T) {
	built, _ := fixture{seed: 1}.build() // metadata without sha256, as before digests
	path := filepath.Join(t.TempDir(), "old.tflite")
	if err := os.WriteFile(path, built, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path)
	if err != nil {
		t.Fatalf("a model without digest: %v", err)
	}
	m.Close()
	if _, err := Load(path, WithRequireDigest(true)); !errors.Is(err, ErrDigest) {
		t.Fatalf("required digest missing: %v, want ErrDigest", err)
	}
	info, err := Inspect(path)
	if err != nil || info.Digest != "none" || info.Problem != "" {
		t.Fatalf("Inspect: digest %q, problem %q (%v), want none and no problem", info.Digest, info.Problem, err)
	}
	for _, p := range []string{tinyPath, "testdata/tiny_ycbcr.tflite"} {
		if info, err := Inspect(p); err != nil || info.Digest != "ok" {
			t.Errorf("%s: digest %q (%v), want ok: regenerate with models/export.py --tiny", p, info.Digest, err)
		}
	}
}
