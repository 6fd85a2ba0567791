package tflite

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// A model's "edge" metadata carries "sha256": the SHA-256 of the whole
// file with the 64 hex digits of that value written as ASCII zeros. Every
// other byte (weights, quantization, graph, the rest of the metadata) is
// covered, so any change to the file after export is caught at Load. The
// exporter writes it (models/export.py); models/stamp.py adds it to a file
// exported before, without touching its weights.

// ErrDigest is wrapped by Load's error when a model's digest does not match
// its file, or a digest is required and the model has none.
var ErrDigest = fmt.Errorf("%w: digest", ErrInvalidModel)

// digestKey is how the digest appears in the compact JSON the exporter writes.
const digestKey = `"sha256":"`

// checkDigest verifies buf against the digest in m. A model without one
// passes unless required.
func checkDigest(buf []byte, m Meta, required bool) error {
	if m.SHA256 == "" {
		if required {
			return fmt.Errorf("%w: the model has no sha256 digest of its file (exported before digests: add one with models/stamp.py)", ErrDigest)
		}
		return nil
	}
	got, err := fileDigest(buf, m.SHA256)
	if err != nil {
		return err
	}
	if got != m.SHA256 {
		return fmt.Errorf("%w: the file does not match its sha256 digest (metadata says %s, file is %s): it was changed or damaged after export", ErrDigest, m.SHA256, got)
	}
	return nil
}

// fileDigest computes the digest of buf whose metadata holds want: the
// SHA-256 of buf with want's hex digits, where the metadata holds them,
// zeroed.
func fileDigest(buf []byte, want string) (string, error) {
	if len(want) != 2*sha256.Size || !isLowerHex(want) {
		return "", fmt.Errorf("%w: sha256 %q is not 64 lower-case hex digits", ErrDigest, want)
	}
	needle := []byte(digestKey + want + `"`)
	i := bytes.Index(buf, needle)
	if i < 0 || bytes.Contains(buf[i+1:], needle) {
		return "", fmt.Errorf("%w: sha256 must appear once in the file as %s…\" (compact JSON)", ErrDigest, digestKey)
	}
	h := sha256.New()
	at := i + len(digestKey)
	h.Write(buf[:at])
	h.Write(bytes.Repeat([]byte{'0'}, len(want)))
	h.Write(buf[at+len(want):])
	return hex.EncodeToString(h.Sum(nil)), nil
}

func isLowerHex(s string) bool {
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// digestStatus says what the digest check of a model file finds: "ok",
// "none" (exported before digests) or why it fails.
func digestStatus(buf []byte, m Meta) string {
	if m.SHA256 == "" {
		return "none"
	}
	if err := checkDigest(buf, m, false); err != nil {
		return err.Error()
	}
	return "ok"
}
