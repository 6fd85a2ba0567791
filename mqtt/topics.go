package mqtt

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxNameLen bounds prefix, department and device names (in bytes).
const maxNameLen = 128

// Topics are the MQTT topics of one device.
type Topics struct {
	Stats       string // {prefix}/{department}/{device}/stats
	Status      string // {prefix}/{department}/{device}/status
	Diagnostics string // {prefix}/{department}/{device}/diagnostics
}

// NewTopics builds the topics of a device after validating each part with
// [ValidateName].
func NewTopics(prefix, department, device string) (Topics, error) {
	for _, p := range [...]struct{ kind, v string }{{"prefix", prefix}, {"department", department}, {"device", device}} {
		if err := ValidateName(p.kind, p.v); err != nil {
			return Topics{}, err
		}
	}
	base := prefix + "/" + department + "/" + device + "/"
	return Topics{Stats: base + "stats", Status: base + "status", Diagnostics: base + "diagnostics"}, nil
}

// StatsFilter is the subscription filter matching the stats of every device
// under prefix.
func StatsFilter(prefix string) string { return prefix + "/+/+/stats" }

// ValidateName checks one topic level (a prefix, department or device): it
// must be non-empty valid UTF-8 of at most 128 bytes without the MQTT special
// characters '+', '#' and '/', without control characters or surrounding
// spaces, and must not start with '$' (reserved for broker topics).
// kind names the value in the error.
func ValidateName(kind, v string) error {
	bad := func(why string) error { return fmt.Errorf("mqtt: invalid %s %q: %s", kind, v, why) }
	switch {
	case v == "":
		return fmt.Errorf("mqtt: %s must not be empty", kind)
	case len(v) > maxNameLen:
		return bad(fmt.Sprintf("longer than %d bytes", maxNameLen))
	case !utf8.ValidString(v):
		return bad("not valid UTF-8")
	case strings.ContainsAny(v, "+#/"):
		return bad("must not contain '+', '#' or '/'")
	case strings.HasPrefix(v, "$"):
		return bad("must not start with '$'")
	case strings.TrimSpace(v) != v:
		return bad("must not have surrounding spaces")
	case strings.ContainsFunc(v, unicode.IsControl):
		return bad("must not contain control characters")
	}
	return nil
}
