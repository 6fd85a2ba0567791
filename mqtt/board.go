package mqtt

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Board keeps the latest stats of every department, device and window kind
// and renders them as text tables, one per department and kind, aggregated
// across its devices: the short windows and, apart, the long (hourly) ones.
// The zero Board is ready to use and safe for concurrent use.
type Board struct {
	mu     sync.Mutex
	latest map[[3]string]Stats // (department, kind, device) → latest window
}

// Update records s if it is newer than the device's current window of its
// kind (a lower window id from a device whose state was reset replaces it
// too when its end time is later).
func (b *Board) Update(s Stats) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.latest == nil {
		b.latest = map[[3]string]Stats{}
	}
	k := [3]string{s.Department, kindOf(s), s.Device}
	if old, ok := b.latest[k]; ok && s.Window <= old.Window && !s.End.After(old.End) {
		return
	}
	b.latest[k] = s
}

// TaskSummary is one task's breakdown aggregated over a department.
type TaskSummary struct {
	// Counts sums the label counts of the reporting devices.
	Counts map[string]int
	// Share is the expected share of each label in percent: the devices'
	// probability mass weighted by their number of classified people.
	Share map[string]float64
	// Reporting and Withheld count the devices that reported the task and
	// that withheld it for privacy.
	Reporting, Withheld int
}

// kindOf is s.Kind, KindWindow when absent.
func kindOf(s Stats) string {
	if s.Kind == "" {
		return KindWindow
	}
	return s.Kind
}

// DepartmentSummary aggregates the latest window of one kind of each device
// of a department.
type DepartmentSummary struct {
	Department string
	// Kind is KindWindow or KindHour.
	Kind         string
	Devices      []Stats // latest window per device, by device name
	PeopleNow    int
	PeopleSeen   int
	Unclassified int
	// DwellSecondsMean is weighted by people seen.
	DwellSecondsMean float64
	// End is the latest window end among the devices.
	End   time.Time
	Tasks map[string]TaskSummary // by task name; only tasks some device reported or withheld
}

// Summaries aggregates the board per department and kind, sorted by
// department, short windows before long ones.
func (b *Board) Summaries() []DepartmentSummary {
	b.mu.Lock()
	byDept := map[[2]string][]Stats{}
	for k, s := range b.latest {
		byDept[[2]string{k[0], k[1]}] = append(byDept[[2]string{k[0], k[1]}], s)
	}
	b.mu.Unlock()

	out := make([]DepartmentSummary, 0, len(byDept))
	keys := slices.SortedFunc(maps.Keys(byDept), func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return kindRank(a[1]) - kindRank(b[1])
	})
	for _, key := range keys {
		devs := byDept[key]
		slices.SortFunc(devs, func(a, b Stats) int { return strings.Compare(a.Device, b.Device) })
		d := DepartmentSummary{Department: key[0], Kind: key[1], Devices: devs, Tasks: map[string]TaskSummary{}}
		var dwell float64
		for _, s := range devs {
			d.PeopleNow += s.PeopleNow
			d.PeopleSeen += s.PeopleSeen
			d.Unclassified += s.Unclassified
			dwell += s.DwellSecondsMean * float64(s.PeopleSeen)
			if s.End.After(d.End) {
				d.End = s.End
			}
		}
		if d.PeopleSeen > 0 {
			d.DwellSecondsMean = dwell / float64(d.PeopleSeen)
		}
		for _, task := range Tasks() {
			ts := TaskSummary{Counts: map[string]int{}, Share: map[string]float64{}}
			var weight float64
			for _, s := range devs {
				if s.IsWithheld(task) {
					ts.Withheld++
					continue
				}
				br := s.Breakdown(task)
				if br == nil {
					continue
				}
				ts.Reporting++
				n := 0
				for l, c := range br.Counts {
					ts.Counts[l] += c
					n += c
				}
				w := float64(max(n, 1))
				for l, m := range br.Mass {
					ts.Share[l] += m * w
				}
				weight += w
			}
			if ts.Reporting == 0 && ts.Withheld == 0 {
				continue
			}
			for l := range ts.Share {
				ts.Share[l] = 100 * ts.Share[l] / weight
			}
			d.Tasks[task] = ts
		}
		out = append(out, d)
	}
	return out
}

func kindRank(kind string) int {
	if kind == KindWindow {
		return 0
	}
	return 1
}

// Render writes one block per department and kind: the aggregate over its devices,
// the per-task shares, and a table of its devices' latest windows.
func (b *Board) Render(w io.Writer) error {
	sums := b.Summaries()
	if len(sums) == 0 {
		_, err := fmt.Fprintln(w, "no stats received yet")
		return err
	}
	ew := &errWriter{w: w}
	for i, d := range sums {
		if i > 0 {
			fmt.Fprintln(ew)
		}
		what := "latest window"
		if d.Kind == KindHour {
			what = "hourly windows (people seen over the hour), latest end"
		}
		fmt.Fprintf(ew, "== %s: %d device(s), %s %s ==\n", d.Department, len(d.Devices), what, d.End.Format(time.RFC3339))
		fmt.Fprintf(ew, "people in view now %d   seen in the window %d   of them unclassified %d   mean time in view %.1fs\n",
			d.PeopleNow, d.PeopleSeen, d.Unclassified, d.DwellSecondsMean)
		for _, task := range Tasks() {
			ts, ok := d.Tasks[task]
			if !ok {
				continue
			}
			if ts.Reporting == 0 {
				fmt.Fprintf(ew, "%-8s withheld (too few people)\n", task)
				continue
			}
			withheld := ""
			if ts.Withheld > 0 {
				withheld = fmt.Sprintf("  (withheld by %d device(s))", ts.Withheld)
			}
			fmt.Fprintf(ew, "%-8s people by most likely label: %s%s\n", task, peopleShares(ts.Counts, ts.Share), withheld)
			fmt.Fprintf(ew, "%-8s mean probability:           %s\n", "", massShares(ts.Share))
		}
		tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tWINDOW\tENDED\tPEOPLE NOW\tPEOPLE SEEN\tFRAMES\tDROPPED\tCORRUPT\tSOURCE DOWN s\tDETECT p95 ms\tCLASSIFY p95 ms/face")
		for _, s := range d.Devices {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.1f\t%.1f\n",
				s.Device, s.Window, s.End.Format(time.TimeOnly), s.PeopleNow, s.PeopleSeen,
				s.Frames.Processed, s.Frames.Dropped, s.Frames.Corrupt, s.SourceDownSeconds,
				s.LatencyMS.Detect.P95, s.LatencyMS.ClassifyPerFace.P95)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return ew.err
}

// peopleShares is "female 2 (33%), male 4 (67%)": people counted under their
// most likely label and their share of the people classified. Labels without
// people but with probability mass are listed with 0, so that every label
// shows.
func peopleShares(counts map[string]int, mass map[string]float64) string {
	labels := map[string]bool{}
	total := 0
	for l, c := range counts {
		labels[l] = true
		total += c
	}
	for l := range mass {
		labels[l] = true
	}
	var parts []string
	for _, l := range slices.Sorted(maps.Keys(labels)) {
		c := counts[l]
		if total == 0 {
			parts = append(parts, fmt.Sprintf("%s %d", l, c))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d (%.0f%%)", l, c, 100*float64(c)/float64(total)))
	}
	return strings.Join(parts, ", ")
}

// massShares is "female 31.2%, male 68.8%": the expected share of each label.
func massShares(share map[string]float64) string {
	var parts []string
	for _, l := range slices.Sorted(maps.Keys(share)) {
		parts = append(parts, fmt.Sprintf("%s %.1f%%", l, share[l]))
	}
	return strings.Join(parts, ", ")
}

// errWriter remembers the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
