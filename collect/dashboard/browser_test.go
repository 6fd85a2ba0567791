package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/edge-sensor/edge/collect"
	"github.com/edge-sensor/edge/collect/pgtest"
	"github.com/edge-sensor/edge/internal/browsertest"
	"github.com/edge-sensor/edge/internal/localhttp"
)

// minGroup is the k of the fleet in this test, on the devices and in the roll-ups.
const minGroup = 5

// TestBrowserRealData fills a real PostgreSQL through the collector's store
// with two days of a small plant's windows, lets the collector's roll-ups
// run, serves the dashboard under the local page rules, and renders it in
// headless Chromium: it checks what the page shows against the database and
// saves screenshots (run with -artifacts -outputdir DIR to keep them).
func TestBrowserRealData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and Chromium")
	}
	bin := browsertest.Require(t)
	pg := pgtest.Start(t, pgtest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	store, err := collect.Open(ctx, pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	now := time.Now().UTC()
	end := now.Truncate(time.Hour).Add(time.Hour)
	start := end.Add(-48 * time.Hour)
	windows := plant(start, now)
	for i := 0; i < len(windows); i += 2000 {
		if _, err := store.Write(ctx, windows[i:min(i+2000, len(windows))], nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.RefreshRollups(ctx, minGroup); err != nil {
		t.Fatal(err)
	}
	// The page shows a breakdown missing from an hour that ended less than
	// a quarter of an hour ago as not complete yet, not as withheld.
	var hours, withheld int
	if err := store.Pool().QueryRow(ctx, `SELECT count(*),
  count(*) FILTER (WHERE age IS NULL AND hour + interval '75 minutes' <= $3) + count(*) FILTER (WHERE gender IS NULL AND hour + interval '75 minutes' <= $3)
FROM edge_dept_hourly WHERE hour >= $1 AND hour < $2`, start, end, now).Scan(&hours, &withheld); err != nil {
		t.Fatal(err)
	}
	// Coverage over the complete cells: the people in the age and gender
	// breakdowns, of those the long windows saw (once per task).
	var covered, seen int
	if err := store.Pool().QueryRow(ctx, `SELECT
  COALESCE(sum((coverage->'age'->>'people')::int) FILTER (WHERE NOT (age IS NULL AND hour + interval '75 minutes' > $3)), 0) +
  COALESCE(sum((coverage->'gender'->>'people')::int) FILTER (WHERE NOT (gender IS NULL AND hour + interval '75 minutes' > $3)), 0),
  COALESCE(sum(hour_people) FILTER (WHERE NOT (age IS NULL AND hour + interval '75 minutes' > $3)), 0) +
  COALESCE(sum(hour_people) FILTER (WHERE NOT (gender IS NULL AND hour + interval '75 minutes' > $3)), 0)
FROM edge_dept_hourly WHERE hour >= $1 AND hour < $2`, start, end, now).Scan(&covered, &seen); err != nil {
		t.Fatal(err)
	}
	t.Logf("stored %d windows; %d department-hours, %d age or gender breakdowns withheld; breakdowns cover %d of %d people",
		len(windows), hours, withheld, covered, seen)

	rules := localhttp.Rules{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rules.Server(New(NewPostgres(store.Pool()), WithClock(func() time.Time { return now })))
	go srv.Serve(rules.Listener(ln))
	defer srv.Close()
	base := "http://" + ln.Addr().String() + "/"

	b, err := browsertest.Start(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			t.Logf("closing chromium: %v\n%s", err, b.Stderr())
		}
	}()
	session, err := b.OpenPage("about:blank")
	if err != nil {
		t.Fatalf("open page: %v\n%s", err, b.Stderr())
	}
	shots := t.ArtifactDir()

	// Two days hour by hour.
	st := show(ctx, t, b, session, fmt.Sprintf("%s?from=%s&to=%s", base, start.Format(time.RFC3339), end.Format(time.RFC3339)))
	if st.Cells != hours || st.Withheld != withheld || st.Departments != 3 {
		t.Errorf("page shows %d cells of %d departments, %d withheld; the database has %d department-hours of 3, %d withheld",
			st.Cells, st.Departments, st.Withheld, hours, withheld)
	}
	if st.Covered != covered || st.Seen != seen || covered == 0 || covered >= seen {
		t.Errorf("page: breakdowns cover %d of %d people; the database: %d of %d (want some but not all)", st.Covered, st.Seen, covered, seen)
	}
	// Two headcount charts and age and gender for each department.
	if st.Charts != 2+3*2 || st.Canvases != st.Charts {
		t.Errorf("%d charts, %d canvases; want 8 drawn", st.Charts, st.Canvases)
	}
	if st.Devices != 4 || st.Stale != 1 {
		t.Errorf("device table: %d rows, %d stale; want 4 and the stopped packing camera", st.Devices, st.Stale)
	}
	if st.Withheld == 0 || st.Reported == 0 {
		t.Errorf("want both withheld and reported breakdowns on the page (packing is small, assembly is not): %+v", st)
	}
	screenshot(t, b, session, filepath.Join(shots, "dashboard-48h-hourly.png"))

	// The picker's presets: beyond 7 days the page goes day by day.
	st = show(ctx, t, b, session, base+"?range=30d")
	if st.Cells == 0 || st.Step != "day" {
		t.Errorf("30 days: %+v, want daily cells", st)
	}
	screenshot(t, b, session, filepath.Join(shots, "dashboard-30d-daily.png"))

	// A range with nothing in it says so rather than drawing empty axes.
	st = show(ctx, t, b, session, base+"?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z")
	if st.Cells != 0 || st.Status != "No data in this range." {
		t.Errorf("empty range: %+v", st)
	}
}

// pageState is what the probe reads from the page.
type pageState struct {
	Old                                  bool
	State, Status, Step                  string
	Cells, Departments, Withheld, Charts int
	Canvases, Devices, Stale, Reported   int
	Covered, Seen                        int
}

const probe = `JSON.stringify({
	Old: window.oldPage === true,
	State: document.body?.dataset.state ?? "",
	Status: document.getElementById("status")?.textContent ?? "",
	Step: document.querySelector(".step-name")?.textContent ?? "",
	Cells: +(document.body?.dataset.cells ?? 0),
	Departments: +(document.body?.dataset.departments ?? 0),
	Withheld: +(document.body?.dataset.withheld ?? 0),
	Charts: +(document.body?.dataset.charts ?? 0),
	Canvases: document.querySelectorAll("canvas").length,
	Devices: document.querySelectorAll("#devices tbody tr[data-device]").length,
	Stale: document.querySelectorAll("#devices tbody tr.stale").length,
	Reported: [...document.querySelectorAll(".task")].reduce((n, e) => n + +e.dataset.reported, 0),
	Covered: [...document.querySelectorAll(".task")].reduce((n, e) => n + +e.dataset.covered, 0),
	Seen: [...document.querySelectorAll(".task")].reduce((n, e) => n + +e.dataset.seen, 0)})`

// show navigates to url and waits until the page has drawn its data.
func show(ctx context.Context, t *testing.T, b *browsertest.Browser, session, url string) pageState {
	t.Helper()
	// The mark is gone once the new document replaced the old one.
	if _, err := b.Eval(session, "window.oldPage = true; location.href = "+strconv.Quote(url)+"; ''"); err != nil {
		t.Fatalf("navigate: %v\n%s", err, b.Stderr())
	}
	var st pageState
	for {
		raw, err := b.Eval(session, probe)
		if err == nil {
			err = json.Unmarshal([]byte(raw), &st)
		}
		// During navigation the old page may still answer: wait for a
		// state the new one set.
		if err == nil && !st.Old && (st.State == "ready" || st.State == "error") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("page %s never got ready: %+v (%v)", url, st, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if st.State != "ready" {
		t.Fatalf("page %s: %s", url, st.Status)
	}
	t.Logf("%s: %s", url, st.Status)
	return st
}

func screenshot(t *testing.T, b *browsertest.Browser, session, path string) {
	t.Helper()
	if err := b.Screenshot(session, path); err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", path)
}

// plant generates the windows of a small plant from start until now, with
// a fixed seed: assembly (two cameras, two shifts, about 15 people an hour
// each), a canteen (one camera, lunch and dinner peaks) and packing (one
// camera, a few people an hour, stopped three hours ago after losing
// windows). People arrive as a Poisson process, stay a few minutes, and get
// an age group and gender from a workforce-like mix. Each device applies
// the minimum-group rule as edge does: to its one-minute windows, and to its
// hour windows over everyone of the hour.
func plant(start, now time.Time) []collect.Window {
	type device struct {
		name, dept string
		rate       func(hour int) float64 // arrivals per hour at this hour of the day
		stay       int                    // mean minutes in view
		stopAt     time.Time
	}
	shifts := func(peak float64) func(int) float64 {
		return func(h int) float64 {
			switch {
			case h >= 6 && h < 22:
				return peak * (0.7 + 0.3*math.Sin(float64(h-6)/16*math.Pi))
			default:
				return peak * 0.1
			}
		}
	}
	meals := func(h int) float64 {
		return 4 + 90*math.Exp(-math.Pow(float64(h)-12.2, 2)/1.2) + 50*math.Exp(-math.Pow(float64(h)-18.5, 2)/1.0)
	}
	devices := []device{
		{"cam-a1", "assembly", shifts(16), 6, time.Time{}},
		{"cam-a2", "assembly", shifts(14), 6, time.Time{}},
		{"cam-c1", "canteen", meals, 18, time.Time{}},
		{"cam-p1", "packing", shifts(4), 4, now.Add(-3 * time.Hour)},
	}
	ages := []struct {
		label string
		p     float64
	}{{"0-19", 0.03}, {"20-39", 0.49}, {"40-59", 0.38}, {"60-79", 0.10}}
	rng := rand.New(rand.NewPCG(18, 2))
	type person struct {
		from, to    int // minutes since start, [from, to)
		age, gender string
	}
	var out []collect.Window
	minutes := int(now.Sub(start) / time.Minute)
	for _, d := range devices {
		var people []person
		for m := 0; m < minutes; m++ {
			at := start.Add(time.Duration(m) * time.Minute)
			for range poisson(rng, d.rate(at.Hour())/60) {
				p := person{from: m, to: m + 1 + int(rng.ExpFloat64()*float64(d.stay))}
				u := rng.Float64()
				for _, a := range ages {
					p.age = a.label
					if u -= a.p; u < 0 {
						break
					}
				}
				p.gender = "male"
				if rng.Float64() < 0.42 {
					p.gender = "female"
				}
				people = append(people, p)
			}
		}
		last := minutes
		if !d.stopAt.IsZero() {
			last = int(d.stopAt.Sub(start) / time.Minute)
		}
		var lost int64
		for m := 0; m < last; m++ {
			var in []person
			now := 0
			for _, p := range people {
				if p.from <= m && p.to > m {
					in = append(in, p)
					if p.to > m+1 {
						now++
					}
				}
			}
			w := window(d.name, d.dept, collect.KindWindow, int64(m+1), start.Add(time.Duration(m)*time.Minute), time.Minute, in2labels(in, func(p person) (string, string) { return p.age, p.gender }))
			w.PeopleNow = now
			if d.name == "cam-p1" && m > last-120 && m%17 == 0 {
				w.WindowsLost, lost = 1, lost+1 // a flaky link before it stopped
			}
			if d.name == "cam-a2" && m%(24*60) >= 200 && m%(24*60) < 212 {
				w.SourceDownSeconds = 60 // a camera unplugged for twelve minutes a day
			}
			out = append(out, w)
		}
		for h := 0; h*60 < last; h++ {
			var in []person
			for _, p := range people {
				if p.from < (h+1)*60 && p.to > h*60 && p.from < last {
					in = append(in, p)
				}
			}
			length := time.Duration(min(60, last-h*60)) * time.Minute
			out = append(out, window(d.name, d.dept, collect.KindHour, int64(h+1), start.Add(time.Duration(h)*time.Hour), length,
				in2labels(in, func(p person) (string, string) { return p.age, p.gender })))
		}
	}
	return out
}

// in2labels lists the age and gender of each person.
func in2labels[P any](ps []P, f func(P) (string, string)) [][2]string {
	out := make([][2]string, len(ps))
	for i, p := range ps {
		out[i][0], out[i][1] = f(p)
	}
	return out
}

// window builds one published window of people (age, gender), withholding
// each task as a device does: unless every count is 0 or at least minGroup.
func window(device, dept, kind string, id int64, start time.Time, length time.Duration, people [][2]string) collect.Window {
	w := collect.Window{Device: device, Kind: kind, WindowID: id, Department: dept, StartAt: start, EndAt: start.Add(length),
		PeopleSeen: len(people), Counts: map[string]map[string]int{}, Mass: map[string]map[string]float64{},
		Withheld: []string{}, FramesProcessed: int64(length / time.Second * 10), PayloadSchema: 1}
	for ti, task := range []string{"age", "gender"} {
		if len(people) == 0 {
			continue
		}
		counts := map[string]int{}
		for _, p := range people {
			counts[p[ti]]++
		}
		ok := len(people) >= minGroup
		for _, n := range counts {
			ok = ok && n >= minGroup
		}
		if !ok {
			w.Withheld = append(w.Withheld, task)
			continue
		}
		w.Counts[task] = counts
		w.Mass[task] = map[string]float64{}
		for l, n := range counts {
			w.Mass[task][l] = float64(n) / float64(len(people))
		}
	}
	return w
}

// poisson draws from a Poisson distribution of mean lambda (Knuth; lambda is small here).
func poisson(rng *rand.Rand, lambda float64) int {
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
