package collect

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-sensor/edge/collect/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

func openStore(t *testing.T, pg *pgtest.Server) (*Store, string) {
	t.Helper()
	url := pg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, url
}

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// win is a short window of device in dept starting i minutes after t0.
func win(dept, device string, i int, now, seen int) Window {
	return Window{Device: device, Kind: KindWindow, WindowID: int64(i + 1), Department: dept,
		StartAt: t0.Add(time.Duration(i) * time.Minute), EndAt: t0.Add(time.Duration(i+1) * time.Minute),
		PeopleNow: now, PeopleSeen: seen, Counts: map[string]map[string]int{}, Mass: map[string]map[string]float64{},
		Withheld: []string{"age", "gender"}, FramesProcessed: 900, PayloadSchema: 1}
}

// hourWin is a long window of device in dept for hour h after t0 with the
// given age and gender counts (nil: withheld).
func hourWin(dept, device string, h int, age, gender map[string]int) Window {
	w := Window{Device: device, Kind: KindHour, WindowID: int64(h + 1), Department: dept,
		StartAt: t0.Add(time.Duration(h) * time.Hour), EndAt: t0.Add(time.Duration(h+1) * time.Hour),
		Counts: map[string]map[string]int{}, Mass: map[string]map[string]float64{}, Withheld: []string{}, PayloadSchema: 1}
	for task, c := range map[string]map[string]int{"age": age, "gender": gender} {
		if c == nil {
			w.Withheld = append(w.Withheld, task)
			continue
		}
		w.Counts[task] = c
		w.Mass[task] = map[string]float64{}
	}
	return w
}

func count(t *testing.T, db *pgxpool.Pool, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestStore(t *testing.T) {
	pg := pgtest.Start(t, pgtest.Options{})
	ctx := context.Background()

	t.Run("migrations are versioned and idempotent", func(t *testing.T) {
		s, url := openStore(t, pg)
		if got := count(t, s.Pool(), "SELECT max(version) FROM edge_schema_migrations"); got != SchemaVersion() {
			t.Fatalf("schema version %d, want %d", got, SchemaVersion())
		}
		s2, err := Open(ctx, url) // a second collector starting: nothing to apply
		if err != nil {
			t.Fatal(err)
		}
		s2.Close()
		if got := count(t, s.Pool(), "SELECT count(*) FROM edge_schema_migrations"); got != SchemaVersion() {
			t.Fatalf("%d migration rows after a second open, want %d", got, SchemaVersion())
		}
		if _, err := s.Pool().Exec(ctx, "INSERT INTO edge_schema_migrations (version) VALUES ($1)", SchemaVersion()+1); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctx, url); err == nil || !strings.Contains(err.Error(), "newer than this collector") {
			t.Fatalf("open of a newer schema: err = %v, want a 'newer than this collector' error", err)
		}
	})

	t.Run("migration 2 recomputes the roll-ups of a version 1 database", func(t *testing.T) {
		s, url := openStore(t, pg)
		ws := []Window{win("assembly", "cam-1", 0, 1, 2),
			hourWin("assembly", "cam-1", 0, nil, map[string]int{"female": 5, "male": 6}),
			hourWin("assembly", "cam-2", 0, nil, nil)}
		ws[1].PeopleSeen, ws[2].PeopleSeen = 13, 4
		if _, err := s.Write(ctx, ws, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RefreshRollups(ctx, 5); err != nil {
			t.Fatal(err)
		}
		// Back to version 1: its roll-ups had no coverage, and cam-2's
		// withheld gender withheld the department's.
		if _, err := s.Pool().Exec(ctx, `UPDATE edge_dept_hourly SET gender = NULL;
ALTER TABLE edge_dept_hourly DROP COLUMN hour_people, DROP COLUMN coverage;
ALTER TABLE edge_dept_daily DROP COLUMN hour_people, DROP COLUMN coverage;
DELETE FROM edge_schema_migrations WHERE version = 2`); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if n, err := s2.RefreshRollups(ctx, 5); err != nil || n != 1 {
			t.Fatalf("refresh after migrating: %d cells, %v; want the 1 existing cell", n, err)
		}
		var gender map[string]int
		var people int
		var cov map[string]map[string]int
		if err := s2.Pool().QueryRow(ctx, "SELECT gender, hour_people, coverage FROM edge_dept_hourly").Scan(&gender, &people, &cov); err != nil {
			t.Fatal(err)
		}
		want := `map[female:5 male:6] 17 map[age:map[people:0 published:0 withheld:2] gender:map[people:11 published:1 withheld:1]]`
		if got := fmt.Sprint(gender, " ", people, " ", cov); got != want {
			t.Errorf("after migration 2:\n got %s\nwant %s", got, want)
		}
	})

	t.Run("bad URL does not echo the password", func(t *testing.T) {
		_, err := Open(ctx, "postgres://edge:s3cret@[::1")
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("err = %v, want an error without the password", err)
		}
	})

	t.Run("writes are idempotent", func(t *testing.T) {
		s, _ := openStore(t, pg)
		batch := []Window{win("assembly", "cam-1", 0, 1, 2), win("assembly", "cam-1", 1, 1, 2), win("assembly", "cam-2", 0, 0, 0)}
		res, err := s.Write(ctx, batch, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.InsertedTotal() != 3 || res.Duplicates != 0 {
			t.Fatalf("first write: %+v, want 3 inserted", res)
		}
		// A redelivery of one, a new one and the same key twice in one batch.
		again := []Window{batch[1], win("assembly", "cam-1", 2, 0, 1), win("assembly", "cam-1", 2, 0, 1)}
		res, err = s.Write(ctx, again, []Raw{{Topic: "edge/a/b/stats", Payload: []byte("{"), Reason: ReasonUndecodable}})
		if err != nil {
			t.Fatal(err)
		}
		if res.InsertedTotal() != 1 || res.Duplicates != 2 || res.Raw != 1 {
			t.Fatalf("second write: %+v, want 1 inserted, 2 duplicates, 1 raw", res)
		}
		if got := count(t, s.Pool(), "SELECT count(*) FROM edge_windows"); got != 4 {
			t.Fatalf("%d rows, want 4", got)
		}
		var withheld []string
		var counts map[string]any
		if err := s.Pool().QueryRow(ctx, "SELECT withheld, counts FROM edge_windows WHERE device='cam-1' AND window_id=1").Scan(&withheld, &counts); err != nil {
			t.Fatal(err)
		}
		if strings.Join(withheld, ",") != "age,gender" || len(counts) != 0 {
			t.Fatalf("withheld %v counts %v", withheld, counts)
		}
	})

	t.Run("concurrent writers store each window once", func(t *testing.T) {
		s, _ := openStore(t, pg)
		// Four writers each write all 400 windows of 20 devices in their own
		// order and batch sizes, as collectors sharing a redelivered backlog.
		var all []Window
		for d := range 20 {
			for i := range 20 {
				all = append(all, win(fmt.Sprintf("dept-%d", d%3), fmt.Sprintf("cam-%d", d), i, 1, 1))
			}
		}
		var wg sync.WaitGroup
		inserted := make([]int, 4)
		errs := make([]error, 4)
		for wr := range 4 {
			wg.Go(func() {
				size := 7 + wr*11
				for i := 0; i < len(all); i += size {
					lo := (i + wr*97) % len(all)
					hi := min(lo+size, len(all))
					res, err := s.Write(ctx, all[lo:hi], nil)
					if err != nil {
						errs[wr] = err
						return
					}
					inserted[wr] += res.InsertedTotal()
				}
				// Whatever this writer skipped, write it all at the end.
				res, err := s.Write(ctx, all, nil)
				if err != nil {
					errs[wr] = err
					return
				}
				inserted[wr] += res.InsertedTotal()
			})
		}
		wg.Wait()
		total := 0
		for wr := range 4 {
			if errs[wr] != nil {
				t.Fatalf("writer %d: %v", wr, errs[wr])
			}
			total += inserted[wr]
		}
		if total != len(all) {
			t.Fatalf("writers inserted %d rows in all, want %d", total, len(all))
		}
		if got := count(t, s.Pool(), "SELECT count(*) FROM edge_windows"); got != len(all) {
			t.Fatalf("%d rows, want %d", got, len(all))
		}
	})

	t.Run("roll-ups", func(t *testing.T) {
		s, _ := openStore(t, pg)
		var ws []Window
		// Hour 0: two devices, 60 windows each; cam-1 sees 2 people a
		// minute, cam-2 3; both have 1 person in view at minute 10 and cam-2
		// 4 at minute 30. Hour windows: enough people for age and gender.
		for i := range 60 {
			a, b := win("assembly", "cam-1", i, 0, 2), win("assembly", "cam-2", i, 0, 3)
			a.SourceDownSeconds, b.WindowsLost = 1, 0
			if i == 10 {
				a.PeopleNow, b.PeopleNow = 1, 1
			}
			if i == 30 {
				b.PeopleNow = 4
			}
			if i == 59 {
				b.WindowsLost = 2
			}
			ws = append(ws, a, b)
		}
		hours := []Window{
			hourWin("assembly", "cam-1", 0, map[string]int{"20-39": 6, "40-59": 0}, map[string]int{"female": 5, "male": 5}),
			hourWin("assembly", "cam-2", 0, map[string]int{"20-39": 5, "40-59": 5}, map[string]int{"female": 5, "male": 7}),
			// Hour 1: cam-2 withholds gender, so the department's gender
			// is cam-1's alone; summed age has a cell of 2 + 1 = 3 < 5
			// (only possible with devices running a smaller k).
			hourWin("assembly", "cam-1", 1, map[string]int{"20-39": 9, "60-79": 2}, map[string]int{"female": 6, "male": 5}),
			hourWin("assembly", "cam-2", 1, map[string]int{"20-39": 5, "60-79": 1}, nil),
			// Another department, a single device.
			hourWin("canteen", "cam-9", 0, map[string]int{"20-39": 12}, map[string]int{"female": 6, "male": 6}),
		}
		// People in the long windows, some never classified.
		for i, n := range []int{12, 13, 11, 8, 12} {
			hours[i].PeopleSeen = n
		}
		ws = append(ws, hours...)
		if _, err := s.Write(ctx, ws, nil); err != nil {
			t.Fatal(err)
		}
		n, err := s.RefreshRollups(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Fatalf("refreshed %d department-hours, want 3", n)
		}
		type hourly struct {
			Devices, Windows, PeopleNowPeak int
			PeopleSeen, WindowsLost         int64
			SourceDown                      float64
			Age, Gender                     map[string]int
			HourPeople                      int64
			Coverage                        map[string]map[string]int
		}
		get := func(dept string, h int) hourly {
			t.Helper()
			var r hourly
			err := s.Pool().QueryRow(ctx, `SELECT devices, windows, people_now_peak, people_seen, windows_lost, source_down_seconds, age, gender, hour_people, coverage
FROM edge_dept_hourly WHERE department = $1 AND hour = $2`, dept, t0.Add(time.Duration(h)*time.Hour)).
				Scan(&r.Devices, &r.Windows, &r.PeopleNowPeak, &r.PeopleSeen, &r.WindowsLost, &r.SourceDown, &r.Age, &r.Gender, &r.HourPeople, &r.Coverage)
			if err != nil {
				t.Fatalf("%s hour %d: %v", dept, h, err)
			}
			return r
		}
		h0 := get("assembly", 0)
		want0 := hourly{Devices: 2, Windows: 120, PeopleNowPeak: 4, PeopleSeen: 300, WindowsLost: 2, SourceDown: 60,
			Age: map[string]int{"20-39": 11, "40-59": 5}, Gender: map[string]int{"female": 10, "male": 12}, HourPeople: 25,
			Coverage: map[string]map[string]int{"age": {"people": 16, "published": 2, "withheld": 0},
				"gender": {"people": 22, "published": 2, "withheld": 0}}}
		if fmt.Sprint(h0) != fmt.Sprint(want0) {
			t.Errorf("assembly hour 0:\n got %+v\nwant %+v", h0, want0)
		}
		// Hour 1: gender is cam-1's breakdown, covering its 11 people of
		// the department's 19, 1 of 2 devices; age fails the k defence and
		// covers nobody.
		want1 := hourly{HourPeople: 19, Gender: map[string]int{"female": 6, "male": 5},
			Coverage: map[string]map[string]int{"age": {"people": 0, "published": 0, "withheld": 2},
				"gender": {"people": 11, "published": 1, "withheld": 1}}}
		if h1 := get("assembly", 1); fmt.Sprint(h1) != fmt.Sprint(want1) {
			t.Errorf("assembly hour 1:\n got %+v\nwant %+v", h1, want1)
		}
		if c := get("canteen", 0); c.Age["20-39"] != 12 || c.Gender["male"] != 6 {
			t.Errorf("canteen hour 0: %+v", c)
		}

		var day hourly
		err = s.Pool().QueryRow(ctx, `SELECT devices, windows, people_now_peak, people_seen, windows_lost, source_down_seconds, age, gender, hour_people, coverage
FROM edge_dept_daily WHERE department = 'assembly' AND day = $1`, t0.Truncate(24*time.Hour)).
			Scan(&day.Devices, &day.Windows, &day.PeopleNowPeak, &day.PeopleSeen, &day.WindowsLost, &day.SourceDown, &day.Age, &day.Gender, &day.HourPeople, &day.Coverage)
		if err != nil {
			t.Fatal(err)
		}
		// The day sums the hours that have a breakdown (age: hour 0 only)
		// and their coverage, in device-hours.
		wantDay := want0
		wantDay.Gender = map[string]int{"female": 16, "male": 17}
		wantDay.HourPeople = 44
		wantDay.Coverage = map[string]map[string]int{"age": {"people": 16, "published": 2, "withheld": 2},
			"gender": {"people": 33, "published": 3, "withheld": 1}}
		if fmt.Sprint(day) != fmt.Sprint(wantDay) {
			t.Errorf("assembly day:\n got %+v\nwant %+v", day, wantDay)
		}

		var lost int64
		var down float64
		var last time.Time
		if err := s.Pool().QueryRow(ctx, `SELECT windows_lost_total, source_down_seconds_24h, last_window_at FROM edge_device_health WHERE device = 'cam-2'`).
			Scan(&lost, &down, &last); err != nil {
			t.Fatal(err)
		}
		if lost != 2 || !last.Equal(t0.Add(time.Hour)) {
			t.Errorf("cam-2 health: lost %d last %v, want 2 and %v", lost, last, t0.Add(time.Hour))
		}
		// t0 is in the past: nothing in the last 24 hours.
		if down != 0 {
			t.Errorf("cam-2 source down in the last 24 h = %v, want 0", down)
		}

		// A second refresh has nothing to do; a late window for hour 0 is
		// picked up; a redelivered one marks nothing.
		if n, err := s.RefreshRollups(ctx, 5); err != nil || n != 0 {
			t.Fatalf("idle refresh: %d, %v", n, err)
		}
		late := win("assembly", "cam-3", 5, 0, 7)
		if _, err := s.Write(ctx, []Window{late, ws[0]}, nil); err != nil {
			t.Fatal(err)
		}
		if n, err := s.RefreshRollups(ctx, 5); err != nil || n != 1 {
			t.Fatalf("refresh after a late window: %d, %v, want 1", n, err)
		}
		if h := get("assembly", 0); h.Devices != 3 || h.PeopleSeen != 307 {
			t.Errorf("after the late window: %+v, want 3 devices and 307 people seen", h)
		}
		// A larger k recomputes everything.
		if n, err := s.RefreshRollups(ctx, 11); err != nil || n != 3 {
			t.Fatalf("refresh with k=11: %d, %v, want all 3 cells", n, err)
		}
		if h := get("assembly", 0); h.Age != nil || h.Gender != nil || h.Coverage["gender"]["withheld"] != 2 || h.Coverage["gender"]["people"] != 0 {
			t.Errorf("k=11: age %v gender %v coverage %v, want both withheld (cells of 5 and 10 < 11), covering nobody", h.Age, h.Gender, h.Coverage)
		}
		if c := get("canteen", 0); c.Age["20-39"] != 12 || c.Gender != nil {
			t.Errorf("canteen with k=11: age %v (want 12) gender %v (want withheld: 6 < 11)", c.Age, c.Gender)
		}
	})
}

// TestWindowJSONMatchesRecordset checks that every field of Window has a
// column in insertWindows's record definition and the other way round, so
// a field added to one side only fails here rather than storing NULLs.
func TestWindowJSONMatchesRecordset(t *testing.T) {
	b, err := json.Marshal(win("d", "c", 0, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	def := insertWindows[strings.Index(insertWindows, "AS x(")+5 : strings.Index(insertWindows, ")\n), ins")]
	cols := map[string]bool{}
	for _, c := range strings.Split(def, ",") {
		cols[strings.Fields(c)[0]] = true
	}
	for k := range m {
		if !cols[k] {
			t.Errorf("Window field %q has no column in the record definition", k)
		}
	}
	for c := range cols {
		if _, ok := m[c]; !ok {
			t.Errorf("record column %q has no Window field", c)
		}
	}
}
