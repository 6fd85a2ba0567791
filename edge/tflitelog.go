package main

import (
	"log/slog"
	"os"

	"github.com/edge-sensor/edge/tflite"
)

// tfliteLog routes the TFLite library's own lines ("Created TensorFlow Lite
// XNNPACK delegate for CPU.") into log at debug level, so that they follow
// EDGE_LOG_LEVEL like edge's own. A nil log is one on stderr at
// EDGE_LOG_LEVEL (info when unset or invalid), for the commands configured by
// flags (eval, bench).
func tfliteLog(log *slog.Logger) tflite.Option {
	if log == nil {
		level, err := parseLevel(os.Getenv(envPrefix + "_LOG_LEVEL"))
		if err != nil || os.Getenv(envPrefix+"_LOG_LEVEL") == "" {
			level = slog.LevelInfo
		}
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	return tflite.WithRuntimeLog(func(line string) { log.Debug("tflite: " + line) })
}
