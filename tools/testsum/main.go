// Command testsum condenses `go test -json` into what `make test` shows: one
// line per package (as go test prints it), one line per skipped test with its
// reason, the tests slower than -slow, and the whole output of every failed
// test and build. Plain `go test` hides skips unless -v, and a check that
// skips because ../shared is absent must be visible in make's output.
//
//	go test -json ./... | go run ./tools/testsum [-slow 20s]
//
// It exits 1 when a test or build failed, or when the input holds no test
// result at all (go test failed before running anything).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	ImportPath  string
	FailedBuild string
}

type key struct{ pkg, test string }

// summary accumulates the events of one run.
type summary struct {
	out      io.Writer
	slow     time.Duration
	output   map[key][]string // per test ("" for package-level output)
	build    map[string][]string
	failed   bool
	results  int
	slowList []string
}

func newSummary(out io.Writer, slow time.Duration) *summary {
	return &summary{out: out, slow: slow, output: map[key][]string{}, build: map[string][]string{}}
}

// framing matches the lines go test writes around a test's own output.
var framing = regexp.MustCompile(`^\s*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|FAIL|SKIP)|PASS$|FAIL$|ok\s|FAIL\s)`)

func (s *summary) add(e event) {
	switch e.Action {
	case "build-output":
		s.build[e.ImportPath] = append(s.build[e.ImportPath], e.Output)
		return
	case "build-fail":
		s.failed = true
		fmt.Fprintf(s.out, "FAIL build %s\n%s", e.ImportPath, strings.Join(s.build[e.ImportPath], ""))
		return
	case "output":
		k := key{e.Package, e.Test}
		s.output[k] = append(s.output[k], e.Output)
		return
	}
	k := key{e.Package, e.Test}
	switch {
	case e.Action == "skip" && e.Test != "":
		s.results++
		fmt.Fprintf(s.out, "SKIP %s %s: %s\n", short(e.Package), e.Test, reason(s.output[k]))
	case e.Action == "fail" && e.Test != "":
		s.results++
		s.failed = true
		fmt.Fprintf(s.out, "--- FAIL: %s %s (%.1fs)\n%s", short(e.Package), e.Test, e.Elapsed, strings.Join(s.output[k], ""))
	case e.Action == "pass" && e.Test != "":
		s.results++
		if d := time.Duration(e.Elapsed * float64(time.Second)); s.slow > 0 && d >= s.slow && !strings.Contains(e.Test, "/") {
			s.slowList = append(s.slowList, fmt.Sprintf("%6.1fs %s %s", e.Elapsed, short(e.Package), e.Test))
		}
	case e.Test == "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
		s.results++
		s.packageDone(e)
	default:
		return
	}
	if e.Test != "" && e.Action != "fail" {
		delete(s.output, k) // only a failure's output is printed later
	}
}

func (s *summary) packageDone(e event) {
	k := key{e.Package, ""}
	switch e.Action {
	case "pass":
		fmt.Fprintf(s.out, "ok   %s %.1fs\n", e.Package, e.Elapsed)
	case "skip":
		// "[no test files]": nothing ran, nothing to say
	case "fail":
		s.failed = true
		if e.FailedBuild != "" {
			fmt.Fprintf(s.out, "FAIL %s [build failed: %s]\n", e.Package, e.FailedBuild)
		} else {
			// package-level output holds panics, timeouts and TestMain failures
			var lines []string
			for _, l := range s.output[k] {
				if !framing.MatchString(l) {
					lines = append(lines, l)
				}
			}
			fmt.Fprintf(s.out, "%sFAIL %s %.1fs\n", strings.Join(lines, ""), e.Package, e.Elapsed)
		}
	}
	for kk := range s.output {
		if kk.pkg == e.Package {
			delete(s.output, kk)
		}
	}
}

// finish prints the slow tests and reports whether the run passed.
func (s *summary) finish() bool {
	if len(s.slowList) > 0 {
		sort.Sort(sort.Reverse(sort.StringSlice(s.slowList)))
		fmt.Fprintf(s.out, "tests that took %v or longer:\n", s.slow)
		for _, l := range s.slowList {
			fmt.Fprintln(s.out, l)
		}
	}
	if s.results == 0 {
		fmt.Fprintln(s.out, "testsum: no test results in the input (did go test start?)")
		return false
	}
	return !s.failed
}

// reason is a skipped test's own message on one line.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		if framing.MatchString(l) {
			continue
		}
		if t := strings.TrimSpace(l); t != "" {
			parts = append(parts, t)
		}
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " / ")
}

// short drops the module path: the package as a reader finds it in the tree.
func short(pkg string) string {
	const module = "github.com/edge-sensor/edge/"
	return strings.TrimPrefix(pkg, module)
}

func run(in io.Reader, out io.Writer, slow time.Duration) bool {
	s := newSummary(out, slow)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// go test's own errors (e.g. a pattern matching nothing) are not JSON
			fmt.Fprintln(out, sc.Text())
			continue
		}
		s.add(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(out, "testsum: reading go test output: %v\n", err)
		return false
	}
	return s.finish()
}

func main() {
	slow := flag.Duration("slow", 0, "also list the top-level tests that took at least this long (0: none)")
	flag.Parse()
	if !run(os.Stdin, os.Stdout, *slow) {
		os.Exit(1)
	}
}
