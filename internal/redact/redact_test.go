package redact

import "testing"

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ssl://user:secret@h:8883", "ssl://REDACTED@h:8883"},
		{"tcp://secret@h", "tcp://REDACTED@h"},
		{"tcp://u:p@ss/w?rd#secret@h:1883", "tcp://REDACTED@h:1883"},
		{"rtsp://admin:sec ret@cam/stream1", "rtsp://REDACTED@cam/stream1"},
		{"user:secret@h:1883", "REDACTED@h:1883"},
		{"tcp://h:1883", "tcp://h:1883"},
		{"/dev/video0", "/dev/video0"},
		{"", ""},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
