package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/edge-sensor/edge/mqtt"
)

// subscribeCmd is `edge subscribe`: a live table per department across
// devices, or one JSON line per stats message with --json.
func subscribeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge subscribe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "tcp://127.0.0.1:1883", "broker URL (tcp://, ssl://)")
	prefix := fs.String("prefix", "edge", "topic prefix (EDGE_MQTT_PREFIX of the devices)")
	asJSON := fs.Bool("json", false, "print each stats message as one JSON line")
	user := fs.String("username", "", "broker user name")
	password := fs.String("password", "", "broker password (or EDGE_MQTT_PASSWORD)")
	ca := fs.String("ca", "", "PEM CA file for TLS")
	cert := fs.String("cert", "", "PEM client certificate")
	key := fs.String("key", "", "PEM client key")
	count := fs.Int("count", 0, "exit after this many messages (0: run until interrupted)")
	refresh := fs.Duration("refresh", time.Second, "table redraw interval")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	opts := []mqtt.SubscribeOption{
		mqtt.WithTLS(mqtt.TLSConfig{CAFile: *ca, CertFile: *cert, KeyFile: *key}),
		mqtt.WithSubscribeLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	}
	if *user != "" {
		opts = append(opts, mqtt.WithCredentials(*user, *password))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu    sync.Mutex
		board mqtt.Board
		n     int
		dirty bool
	)
	enc := json.NewEncoder(stdout)
	handle := func(_ string, s mqtt.Stats) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if *asJSON {
			if err := enc.Encode(s); err != nil {
				cancel()
			}
		} else {
			board.Update(s)
			dirty = true
		}
		if *count > 0 && n >= *count {
			cancel()
		}
	}
	if !*asJSON {
		go func() {
			t := time.NewTicker(*refresh)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					mu.Lock()
					if dirty {
						fmt.Fprint(stdout, "\033[H\033[2J")
						board.Render(stdout)
						dirty = false
					}
					mu.Unlock()
				}
			}
		}()
	}
	err := mqtt.Subscribe(ctx, *url, *prefix, handle, opts...)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
