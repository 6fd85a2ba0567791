package camera

import (
	"context"
	"errors"
	"image"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireFFmpeg skips without ffmpeg on a developer machine; in CI (env CI
// set) the ffmpeg tests must run.
func requireFFmpeg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ffmpeg is required in CI: %v", err)
		}
		t.Skip("ffmpeg not installed (apt install ffmpeg); set CI=1 to make this a failure")
	}
}

// testVideo makes a 1 s, 10 fps, 160x120 test video.
func testVideo(t *testing.T, name string) string {
	t.Helper()
	requireFFmpeg(t)
	p := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "1", "-pix_fmt", "yuv420p", p).CombinedOutput()
	if err != nil {
		t.Fatalf("making test video: %v: %s", err, out)
	}
	return p
}

func TestFFmpegSource(t *testing.T) {
	mp4 := testVideo(t, "clip.mp4")
	tests := []struct {
		name        string
		opts        []Option
		n           int // frames to read
		wantFrames  int // -1: expect no EOF within n
		w, h        int
		minDuration time.Duration
	}{
		{name: "native", n: 11, wantFrames: 10, w: 160, h: 120},
		{name: "scaled", opts: []Option{WithSize(80, 60)}, n: 11, wantFrames: 10, w: 80, h: 60},
		{name: "resampled and paced", opts: []Option{WithFPS(20)}, n: 21, wantFrames: 20, w: 160, h: 120, minDuration: 850 * time.Millisecond},
		{name: "loop", opts: []Option{WithLoop(true)}, n: 25, wantFrames: -1, w: 160, h: 120},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), mp4, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			start := time.Now()
			frames := 0
			var prev []byte
			for i := 0; i < tt.n; i++ {
				f, err := s.Next(context.Background())
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				frames++
				if f.Seq != uint64(frames) || f.Width != tt.w || f.Height != tt.h || len(f.Luma) != tt.w*tt.h {
					t.Fatalf("frame %d: seq %d %dx%d luma %d", frames, f.Seq, f.Width, f.Height, len(f.Luma))
				}
				if g, ok := f.Image.(*image.Gray); !ok || &g.Pix[0] != &f.Luma[0] {
					t.Fatalf("Image = %T, want *image.Gray over Luma", f.Image)
				}
				if prev != nil && string(prev) == string(f.Luma) && tt.name != "resampled and paced" {
					t.Fatalf("frame %d equals the previous one", frames)
				}
				if frames == 1 {
					// testsrc draws colour bars and a gradient: the luma must span a wide range.
					var lo, hi byte = 255, 0
					for _, v := range f.Luma {
						lo, hi = min(lo, v), max(hi, v)
					}
					if hi-lo < 100 {
						t.Fatalf("luma range %d..%d: not the test pattern", lo, hi)
					}
				}
				prev = append(prev[:0], f.Luma...)
			}
			if tt.wantFrames >= 0 && frames != tt.wantFrames {
				t.Fatalf("%d frames before EOF, want %d", frames, tt.wantFrames)
			}
			if tt.wantFrames < 0 && frames != tt.n {
				t.Fatalf("looping source ended after %d frames", frames)
			}
			if d := time.Since(start); d < tt.minDuration {
				t.Fatalf("took %v, want at least %v", d, tt.minDuration)
			}
			st := s.Stats()
			if st.Frames != uint64(frames) || st.Corrupt != 0 {
				t.Fatalf("Stats = %+v", st)
			}
			if st.Up != (tt.wantFrames < 0) {
				t.Fatalf("Stats.Up = %v", st.Up)
			}
		})
	}
	t.Run("close early", func(t *testing.T) { testFFmpegCloseEarly(t, mp4) })
	t.Run("live restart", func(t *testing.T) { testFFmpegLiveRestart(t, mp4) })
}

// testFFmpegLiveRestart runs ffmpeg sessions in a live source, as for RTSP:
// when ffmpeg ends, the source starts it again.
func testFFmpegLiveRestart(t *testing.T, mp4 string) {
	o, err := buildOptions([]Option{WithLogger(quietLogger()), WithBackoff(time.Millisecond, time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	args := ffmpegArgs(mp4, false, o)
	dial := func(call, life context.Context) (session, error) {
		return startFFmpeg(call, life, "ffmpeg", "test", args, 10*time.Second, DefaultMaxPixels)
	}
	s, err := newLiveSource(context.Background(), "test", dial, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 1; i <= 13; i++ {
		f, err := s.Next(context.Background())
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Seq != uint64(i) || f.Width != 160 {
			t.Fatalf("frame %d: seq %d width %d", i, f.Seq, f.Width)
		}
	}
	if st := s.Stats(); st.Reconnects != 1 || !st.Up || st.Frames != 13 {
		t.Fatalf("Stats = %+v, want one restart after 10 frames", st)
	}
}

func testFFmpegCloseEarly(t *testing.T, mp4 string) {
	s, err := Open(context.Background(), mp4, WithLoop(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

func TestFFmpegBadFile(t *testing.T) {
	requireFFmpeg(t)
	p := filepath.Join(t.TempDir(), "broken.mp4")
	if err := os.WriteFile(p, []byte("this is not a video"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), p)
	if err == nil {
		s.Close()
		t.Fatal("no error for a broken video")
	}
	if !strings.Contains(err.Error(), "ffmpeg") || !strings.Contains(err.Error(), "broken.mp4") {
		t.Fatalf("error %q should name ffmpeg and the file", err)
	}
}

func TestFFmpegArgs(t *testing.T) {
	tests := []struct {
		name string
		live bool
		o    options
		want string
	}{
		{"plain", false, options{}, "-hide_banner -nostdin -loglevel error -i in -an -sn -dn -f image2pipe -c:v pgm -pix_fmt gray -"},
		{"loop fps size", false, options{loop: true, fps: 5, width: 320, height: 240},
			"-hide_banner -nostdin -loglevel error -stream_loop -1 -i in -an -sn -dn -vf fps=5,scale=320:240 -f image2pipe -c:v pgm -pix_fmt gray -"},
		{"rtsp", true, options{loop: true}, "-hide_banner -nostdin -loglevel error -rtsp_transport tcp -i in -an -sn -dn -f image2pipe -c:v pgm -pix_fmt gray -"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(ffmpegArgs("in", tt.live, tt.o), " "); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}
