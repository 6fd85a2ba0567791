package service_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/edge-sensor/edge/edge/service"
)

// This is how `edge run` is expected to use a Notifier: Ready after the
// first frame and the models, Watch fed by the processed-frame counter,
// Status every few seconds, Stopping on shutdown.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := service.New(service.WithLogger(slog.Default()))

	var frames atomic.Uint64 // incremented by the pipeline per processed frame
	// ... open the camera, wait for its first frame, load the models ...
	if err := n.Ready(); err != nil {
		slog.Warn("sd_notify", "err", err)
	}
	go func() {
		if err := n.Watch(ctx, frames.Load); err != nil {
			slog.Error("watchdog", "err", err)
		}
	}()
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = n.Status(service.StatusText(14.8, 2, "connected"))
			}
		}
	}()
	// ... run until SIGTERM, then:
	_ = n.Stopping()
	// ... publish "offline", flush the queue, close the camera, exit 0.
}
