package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strings"
	"time"
)

// stats is what the checker reads from a stats line: edge's MQTT stats
// payload (EDGE_STATS_STDOUT=1) or the probe's window, which has the same
// shape plus a "probe" object.
type stats struct {
	// Kind is "hour" for edge's long window, which repeats what the short
	// windows hold over a longer span; only short windows are checked.
	Kind              string    `json:"kind"`
	Start             time.Time `json:"start"`
	End               time.Time `json:"end"`
	PeopleSeen        *int      `json:"people_seen"`
	Frames            *frames   `json:"frames"`
	SourceDownSeconds float64   `json:"source_down_seconds"`
	Probe             *probed   `json:"probe"`
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ", ") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// checkCmd checks one scenario's stats lines, log and exit status and prints
// its EDGE-RESULT line. ok is false when an expectation failed; err is set
// only for a bad command line.
func checkCmd(args []string, stdout io.Writer) (ok bool, err error) {
	fl := flagSet("check")
	scenario := fl.String("scenario", "", "scenario name for the result line")
	statsFile := fl.String("stats", "", "stats lines (JSON, one per line; other lines are ignored)")
	logFile := fl.String("log", "", "the producer's log (stderr)")
	exit := fl.Int("exit", 0, "the producer's exit status")
	wantExit := fl.String("want-exit", "0", `expected exit status: "0", "nonzero" or "any"`)
	alive := fl.String("alive", "", `"yes" if the producer was still running when it was stopped (checked when set)`)
	minFrames := fl.Int("min-frames", 0, "least frames processed in all")
	maxCorrupt := fl.Int("max-corrupt", 0, "most corrupt frames in all (-1: any)")
	size := fl.String("size", "", "WxH every frame must have (from the probe's windows or the camera's 'camera opened' log line)")
	fps := fl.Float64("fps", 0, "requested rate: processed+dropped frames per second of source up time must be within -fps-min..-fps-max times it")
	fpsMin := fl.Float64("fps-min", 0.5, "lowest acceptable fraction of -fps")
	fpsMax := fl.Float64("fps-max", 1.25, "highest acceptable fraction of -fps")
	wantPeople := fl.Int("people", -1, "expected headcount (-1: not checked)")
	peopleAgg := fl.String("people-agg", "max", "headcount over windows: max or sum of people_seen")
	requirePeople := fl.Bool("require-people", false, "fail when the stats carry no people_seen (the probe has no detector)")
	minDown := fl.Float64("min-down", -1, "least source_down_seconds in all (-1: not checked)")
	maxDown := fl.Float64("max-down", -1, "most source_down_seconds in all (-1: not checked)")
	tailFrames := fl.Int("tail-frames", 0, "least frames processed in the last two windows (capture still flowing at the end)")
	noInvented := fl.Bool("no-invented", false, "windows the source was down throughout must hold no processed frames")
	resume := fl.Float64("resume", -1, "seconds from the device's return to the first frame (measured by the caller)")
	maxResume := fl.Float64("max-resume", 5, "most acceptable -resume")
	minMatched := fl.Float64("min-matched", -1, "least fraction of non-blank frames equal to a sample frame (probe with -expect)")
	minDistinct := fl.Float64("min-distinct", -1, "least fraction of the distinct sample frames seen (probe with -expect)")
	vmBusy := fl.Float64("vm-busy", -1, "share of the run the VM's CPU was busy (-1: unknown)")
	starvedAt := fl.Float64("starved-at", 0.85, "at or above this -vm-busy the VM was starved of host CPU: rate and throughput shortfalls (-fps-min, -min-distinct) are reported, not failed")
	var logHas, logLacks multiFlag
	fl.Var(&logHas, "log-has", "regexp (case-insensitive) the log must match; repeatable")
	fl.Var(&logLacks, "log-lacks", "regexp (case-insensitive) the log must not match; repeatable")
	if err := fl.Parse(args); err != nil {
		return false, err
	}
	if *scenario == "" {
		return false, fmt.Errorf("check: -scenario is required")
	}

	var fails, notes []string
	failf := func(format string, a ...any) { fails = append(fails, fmt.Sprintf(format, a...)) }
	starved := *vmBusy >= *starvedAt
	// throughput is for shortfalls a starved VM explains.
	throughput := func(format string, a ...any) {
		if starved {
			notes = append(notes, fmt.Sprintf(format, a...))
			return
		}
		failf(format, a...)
	}
	res := []string{}
	put := func(k string, v any) { res = append(res, fmt.Sprintf("%s=%v", k, v)) }

	switch *wantExit {
	case "any":
	case "0":
		if *exit != 0 {
			failf("exit status %d", *exit)
		}
	case "nonzero":
		if *exit == 0 {
			failf("exit status 0, want an error")
		}
	default:
		return false, fmt.Errorf("check: bad -want-exit %q", *wantExit)
	}
	put("exit", *exit)
	if *alive != "" {
		put("alive", *alive)
		if *alive != "yes" {
			failf("process died during the run")
		}
	}

	var logText []byte
	if *logFile != "" {
		if logText, err = os.ReadFile(*logFile); err != nil {
			failf("log: %v", err)
		}
	}
	for _, re := range logHas {
		rx, err := regexp.Compile("(?i)" + re)
		if err != nil {
			return false, fmt.Errorf("check: -log-has %q: %w", re, err)
		}
		if !rx.Match(logText) {
			failf("log lacks /%s/", re)
		}
	}
	for _, re := range logLacks {
		rx, err := regexp.Compile("(?i)" + re)
		if err != nil {
			return false, fmt.Errorf("check: -log-lacks %q: %w", re, err)
		}
		if m := rx.Find(logText); m != nil {
			failf("log has %q", m)
		}
	}

	var ws []stats
	if *statsFile != "" {
		if ws, err = readStats(*statsFile); err != nil {
			failf("stats: %v", err)
		}
	}
	var (
		processed, dropped, corrupt uint64
		down, span                  float64
		people                      = -1
		invented                    int
		overlong                    []string
		matched, unmatched, blank   int
		last                        *probed
	)
	for _, w := range ws {
		f := *w.Frames
		processed += f.Processed
		dropped += f.Dropped
		corrupt += f.Corrupt
		down += w.SourceDownSeconds
		length := w.End.Sub(w.Start).Seconds()
		span += length
		// A window down for 95% of its length or more can still hold the
		// frames of the rest: one edge frame, plus what the requested rate
		// allows in the up time. More were invented.
		if length > 0 && w.SourceDownSeconds >= 0.95*length {
			allowed := 1 + math.Floor(*fpsMax**fps*max(length-w.SourceDownSeconds, 0))
			if float64(f.Processed) > allowed {
				invented++
			}
		}
		if w.SourceDownSeconds > length+0.25 {
			overlong = append(overlong, fmt.Sprintf("%.2fs down in a %.2fs window", w.SourceDownSeconds, length))
		}
		if w.PeopleSeen != nil {
			switch {
			case people < 0:
				people = *w.PeopleSeen
			case *peopleAgg == "sum":
				people += *w.PeopleSeen
			default:
				people = max(people, *w.PeopleSeen)
			}
		}
		if p := w.Probe; p != nil {
			matched += p.Matched
			unmatched += p.Unmatched
			blank += p.Blank
			last = p
		}
	}
	put("windows", len(ws))
	put("frames", processed)
	put("dropped", dropped)
	put("corrupt", corrupt)
	put("down_s", fmt.Sprintf("%.1f", down))

	if *statsFile != "" {
		if len(ws) == 0 {
			failf("no stats lines")
		}
		if processed < uint64(*minFrames) {
			failf("%d frames processed, want >= %d", processed, *minFrames)
		}
		if *maxCorrupt >= 0 && corrupt > uint64(*maxCorrupt) {
			failf("%d corrupt frames, want <= %d", corrupt, *maxCorrupt)
		}
		if *fps > 0 {
			up := span - down
			rate := 0.0
			if up > 0 {
				rate = float64(processed+dropped) / up
			}
			put("fps", fmt.Sprintf("%.1f", rate))
			switch {
			case rate > *fpsMax**fps:
				failf("%.1f frames per second of up time, want <= %.1f", rate, *fpsMax**fps)
			case rate < *fpsMin**fps:
				throughput("%.1f frames per second of up time, want >= %.1f", rate, *fpsMin**fps)
			}
		}
		if *minDown >= 0 && down < *minDown {
			failf("source down %.1fs, want >= %.1fs", down, *minDown)
		}
		if *maxDown >= 0 && down > *maxDown {
			failf("source down %.1fs, want <= %.1fs", down, *maxDown)
		}
		if n := len(ws); *tailFrames > 0 && n > 0 {
			tail := ws[n-1].Frames.Processed
			if n > 1 {
				tail += ws[n-2].Frames.Processed
			}
			if tail < uint64(*tailFrames) {
				failf("%d frames in the last two windows, want >= %d", tail, *tailFrames)
			}
		}
		if len(overlong) > 0 {
			failf("windows report more down time than they last: %s", strings.Join(overlong, ", "))
		}
		if *noInvented && invented > 0 {
			failf("%d windows count frames while the source was down throughout", invented)
		}
		switch {
		case people >= 0:
			put("people", people)
		default:
			put("people", "n/a")
		}
		if *wantPeople >= 0 {
			switch {
			case people < 0 && *requirePeople:
				failf("stats carry no people_seen")
			case people >= 0 && people != *wantPeople:
				failf("headcount %d, want %d", people, *wantPeople)
			}
		}
		if last != nil {
			if *minMatched >= 0 {
				put("matched", matched)
				put("unmatched", unmatched)
				put("blank", blank)
				if n := matched + unmatched; n == 0 || float64(matched) < *minMatched*float64(n) {
					failf("%d of %d non-blank frames equal a sample frame, want >= %.0f%%", matched, n, 100**minMatched)
				}
			}
			if *minDistinct >= 0 {
				put("distinct", fmt.Sprintf("%d/%d", last.Distinct, last.Expected))
				if float64(last.Distinct) < *minDistinct*float64(last.Expected) {
					throughput("%d of %d distinct sample frames seen, want >= %.0f%%", last.Distinct, last.Expected, 100**minDistinct)
				}
			}
		}
	}

	if *size != "" {
		w, h, err := parseSize(*size)
		if err != nil {
			return false, fmt.Errorf("check: %w", err)
		}
		switch {
		case last != nil:
			if last.Width != w || last.Height != h {
				failf("frames are %dx%d, want %dx%d", last.Width, last.Height, w, h)
			}
		default:
			rx := regexp.MustCompile(fmt.Sprintf(`(?i)camera opened.*width["=:]+%d\b.*height["=:]+%d\b`, w, h))
			if !rx.Match(logText) {
				failf("log has no 'camera opened' line with width %d height %d", w, h)
			}
		}
		put("size", *size)
	}
	if *resume >= 0 {
		put("resume_s", fmt.Sprintf("%.1f", *resume))
		if *resume > *maxResume {
			failf("capture resumed %.1fs after the device came back, want <= %.1fs", *resume, *maxResume)
		}
	}

	if *vmBusy >= 0 {
		put("vm_busy", fmt.Sprintf("%.2f", *vmBusy))
	}
	ok = len(fails) == 0
	line := fmt.Sprintf("EDGE-RESULT scenario=%s ok=%d %s", *scenario, b2i(ok), strings.Join(res, " "))
	if len(notes) > 0 {
		line += fmt.Sprintf(" starved=%q", strings.Join(notes, "; "))
	}
	if !ok {
		line += fmt.Sprintf(" fail=%q", strings.Join(fails, "; "))
	}
	fmt.Fprintln(stdout, line)
	return ok, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readStats reads the short stats windows of a file, skipping anything that
// is not a JSON object with a "frames" member (log lines, other messages) and
// long windows, whose frames and down time the short windows already count.
func readStats(file string) ([]stats, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []stats
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if !bytes.HasPrefix(line, []byte("{")) {
			continue
		}
		var s stats
		if json.Unmarshal(line, &s) != nil || s.Frames == nil || (s.Kind != "" && s.Kind != "window") {
			continue
		}
		if math.IsNaN(s.SourceDownSeconds) {
			s.SourceDownSeconds = 0
		}
		out = append(out, s)
	}
	return out, sc.Err()
}
