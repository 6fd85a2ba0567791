package camera

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edge-sensor/edge/internal/proctest"
)

func TestChooseFormat(t *testing.T) {
	webcam := []deviceFormat{
		{fourcc: fccMJPEG, desc: "Motion-JPEG", sizes: []frameSize{discrete(640, 480), discrete(1280, 720), discrete(1920, 1080)}},
		{fourcc: fccYUYV, desc: "YUYV 4:2:2", sizes: []frameSize{discrete(320, 240), discrete(640, 480), discrete(1280, 720)}},
		{fourcc: fourCC("H264"), desc: "H.264", sizes: []frameSize{discrete(1920, 1080)}},
	}
	stepwise := []deviceFormat{
		{fourcc: fccYUYV, sizes: []frameSize{{minW: 16, maxW: 1920, stepW: 2, minH: 16, maxH: 1080, stepH: 2}}},
	}
	tests := []struct {
		name    string
		offered []deviceFormat
		opts    []Option
		want    string   // "FOURCC WxH"
		errHas  []string // when an error is expected
	}{
		{name: "default prefers YUYV at VGA", offered: webcam, want: "YUYV 640x480"},
		{name: "large size prefers MJPEG", offered: webcam, opts: []Option{WithSize(1280, 720)}, want: "MJPG 1280x720"},
		{name: "small size YUYV", offered: webcam, opts: []Option{WithSize(320, 240)}, want: "YUYV 320x240"},
		{name: "only MJPEG has it", offered: webcam, opts: []Option{WithSize(1920, 1080)}, want: "MJPG 1920x1080"},
		{name: "forced MJPEG at VGA", offered: webcam, opts: []Option{WithFormat("mjpeg")}, want: "MJPG 640x480"},
		{name: "forced YUYV large", offered: webcam, opts: []Option{WithFormat("YUYV"), WithSize(1280, 720)}, want: "YUYV 1280x720"},
		{name: "JPEG fourcc serves mjpeg", offered: []deviceFormat{{fourcc: fccJPEG, sizes: []frameSize{discrete(640, 480)}}}, opts: []Option{WithFormat("jpeg")}, want: "JPEG 640x480"},
		{name: "grey preferred when offered", offered: append([]deviceFormat{{fourcc: fccGREY, sizes: []frameSize{discrete(640, 480)}}}, webcam...), want: "GREY 640x480"},
		{name: "default nearest to VGA", offered: []deviceFormat{{fourcc: fccYUYV, sizes: []frameSize{discrete(1920, 1080), discrete(320, 240)}}}, want: "YUYV 320x240"},
		{name: "stepwise exact", offered: stepwise, opts: []Option{WithSize(800, 600)}, want: "YUYV 800x600"},
		{name: "stepwise default", offered: stepwise, want: "YUYV 640x480"},
		{name: "sizes not enumerated", offered: []deviceFormat{{fourcc: fccYUYV}}, opts: []Option{WithSize(1024, 768)}, want: "YUYV 1024x768"},
		{name: "size not offered", offered: webcam, opts: []Option{WithSize(800, 600)},
			errHas: []string{"does not offer 800x600", "MJPG (Motion-JPEG) 640x480 1280x720 1920x1080", "YUYV (YUYV 4:2:2) 320x240 640x480 1280x720", "H264"}},
		{name: "format not offered", offered: webcam, opts: []Option{WithFormat("grey")}, errHas: []string{"does not offer GREY", "MJPG", "YUYV"}},
		{name: "format lacks size", offered: webcam, opts: []Option{WithFormat("yuyv"), WithSize(1920, 1080)}, errHas: []string{"1920x1080 in YUYV", "YUYV (YUYV 4:2:2) 320x240"}},
		{name: "stepwise off step", offered: stepwise, opts: []Option{WithSize(801, 600)}, errHas: []string{"801x600", "16x16-1920x1080"}},
		{name: "nothing usable", offered: []deviceFormat{{fourcc: fourCC("H264"), desc: "H.264", sizes: []frameSize{discrete(1920, 1080)}}}, errHas: []string{"supported pixel format", "H264 (H.264) 1920x1080"}},
		{name: "no formats", errHas: []string{"no capture formats"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := buildOptions(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			fcc, w, h, err := chooseFormat(tt.offered, o)
			if tt.errHas != nil {
				if err == nil {
					t.Fatalf("chose %s %dx%d, want an error", fourCCString(fcc), w, h)
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%s %dx%d", fourCCString(fcc), w, h); got != tt.want {
				t.Fatalf("chose %s, want %s", got, tt.want)
			}
		})
	}
}

// fakeCamera is a V4L2 camera that can be unplugged and plugged back. Its
// opener hands out fakeDevices while it is plugged in.
type fakeCamera struct {
	mu       sync.Mutex
	plugged  bool
	formats  []deviceFormat
	adjust   func(negotiated) negotiated // driver's changes to the asked format
	frames   chan []byte                 // what the current device streams
	unplug   chan struct{}               // closed to unplug the current device
	opens    int
	released int
	cur      *fakeDevice
}

func newFakeCamera() *fakeCamera {
	return &fakeCamera{
		plugged: true,
		formats: []deviceFormat{{fourcc: fccYUYV, desc: "YUYV 4:2:2", sizes: []frameSize{discrete(8, 4), discrete(640, 480)}}},
		frames:  make(chan []byte, 16),
		unplug:  make(chan struct{}),
	}
}

func (c *fakeCamera) open(path string) (videoDevice, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opens++
	if !c.plugged {
		return nil, fmt.Errorf("open %s: %w", path, syscall.ENOENT)
	}
	c.cur = &fakeDevice{cam: c, unplug: c.unplug}
	return c.cur, nil
}

// pull unplugs the camera: the open device's stream fails, opens fail.
func (c *fakeCamera) pull() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.plugged = false
	close(c.unplug)
	c.unplug = make(chan struct{})
}

func (c *fakeCamera) plug() {
	c.mu.Lock()
	c.plugged = true
	c.mu.Unlock()
}

func (c *fakeCamera) stats() (opens, released int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opens, c.released
}

type fakeDevice struct {
	cam    *fakeCamera
	unplug chan struct{}
	format negotiated
	life   context.Context // from Start: like go4vl, streaming ends with it
	closed bool
}

func (d *fakeDevice) Formats() ([]deviceFormat, error) { return d.cam.formats, nil }

func (d *fakeDevice) SetFormat(fourcc uint32, w, h, fps int) (negotiated, error) {
	d.format = negotiated{fourcc: fourcc, width: w, height: h, fps: fps}
	if d.cam.adjust != nil {
		d.format = d.cam.adjust(d.format)
	}
	return d.format, nil
}

func (d *fakeDevice) Start(ctx context.Context) error { d.life = ctx; return nil }

func (d *fakeDevice) Read(ctx context.Context) ([]byte, func(), error) {
	select {
	case b := <-d.cam.frames:
		return b, func() {
			d.cam.mu.Lock()
			d.cam.released++
			d.cam.mu.Unlock()
		}, nil
	case <-d.unplug:
		return nil, nil, fmt.Errorf("dequeue: %w", syscall.ENODEV)
	case <-d.life.Done():
		return nil, nil, errors.New("stream stopped")
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

func (d *fakeDevice) Close() error {
	if d.closed {
		return errors.New("closed twice")
	}
	d.closed = true
	return nil
}

// openFake opens a source on cam with fast backoff and a recording wait.
func openFake(t *testing.T, cam *fakeCamera, log *slog.Logger, opts ...Option) (*liveSource, *waitRecorder) {
	t.Helper()
	if log == nil {
		log = quietLogger()
	}
	opts = append([]Option{WithSize(8, 4), WithLogger(log), WithBackoff(time.Millisecond, 8*time.Millisecond)}, opts...)
	o, err := buildOptions(opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newV4L2Source(context.Background(), "/dev/video0", o, cam.open, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w := &waitRecorder{}
	s.wait = w.wait
	t.Cleanup(func() { s.Close() })
	return s, w
}

// waitRecorder records the backoff delays and really sleeps them, so that
// Down accounting sees time pass; onWait may act (plug the camera back).
type waitRecorder struct {
	mu     sync.Mutex
	delays []time.Duration
	onWait func(n int)
}

func (w *waitRecorder) wait(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.delays = append(w.delays, d)
	n, on := len(w.delays), w.onWait
	w.mu.Unlock()
	if on != nil {
		on(n)
	}
	return sleep(ctx, d)
}

func (w *waitRecorder) get() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.delays...)
}

func TestV4L2Frames(t *testing.T) {
	cam := newFakeCamera()
	s, _ := openFake(t, cam, nil)
	cam.frames <- makeYUYV(8, 4, 16)
	cam.frames <- makeYUYV(8, 4, 16)[:20] // truncated
	cam.frames <- makeYUYV(8, 4, 16)
	for i, wantCorrupt := range []bool{false, true, false} {
		f, err := s.Next(context.Background())
		if wantCorrupt {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("frame %d: err %v, want ErrCorrupt", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Width != 8 || f.Height != 4 || f.Luma[9] != 1+1 {
			t.Fatalf("frame %d: %dx%d luma %v", i, f.Width, f.Height, f.Luma)
		}
		if _, ok := f.Image.(*YUYV); !ok {
			t.Fatalf("Image %T", f.Image)
		}
	}
	if f, err := s.Next(canceled()); err == nil || f != nil {
		t.Fatalf("Next with cancelled ctx: %v", err)
	}
	st := s.Stats()
	if st.Frames != 2 || st.Corrupt != 1 || !st.Up || st.Reconnects != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	if _, released := cam.stats(); released != 3 {
		t.Fatalf("%d capture buffers given back, want 3", released)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestV4L2OpenErrors(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*fakeCamera)
		opts   []Option
		errHas []string
	}{
		{"size not offered", nil, []Option{WithSize(1280, 720)}, []string{"/dev/video0", "does not offer 1280x720", "YUYV (YUYV 4:2:2) 8x4 640x480"}},
		{"format not offered", nil, []Option{WithFormat("mjpeg")}, []string{"/dev/video0", "MJPEG", "YUYV"}},
		{"unplugged", func(c *fakeCamera) { c.plugged = false }, nil, []string{"/dev/video0", "no such file"}},
		{"driver adjusts", func(c *fakeCamera) {
			c.adjust = func(n negotiated) negotiated { n.width, n.height = 640, 480; return n }
		}, nil, []string{"asked for YUYV 8x4, driver gave YUYV 640x480"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cam := newFakeCamera()
			if tt.setup != nil {
				tt.setup(cam)
			}
			o, err := buildOptions(append([]Option{WithSize(8, 4), WithLogger(quietLogger())}, tt.opts...))
			if err != nil {
				t.Fatal(err)
			}
			_, err = newV4L2Source(context.Background(), "/dev/video0", o, cam.open, time.Second)
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tt.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if cam.cur != nil && !cam.cur.closed {
				t.Error("device left open after a failed Open")
			}
		})
	}
}

func TestV4L2Reconnect(t *testing.T) {
	cam := newFakeCamera()
	var logs proctest.SyncBuffer
	s, rec := openFake(t, cam, slog.New(slog.NewTextHandler(&logs, nil)))
	cam.frames <- makeYUYV(8, 4, 16)
	if _, err := s.Next(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Unplugged for 6 attempts: delays double from 1ms to the 8ms cap.
	rec.onWait = func(n int) {
		if n == 6 {
			cam.plug()
			cam.frames <- makeYUYV(8, 4, 16)
		}
	}
	cam.pull()
	start := time.Now()
	f, err := s.Next(context.Background())
	if err != nil {
		t.Fatalf("Next across an unplug: %v", err)
	}
	outage := time.Since(start)
	if f.Seq != 2 {
		t.Fatalf("Seq %d after reconnect, want 2", f.Seq)
	}
	ms := time.Millisecond
	if got, want := rec.get(), []time.Duration{ms, 2 * ms, 4 * ms, 8 * ms, 8 * ms, 8 * ms}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("backoff %v, want %v", got, want)
	}
	st := s.Stats()
	if !st.Up || st.Reconnects != 1 || st.Frames != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	if st.Down < 31*ms || st.Down > outage {
		t.Fatalf("Down = %v, want between the 31ms of backoff and the %v outage", st.Down, outage)
	}
	if st.BackAt.Before(start.Add(st.Down)) || st.BackAt.After(start.Add(outage)) {
		t.Fatalf("BackAt %v, want within the outage's end: %v after %v", st.BackAt, st.Down, start)
	}
	if opens, _ := cam.stats(); opens != 1+7 {
		t.Fatalf("%d opens, want 8 (first, 6 failed, 1 good)", opens)
	}
	for _, want := range []string{`msg="camera lost"`, "no such device", `msg="camera back"`, "attempts=7"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}

	// A second outage starts the backoff from the minimum again, and Down adds up.
	rec.mu.Lock()
	rec.delays = nil
	rec.onWait = func(n int) {
		if n == 2 {
			cam.plug()
			cam.frames <- makeYUYV(8, 4, 16)
		}
	}
	rec.mu.Unlock()
	cam.pull()
	if _, err := s.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.get(); fmt.Sprint(got) != fmt.Sprint([]time.Duration{ms, 2 * ms}) {
		t.Fatalf("second outage backoff %v, want [1ms 2ms]", got)
	}
	st2 := s.Stats()
	if st2.Reconnects != 2 || st2.Down < st.Down+3*ms {
		t.Fatalf("Stats after second outage = %+v (first %+v)", st2, st)
	}
}

func TestV4L2DownCancelAndClose(t *testing.T) {
	cam := newFakeCamera()
	s, _ := openFake(t, cam, nil)
	cam.pull()

	// While down, Next blocks until ctx ends; the source stays down.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next while unplugged: %v, want deadline exceeded", err)
	}
	st := s.Stats()
	if st.Up || st.Down < 30*time.Millisecond {
		t.Fatalf("Stats while down = %+v", st)
	}
	// Down keeps growing during the outage.
	time.Sleep(10 * time.Millisecond)
	if d := s.Stats().Down; d <= st.Down {
		t.Fatalf("Down did not grow: %v then %v", st.Down, d)
	}

	// Close unblocks a Next waiting for the device.
	done := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, fs.ErrClosed) {
			t.Fatalf("Next after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Next")
	}
	down := s.Stats().Down
	time.Sleep(10 * time.Millisecond)
	if st := s.Stats(); st.Up || st.Down != down {
		t.Fatalf("after Close: %+v (Down should stop at %v)", st, down)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestV4L2CloseWhileReading(t *testing.T) {
	cam := newFakeCamera()
	s, _ := openFake(t, cam, nil)
	done := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // Next waits for a frame that does not come
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, fs.ErrClosed) {
			t.Fatalf("Next: %v, want fs.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Next")
	}
	if !cam.cur.closed {
		t.Fatal("device not closed")
	}
	if st := s.Stats(); st.Up || st.Down != 0 || st.Reconnects != 0 {
		t.Fatalf("Stats after Close = %+v: closing is not an outage", st)
	}
}

func TestV4L2Stall(t *testing.T) {
	cam := newFakeCamera()
	o, _ := buildOptions([]Option{WithSize(8, 4), WithLogger(quietLogger()), WithBackoff(time.Millisecond, time.Millisecond)})
	s, err := newV4L2Source(context.Background(), "/dev/video0", o, cam.open, 30*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// No frames at all: after the stall timeout the device is reopened.
	go func() {
		time.Sleep(100 * time.Millisecond)
		cam.frames <- makeYUYV(8, 4, 16)
	}()
	if _, err := s.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Reconnects == 0 {
		t.Fatalf("Stats = %+v, want reconnects after stalls", st)
	}
	if opens, _ := cam.stats(); opens < 2 {
		t.Fatalf("%d opens: a stalled device was not reopened", opens)
	}
}

func TestStallTimeout(t *testing.T) {
	for _, tt := range []struct {
		fps  int
		want time.Duration
	}{{0, 5 * time.Second}, {30, 5 * time.Second}, {1, 10 * time.Second}} {
		if got := stallTimeout(tt.fps); got != tt.want {
			t.Errorf("stallTimeout(%d) = %v, want %v", tt.fps, got, tt.want)
		}
	}
}
