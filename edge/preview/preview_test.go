package preview

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// greyFrame returns a w x h frame of one grey level.
func greyFrame(w, h int, level uint8) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for i := range g.Pix {
		g.Pix[i] = level
	}
	return g
}

// ycbcrFrame returns a w x h 4:2:0 frame of one grey level, like a decoded
// camera JPEG.
func ycbcrFrame(w, h int, level uint8) *image.YCbCr {
	y := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for i := range y.Y {
		y.Y[i] = level
	}
	for i := range y.Cb {
		y.Cb[i], y.Cr[i] = 128, 128
	}
	return y
}

func sampleStats(window int64) map[string]any {
	return map[string]any{
		"schema": 1, "window": window, "people_now": window % 5, "people_seen": window,
		"emotion":  map[string]any{"mass": map[string]float64{"happy": 0.6, "neutral": 0.4}},
		"age":      map[string]any{"counts": map[string]int{"20-39": 2, "40-59": 1}},
		"withheld": []string{"gender"},
	}
}

// feed calls Update with synthetic frames every period until ctx ends.
func feed(ctx context.Context, s *Server, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		x := 10 + i%60
		s.Update(ycbcrFrame(160, 120, uint8(40+i%100)), []Face{{
			X: x, Y: 40, Side: 48, TrackID: 7,
			Labels: []Label{{"emotion", "happy", 0.82}, {"age", "20-39", 0.6}, {"gender", "female", 0.9}},
		}})
	}
}

func TestCaption(t *testing.T) {
	tests := []struct {
		name string
		face Face
		want string
	}{
		{"no labels", Face{TrackID: 3}, "#3"},
		{"all tasks", Face{TrackID: 12, Labels: []Label{
			{"emotion", "happy", 0.816}, {"age", "20-39", 0.5}, {"gender", "female", 0.9},
		}}, "#12 happy 0.82 · 20-39 · female"},
		{"unclassified label skipped", Face{TrackID: 1, Labels: []Label{
			{"emotion", "", 0}, {"age", "60-79", 0.4},
		}}, "#1 60-79 0.40"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := caption(tt.face); got != tt.want {
				t.Errorf("caption = %q, want %q", got, tt.want)
			}
		})
	}
}

func isColoured(c color.Color) bool {
	r, g, b, _ := c.RGBA()
	return r != g || g != b
}

func TestAnnotate(t *testing.T) {
	labels := []Label{{"emotion", "happy", 0.82}, {"age", "20-39", 0.6}, {"gender", "female", 0.9}}
	tests := []struct {
		name  string
		img   image.Image
		faces []Face
	}{
		{"grey, centre", greyFrame(320, 240, 100), []Face{{X: 100, Y: 80, Side: 60, TrackID: 1, Labels: labels}}},
		{"ycbcr, centre", ycbcrFrame(320, 240, 100), []Face{{X: 100, Y: 80, Side: 60, TrackID: 2, Labels: labels}}},
		{"offset bounds", greyFrame(320, 240, 100).SubImage(image.Rect(10, 10, 330, 250)), []Face{{X: 50, Y: 50, Side: 40, TrackID: 3}}},
		{"top-left edge", greyFrame(320, 240, 100), []Face{{X: 0, Y: 0, Side: 50, TrackID: 4, Labels: labels}}},
		{"bottom-right edge", greyFrame(320, 240, 100), []Face{{X: 300, Y: 220, Side: 50, TrackID: 5, Labels: labels}}},
		{"partly outside", greyFrame(320, 240, 100), []Face{{X: -20, Y: -30, Side: 60, TrackID: 6, Labels: labels}}},
		{"wholly outside", greyFrame(320, 240, 100), []Face{{X: 1000, Y: -500, Side: 60, TrackID: 7, Labels: labels}}},
		{"larger than frame", greyFrame(64, 48, 100), []Face{{X: -10, Y: -10, Side: 400, TrackID: 8, Labels: labels}}},
		{"zero side", greyFrame(64, 48, 100), []Face{{X: 10, Y: 10, TrackID: 9}}},
		{"tiny frame", greyFrame(3, 2, 100), []Face{{X: 0, Y: 0, Side: 2, TrackID: 10, Labels: labels}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshotPix(tt.img)
			out := annotate(tt.img, tt.faces)
			b := tt.img.Bounds()
			if got := out.Bounds(); got != image.Rect(0, 0, b.Dx(), b.Dy()) {
				t.Fatalf("bounds %v, want origin-based %dx%d", got, b.Dx(), b.Dy())
			}
			if !bytes.Equal(before, snapshotPix(tt.img)) {
				t.Error("input frame was modified")
			}
			for _, f := range tt.faces {
				box := image.Rect(f.X, f.Y, f.X+f.Side, f.Y+f.Side)
				vis := box.Intersect(out.Bounds())
				if f.Side <= 0 || vis.Empty() {
					continue
				}
				// The left edge of the box (when on-frame) must be coloured,
				// and the inside of a big enough box untouched.
				if box.Min.X >= 0 {
					p := image.Pt(box.Min.X, (vis.Min.Y+vis.Max.Y)/2)
					if c := out.At(p.X, p.Y); !isColoured(c) {
						t.Errorf("box edge at %v is %v, want coloured", p, c)
					}
				}
				// A box at the top edge has its caption inside; skip those.
				if in := box.Inset(f.Side / 4).Intersect(out.Bounds()); !in.Empty() && f.Side >= 40 && box.Min.Y >= 20 {
					p := image.Pt((in.Min.X+in.Max.X)/2, (in.Min.Y+in.Max.Y)/2)
					if c := out.RGBAAt(p.X, p.Y); c != (color.RGBA{100, 100, 100, 255}) {
						t.Errorf("box interior at %v is %v, want the frame's grey", p, c)
					}
				}
			}
		})
	}
}

func TestAnnotateCaptionAboveBox(t *testing.T) {
	out := annotate(greyFrame(320, 240, 100), []Face{{X: 100, Y: 100, Side: 60, TrackID: 0,
		Labels: []Label{{"emotion", "happy", 0.82}}}})
	// The band sits right above the box: coloured pixels, with dark glyph pixels in it.
	var coloured, dark int
	for y := 100 - 17; y < 100; y++ {
		for x := 100; x < 100+100; x++ {
			c := out.RGBAAt(x, y)
			if isColoured(c) {
				coloured++
			}
			if c.R < 40 && c.G < 40 && c.B < 40 {
				dark++
			}
		}
	}
	if coloured == 0 || dark == 0 {
		t.Errorf("caption band: %d coloured, %d dark pixels; want both > 0", coloured, dark)
	}
}

func snapshotPix(img image.Image) []byte {
	var buf bytes.Buffer
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			buf.Write([]byte{byte(r >> 8), byte(g >> 8), byte(bl >> 8), byte(a >> 8)})
		}
	}
	return buf.Bytes()
}

func TestAdmit(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name   string
		fps    float64
		frames []time.Time
		want   int
	}{
		{"no cap", 0, []time.Time{ms(0), ms(0), ms(1)}, 3},
		{"burst at 10 fps", 10, []time.Time{ms(0), ms(1), ms(2), ms(3)}, 1},
		{"30 fps camera at 10 fps cap, 1 s", 10, every(t0, 33*time.Millisecond, 30), 10},
		{"10 fps camera with jitter keeps all", 10, []time.Time{ms(0), ms(98), ms(203), ms(297), ms(401)}, 5},
		{"after a pause no burst", 10, []time.Time{ms(0), ms(5000), ms(5001), ms(5050)}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(WithMaxFPS(tt.fps))
			got := 0
			for _, now := range tt.frames {
				if s.admit(now) {
					got++
				}
			}
			if got != tt.want {
				t.Errorf("admitted %d of %d frames, want %d", got, len(tt.frames), tt.want)
			}
		})
	}
}

func every(t0 time.Time, d time.Duration, n int) []time.Time {
	ts := make([]time.Time, n)
	for i := range ts {
		ts[i] = t0.Add(time.Duration(i) * d)
	}
	return ts
}

func TestUpdateWithoutWatchersDoesNoWork(t *testing.T) {
	s := New(WithMaxFPS(0))
	for i := range 100 {
		s.Update(greyFrame(64, 48, uint8(i)), []Face{{X: 1, Y: 1, Side: 10}})
	}
	if f, _ := s.current(); f != nil {
		t.Error("a frame was kept while nobody watched")
	}
	if n := s.encodes.Load(); n != 0 {
		t.Errorf("%d encodes while nobody watched, want 0", n)
	}
}

// openStream starts a stream request against h and returns its multipart
// reader and the response.
func openStream(t *testing.T, ctx context.Context, url string) (*multipart.Reader, *http.Response) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/stream.mjpeg", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/x-mixed-replace" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q: %v", resp.Header.Get("Content-Type"), err)
	}
	return multipart.NewReader(resp.Body, params["boundary"]), resp
}

// readPart reads one part and checks its headers and that it is a JPEG of
// size w x h; it returns the decoded image.
func readPart(t *testing.T, mr *multipart.Reader, w, h int) image.Image {
	t.Helper()
	p, err := mr.NextPart()
	if err != nil {
		t.Fatalf("next part: %v", err)
	}
	if ct := p.Header.Get("Content-Type"); ct != "image/jpeg" {
		t.Errorf("part Content-Type %q", ct)
	}
	b, err := io.ReadAll(p)
	if err != nil {
		t.Fatalf("read part: %v", err)
	}
	if cl := p.Header.Get("Content-Length"); cl != strconv.Itoa(len(b)) {
		t.Errorf("part Content-Length %q, body %d bytes", cl, len(b))
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("part is not a JPEG: %v", err)
	}
	if got := img.Bounds().Size(); got != image.Pt(w, h) {
		t.Errorf("JPEG size %v, want %dx%d", got, w, h)
	}
	return img
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lumaAt returns the mean of the R, G, B of img at (x, y).
func lumaAt(img image.Image, x, y int) uint8 {
	r, g, b, _ := img.At(x, y).RGBA()
	return uint8(((r + g + b) / 3) >> 8)
}

func TestStreamDeliversUpdatedFrames(t *testing.T) {
	s := New(WithMaxFPS(0), WithJPEGQuality(90))
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	defer s.Close() // first: ts.Close waits for open streams

	mr, _ := openStream(t, t.Context(), ts.URL)
	waitFor(t, "the stream to register", func() bool { return s.watchers.Load() == 1 })
	for _, level := range []uint8{30, 120, 210} {
		s.Update(greyFrame(96, 64, level), []Face{{X: 20, Y: 20, Side: 30, TrackID: 1}})
		img := readPart(t, mr, 96, 64)
		// The frame away from the box keeps its grey level (JPEG is lossy).
		if got := lumaAt(img, 80, 55); got < level-6 || got > level+6 {
			t.Errorf("frame grey %d, want about %d", got, level)
		}
		if c := img.At(20, 35); !isColoured(c) {
			t.Errorf("box edge pixel %v not coloured in the JPEG", c)
		}
	}
	if n := s.encodes.Load(); n != 3 {
		t.Errorf("%d encodes for 3 frames, want 3", n)
	}
}

func TestStreamSharesEncodes(t *testing.T) {
	s := New(WithMaxFPS(0))
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	defer s.Close()

	a, _ := openStream(t, t.Context(), ts.URL)
	b, _ := openStream(t, t.Context(), ts.URL)
	waitFor(t, "both streams to register", func() bool { return s.watchers.Load() == 2 })
	for i := range 3 {
		s.Update(greyFrame(32, 32, uint8(50*i)), nil)
		readPart(t, a, 32, 32)
		readPart(t, b, 32, 32)
	}
	if n := s.encodes.Load(); n != 3 {
		t.Errorf("%d encodes for 3 frames watched twice, want 3", n)
	}
}

// pipeWriter is a ResponseWriter whose writes block until the test reads
// them: a client that reads only when it wants to.
type pipeWriter struct {
	header http.Header
	w      *io.PipeWriter
}

func (p *pipeWriter) Header() http.Header         { return p.header }
func (p *pipeWriter) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeWriter) WriteHeader(int)             {}

func TestSlowClientGetsLatestNotBacklog(t *testing.T) {
	s := New(WithMaxFPS(0))
	defer s.Close()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/stream.mjpeg", nil)
		s.Handler().ServeHTTP(&pipeWriter{header: http.Header{}, w: pw}, req)
	}()
	defer func() {
		cancel()
		pr.Close() // unblocks a pending write
		<-done
	}()
	mr := multipart.NewReader(bufio.NewReaderSize(pr, 16), boundary)

	waitFor(t, "the stream to register", func() bool { return s.watchers.Load() == 1 })
	s.Update(greyFrame(32, 32, 10), nil)
	readPart(t, mr, 32, 32)

	// Ten frames arrive while the client reads nothing. At most one of them
	// can already be on its way; the next after it must be the newest.
	for i := 1; i <= 10; i++ {
		s.Update(greyFrame(32, 32, uint8(10+20*i)), nil)
	}
	for parts := 1; ; parts++ {
		if got := lumaAt(readPart(t, mr, 32, 32), 16, 16); got >= 205 {
			break
		}
		if parts == 2 {
			t.Fatalf("the newest frame did not come within 2 parts: a backlog was sent")
		}
	}
	if n := s.encodes.Load(); n > 3 {
		t.Errorf("%d encodes, want at most 3 (first, one in flight, newest)", n)
	}
}

func TestStreamEnds(t *testing.T) {
	tests := []struct {
		name    string
		frames  bool
		closeBy string // "client" or "server"
	}{
		{"client leaves idle stream", false, "client"},
		{"client leaves busy stream", true, "client"},
		{"server closes idle stream", false, "server"},
		{"server closes busy stream", true, "server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(WithMaxFPS(50))
			ts := httptest.NewServer(s.Handler())
			defer ts.Close()
			defer s.Close()

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			mr, resp := openStream(t, ctx, ts.URL)
			waitFor(t, "the stream to register", func() bool { return s.watchers.Load() == 1 })
			if tt.frames {
				go feed(ctx, s, 5*time.Millisecond)
				readPart(t, mr, 160, 120)
			}
			switch tt.closeBy {
			case "client":
				cancel()
				resp.Body.Close()
			case "server":
				s.Close()
				// The client sees the stream end.
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					t.Errorf("reading to the end after Close: %v", err)
				}
			}
			// The handler unregisters on return: its goroutine is gone.
			waitFor(t, "the stream handler to return", func() bool { return s.watchers.Load() == 0 })
			if f, _ := s.current(); f != nil {
				t.Error("frame still held after the last client left")
			}
			// Back to no work at all.
			cancel()
			encodes := s.encodes.Load()
			s.Update(greyFrame(16, 16, 1), nil)
			if f, _ := s.current(); f != nil || s.encodes.Load() != encodes {
				t.Error("Update did work after the last client left")
			}
		})
	}
}

func TestUpdateAfterCloseIsNoop(t *testing.T) {
	s := New(WithMaxFPS(0))
	unwatch := s.watch()
	defer unwatch()
	s.Close()
	s.Close() // idempotent
	s.Update(greyFrame(8, 8, 1), nil)
	if f, _ := s.current(); f != nil {
		t.Error("Update after Close kept a frame")
	}
}

func TestStatsJSON(t *testing.T) {
	type stats struct {
		Window    int `json:"window"`
		PeopleNow int `json:"people_now"`
	}
	tests := []struct {
		name    string
		set     []any
		wantErr bool
		want    string
	}{
		{"before any stats", nil, false, `{}`},
		{"struct", []any{stats{42, 3}}, false, `{"window":42,"people_now":3}`},
		{"latest wins", []any{stats{1, 1}, stats{2, 0}}, false, `{"window":2,"people_now":0}`},
		{"raw JSON", []any{json.RawMessage(`{"window": 7}`)}, false, `{"window":7}`},
		{"unmarshalable keeps previous", []any{stats{5, 5}, func() {}}, true, `{"window":5,"people_now":5}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			var err error
			for _, v := range tt.set {
				err = s.SetStats(v)
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("SetStats error = %v, want error %v", err, tt.wantErr)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats.json", nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			if got := rec.Body.String(); got != tt.want {
				t.Errorf("body %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPage(t *testing.T) {
	s := New()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q", ct)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q does not lock the page down", csp)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`<img id="stream" src="stream.mjpeg"`,
		`<script>`,
		`fetch("stats.json"`,
		`Local preview — frames never leave this device`,
		`id="people-now"`, `id="people-seen"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// Self-contained: nothing loaded from elsewhere.
	for _, bad := range []string{"http://", "https://", "//cdn", "<link", `src="/`} {
		if strings.Contains(body, bad) {
			t.Errorf("page refers to an external resource: %s", bad)
		}
	}
}

func TestRoutes(t *testing.T) {
	s := New()
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodHead, "/", http.StatusOK},
		{http.MethodGet, "/stats.json", http.StatusOK},
		{http.MethodHead, "/stream.mjpeg", http.StatusOK},
		{http.MethodPost, "/stats.json", http.StatusMethodNotAllowed},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/index.html", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.want {
				t.Errorf("status %d, want %d", rec.Code, tt.want)
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	s := New(WithMaxFPS(0))
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go feed(ctx, s, 5*time.Millisecond)

	resp, err := http.Get(ts.URL + "/snapshot.jpg")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("status %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	img, err := jpeg.Decode(resp.Body)
	if err != nil {
		t.Fatalf("snapshot is not a JPEG: %v", err)
	}
	if got := img.Bounds().Size(); got != image.Pt(160, 120) {
		t.Errorf("snapshot size %v", got)
	}
	waitFor(t, "the snapshot to unregister", func() bool { return s.watchers.Load() == 0 })
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name         string
		opts         []Option
		wantInterval time.Duration
		wantQuality  int
	}{
		{"defaults", nil, 100 * time.Millisecond, DefaultJPEGQuality},
		{"fps 25", []Option{WithMaxFPS(25)}, 40 * time.Millisecond, DefaultJPEGQuality},
		{"no cap", []Option{WithMaxFPS(0)}, 0, DefaultJPEGQuality},
		{"quality clamped high", []Option{WithJPEGQuality(1000)}, 100 * time.Millisecond, 100},
		{"quality clamped low", []Option{WithJPEGQuality(-3)}, 100 * time.Millisecond, 1},
		{"nil logger ignored", []Option{WithLogger(nil)}, 100 * time.Millisecond, DefaultJPEGQuality},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.opts...)
			if s.interval != tt.wantInterval || s.cfg.quality != tt.wantQuality || s.cfg.log == nil {
				t.Errorf("interval %v quality %d logger %v, want %v %d non-nil",
					s.interval, s.cfg.quality, s.cfg.log, tt.wantInterval, tt.wantQuality)
			}
		})
	}
}
