package pipeline

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edge-sensor/edge/mqtt"
)

// TestBreakdownCoverage simulates departments of a plant and measures how
// often the history gets an age or gender breakdown under the minimum-group
// rule (k = 5, edge's default) with 60-second windows alone, with the hourly
// long window, and with the hourly windows of three cameras summed the way
// the collector's roll-ups do (the cameras that published the task; how many
// of the department's classified people that sum covers is measured too). The windows come from the real Aggregator and
// LongWindow; only the people are simulated:
//
//   - arrivals per department are a Poisson process whose rate follows the
//     day: two shifts from 06:00 to 22:00 (a gentle hump, mean = the
//     department's nominal people per hour), a tenth of that at night;
//   - each person stays in view 1 + Exp(2) minutes, and 10 % are never
//     classified (too small, turned away);
//   - labels are drawn from the UTKFace val set's age groups and genders
//     (../shared/data/utkface/val.tar.gz), either all of it or only its
//     working ages (18 to 65);
//   - three cameras: each person passes one of them, chosen at random.
//
// The table it prints is the one in README.md ("Breakdowns at typical
// traffic"); rerun it with
//
//	go test ./pipeline/ -run TestBreakdownCoverage -v
func TestBreakdownCoverage(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates 8 weeks of 6 departments")
	}
	mixes := utkfaceMixes(t)
	const (
		k       = 5
		days    = 56
		cameras = 3
	)
	type row struct {
		perHour float64
		mix     string
	}
	var rows []row
	for _, m := range []string{"UTKFace val", "UTKFace val, ages 18-65"} {
		for _, r := range []float64{5, 20, 100} {
			rows = append(rows, row{r, m})
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "| people/hour | label mix | task | 60 s windows: hours with a breakdown | 60 s windows: people in a published one | hourly window, 1 camera | hourly windows, %d cameras summed | %d cameras summed: people in it |\n", cameras, cameras)
	fmt.Fprintf(&out, "|---:|---|---|---:|---:|---:|---:|---:|\n")
	results := map[string]map[string]coverage{}
	for i, r := range rows {
		rng := rand.New(rand.NewPCG(18, uint64(i)))
		cov := simulateCoverage(t, rng, mixes[r.mix], r.perHour, days, cameras, k)
		results[fmt.Sprint(r.perHour, r.mix)] = cov
		for _, task := range []string{mqtt.TaskAge, mqtt.TaskGender} {
			c := cov[task]
			fmt.Fprintf(&out, "| %.0f | %s | %s | %s | %s | %s | %s | %s |\n", r.perHour, r.mix, task,
				pct(c.shortHours, c.hours), pct(c.shortPeople, c.people), pct(c.hourly, c.hours), pct(c.summed, c.hours),
				pct(c.summedPeople, c.camPeople))
			t.Logf("%.0f people/hour, %s, %s: %d cameras summed under the former rule (withheld when any camera withheld): %s of hours",
				r.perHour, r.mix, task, cameras, pct(c.summedStrict, c.hours))
		}
	}
	t.Logf("%d days, k = %d, department-hours from 06:00 to 22:00 with someone classified counted:\n%s", days, k, out.String())

	// Summing the cameras that published can only add department-hours
	// over withholding the sum when any camera withheld.
	for key, cov := range results {
		for task, c := range cov {
			if c.summed < c.summedStrict || c.summedPeople > c.camPeople {
				t.Errorf("%s, %s: summed in %d hours covering %d of %d people, former rule %d hours", key, task, c.summed, c.summedPeople, c.camPeople, c.summedStrict)
			}
		}
	}

	// What the design rests on, at typical traffic: the hourly window gives
	// gender breakdowns in more department-hours than the 60 s windows do.
	for _, perHour := range []float64{20, 100} {
		c := results[fmt.Sprint(perHour, "UTKFace val, ages 18-65")][mqtt.TaskGender]
		if c.hourly <= c.shortHours {
			t.Errorf("%.0f people/hour, gender: hourly window in %s of hours, 60 s windows in %s: the long window does not help",
				perHour, pct(c.hourly, c.hours), pct(c.shortHours, c.hours))
		}
	}
}

// coverage counts, for one task, department-hours of the working day
// (06:00 to 22:00) with someone classified and those that got a breakdown
// each way, and the classified
// person-windows of the 60 s windows and those published.
type coverage struct {
	hours, shortHours, hourly, summed int
	people, shortPeople               int
	// summedStrict counts the hours the former roll-up rule (withheld when
	// any camera withheld) gave a breakdown; summedPeople are the
	// classified people in the summed breakdowns, camPeople those in the
	// cameras' hour windows.
	summedStrict, summedPeople, camPeople int
}

func pct(n, of int) string {
	if of == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*float64(n)/float64(of))
}

// labelMix is a distribution over (age group, gender) pairs.
type labelMix struct {
	age, gender []int // label indices, one pair per val image
}

func (m labelMix) draw(rng *rand.Rand) (age, gender int) {
	i := rng.IntN(len(m.age))
	return m.age[i], m.gender[i]
}

// utkfaceMixes reads the ages and genders of the UTKFace val set from its
// file names ([age]_[gender]_[race]_…; gender 0 is male).
func utkfaceMixes(t *testing.T) map[string]labelMix {
	t.Helper()
	path := filepath.Join("..", "..", "shared", "data", "utkface", "val.tar.gz")
	f, err := os.Open(path)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: %v", err)
		}
		t.Skipf("UTKFace val set not found (%v): skipping the coverage simulation", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	all, working := labelMix{}, labelMix{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(strings.SplitN(filepath.Base(h.Name), ".", 2)[0], "_")
		if len(parts) < 3 {
			continue
		}
		age, err1 := strconv.Atoi(parts[0])
		g, err2 := strconv.Atoi(parts[1])
		if err1 != nil || err2 != nil || g < 0 || g > 1 {
			continue
		}
		group := min(age/20, len(ageLabels)-1)
		gender := slices.Index(genderLabels, "male")
		if g == 1 {
			gender = slices.Index(genderLabels, "female")
		}
		all.age, all.gender = append(all.age, group), append(all.gender, gender)
		if age >= 18 && age <= 65 {
			working.age, working.gender = append(working.age, group), append(working.gender, gender)
		}
	}
	if len(all.age) < 1000 {
		t.Fatalf("%s: only %d labelled images", path, len(all.age))
	}
	for name, m := range map[string]labelMix{"all": all, "18-65": working} {
		counts := make([]int, len(ageLabels))
		females := 0
		for i := range m.age {
			counts[m.age[i]]++
			if genderLabels[m.gender[i]] == "female" {
				females++
			}
		}
		t.Logf("UTKFace val (%s): %d faces, age groups %v = %v, female %s", name, len(m.age), ageLabels, counts, pct(females, len(m.age)))
	}
	return map[string]labelMix{"UTKFace val": all, "UTKFace val, ages 18-65": working}
}

// dayShape is the arrival rate at each hour of the day relative to the
// department's nominal rate: a hump over two shifts (06:00 to 22:00) whose
// mean is 1, and 0.1 at night.
func dayShape() [24]float64 {
	var s [24]float64
	sum := 0.0
	for h := 6; h < 22; h++ {
		s[h] = 0.7 + 0.3*math.Sin(float64(h-6)/16*math.Pi)
		sum += s[h]
	}
	for h := range s {
		if h >= 6 && h < 22 {
			s[h] *= 16 / sum
		} else {
			s[h] = 0.1
		}
	}
	return s
}

// simulateCoverage runs days of one department through one camera (60 s
// windows and the hourly window) and through cameras cameras (hourly
// windows summed as the roll-ups do), returning the coverage per task.
func simulateCoverage(t *testing.T, rng *rand.Rand, mix labelMix, perHour float64, days, cameras, k int) map[string]coverage {
	t.Helper()
	tasks := testTasks(mqtt.TaskAge, mqtt.TaskGender)
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	minutes := days * 24 * 60
	shape := dayShape()

	// present[c][m] are the people camera c has in view in minute m; the
	// single camera (index cameras) sees everyone.
	present := make([][][]*Person, cameras+1)
	for c := range present {
		present[c] = make([][]*Person, minutes)
	}
	var id uint64
	for m := range minutes {
		lambda := perHour * shape[(m/60)%24] / 60
		for range poissonDraw(rng, lambda) {
			id++
			stay := 1 + int(rng.ExpFloat64()*2)
			age, gender := mix.draw(rng)
			samples := 5
			if rng.Float64() < 0.1 {
				samples = 1 // never classified often enough
			}
			p := person(id, samples, 0, 0, tasks, age, gender)
			p.FirstSeen = start.Add(time.Duration(m) * time.Minute)
			p.LastSeen = p.FirstSeen.Add(time.Duration(stay) * time.Minute)
			cam := rng.IntN(cameras)
			for mm := m; mm < min(m+stay, minutes); mm++ {
				present[cameras][mm] = append(present[cameras][mm], p)
				present[cam][mm] = append(present[cam][mm], p)
			}
		}
	}

	hours := minutes / 60
	type hourCell struct {
		classified  bool               // someone was classified in the hour (one camera)
		shortAny    map[string]bool    // some 60 s window published the task
		classifiedW int                // classified person-windows
		shortPeople map[string]int     // of which in windows that published the task
		hourly      map[string]bool    // the one camera's hour window published it
		camCounts   []map[string][]int // per camera: published counts, nil if not
		camWithheld []map[string]bool  // per camera: withheld
		camPeople   int                // classified people in the cameras' hour windows
	}
	cells := make([]hourCell, hours)
	for h := range cells {
		cells[h] = hourCell{shortAny: map[string]bool{}, shortPeople: map[string]int{}, hourly: map[string]bool{},
			camCounts: make([]map[string][]int, cameras), camWithheld: make([]map[string]bool, cameras)}
	}
	for c := 0; c <= cameras; c++ {
		cfg := AggregatorConfig{Interval: time.Minute, MinGroup: k, MinSamples: 3}
		short, err := NewAggregator(cfg, tasks, start)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Interval = time.Hour
		long, err := NewLongWindow(cfg, tasks, start)
		if err != nil {
			t.Fatal(err)
		}
		for m := range minutes {
			r := &LabelResult{Active: present[c][m]}
			long.AddFrame(0, r)
			end := start.Add(time.Duration(m+1) * time.Minute)
			if c == cameras {
				short.AddFrame(0, r)
				s := short.Close(end, Counters{})
				cl := s.PeopleSeen - s.Unclassified
				cell := &cells[m/60]
				cell.classifiedW += cl
				cell.classified = cell.classified || cl > 0
				for _, task := range []string{mqtt.TaskAge, mqtt.TaskGender} {
					if s.Breakdown(task) != nil {
						cell.shortAny[task] = true
						cell.shortPeople[task] += cl
					}
				}
			}
			ls, ok := long.ShortClosed(end, Counters{})
			if !ok {
				continue
			}
			h := int(ls.Start.Sub(start) / time.Hour)
			if c < cameras {
				cells[h].camPeople += ls.PeopleSeen - ls.Unclassified
			}
			for ti, task := range []string{mqtt.TaskAge, mqtt.TaskGender} {
				b := ls.Breakdown(task)
				if c == cameras {
					cells[h].hourly[task] = b != nil
					continue
				}
				if cells[h].camWithheld[c] == nil {
					cells[h].camWithheld[c], cells[h].camCounts[c] = map[string]bool{}, map[string][]int{}
				}
				cells[h].camWithheld[c][task] = ls.IsWithheld(task)
				if b != nil {
					counts := make([]int, len(tasks[ti].Labels))
					for li, l := range tasks[ti].Labels {
						counts[li] = b.Counts[l]
					}
					cells[h].camCounts[c][task] = counts
				}
			}
		}
	}

	out := map[string]coverage{}
	for _, task := range []string{mqtt.TaskAge, mqtt.TaskGender} {
		var cv coverage
		for h, cell := range cells {
			// The working day, where the nominal traffic applies: at night
			// (a tenth of it) hardly any hour can publish anything.
			if hod := h % 24; hod < 6 || hod >= 22 || !cell.classified {
				continue
			}
			cv.hours++
			cv.people += cell.classifiedW
			cv.shortPeople += cell.shortPeople[task]
			if cell.shortAny[task] {
				cv.shortHours++
			}
			if cell.hourly[task] {
				cv.hourly++
			}
			cv.camPeople += cell.camPeople
			if n, ok := summedBreakdown(cell.camCounts, cell.camWithheld, task, k, false); ok {
				cv.summed++
				cv.summedPeople += n
			}
			if _, ok := summedBreakdown(cell.camCounts, cell.camWithheld, task, k, true); ok {
				cv.summedStrict++
			}
		}
		out[task] = cv
	}
	return out
}

// summedBreakdown applies the roll-up rule (collect's edge_dept_hourly) to
// the cameras' hour windows: the department's breakdown sums the cameras
// that published the task and is withheld when a summed label count is 1 to
// k-1; it exists when some camera published counts. It returns the people in
// it. strict applies the former rule instead: withheld when any camera
// withheld the task.
func summedBreakdown(counts []map[string][]int, withheld []map[string]bool, task string, k int, strict bool) (int, bool) {
	var sum []int
	for c := range counts {
		if strict && withheld[c] != nil && withheld[c][task] {
			return 0, false
		}
		if counts[c] == nil || counts[c][task] == nil {
			continue
		}
		if sum == nil {
			sum = make([]int, len(counts[c][task]))
		}
		for i, n := range counts[c][task] {
			sum[i] += n
		}
	}
	if sum == nil {
		return 0, false
	}
	people := 0
	for _, n := range sum {
		if n > 0 && n < k {
			return 0, false
		}
		people += n
	}
	return people, true
}

// poissonDraw draws from a Poisson distribution of mean lambda (Knuth's
// method: lambda is at most a few per minute here).
func poissonDraw(rng *rand.Rand, lambda float64) int {
	l, n, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return n
		}
		n++
	}
}
