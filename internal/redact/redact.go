// Package redact hides secrets in text that edge prints: logs, errors,
// diagnostics.
package redact

import "strings"

// URL hides the user information (user name and password) of a URL:
// "ssl://user:secret@host:8883" becomes "ssl://REDACTED@host:8883". It
// works on text that does not parse as a URL too, so that an error about a
// malformed URL leaks nothing either: everything between the scheme and the
// last '@' goes, even when the password holds '@', '/', '?', '#' or spaces.
func URL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		scheme, rest = "", s
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	if ok {
		scheme += "://"
	}
	return scheme + "REDACTED@" + rest[at+1:]
}
