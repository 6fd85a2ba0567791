package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/edge/preview"
	"github.com/edge-sensor/edge/edge/service"
	"github.com/edge-sensor/edge/internal/localhttp"
	"github.com/edge-sensor/edge/mqtt"
	"github.com/edge-sensor/edge/pipeline"
	"github.com/edge-sensor/edge/tflite"
)

// stopTimeout bounds the clean shutdown: the last window and the retained
// "offline" status must reach the broker within systemd's TimeoutStopSec.
const stopTimeout = 10 * time.Second

// memoryLimit is the Go runtime's soft memory limit unless GOMEMLIMIT sets
// one: near it the garbage collector runs sooner rather than letting the
// garbage of large frames double the heap. With EDGE_MAX_PIXELS at its
// default it keeps the whole process under 200 MB (measured: 167 MB peak on
// 2048x2048 RGBA PNGs read as fast as possible with the preview open, 216 MB
// without the limit).
const memoryLimit = 150 << 20

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	for _, a := range args {
		switch a {
		case "-h", "--help", "-help", "help":
			writeUsage(stdout)
			return nil
		default:
			writeUsage(stderr)
			return usageError{fmt.Sprintf("edge run takes no arguments (got %q): it is configured by EDGE_* variables", a)}
		}
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	// before the models load: a missing camera or model is a setup mistake to name at once
	if err := checkSource(cfg.Source, "/dev"); err != nil {
		return err
	}
	if err := checkModels(cfg.ModelsDir, cfg.Tasks, os.Getenv(envPrefix+"_MODELS_DIR") != ""); err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	log.Info("edge starting", append([]any{"version", version}, cfg.logAttrs()...)...)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	return run(ctx, cfg, log, stdout)
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// loadModels loads the model of each task from dir, each checked against
// the digest in its metadata (tflite.ErrDigest when the file changed).
func loadModels(dir string, tasks []string, threads int, opts ...tflite.Option) ([]pipeline.Classifier, func(), error) {
	var models []*tflite.Model
	closeAll := func() {
		for _, m := range models {
			m.Close()
		}
	}
	var out []pipeline.Classifier
	for _, task := range tasks {
		m, err := tflite.Load(filepath.Join(dir, task+".tflite"), append([]tflite.Option{tflite.WithExpect(task, 0), tflite.WithThreads(threads)}, opts...)...)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("model for task %s: %w", task, err)
		}
		models = append(models, m)
		out = append(out, m)
	}
	return out, closeAll, nil
}

func run(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) error {
	started := time.Now()
	notifier := service.New(service.WithLogger(log))
	models, closeModels, err := loadModels(cfg.ModelsDir, cfg.Tasks, cfg.Threads, tfliteLog(log), tflite.WithRequireDigest(cfg.RequireDigest))
	if err != nil {
		return err
	}
	defer closeModels()
	for i, m := range models {
		if m.Meta().SHA256 == "" {
			log.Warn("model has no sha256 digest: a damaged file would not be noticed (add one with models/stamp.py; EDGE_REQUIRE_MODEL_DIGEST=true refuses such models)",
				"task", cfg.Tasks[i], "dir", cfg.ModelsDir)
		}
	}

	w, h, _ := cfg.size()
	src, err := camera.Open(ctx, cfg.Source, camera.WithSize(w, h), camera.WithFPS(cfg.FPS),
		camera.WithFormat(cfg.Format), camera.WithLoop(cfg.Loop), camera.WithMaxPixels(cfg.MaxPixels), camera.WithLogger(log))
	if err != nil {
		return err
	}
	defer src.Close()

	brokerURL := cfg.MQTTURL
	if brokerURL == "" {
		// Not stopped by ctx: the deferred Close stops it after the publisher has
		// sent the last window and disconnected, so a normal stop logs no lost connection.
		emb, err := mqtt.StartEmbedded(context.WithoutCancel(ctx), cfg.EmbeddedAddr, mqtt.WithEmbeddedLogger(log))
		if err != nil {
			return fmt.Errorf("embedded broker: %w", err)
		}
		defer emb.Close()
		brokerURL = emb.URL()
		log.Info("embedded MQTT broker listening", "url", brokerURL)
	}
	var taskLabels []mqtt.TaskLabels
	for _, m := range models {
		taskLabels = append(taskLabels, mqtt.TaskLabels{Task: m.Meta().Task, Labels: m.Meta().Labels})
	}
	pub, err := mqtt.NewPublisher(mqtt.Config{
		BrokerURL: brokerURL, Username: cfg.MQTTUser, Password: cfg.MQTTPassword,
		TLS:    mqtt.TLSConfig{CAFile: cfg.MQTTCA, CertFile: cfg.MQTTCert, KeyFile: cfg.MQTTKey},
		Prefix: cfg.MQTTPrefix, Department: cfg.Department, Device: cfg.DeviceID,
		StateDir: cfg.StateDir, MaxQueue: cfg.QueueMax, MaxQueueAge: cfg.QueueMaxAge, MaxMemQueue: cfg.QueueMemMax,
		Interval: cfg.Interval, DisableDiscovery: !cfg.HADiscovery, Tasks: taskLabels,
		SWVersion: version, Logger: log,
	})
	if err != nil {
		return err
	}
	// Close last (deferred first): the pipeline's final window goes out
	// before the retained "offline".
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		if err := pub.Close(cctx); err != nil {
			log.Warn("mqtt close", "err", err)
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBrokerCollector(pub.BrokerState))
	obs := &frameObserver{}
	var prev *preview.Server
	if cfg.PreviewAddr != "" && cfg.Preview {
		prev = preview.New(preview.WithLogger(log))
		defer prev.Close()
		obs.preview = prev
	}
	var sink pipeline.Sink = pub
	if cfg.StatsStdout || prev != nil {
		sink = &teeSink{pub: pub, stdout: stdoutIf(cfg.StatsStdout, stdout), preview: prev, device: cfg.DeviceID, department: cfg.Department}
	}
	pcfg := pipelineConfig(cfg)
	pl, err := pipeline.New(pcfg, src, models, sink, pipeline.WithObserver(obs), pipeline.WithRegistry(reg), pipeline.WithLogger(log))
	if err != nil {
		return err
	}

	if cfg.PreviewAddr != "" {
		srv, err := serveHTTP(ctx, cfg.PreviewAddr, previewRules(cfg, log), reg, prev, pl, pub.BrokerState, src.Stats, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}

	var wg sync.WaitGroup
	loopCtx, stopLoops := context.WithCancel(ctx)
	wg.Go(func() {
		if err := notifier.Watch(loopCtx, func() uint64 { return progress(pl.Frames(), src.Stats()) }); err != nil {
			log.Warn("watchdog", "err", err)
		}
	})
	wg.Go(func() { statusLoop(loopCtx, notifier, pl, obs, pub, src, log) })
	wg.Go(func() { diagnosticsLoop(loopCtx, cfg.DiagInterval, started, src, pl, pub, log) })

	err = pl.Run(ctx)
	stopLoops()
	wg.Wait()
	notifier.Stopping()
	if errors.Is(err, context.Canceled) {
		log.Info("edge stopping", "reason", "signal")
		err = nil
	} else if err == nil {
		// A finite source ended: deliver what is queued before going offline.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		if ferr := pub.Flush(fctx); ferr != nil {
			log.Warn("stats still queued on disk at exit; they are sent at the next start", "queued", pub.QueueLen(), "err", ferr)
		}
		cancel()
		log.Info("source ended", "frames", pl.Frames().Processed)
	}
	return err
}

func stdoutIf(on bool, w io.Writer) io.Writer {
	if on {
		return w
	}
	return nil
}

// pipelineConfig maps the environment onto the pipeline's settings.
func pipelineConfig(cfg Config) pipeline.Config {
	p := pipeline.DefaultConfig()
	p.Detector.MinSize = cfg.MinFace
	p.Detector.Level = cfg.LevelFaces
	p.Detector.Turned = cfg.DetectTurned
	p.Classify.Tasks = slices.Clone(cfg.Tasks)
	p.Classify.Every = cfg.ClassEvery
	p.Classify.MinFaceSize = float64(max(cfg.MinFace, cfg.ClassifyMinFace))
	p.Interval = cfg.Interval
	p.LongWindow = cfg.LongWindow
	p.MinGroup = cfg.MinGroup
	// A file read as fast as it is processed loses nothing: capture waits
	// for processing instead of dropping frames as it must for a camera.
	p.Lossless = cfg.FPS == 0 && !isLive(cfg.Source)
	return p
}

// isLive reports whether the source is a camera or a stream, whose frames
// keep coming whether or not edge keeps up.
func isLive(source string) bool {
	for _, p := range []string{"/dev/", "http://", "https://", "rtsp://"} {
		if strings.HasPrefix(source, p) {
			return true
		}
	}
	return false
}

// frameObserver keeps the faces in view (status line) and
// hands frames to the preview when it is on. Nothing is copied otherwise.
type frameObserver struct {
	faces   atomic.Int64
	preview *preview.Server
	buf     []preview.Face
	labels  []preview.Label
}

func (o *frameObserver) Observe(a *pipeline.Annotated) {
	o.faces.Store(int64(len(a.Faces)))
	if o.preview == nil || a.Frame == nil {
		return
	}
	var img image.Image = a.Frame.Image
	if a.Frame.Image == nil {
		f := a.Frame
		img = &image.Gray{Pix: f.Luma, Stride: f.Width, Rect: image.Rect(0, 0, f.Width, f.Height)}
	}
	o.buf, o.labels = o.buf[:0], o.labels[:0]
	for _, f := range a.Faces {
		if !f.Confirmed {
			continue
		}
		start := len(o.labels)
		for _, l := range f.Labels {
			o.labels = append(o.labels, preview.Label{Task: l.Task, Name: l.Label, Confidence: float64(l.Confidence)})
		}
		o.buf = append(o.buf, preview.Face{
			X: int(f.Box.X - f.Box.S/2), Y: int(f.Box.Y - f.Box.S/2), Side: int(f.Box.S),
			TrackID: f.ID, Labels: o.labels[start:len(o.labels):len(o.labels)],
		})
	}
	o.preview.Update(img, o.buf)
}

// teeSink publishes each window and also shows it on stdout and the preview page.
type teeSink struct {
	pub                *mqtt.Publisher
	stdout             io.Writer
	preview            *preview.Server
	device, department string
	mu                 sync.Mutex
}

func (t *teeSink) Publish(ctx context.Context, s mqtt.Stats) error {
	err := t.pub.Publish(ctx, s)
	// Show the message as published: the publisher fills these in.
	s.Schema, s.Device, s.Department = mqtt.SchemaVersion, t.device, t.department
	if s.Kind == "" {
		s.Kind = mqtt.KindWindow
	}
	if err == nil {
		s.Window = t.pub.LastWindowOf(s.Kind)
	}
	if t.stdout != nil {
		t.mu.Lock()
		json.NewEncoder(t.stdout).Encode(s)
		t.mu.Unlock()
	}
	// The preview shows the latest short window; an hour's people seen
	// is not what the page's "now" means.
	if t.preview != nil && !s.IsHour() {
		t.preview.SetStats(s)
	}
	return err
}

// previewIdleTimeout closes keep-alive connections of the local HTTP server
// that have been idle this long: a page polls /stats.json every few
// seconds, so an idle connection is a client that left.
const previewIdleTimeout = 30 * time.Second

// previewRules are the local HTTP server's rules (internal/localhttp): the
// Host allow-list against DNS rebinding (IP literals, localhost, the host of
// EDGE_PREVIEW_ADDR and EDGE_PREVIEW_HOSTS), timeouts, and a connection cap
// that leaves the file descriptors the publisher needs.
func previewRules(cfg Config, log *slog.Logger) localhttp.Rules {
	hosts := slices.Clone(cfg.PreviewHosts)
	if h, _, err := net.SplitHostPort(cfg.PreviewAddr); err == nil && h != "" && net.ParseIP(h) == nil {
		hosts = append(hosts, h)
	}
	limit, ok := openFileLimit()
	conns := httpConnCap(limit, ok)
	log.Debug("local HTTP server limits", "max_conns", conns, "open_file_limit", limit, "allowed_hosts", hosts)
	return localhttp.Rules{Hosts: hosts, MaxConns: conns, IdleTimeout: previewIdleTimeout}
}

// fdReserve is the file descriptors kept for everything but HTTP clients:
// the models, the camera (an ffmpeg's pipes), the state directory's queue
// files, the broker connection and the embedded broker's clients.
const fdReserve = 256

// httpConnCap is the cap on open HTTP connections under an open-file limit
// (RLIMIT_NOFILE; Go raises the soft limit to the hard one at start): at
// most 32, and never more than half of what the reserve leaves, so that no
// number of HTTP clients can starve the publisher of file descriptors.
func httpConnCap(limit uint64, known bool) int {
	const most, least = 32, 4
	if !known || limit >= fdReserve+2*most {
		return most
	}
	if limit <= fdReserve+2*least {
		return least
	}
	return int(limit-fdReserve) / 2
}

// serveHTTP starts the local HTTP server: /healthz, /metrics and, when on,
// the preview, under rules. It listens before returning so a bad address is
// an error at start.
func serveHTTP(ctx context.Context, addr string, rules localhttp.Rules, reg *prometheus.Registry, prev *preview.Server, pl *pipeline.Pipeline,
	broker func() mqtt.BrokerState, source func() camera.SourceStats, log *slog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, pl.Frames().Processed, broker(), sourceProblems(source())...)
	})
	if prev != nil {
		mux.Handle("/", prev.Handler())
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("EDGE_PREVIEW_ADDR %s: %w", addr, err)
	}
	srv := rules.Server(mux)
	srv.BaseContext = func(net.Listener) context.Context { return ctx }
	go func() {
		if err := srv.Serve(rules.Listener(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	log.Info("local HTTP server", "addr", ln.Addr().String(), "preview", prev != nil)
	return srv, nil
}

// writeHealth answers /healthz: "ok frames=N" (200) while windows reach the
// broker, else "degraded frames=N: reasons" (503) naming what keeps them
// from it (a refusing broker, a failing state directory, lost windows not
// yet reported), after the extra problems given (a camera that is down).
func writeHealth(w http.ResponseWriter, frames uint64, st mqtt.BrokerState, extra ...string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	probs := slices.Concat(extra, st.Problems())
	if len(probs) == 0 {
		fmt.Fprintf(w, "ok frames=%d\n", frames)
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, "degraded frames=%d: %s\n", frames, strings.Join(probs, "; "))
}

// sourceProblems says why a live camera is down: lost, or not reachable
// since the start (a network camera is waited for), with the last error.
func sourceProblems(st camera.SourceStats) []string {
	if st.Up || st.Err == "" {
		return nil
	}
	return []string{fmt.Sprintf("camera down for %v: %s", st.Down.Round(time.Second), st.Err)}
}

// progress is what feeds the systemd watchdog: frames processed, corrupt
// frames skipped and connection attempts to a lost camera all show a live
// process; only a hung one stops them all.
func progress(f mqtt.Frames, st camera.SourceStats) uint64 {
	return f.Processed + f.Corrupt + st.Attempts
}

// brokerStatus is the broker part of the systemd status line: "connected",
// or the state and its problems, e.g. "disconnected (not_authorized), 3
// windows lost, not yet reported to the broker".
func brokerStatus(st mqtt.BrokerState) string {
	s := "connected"
	if !st.Connected {
		s = "disconnected"
		if st.Cause != "" {
			s += " (" + st.Cause + ")"
		}
	}
	for _, p := range st.Problems() {
		if !strings.HasPrefix(p, "broker not connected") {
			s += ", " + p
		}
	}
	return s
}

// statusLoop tells systemd that edge is ready once frames flow (the models
// are loaded by then; a broker that is down does not hold readiness back:
// stats wait on disk), or once a network camera unreachable at start is
// being waited for (windows report it down), and keeps STATUS= current.
func statusLoop(ctx context.Context, n *service.Notifier, pl *pipeline.Pipeline, obs *frameObserver, pub *mqtt.Publisher, src camera.Source, log *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	ready := false
	last, lastAt := pl.Frames().Processed, time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			frames := pl.Frames().Processed
			camDown := sourceProblems(src.Stats())
			if !ready && (frames > 0 || len(camDown) > 0) {
				if err := n.Ready(); err != nil {
					log.Warn("sd_notify READY", "err", err)
				}
				if frames > 0 {
					log.Info("ready: frames are being processed")
				} else {
					log.Info("ready: the camera is waited for; windows report it down")
				}
				ready = true
			}
			if d := now.Sub(lastAt); d >= 5*time.Second {
				fps := float64(frames-last) / d.Seconds()
				status := service.StatusText(fps, int(obs.faces.Load()), brokerStatus(pub.BrokerState()))
				if len(camDown) > 0 {
					status += ", " + camDown[0]
				}
				n.Status(status)
				last, lastAt = frames, now
			}
		}
	}
}

// diagnosticsLoop publishes fps, drops, source and broker state periodically.
func diagnosticsLoop(ctx context.Context, every time.Duration, started time.Time, src camera.Source, pl *pipeline.Pipeline, pub *mqtt.Publisher, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastAt := pl.Frames().Processed, time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			frames := pl.Frames()
			st := src.Stats()
			d := mqtt.Diagnostics{
				Time:              now.UTC(),
				UptimeSeconds:     now.Sub(started).Seconds(),
				FPS:               float64(frames.Processed-last) / now.Sub(lastAt).Seconds(),
				Frames:            frames,
				SourceUp:          st.Up,
				SourceReconnects:  st.Reconnects,
				SourceDownSeconds: st.Down.Seconds(),
				Broker:            pub.BrokerState(),
			}
			last, lastAt = frames.Processed, now
			if err := pub.PublishDiagnostics(ctx, d); err != nil {
				log.Debug("diagnostics not published", "err", err)
			}
		}
	}
}
